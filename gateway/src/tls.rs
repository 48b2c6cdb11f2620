//! TLS between the proxies (and, per pool, to callees), on rustls through
//! Pingora:
//! - the inbound listeners present the certificate of the current
//!   generation ([`ServerCerts`]) and, with mutual TLS, verify client
//!   certificates against the current generation's CA ([`ClientCerts`]): a
//!   reload (SIGHUP, or the watch on the files) rotates both; new handshakes
//!   use the new ones, connections in flight keep theirs;
//! - each handshake's client certificate identities (URI and DNS SANs) are
//!   attached to the connection ([`Identities`]) for the caller check;
//! - a pool with `tls` connects with server verification (CA, name, SNI)
//!   and presents its client certificate ([`PoolTls`]).

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use pingora::utils::tls::{parse_x509, CertKey as PingoraCertKey, WrappedX509};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use crate::config::tls::{CertKey, ClientTls, PeerIdentity, ServerTls};
use crate::state::Shared;

fn provider() -> Arc<CryptoProvider> {
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

/// Presents the current generation's certificate.
pub struct ServerCerts(pub Shared);

impl std::fmt::Debug for ServerCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerCerts")
    }
}

impl ResolvesServerCert for ServerCerts {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load().tls.server.clone()
    }
}

/// Verifies client certificates against the current generation's CA.
pub struct ClientCerts {
    shared: Shared,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCerts {
    /// A verifier following `shared`.
    pub fn new(shared: Shared) -> Self {
        ClientCerts { shared, algorithms: provider().signature_verification_algorithms }
    }
}

impl std::fmt::Debug for ClientCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientCerts")
    }
}

impl ClientCertVerifier for ClientCerts {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: the CA may change with a reload.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match &self.shared.load().tls.clients {
            Some(v) => v.verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::General("no client CA is configured".to_owned())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Attaches the client certificate's identities to each connection.
pub struct Identities;

#[async_trait]
impl TlsAccept for Identities {
    async fn handshake_complete_callback(&self, tls: &TlsRef) -> Option<Arc<dyn Any + Send + Sync>> {
        let der = tls.peer_certificate_der()?;
        Some(Arc::new(PeerIdentity::of(der)?))
    }
}

/// The TLS settings of the inbound listeners following `shared`, mutual
/// when `mutual`.
pub fn listener_settings(shared: &Shared, mutual: bool) -> Result<TlsSettings, String> {
    pingora::tls::install_default_crypto_provider();
    let mut settings = TlsSettings::with_callbacks(Box::new(Identities)).map_err(|e| e.to_string())?;
    settings.set_cert_resolver(Arc::new(ServerCerts(shared.clone())));
    if mutual {
        settings.set_client_cert_verifier(Arc::new(ClientCerts::new(shared.clone())));
    }
    Ok(settings)
}

/// The client certificate identities of `session`'s connection, if it came
/// over mutual TLS.
pub fn peer_identity(session: &pingora::proxy::Session) -> Option<Arc<PeerIdentity>> {
    let digest = session.digest()?;
    let ssl = digest.ssl_digest.as_ref()?;
    ssl.extension.get::<PeerIdentity>().map(|p| Arc::new(p.clone()))
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
