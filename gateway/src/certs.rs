//! `fastproxy certs`: a CA and certificates for TLS between the proxies, for
//! tests, demos and small deployments (docs/OPERATIONS.md, "TLS between the
//! proxies"). Keys are ECDSA P-256, written with mode 0600; certificates
//! carry the names and identities given (DNS SANs for a server, a URI SAN
//! such as `spiffe://example.org/song_service` for a caller).

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// What to make.
pub struct Request<'a> {
    /// Directory the files go to.
    pub dir: &'a Path,
    /// File name stem: `<name>.crt` and `<name>.key`.
    pub name: &'a str,
    /// `None`: a self-signed CA. `Some(stem)`: signed by `<stem>.crt`/`.key`.
    pub ca: Option<&'a str>,
    /// DNS SANs.
    pub dns: &'a [String],
    /// URI SANs.
    pub uris: &'a [String],
    /// Valid for this many days from yesterday.
    pub days: i64,
    /// Already expired (for tests of refusal).
    pub expired: bool,
}

fn write(path: &Path, text: &str, secret: bool) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mode = if secret { 0o600 } else { 0o644 };
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e} (certs never overwrites a file)", path.display()))
}

/// Makes the certificate `req` asks for; returns the files written.
pub fn make(req: &Request<'_>) -> Result<Vec<String>, String> {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, req.name);
    params.distinguished_name.push(DnType::OrganizationName, "fastproxy");
    let now = OffsetDateTime::now_utc();
    (params.not_before, params.not_after) = if req.expired {
        (now - Duration::days(30), now - Duration::days(1))
    } else {
        (now - Duration::days(1), now + Duration::days(req.days.max(1)))
    };
    for d in req.dns {
        params.subject_alt_names.push(SanType::DnsName(d.clone().try_into().map_err(|e| format!("--dns {d}: {e}"))?));
    }
    for u in req.uris {
        params.subject_alt_names.push(SanType::URI(u.clone().try_into().map_err(|e| format!("--uri {u}: {e}"))?));
    }
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = match req.ca {
        None => {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.self_signed(&key).map_err(|e| e.to_string())?
        }
        Some(ca) => {
            let read = |ext: &str| {
                let p = req.dir.join(format!("{ca}.{ext}"));
                std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))
            };
            let ca_key = KeyPair::from_pem(&read("key")?).map_err(|e| format!("{ca}.key: {e}"))?;
            let ca_params = CertificateParams::from_ca_cert_pem(&read("crt")?).map_err(|e| format!("{ca}.crt: {e}"))?;
            let issuer = ca_params.self_signed(&ca_key).map_err(|e| e.to_string())?;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            params.signed_by(&key, &issuer, &ca_key).map_err(|e| e.to_string())?
        }
    };
    let crt = req.dir.join(format!("{}.crt", req.name));
    let key_path = req.dir.join(format!("{}.key", req.name));
    std::fs::create_dir_all(req.dir).map_err(|e| format!("{}: {e}", req.dir.display()))?;
    write(&crt, &cert.pem(), false)?;
    write(&key_path, &key.serialize_pem(), true)?;
    Ok(vec![crt.display().to_string(), key_path.display().to_string()])
}
