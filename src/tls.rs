//! TLS for the listener (rustls with aws-lc-rs): TLS 1.2 and 1.3, ALPN `h2`
//! and `http/1.1`, certificates that are re-read when their files change,
//! so a renewed certificate is served without a restart or dropped connection,
//! and session resumption across replicas ([`tickets`]).

pub mod tickets;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use self::tickets::TicketKeys;

/// Sessions rustls remembers in this process, a few hundred bytes each (its
/// default bound): with [`TicketKeys`], TLS 1.2 sessions by session id, for
/// clients that do not take tickets; without, every resumable session.
pub const STATEFUL_SESSIONS: usize = 256;

/// A certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
    #[error("the private key does not match the certificate")]
    Mismatch,
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error(transparent)]
    TicketKeys(#[from] tickets::TicketKeyError),
}

/// The certificate and key files of the listener.
#[derive(Clone, Debug)]
pub struct CertificateFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The served certificate, swapped in place when the files change.
#[derive(Debug)]
pub struct ReloadingCertificate {
    files: CertificateFiles,
    current: RwLock<Arc<CertifiedKey>>,
    /// Modification times of the files when last read, usable or not.
    loaded_from: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
}

impl ReloadingCertificate {
    /// Loads the files once; fails if they cannot be used.
    pub fn load(files: CertificateFiles) -> Result<Self, TlsError> {
        let key = load_certified_key(&files)?;
        let stamps = modification_times(&files);
        Ok(Self { files, current: RwLock::new(Arc::new(key)), loaded_from: RwLock::new(stamps) })
    }

    /// Re-reads the files if they changed since the last load. A broken new
    /// pair is logged and the previous certificate keeps being served.
    pub fn reload_if_changed(&self) -> bool {
        let stamps = modification_times(&self.files);
        let unchanged = self.loaded_from.read().map(|loaded| *loaded == stamps).unwrap_or(false);
        if unchanged {
            return false;
        }
        match load_certified_key(&self.files) {
            Ok(key) => {
                if let Ok(mut current) = self.current.write() {
                    *current = Arc::new(key);
                }
                if let Ok(mut loaded) = self.loaded_from.write() {
                    *loaded = stamps;
                }
                tracing::info!(cert_file = %self.files.cert_file.display(), "TLS certificate reloaded");
                true
            }
            Err(error) => {
                // Remember the broken files too, so they are reported once per
                // change rather than at every check until someone fixes them.
                if let Ok(mut seen) = self.loaded_from.write() {
                    *seen = stamps;
                }
                tracing::error!(cert_file = %self.files.cert_file.display(), %error, "TLS certificate files changed but cannot be used; still serving the previous certificate");
                false
            }
        }
    }

    /// Checks the files every `interval`, forever (spawn it).
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            self.reload_if_changed();
        }
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|current| Arc::clone(&current))
    }
}

/// The listener's rustls configuration: session tickets sealed with `tickets`
/// (TLS 1.3 and 1.2; any replica with the same keys resumes them), or, without,
/// resumption from this process's memory only.
pub fn server_config(
    certificate: Arc<ReloadingCertificate>,
    tickets: Option<Arc<TicketKeys>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(STATEFUL_SESSIONS);
    if let Some(tickets) = tickets {
        config.ticketer = tickets;
    }
    Ok(Arc::new(config))
}

fn modification_times(files: &CertificateFiles) -> (Option<SystemTime>, Option<SystemTime>) {
    let stamp = |path: &Path| std::fs::metadata(path).and_then(|meta| meta.modified()).ok();
    (stamp(&files.cert_file), stamp(&files.key_file))
}

fn load_certified_key(files: &CertificateFiles) -> Result<CertifiedKey, TlsError> {
    let file_error = |path: &Path, problem: String| TlsError::File { path: path.to_owned(), problem };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_file)
        .map_err(|error| file_error(&files.cert_file, error.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|error| file_error(&files.cert_file, error.to_string()))?;
    if chain.is_empty() {
        return Err(file_error(&files.cert_file, "holds no certificate".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|error| file_error(&files.key_file, format!("no usable private key ({error})")))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    // Name the file in every error: "invalid peer certificate: BadEncoding"
    // alone does not tell an operator which file a renewal broke.
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|error| match error {
        rustls::Error::InconsistentKeys(_) => TlsError::Mismatch,
        rustls::Error::InvalidCertificate(problem) => {
            file_error(&files.cert_file, format!("unusable certificate ({problem:?})"))
        }
        other => TlsError::Rustls(other),
    })?;
    Ok(certified)
}
