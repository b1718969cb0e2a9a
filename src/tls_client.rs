//! TLS for the gateway's own connections (to the upstream and to the identity
//! provider): one builder of rustls client configurations, verifying against
//! the system roots or a configured CA bundle, optionally presenting a client
//! certificate (mTLS), and — only under a `dangerous_` key, with a warning at
//! every start — not verifying at all.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use hyper_rustls::ConfigBuilderExt as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How one kind of outgoing connection does TLS; loaded and checked when the
/// configuration is validated, so a bad file fails the start, naming its key.
#[derive(Default)]
pub struct ClientTls {
    /// Trust only these CAs instead of the system roots.
    pub roots: Option<Vec<CertificateDer<'static>>>,
    /// A client certificate chain and key to present (mTLS).
    pub identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    /// Accept any server certificate. Never in production.
    pub dangerous_skip_verify: bool,
}

impl Clone for ClientTls {
    fn clone(&self) -> Self {
        Self {
            roots: self.roots.clone(),
            identity: self.identity.as_ref().map(|(chain, key)| (chain.clone(), key.clone_key())),
            dangerous_skip_verify: self.dangerous_skip_verify,
        }
    }
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("custom_roots", &self.roots.as_ref().map(Vec::len))
            .field("client_certificate", &self.identity.is_some())
            .field("dangerous_skip_verify", &self.dangerous_skip_verify)
            .finish()
    }
}

/// Reads every certificate of a PEM file; a file without one is an error.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|error| format!("{}: not PEM certificates ({error})", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certificates)
}

/// Reads the private key of a PEM file.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| format!("{}: no usable private key ({error})", path.display()))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A rustls client configuration for `tls` (no ALPN set; the connector adds
/// it). `purpose` names the connection in the warning logged when verification
/// is off. An error means the system roots are unusable and no CA was given,
/// or the client certificate does not fit its key.
pub fn client_config(tls: &ClientTls, purpose: &str) -> Result<ClientConfig, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS setup failed: {error}"))?;
    let builder = if tls.dangerous_skip_verify {
        tracing::warn!(
            purpose,
            "TLS certificate verification is OFF for the {purpose} (dangerous_skip_tls_verify): anyone on the path can impersonate it"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipVerification(provider.signature_verification_algorithms)))
    } else if let Some(roots) = &tls.roots {
        let mut store = RootCertStore::empty();
        for root in roots {
            store.add(root.clone()).map_err(|error| format!("unusable CA certificate: {error}"))?;
        }
        builder.with_root_certificates(store)
    } else {
        builder.with_native_roots().map_err(|error| format!("no usable system root certificates: {error}"))?
    };
    match &tls.identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|error| format!("the client certificate cannot be used with its key: {error}")),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// Accepts any certificate, but still checks the handshake signatures so the
/// connection is at least internally consistent.
#[derive(Debug)]
struct SkipVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for SkipVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
