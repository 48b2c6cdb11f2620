//! The inbound listeners' TLS, following the current generation: the
//! certificate presented, the verification of client certificates, and the
//! identities each handshake's client certificate carries.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::material::provider;
use crate::config::tls::PeerIdentity;
use crate::state::Shared;

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
    // ALPN h2 and http/1.1: outbound proxies may multiplex over HTTP/2.
    settings.enable_h2();
    if mutual {
        settings.set_client_cert_verifier(Arc::new(ClientCerts::new(shared.clone())));
    }
    Ok(settings)
}

/// The client certificate identities of `session`'s connection, if it came
/// over mutual TLS.
pub fn peer_identity(session: &pingora::proxy::Session) -> Option<&PeerIdentity> {
    session.digest()?.ssl_digest.as_ref()?.extension.get::<PeerIdentity>()
}
