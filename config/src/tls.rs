//! TLS settings: the inbound listeners' certificate (and the CA of the
//! client certificates they require), a pool's TLS to its backends, and a
//! caller's required certificate identity. Certificates and keys are read
//! and checked here, at load and at every reload (the files are watched
//! like `file:` secrets), so that a rotation that would not work is refused
//! before it replaces anything.

use std::io::BufReader;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use crate::check::Check;
use crate::schema;

/// Largest certificate or key file read.
const MAX_PEM: u64 = 1024 * 1024;

/// A certificate chain (DER, leaf first) and its private key (DER).
#[derive(Clone, PartialEq, Eq)]
pub struct CertKey {
    /// DER certificates, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// DER private key (PKCS#8, PKCS#1 or SEC1), wiped on drop.
    pub key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKey").field("certificates", &self.chain.len()).field("key", &"<redacted>").finish()
    }
}

/// The inbound listeners' TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// The certificate they present.
    pub cert: CertKey,
    /// CA certificates (DER) of required client certificates: mutual TLS.
    pub client_ca: Option<Vec<Vec<u8>>>,
}

/// A pool's TLS to its backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// CA certificates (DER) that sign the backends' certificates.
    pub ca: Vec<Vec<u8>>,
    /// The name their certificates must carry, sent as SNI.
    pub server_name: String,
    /// The client certificate presented, if any.
    pub client: Option<CertKey>,
}

/// The identity a caller's client certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A URI SAN, e.g. `spiffe://example.org/song_service`.
    Uri(String),
    /// A DNS SAN.
    Dns(String),
}

impl Identity {
    /// As written in the config.
    pub fn shown(&self) -> String {
        match self {
            Identity::Uri(u) => u.clone(),
            Identity::Dns(d) => format!("dns:{d}"),
        }
    }
}

/// The identities a certificate carries (its URI and DNS SANs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// URI SANs.
    pub uris: Vec<String>,
    /// DNS SANs, lower-cased.
    pub dns: Vec<String>,
}

impl PeerIdentity {
    /// The SANs of the DER certificate `der` (`None` when it does not parse).
    pub fn of(der: &[u8]) -> Option<PeerIdentity> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let mut out = PeerIdentity::default();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(u) => out.uris.push((*u).to_owned()),
                    GeneralName::DNSName(d) => out.dns.push(d.to_ascii_lowercase()),
                    _ => {}
                }
            }
        }
        Some(out)
    }

    /// True when it carries `id`.
    pub fn has(&self, id: &Identity) -> bool {
        match id {
            Identity::Uri(u) => self.uris.iter().any(|x| x == u),
            Identity::Dns(d) => self.dns.iter().any(|x| x.eq_ignore_ascii_case(d)),
        }
    }
}

/// What `/config` shows of a chain's leaf: subject, serial, validity, SANs
/// (never a key).
pub fn describe(chain: &[Vec<u8>]) -> serde_json::Value {
    let Some(Ok((_, cert))) = chain.first().map(|der| X509Certificate::from_der(der)) else {
        return serde_json::Value::Null;
    };
    let sans = PeerIdentity::of(chain.first().map_or(&[][..], |d| d)).unwrap_or_default();
    serde_json::json!({
        "subject": cert.subject().to_string(),
        "serial": cert.raw_serial_as_string(),
        "not_before": cert.validity().not_before.to_string(),
        "not_after": cert.validity().not_after.to_string(),
        "uris": sans.uris,
        "dns": sans.dns,
    })
}

fn read(path: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_PEM + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read {path}: {e}"))?;
    if bytes.len() as u64 > MAX_PEM {
        return Err(format!("{path} is larger than {MAX_PEM} bytes"));
    }
    Ok(bytes)
}

