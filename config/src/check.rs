//! The problem collector of validation: every problem, with its field
//! path, instead of stopping at the first; and the checks shared by the
//! config's sections (names, addresses, header names).

use std::net::SocketAddr;

use super::Problem;

/// Collects problems while validating.
#[derive(Default)]
pub(crate) struct Check {
    pub(crate) problems: Vec<Problem>,
}

impl Check {
    pub(crate) fn fail(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem { path: path.into(), message: message.into() });
    }

    pub(crate) fn name(&mut self, path: &str, name: &str, what: &str) {
        if !filters::valid_token(name, filters::envelope::MAX_NAME_LEN) {
            self.fail(path, format!("{what} name {name:?} must be 1-128 characters of A-Z a-z 0-9 . _ -"));
        }
    }

    pub(crate) fn addrs(&mut self, path: &str, list: &[String]) -> Vec<SocketAddr> {
        if list.is_empty() {
            self.fail(path, "must list at least one ip:port address");
        }
        let mut out = Vec::new();
        for (i, a) in list.iter().enumerate() {
            match a.parse::<SocketAddr>() {
                Ok(addr) => out.push(addr),
                Err(_) => self.fail(format!("{path}[{i}]"), format!("{a:?} is not an ip:port address")),
            }
        }
        out
    }

    pub(crate) fn header_name(&mut self, path: &str, name: Option<&str>, default: &str) -> String {
        let name = name.unwrap_or(default).to_ascii_lowercase();
        let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            self.fail(path, format!("{name:?} is not a valid header name"));
        }
        name
    }
}
