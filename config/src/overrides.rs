//! Environment overrides, the third config source after the file and its
//! secrets: `FASTPROXY__<PATH>=<value>` sets the field at `<PATH>`, its
//! segments joined by `__`.
//!
//! - Field names match whatever their case (`OUTBOUND`, `outbound`); map keys
//!   (callers, services, pools, key ids) match as written first, then
//!   whatever their case; a key that is not there yet is added as written,
//!   lower-cased when written all in capitals. A number selects a list item.
//! - The value is read as YAML (`5s`, `true`, `[a, b]`, `{ upstream: x }`),
//!   except for `secret` fields, always taken as text.
//!
//! Example: `FASTPROXY__OUTBOUND__CALLERS__song_service__CODEC=snappy`.

use serde_json::{Map, Value};

use crate::Problem;

/// The prefix of override variables.
pub const PREFIX: &str = "FASTPROXY__";

/// One applied override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// The field it set, dotted (`outbound.callers.song_service.codec`).
    pub path: String,
    /// The variable it came from.
    pub var: String,
    /// The value as set, or `<redacted>` for a secret.
    pub shown: String,
}

/// The override variables among `vars`, in name order (so that the result
/// does not depend on the environment's order).
pub fn select(vars: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        vars.into_iter().filter(|(k, _)| k.starts_with(PREFIX) && k.len() > PREFIX.len()).collect();
    out.sort();
    out
}

/// Applies `vars` (from [`select`]) to `root`, the config file as a tree.
pub fn apply(root: &mut Value, vars: &[(String, String)]) -> Result<Vec<Override>, Vec<Problem>> {
    let mut applied = Vec::new();
    let mut problems = Vec::new();
    for (var, raw) in vars {
        let segments: Vec<&str> = var[PREFIX.len()..].split("__").collect();
        match set(root, &segments, raw) {
            Ok((path, secret)) => {
                let shown = if secret { "<redacted>".to_owned() } else { raw.clone() };
                applied.push(Override { path, var: var.clone(), shown });
            }
            Err(message) => problems.push(Problem { path: var.clone(), message }),
        }
    }
    if problems.is_empty() {
        Ok(applied)
    } else {
        Err(problems)
    }
}

/// Sets the field at `segments` to `raw`; returns its dotted path and
/// whether it is a secret.
fn set(root: &mut Value, segments: &[&str], raw: &str) -> Result<(String, bool), String> {
    if segments.iter().any(|s| s.is_empty()) {
        return Err("an empty path segment (three or more underscores in a row?)".to_owned());
    }
    let mut node = root;
    let mut path: Vec<String> = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        if node.is_null() {
            *node = Value::Object(Map::new());
        }
        let last = i + 1 == segments.len();
        node = match node {
            Value::Object(map) => {
                let key = key_for(map, segment);
                path.push(key.clone());
                map.entry(key).or_insert(Value::Null)
            }
            Value::Array(items) => {
                let index: usize = segment
                    .parse()
                    .map_err(|_| format!("{} is a list: {segment:?} is not an index", path.join(".")))?;
                if index == items.len() {
                    items.push(Value::Null);
                }
                let len = items.len();
                path.push(index.to_string());
                items.get_mut(index).ok_or_else(|| format!("{} has {len} items", path[..path.len() - 1].join(".")))?
            }
            _ => return Err(format!("{} is a value, not a section: it has no field {segment:?}", path.join("."))),
        };
        if last {
            let secret = path.last().is_some_and(|k| k == "secret");
            *node = if secret { Value::String(raw.to_owned()) } else { parse_value(raw) };
            return Ok((path.join("."), secret));
        }
    }
    Err("an empty path".to_owned())
}

/// The key of `map` that `segment` names.
fn key_for(map: &Map<String, Value>, segment: &str) -> String {
    if map.contains_key(segment) {
        return segment.to_owned();
    }
    if let Some(k) = map.keys().find(|k| k.eq_ignore_ascii_case(segment)) {
        return k.clone();
    }
    if segment.bytes().any(|b| b.is_ascii_lowercase()) {
        segment.to_owned()
    } else {
        segment.to_ascii_lowercase()
    }
}

/// A value as YAML when it reads as one, else as text.
fn parse_value(raw: &str) -> Value {
    if raw.trim().is_empty() {
        return Value::String(raw.to_owned());
    }
    match serde_saphyr::from_str::<Value>(raw) {
        Ok(Value::Null) | Err(_) => Value::String(raw.to_owned()),
        Ok(v) => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        select(list.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn paths_match_fields_whatever_their_case_and_keys_as_written() {
        let mut root = json!({ "outbound": { "callers": { "song_service": { "codec": "none" }, "Mixed": {} } } });
        let applied = apply(
            &mut root,
            &vars(&[
                ("FASTPROXY__OUTBOUND__CALLERS__song_service__CODEC", "snappy"),
                ("FASTPROXY__OUTBOUND__CALLERS__MIXED__LEVEL", "3"),
                ("FASTPROXY__OUTBOUND__CALLERS__NEW_ONE__SIGN_KEY", "k"),
                ("FASTPROXY__OUTBOUND__LISTEN", "[\"127.0.0.1:1\", \"127.0.0.1:2\"]"),
                ("FASTPROXY__KEYS__HMAC__k__SECRET", "0123"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(root["outbound"]["callers"]["song_service"]["codec"], "snappy");
        assert_eq!(root["outbound"]["callers"]["Mixed"]["level"], 3);
        assert_eq!(root["outbound"]["callers"]["new_one"]["sign_key"], "k");
        assert_eq!(root["outbound"]["listen"], json!(["127.0.0.1:1", "127.0.0.1:2"]));
        assert_eq!(root["keys"]["hmac"]["k"]["secret"], "0123", "a secret stays text");
        let shown: Vec<(&str, &str)> = applied.iter().map(|o| (o.path.as_str(), o.shown.as_str())).collect();
        assert!(shown.contains(&("keys.hmac.k.secret", "<redacted>")), "{shown:?}");
        assert!(shown.contains(&("outbound.callers.song_service.codec", "snappy")), "{shown:?}");
    }

    #[test]
    fn a_path_through_a_value_is_a_problem() {
        let mut root = json!({ "outbound": { "caller": "x" } });
        let problems = apply(&mut root, &vars(&[("FASTPROXY__OUTBOUND__CALLER__NAME", "y")])).unwrap_err();
        assert_eq!(problems[0].path, "FASTPROXY__OUTBOUND__CALLER__NAME");
        assert!(problems[0].message.contains("outbound.caller is a value"), "{}", problems[0].message);
    }
}
