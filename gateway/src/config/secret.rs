//! Key secrets: inline, from the environment, or from a file. Errors name where
//! the secret was looked for, never what it contains.

/// Resolves a secret spec to its 32 bytes.
///
/// - `env:NAME`: the environment variable `NAME` holds 64 hex digits;
/// - `file:PATH`: the file holds 64 hex digits (surrounding whitespace ignored);
/// - anything else: the 64 hex digits themselves.
pub fn resolve(spec: &str) -> Result<[u8; 32], String> {
    let (text, source) = if let Some(name) = spec.strip_prefix("env:") {
        let value = std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?;
        (value, format!("environment variable {name}"))
    } else if let Some(path) = spec.strip_prefix("file:") {
        let value = std::fs::read_to_string(path).map_err(|e| format!("cannot read secret file {path}: {e}"))?;
        (value, format!("file {path}"))
    } else {
        (spec.to_owned(), "inline secret".to_owned())
    };
    let mut out = [0u8; 32];
    let ok = filters::hex::decode_into(text.trim(), &mut out);
    wipe(text);
    if ok {
        Ok(out)
    } else {
        Err(format!("{source} must hold 64 lower-case hex digits (32 bytes)"))
    }
}

/// Overwrites a string holding secret material before it is freed.
pub fn wipe(text: String) {
    let mut bytes = text.into_bytes();
    bytes.fill(0);
    std::hint::black_box(&bytes);
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
        let hex = "00".repeat(31) + "ff";
        assert_eq!(resolve(&hex).map(|k| k[31]), Ok(0xff));
        std::env::set_var("FP_TEST_SECRET_FORMS", &hex);
        assert_eq!(resolve("env:FP_TEST_SECRET_FORMS").map(|k| k[31]), Ok(0xff));
        assert!(resolve("env:FP_TEST_SECRET_UNSET").unwrap_err().contains("FP_TEST_SECRET_UNSET"));
        let err = resolve("deadbeef").unwrap_err();
        assert!(!err.contains("deadbeef"), "the error does not echo the secret: {err}");
        assert!(resolve("file:/nonexistent/fp").unwrap_err().contains("/nonexistent/fp"));
        assert_eq!(generate().map(|s| s.len()), Ok(64));
    }
}
