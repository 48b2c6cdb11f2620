//! Layering of config sources: **file < remote < environment overrides**,
//! on the config as a tree. The remote's values replace the file's at the
//! same path; maps merge key by key. A remote config may not set `remote`
//! itself, and may name only `env:` and `file:` secrets unless the local
//! file opts in with `remote.dangerous_inline_secrets`. Where the remote is
//! comes from the local file alone ([`bootstrap`]).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::check::Check;
use crate::registry::{self, Registry};
use crate::remote::{self, Remote};
use crate::{overrides, schema, Config, Problem, Problems};

/// What the local file (environment overrides applied) says about its
/// remote source: `None` when it has none. Only `remote`, `registries` and
/// `keys` are checked here; the rest may be incomplete until layered.
pub fn bootstrap(text: &str, vars: impl IntoIterator<Item = (String, String)>) -> Result<Option<Remote>, Problems> {
    bootstrap_with_registries(text, vars).map(|(_, remote)| remote)
}

/// [`bootstrap`], with the file's checked `registries` (e.g. to publish a
/// config to one of them).
pub fn bootstrap_with_registries(
    text: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(BTreeMap<String, Registry>, Option<Remote>), Problems> {
    #[derive(Deserialize)]
    struct Bootstrap {
        #[serde(default)]
        keys: schema::Keys,
        #[serde(default)]
        registries: BTreeMap<String, schema::Registry>,
        remote: Option<schema::Remote>,
        #[serde(flatten)]
        _rest: BTreeMap<String, serde::de::IgnoredAny>,
    }
    let mut tree = parse(text, "(root)")?;
    overrides::apply(&mut tree, &overrides::select(vars)).map_err(Problems)?;
    let b: Bootstrap = serde_path_to_error::deserialize(tree)
        .map_err(|e| crate::schema_problem(&e.path().to_string(), e.into_inner().to_string()))?;
    let mut c = Check::default();
    let (ring, _) = crate::validate::keys(&mut c, &b.keys);
    let registries = registry::registries(&mut c, &b.registries, &ring);
    let remote = b.remote.as_ref().and_then(|r| remote::check(&mut c, r, &registries));
    if c.problems.is_empty() {
        Ok((registries, remote))
    } else {
        Err(Problems(c.problems))
    }
}

/// Parses YAML (or JSON) config text into a tree; problems at `root`.
pub fn parse(text: &str, root: &str) -> Result<Value, Problems> {
    let tree: Value = serde_saphyr::from_str(text)
        .map_err(|e| Problems(vec![Problem { path: root.to_owned(), message: e.without_snippet().to_string() }]))?;
    Ok(if tree.is_null() { Value::Object(Default::default()) } else { tree })
}

/// What a remote config may not hold: `remote` itself, and (unless
/// `allow_inline`) inline secrets.
pub fn check_remote_tree(tree: &Value, allow_inline: bool) -> Vec<Problem> {
    let mut out = Vec::new();
    let Some(map) = tree.as_object() else {
        return vec![Problem {
            path: "(remote)".to_owned(),
            message: "the remote config must be a YAML map".to_owned(),
        }];
    };
    if map.contains_key("remote") {
        out.push(Problem {
            path: "(remote).remote".to_owned(),
            message: "a remote config cannot set where the remote config comes from (set remote in the local file)"
                .to_owned(),
        });
    }
    if !allow_inline {
        for kind in ["aead", "hmac"] {
            for (id, key) in tree["keys"][kind].as_object().into_iter().flatten() {
                let spec = key["secret"].as_str().unwrap_or("");
                if !(spec.starts_with("env:") || spec.starts_with("file:")) {
                    out.push(Problem {
                        path: format!("(remote).keys.{kind}.{id}.secret"),
                        message: "an inline secret in remote config is refused (it would travel and rest in the clear): use env:NAME or file:PATH, or set remote.dangerous_inline_secrets in the local file".to_owned(),
                    });
                }
            }
        }
    }
    out
}

/// Merges `over` into `base`: maps key by key, anything else replaced.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The config from the local file `text`, the remote config `remote` (a
/// tree, with whether inline secrets are allowed) and the environment's
/// overrides, in that order; validated whole.
pub fn from_layers(
    text: &str,
    remote: Option<(&Value, bool)>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(Config, Vec<overrides::Override>), Problems> {
    let mut tree = parse(text, "(root)")?;
    if let Some((over, allow_inline)) = remote {
        let problems = check_remote_tree(over, allow_inline);
        if !problems.is_empty() {
            return Err(Problems(problems));
        }
        merge(&mut tree, over.clone());
    }
    let applied = overrides::apply(&mut tree, &overrides::select(vars)).map_err(Problems)?;
    let file: schema::File = serde_path_to_error::deserialize(tree)
        .map_err(|e| crate::schema_problem(&e.path().to_string(), e.into_inner().to_string()))?;
    crate::validate::validate(file).map(|c| (c, applied))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_merge_file_then_remote_then_environment() {
        let file = "admin: { listen: [\"127.0.0.1:9\"] }\ninbound: { listen: [\"127.0.0.1:1\"], max_skew: 10s }\n";
        let remote = parse(
            "inbound: { max_skew: 20s, services: { s: { upstream: p } } }\nupstreams: { p: { backends: [\"127.0.0.1:2\"] } }\n",
            "(remote)",
        )
        .expect("remote");
        let (c, _) = from_layers(file, Some((&remote, false)), Vec::new()).expect("layered");
        let inbound = c.inbound.as_ref().expect("inbound");
        assert_eq!(inbound.max_skew_ms, 20_000, "remote over file");
        assert_eq!(inbound.listen.len(), 1, "the file's listener stays");
        let env = vec![("FASTPROXY__INBOUND__MAX_SKEW".to_owned(), "30s".to_owned())];
        let (c, _) = from_layers(file, Some((&remote, false)), env).expect("layered");
        assert_eq!(c.inbound.as_ref().map(|i| i.max_skew_ms), Some(30_000), "environment over remote");
    }

    #[test]
    fn a_remote_config_may_not_carry_inline_secrets_nor_redirect_itself() {
        let remote = parse(
            "keys: { hmac: { a: { secret: \"404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f\" }, b: { secret: \"env:B\" } } }\nremote: { registry: x, key: y }\n",
            "(remote)",
        )
        .expect("remote");
        let problems = check_remote_tree(&remote, false);
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["(remote).remote", "(remote).keys.hmac.a.secret"]);
        assert!(!problems[1].message.contains("4041"), "the secret is not repeated");
        assert_eq!(check_remote_tree(&remote, true).len(), 1, "opting in allows inline secrets, never a redirect");
    }
}