/// The certificates of the PEM file at `path`, each checked to parse and
/// (when `current`) to be valid now.
fn certificates(path: &str, current: bool) -> Result<Vec<Vec<u8>>, String> {
    let bytes = read(path)?;
    let mut out = Vec::new();
    for item in rustls_pemfile::certs(&mut BufReader::new(&bytes[..])) {
        let der = item.map_err(|e| format!("{path}: not PEM certificates: {e}"))?;
        let (_, cert) = X509Certificate::from_der(der.as_ref())
            .map_err(|e| format!("{path}: a certificate does not parse: {e}"))?;
        if current && !cert.validity().is_valid() {
            let v = cert.validity();
            return Err(format!("{path}: a certificate is not valid now (valid {} to {})", v.not_before, v.not_after));
        }
        out.push(der.as_ref().to_vec());
    }
    if out.is_empty() {
        return Err(format!("{path}: no PEM certificate in it"));
    }
    Ok(out)
}

fn cert_key(c: &mut Check, path: &str, cert: &str, key: &str) -> Option<CertKey> {
    let chain = certificates(cert, true).map_err(|e| c.fail(format!("{path}.cert"), e)).ok()?;
    let bytes = read(key).map_err(|e| c.fail(format!("{path}.key"), e)).ok()?;
    match rustls_pemfile::private_key(&mut BufReader::new(&bytes[..])) {
        Ok(Some(k)) => Some(CertKey { chain, key: Zeroizing::new(k.secret_der().to_vec()) }),
        Ok(None) => {
            c.fail(format!("{path}.key"), format!("{key}: no PEM private key in it"));
            None
        }
        Err(e) => {
            c.fail(format!("{path}.key"), format!("{key}: not a PEM private key: {e}"));
            None
        }
    }
}

fn cas(c: &mut Check, path: &str, file: &str) -> Option<Vec<Vec<u8>>> {
    certificates(file, false).map_err(|e| c.fail(path, e)).ok()
}

/// Checks `inbound.tls`; `files` gets the files to watch.
pub(crate) fn server(c: &mut Check, t: &schema::ServerTls, files: &mut Vec<String>) -> Option<ServerTls> {
    files.extend([t.cert.clone(), t.key.clone()].into_iter().chain(t.client_ca.clone()));
    let cert = cert_key(c, "inbound.tls", &t.cert, &t.key)?;
    let client_ca = match &t.client_ca {
        Some(f) => Some(cas(c, "inbound.tls.client_ca", f)?),
        None => None,
    };
    Some(ServerTls { cert, client_ca })
}

/// Checks `upstreams.<name>.tls`; `files` gets the files to watch.
pub(crate) fn client(c: &mut Check, path: &str, t: &schema::ClientTls, files: &mut Vec<String>) -> Option<ClientTls> {
    files.extend([Some(t.ca.clone()), t.cert.clone(), t.key.clone()].into_iter().flatten());
    let ca = cas(c, &format!("{path}.ca"), &t.ca)?;
    if t.server_name.is_empty() || t.server_name.contains(['/', ' ', ':']) {
        c.fail(format!("{path}.server_name"), "must be the DNS name the backends' certificates carry");
    }
    let client = match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => Some(cert_key(c, path, cert, key)?),
        (None, None) => None,
        _ => {
            c.fail(path, "set both cert and key, or neither");
            return None;
        }
    };
    Some(ClientTls { ca, server_name: t.server_name.to_ascii_lowercase(), client })
}

/// Checks `inbound.callers.<name>.identity`.
pub(crate) fn identity(c: &mut Check, path: &str, text: &str) -> Identity {
    match text.strip_prefix("dns:") {
        Some(d) if !d.is_empty() => Identity::Dns(d.to_ascii_lowercase()),
        Some(_) => {
            c.fail(path, "dns: needs a name");
            Identity::Dns(String::new())
        }
        None if text.contains("://") => Identity::Uri(text.to_owned()),
        None => {
            c.fail(path, "must be a URI SAN (spiffe://…) or dns:<name>");
            Identity::Uri(text.to_owned())
        }
    }
}
