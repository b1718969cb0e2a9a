//! `[ext_authz]`, validated: Envoy's `ext_authz` over gRPC — where it listens,
//! with which certificate, and which peers may ask. A `CheckRequest`'s
//! attributes (method, host, path, headers) are believed as stated, so only
//! the proxy may reach the listener: peers outside `trusted_peers` are refused.

use std::net::SocketAddr;
use std::time::Duration;

use super::raw::RawExtAuthz;
use super::{Cidr, ConfigError, invalid};
use crate::tls::CertificateFiles;

/// `[ext_authz]` with `grpc_listen` set, validated.
#[derive(Debug, Clone)]
pub struct ExtAuthzConfig {
    /// Where the gRPC `Authorization` service listens.
    pub grpc_listen: SocketAddr,
    /// The peers whose `CheckRequest`s are answered.
    pub trusted_peers: Vec<Cidr>,
    /// The listener's certificate and key; `None`: plaintext HTTP/2.
    pub tls: Option<CertificateFiles>,
    /// How often the certificate files are checked for changes (`tls.reload_interval`).
    pub reload_interval: Duration,
    /// Whether allowed requests also carry the caller's access token upstream.
    pub pass_access_token: bool,
}

impl ExtAuthzConfig {
    /// Whether `peer` may ask (IPv4-mapped IPv6 peers count as IPv4).
    pub fn trusts(&self, peer: std::net::IpAddr) -> bool {
        self.trusted_peers.iter().any(|cidr| cidr.contains(peer))
    }

    /// Loads the certificate and key once, as the listener will, so that
    /// `check-config` reports an unusable file naming its key.
    pub fn load_files(&self) -> Result<Option<crate::tls::ReloadingCertificate>, ConfigError> {
        use crate::tls::TlsError;
        let Some(files) = &self.tls else { return Ok(None) };
        crate::tls::ReloadingCertificate::load(files.clone()).map(Some).map_err(|error| match error {
            TlsError::File { path, problem } => {
                let key = if path == files.key_file { "ext_authz.key_file" } else { "ext_authz.cert_file" };
                invalid(key, format!("{}: {problem}", path.display()))
            }
            TlsError::Mismatch => {
                invalid("ext_authz.key_file", "does not match the certificate in ext_authz.cert_file")
            }
            TlsError::Rustls(error) => invalid("ext_authz", error.to_string()),
            // Not raised by loading files (only by building a config with tickets).
            TlsError::TicketKeys(error) => invalid("ext_authz", error.to_string()),
        })
    }
}

/// Validates `[ext_authz]`; `None` when `grpc_listen` is unset (the default).
/// Errors name the key.
pub(super) fn validate(raw: &RawExtAuthz, reload_interval: Duration) -> Result<Option<ExtAuthzConfig>, ConfigError> {
    let Some(listen) = raw.grpc_listen.as_deref() else {
        for (set, key) in [
            (raw.cert_file.is_some(), "ext_authz.cert_file"),
            (raw.key_file.is_some(), "ext_authz.key_file"),
            (raw.pass_access_token, "ext_authz.pass_access_token"),
        ] {
            if set {
                return Err(invalid(key, "needs ext_authz.grpc_listen"));
            }
        }
        return Ok(None);
    };
    let grpc_listen = listen
        .parse()
        .map_err(|_| invalid("ext_authz.grpc_listen", "must be an address with a port, e.g. 127.0.0.1:9191"))?;
    if raw.trusted_peers.is_empty() {
        return Err(invalid("ext_authz.trusted_peers", "must name at least one peer (default: loopback only)"));
    }
    let mut trusted_peers = Vec::with_capacity(raw.trusted_peers.len());
    for (index, text) in raw.trusted_peers.iter().enumerate() {
        trusted_peers.push(Cidr::parse(text).ok_or_else(|| {
            invalid(format!("ext_authz.trusted_peers[{index}]"), "is not an address or CIDR like 10.0.0.0/8")
        })?);
    }
    let tls = match (&raw.cert_file, &raw.key_file) {
        (Some(cert_file), Some(key_file)) => {
            Some(CertificateFiles { cert_file: cert_file.clone(), key_file: key_file.clone() })
        }
        (None, None) => None,
        (Some(_), None) => return Err(invalid("ext_authz.key_file", "is required with ext_authz.cert_file")),
        (None, Some(_)) => return Err(invalid("ext_authz.cert_file", "is required with ext_authz.key_file")),
    };
    Ok(Some(ExtAuthzConfig {
        grpc_listen,
        trusted_peers,
        tls,
        reload_interval,
        pass_access_token: raw.pass_access_token,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn raw(listen: Option<&str>) -> RawExtAuthz {
        RawExtAuthz { grpc_listen: listen.map(str::to_owned), ..RawExtAuthz::default() }
    }

    fn error(raw: &RawExtAuthz) -> String {
        validate(raw, Duration::from_secs(30)).unwrap_err().to_string()
    }

    #[test]
    fn off_by_default_and_loopback_only_when_on() {
        assert!(validate(&RawExtAuthz::default(), Duration::from_secs(30)).unwrap().is_none());
        let on = validate(&raw(Some("127.0.0.1:9191")), Duration::from_secs(30)).unwrap().unwrap();
        assert!(on.trusts("127.0.0.1".parse().unwrap()));
        assert!(on.trusts("127.9.9.9".parse().unwrap()));
        assert!(on.trusts("::1".parse().unwrap()));
        assert!(on.trusts("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!on.trusts("10.0.0.1".parse().unwrap()));
        assert!(!on.trusts("::2".parse().unwrap()));
        assert!(on.tls.is_none());
    }

    #[test]
    fn errors_name_the_key_and_never_quote_a_value() {
        let bad_listen = error(&raw(Some("secret-ish-value")));
        assert!(bad_listen.starts_with("ext_authz.grpc_listen:"), "{bad_listen}");
        assert!(!bad_listen.contains("secret-ish-value"), "{bad_listen}");

        let mut peers = raw(Some("127.0.0.1:9191"));
        peers.trusted_peers = vec!["10.0.0.0/8".to_owned(), "secret-ish-value".to_owned()];
        let bad_peer = error(&peers);
        assert!(bad_peer.starts_with("ext_authz.trusted_peers[1]:"), "{bad_peer}");
        assert!(!bad_peer.contains("secret-ish-value"), "{bad_peer}");

        peers.trusted_peers.clear();
        assert!(error(&peers).starts_with("ext_authz.trusted_peers:"));

        let mut half = raw(Some("127.0.0.1:9191"));
        half.cert_file = Some("cert.pem".into());
        assert!(error(&half).starts_with("ext_authz.key_file:"));

        let mut without_listener = raw(None);
        without_listener.pass_access_token = true;
        assert!(error(&without_listener).starts_with("ext_authz.pass_access_token: needs ext_authz.grpc_listen"));
    }
}
