//! Key secrets: inline, from the environment, or from a file. Errors name where
//! the secret was looked for, never what it contains; every copy of a secret
//! is wiped when it is dropped.

use std::fmt;

use zeroize::Zeroizing;

/// A secret spec as written in the config (`env:NAME`, `file:PATH` or the
/// hex digits themselves). Its `Debug` is redacted and its text is wiped on
/// drop, so neither a log line nor a freed page keeps it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a spec.
    pub fn new(spec: String) -> Self {
        Secret(Zeroizing::new(spec))
    }

    /// The spec's text: where the secret is, or (inline) the secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// Resolves a secret spec to its 32 bytes (wiped when dropped).
///
/// - `env:NAME`: the environment variable `NAME` holds 64 hex digits;
/// - `file:PATH`: the file holds 64 hex digits (surrounding whitespace ignored);
/// - anything else: the 64 hex digits themselves.
pub fn resolve(spec: &Secret) -> Result<Zeroizing<[u8; 32]>, String> {
    let spec = spec.expose();
    let (text, source) = if let Some(name) = spec.strip_prefix("env:") {
        let value = std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?;
        (Zeroizing::new(value), format!("environment variable {name}"))
    } else if let Some(path) = spec.strip_prefix("file:") {
        (read_secret_file(path)?, format!("file {path}"))
    } else {
        (Zeroizing::new(spec.to_owned()), "inline secret".to_owned())
    };
    let mut out = Zeroizing::new([0u8; 32]);
    if filters::hex::decode_into(text.trim(), &mut out[..]) {
        Ok(out)
    } else {
        Err(format!("{source} must hold 64 lower-case hex digits (32 bytes)"))
    }
}

/// The text a secret spec stands for (`env:NAME`, `file:PATH` or inline),
/// surrounding whitespace removed: for secrets that are not 32-byte keys
/// (e.g. an Apollo access key).
pub fn resolve_text(spec: &Secret) -> Result<Zeroizing<String>, String> {
    let spec = spec.expose();
    let text = if let Some(name) = spec.strip_prefix("env:") {
        Zeroizing::new(std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?)
    } else if let Some(path) = spec.strip_prefix("file:") {
        read_secret_file(path)?
    } else {
        Zeroizing::new(spec.to_owned())
    };
    Ok(Zeroizing::new(text.trim().to_owned()))
}

/// Most bytes read from a secret file: 64 hex digits and whitespace fit
/// many times over; a wrong path (a log, a device) is not read whole.
const MAX_SECRET_FILE: u64 = 4096;

/// Reads a secret file, at most [`MAX_SECRET_FILE`] bytes of it.
fn read_secret_file(path: &str) -> Result<Zeroizing<String>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read secret file {path}: {e}"))?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read secret file {path}: {e}"))?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(format!("secret file {path} is larger than {MAX_SECRET_FILE} bytes"));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| format!("secret file {path} is not text"))?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// Formats 32 fresh random bytes in the inline secret format (for `keygen`).
pub fn generate() -> Result<String, String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| "the system random generator failed".to_owned())?;
    Ok(filters::hex::encode(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let s = |t: &str| Secret::new(t.to_owned());
        let hex = "00".repeat(31) + "ff";
        assert_eq!(resolve(&s(&hex)).map(|k| k[31]), Ok(0xff));
        std::env::set_var("FP_TEST_SECRET_FORMS", &hex);
        assert_eq!(resolve(&s("env:FP_TEST_SECRET_FORMS")).map(|k| k[31]), Ok(0xff));
        assert!(resolve(&s("env:FP_TEST_SECRET_UNSET")).unwrap_err().contains("FP_TEST_SECRET_UNSET"));
        let err = resolve(&s("deadbeef")).unwrap_err();
        assert!(!err.contains("deadbeef"), "the error does not echo the secret: {err}");
        assert!(resolve(&s("file:/nonexistent/fp")).unwrap_err().contains("/nonexistent/fp"));
        assert!(resolve(&s("file:/dev/zero")).unwrap_err().contains("larger than 4096 bytes"));
        assert_eq!(format!("{:?}", s(&hex)), "Secret(<redacted>)");
        assert_eq!(generate().map(|s| s.len()), Ok(64));
    }

    #[test]
    fn debug_of_a_loaded_config_shows_no_secret() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/fastproxy.yaml")).unwrap();
        let file: crate::schema::File = serde_saphyr::from_str(&text).unwrap();
        let shown = format!("{file:?}");
        assert!(shown.contains("room-v2") && shown.contains("<redacted>"), "{shown}");
        for secret in ["000102030405060708090a0b0c0d0e0f", "404142434445464748494a4b4c4d4e4f"] {
            assert!(text.contains(secret), "the demo config holds the secret");
            assert!(!shown.contains(secret), "Debug shows a secret: {shown}");
        }
        let config = crate::from_yaml(&text).map_err(|p| p.to_string()).unwrap();
        let keys = format!("{:?}", config.keys);
        assert!(!keys.contains("000102030405060708090a0b0c0d0e0f"), "{keys}");
    }
}
