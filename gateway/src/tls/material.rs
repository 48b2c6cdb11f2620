//! What a generation's TLS config becomes: the inbound listeners'
//! certificate and client certificate verifier ([`Built`], kept in the
//! generation), and a pool's TLS to its backends ([`PoolTls`]).

use std::sync::Arc;

use pingora::utils::tls::{parse_x509, CertKey as PingoraCertKey, WrappedX509};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use crate::config::tls::{CertKey, ClientTls, ServerTls};

/// The crypto provider of every TLS object fastproxy builds.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls objects of one generation's `inbound.tls`.
#[derive(Default)]
pub struct Built {
    /// The certificate the listeners present.
    pub server: Option<Arc<CertifiedKey>>,
    /// The verifier of client certificates (mutual TLS).
    pub clients: Option<Arc<dyn ClientCertVerifier>>,
}

impl Built {
    /// Builds `tls` (none: plain listeners); fails when the key does not
    /// match the certificate or the CA cannot verify anything.
    pub fn new(tls: Option<&ServerTls>) -> Result<Built, String> {
        let Some(tls) = tls else { return Ok(Built::default()) };
        let server = Some(Arc::new(certified(&tls.cert)?));
        let clients = match &tls.client_ca {
            Some(cas) => {
                let roots = roots(cas)?;
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .build()
                    .map_err(|e| format!("inbound.tls.client_ca: {e}"))?;
                Some(verifier)
            }
            None => None,
        };
        Ok(Built { server, clients })
    }
}

fn certified(ck: &CertKey) -> Result<CertifiedKey, String> {
    let key = PrivateKeyDer::try_from(ck.key.to_vec()).map_err(|e| format!("inbound.tls.key: {e}"))?;
    let signing = provider().key_provider.load_private_key(key).map_err(|e| format!("inbound.tls.key: {e}"))?;
    let chain = ck.chain.iter().map(|c| CertificateDer::from(c.clone())).collect();
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| format!("inbound.tls: the key does not match the certificate: {e}"))?;
    Ok(certified)
}

fn roots(cas: &[Vec<u8>]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for der in cas {
        roots.add(CertificateDer::from(der.clone())).map_err(|e| format!("a CA certificate: {e}"))?;
    }
    Ok(roots)
}

/// A pool's TLS to its backends, ready for each peer.
pub struct PoolTls {
    /// SNI and expected name.
    pub server_name: String,
    /// CA certificates.
    pub ca: Arc<[WrappedX509]>,
    /// The client certificate presented.
    pub client: Option<Arc<PingoraCertKey>>,
}

impl PoolTls {
    /// Prepares `tls` (validated: every certificate parses).
    pub fn new(tls: &ClientTls) -> PoolTls {
        let ca: Vec<WrappedX509> = tls.ca.iter().map(|der| WrappedX509::new(der.clone(), parse_x509)).collect();
        let client = tls.client.as_ref().map(|c| Arc::new(PingoraCertKey::new(c.chain.clone(), c.key.to_vec())));
        PoolTls { server_name: tls.server_name.clone(), ca: Arc::from(ca), client }
    }

    /// Makes `peer` connect with TLS.
    pub fn apply(&self, peer: &mut pingora::upstreams::peer::HttpPeer) {
        peer.scheme = pingora::upstreams::peer::Scheme::HTTPS;
        peer.sni = self.server_name.clone();
        peer.options.verify_cert = true;
        peer.options.verify_hostname = true;
        peer.options.ca = Some(self.ca.clone());
        peer.client_cert_key = self.client.clone();
    }
}
