//! Logging: env_logger, with payload bytes kept out of Pingora's messages.
//!
//! Pingora puts the raw bytes of a message it cannot parse into its errors
//! (`buf: HTTP/1.1 …`), and logs those errors at WARN and ERROR. Those bytes may
//! hold a callee's response body, credentials or personal data: every record
//! from a `pingora` target has them replaced by their length.

/// Where a payload dump starts in Pingora's error contexts.
const DUMP: &str = "buf: ";
/// Where the context that holds it ends (the error's cause follows).
const CAUSE: &str = " cause: ";

/// `message` with every payload dump replaced by its length.
pub fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(DUMP) {
        out.push_str(&rest[..at + DUMP.len()]);
        let after = &rest[at + DUMP.len()..];
        let end = after.find(CAUSE).unwrap_or(after.len());
        out.push_str(&format!("<{end} bytes not logged>"));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

struct Redacting(env_logger::Logger);

impl log::Log for Redacting {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.0.matches(record) {
            return;
        }
        if !record.target().starts_with("pingora") {
            return self.0.log(record);
        }
        let message = record.args().to_string();
        if !message.contains(DUMP) {
            return self.0.log(record);
        }
        let clean = redact(&message);
        self.0.log(
            &log::Record::builder()
                .args(format_args!("{clean}"))
                .level(record.level())
                .target(record.target())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// Installs the logger: `RUST_LOG` (default `info`), payload dumps redacted.
pub fn init() {
    let logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(Redacting(logger))).is_ok() {
        log::set_max_level(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_dumps_are_replaced_by_their_length() {
        let line = "Fail to proxy: Upstream InvalidHTTPHeader context: buf: HTTP/1.1 200 OK\\r\\nx-secret: 42 cause: invalid header; peer: 127.0.0.1:1";
        let clean = redact(line);
        assert!(!clean.contains("x-secret"), "{clean}");
        assert!(clean.contains("buf: <31 bytes not logged> cause: invalid header; peer: 127.0.0.1:1"), "{clean}");
        assert_eq!(redact("nothing to hide"), "nothing to hide");
        assert_eq!(redact("buf: tail"), "buf: <4 bytes not logged>");
    }
}
