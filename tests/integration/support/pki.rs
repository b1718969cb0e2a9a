//! A private certificate authority made at test time (rcgen on aws-lc-rs):
//! server and client certificates signed by it, written as PEM files, and
//! rustls client configurations that trust it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A CA and the directory its files go to.
pub struct Pki {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub dir: tempfile::TempDir,
}

/// A certificate and key as PEM text, plus the certificate's DER.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Pki {
    /// A fresh CA.
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "Portcullis test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a CA key")).expect("the CA");
        Self { issuer, dir: tempfile::tempdir().expect("a temp dir") }
    }

    /// The CA certificate as PEM.
    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `ca.pem`; returns its path.
    pub fn ca_file(&self) -> PathBuf {
        let path = self.dir.path().join("ca.pem");
        std::fs::write(&path, self.ca_pem()).expect("write the CA");
        path
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self) -> Leaf {
        self.leaf(&[ExtendedKeyUsagePurpose::ServerAuth], &["localhost", "127.0.0.1"])
    }

    /// A server certificate for the host `names`.
    pub fn server_for(&self, names: &[&str]) -> Leaf {
        self.leaf(&[ExtendedKeyUsagePurpose::ServerAuth], names)
    }

    /// A certificate for the host `names` that is also a client certificate:
    /// for servers that connect to their peers with it (the Redis cluster bus
    /// always asks for one).
    pub fn peer_for(&self, names: &[&str]) -> Leaf {
        self.leaf(&[ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth], names)
    }

    /// A client certificate (for mTLS).
    pub fn client(&self) -> Leaf {
        self.leaf(&[ExtendedKeyUsagePurpose::ClientAuth], &["localhost", "127.0.0.1"])
    }

    fn leaf(&self, purposes: &[ExtendedKeyUsagePurpose], names: &[&str]) -> Leaf {
        let names = names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.extended_key_usages = purposes.to_vec();
        params.distinguished_name.push(DnType::CommonName, "portcullis test");
        let key = KeyPair::generate().expect("a leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("a signed leaf");
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }

    /// Writes `leaf` as `{name}.crt` and `{name}.key`; returns both paths.
    pub fn write(&self, leaf: &Leaf, name: &str) -> (PathBuf, PathBuf) {
        let cert = self.dir.path().join(format!("{name}.crt"));
        let key = self.dir.path().join(format!("{name}.key"));
        write_replacing(&cert, &leaf.cert_pem);
        write_replacing(&key, &leaf.key_pem);
        (cert, key)
    }

    /// A rustls client configuration trusting this CA, with the given versions and ALPN.
    pub fn client_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem().as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("a root");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Arc::new(config)
    }
}

/// Replaces a file atomically (write aside, rename), as certificate renewers
/// do, with a modification time clearly after the old one: file systems with
/// coarse timestamps could otherwise give both the same, and the gateway
/// detects renewals by modification time.
pub fn write_replacing(path: &Path, contents: &str) {
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, contents).expect("write");
    let previous = std::fs::metadata(path).and_then(|meta| meta.modified()).ok();
    if let Some(previous) = previous {
        let later = previous + std::time::Duration::from_secs(2);
        let file = std::fs::File::options().write(true).open(&aside).expect("reopen");
        file.set_modified(later.max(portcullis::clock::system_time())).expect("set the modification time");
    }
    std::fs::rename(&aside, path).expect("rename into place");
}
