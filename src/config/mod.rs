//! Configuration: figment layering into [`raw::RawConfig`], then validation into
//! the typed [`Config`] the gateway runs on. Every validation error names the
//! key it is about, and no error ever contains a secret.

mod authz;
mod bearer;
mod ext_authz;
mod forward_auth;
mod providers;
pub mod raw;
mod secret_key;
mod store;
mod traces;
mod upstreams;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use url::Url;

pub use self::authz::compile_policy;
pub use self::bearer::{BearerConfig, IssuerConfig};
pub use self::ext_authz::ExtAuthzConfig;
pub use self::forward_auth::{Cidr, ForwardAuthConfig, OriginalRequest};
pub use self::providers::DEFAULT_PROVIDER_ID;
use self::providers::ProviderKey;
pub use self::raw::RawConfig;
pub use self::secret_key::parse_session_secret;
use self::store::validate_store;
pub use self::store::{SentinelConfig, StoreConfig, StoreEndpoint};
pub use self::traces::TracingConfig;
pub use self::upstreams::{IdentitySelection, TokenChoice, UpstreamConfig};
pub use crate::authz::{MAX_PROVIDERS, ProviderSet};
use crate::secret::{SecretBytes, SecretString};
use crate::tls_client::{ClientTls, load_certificates, load_private_key};

/// A configuration problem, always tied to the key that causes it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key has a value that cannot be used.
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
    /// The file or environment could not be read or parsed into the expected shape.
    #[error("{0}")]
    Load(String),
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), problem: problem.into() }
}

/// How a confidential client authenticates at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuthMethod {
    /// HTTP Basic with the client id and secret (RFC 6749 §2.3.1).
    SecretBasic,
    /// Client id and secret in the form body.
    SecretPost,
}

/// The client's credentials. A public client has no secret at all, so sending
/// one by mistake is not representable.
#[derive(Clone, Debug)]
pub enum ClientCredentials {
    /// PKCE only; no secret is ever sent.
    Public,
    /// A confidential client.
    Confidential { secret: SecretString, method: ClientAuthMethod },
}

/// One provider and client (`[oidc]` or one of `[[oidc.providers]]`), validated.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    /// `default` for a single `[oidc]`; names the provider everywhere else.
    pub id: String,
    /// What the sign-in chooser shows.
    pub display_name: String,
    /// The issuer, exactly as the provider's metadata must state it.
    pub issuer: String,
    pub client_id: String,
    pub credentials: ClientCredentials,
    pub scopes: Vec<String>,
    /// The callback registered with the provider, sent unchanged at authorize and token.
    pub redirect_url: Url,
    pub id_token_algorithms: Vec<jsonwebtoken::Algorithm>,
    /// Audiences ID tokens, logout tokens and bearer tokens may name besides their own.
    pub trusted_audiences: Vec<String>,
    /// The audience bearer tokens from this provider must name (`bearer.audience`
    /// for a single `[oidc]`, `bearer_audience` per provider; default: the client id).
    pub bearer_audience: String,
    pub clock_skew: Duration,
    pub http_timeout: Duration,
    pub end_session_on_sign_out: bool,
    pub post_logout_redirect_url: Url,
    /// TLS towards the provider.
    pub tls: crate::tls_client::ClientTls,
    /// The ID-token claim (dotted path) holding this provider's groups; `None`: `authz.groups_claim`.
    pub groups_claim: Option<String>,
}

/// `[session]`, validated.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Keys for sealing cookies; the first seals, all open.
    pub keys: Vec<SecretBytes>,
    /// The configured cookie name, without any `__Host-` prefix.
    pub cookie_name: String,
    /// `session.cookie_domain`: every cookie is shared with this domain's
    /// subdomains (`__Secure-`, `Domain`); `None`: host-only `__Host-` cookies.
    pub cookie_domain: Option<String>,
    /// `session.remember_provider_choice`: the chooser's last choice is kept in a cookie.
    pub remember_provider_choice: bool,
    pub lifetime: Duration,
    /// `None`: no idle timeout.
    pub idle_timeout: Option<Duration>,
    pub refresh_margin: Duration,
    pub login_timeout: Duration,
    pub cache_max_entries: u64,
    /// At most this many records of ended sessions (sign-outs, back-channel logouts) per replica,
    /// and as many used logout tokens.
    pub ended_max_entries: u64,
    /// The session cache's byte budget (identity headers and claims; no tokens are cached).
    pub cache_max_bytes: u64,
    /// The shared session store; `None`: sessions live in the cookie only.
    pub store: Option<StoreConfig>,
}

/// `[proxy]`, validated.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    /// TLS towards an https upstream.
    pub tls: crate::tls_client::ClientTls,
    /// Which upgrades are tunnelled, and for how long.
    pub tunnels: TunnelSettings,
}

/// Which upgrades are tunnelled, and for how long.
#[derive(Clone, Debug)]
pub struct TunnelSettings {
    /// `Upgrade` protocol names tunnelled, lowercase (never `h2c`).
    pub protocols: Vec<String>,
    /// A tunnel that carried no byte either way for this long is closed.
    pub idle_timeout: Duration,
    /// A tunnel is closed at this age, or when its session expires if that is sooner.
    pub max_lifetime: Duration,
}

impl Default for TunnelSettings {
    /// WebSocket only, 10 minutes idle, 12 hours at most.
    fn default() -> Self {
        Self {
            protocols: vec!["websocket".to_owned()],
            idle_timeout: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(12 * 3600),
        }
    }
}

/// Output format of the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `[log]`, validated.
#[derive(Clone, Debug)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

/// `[tls]`, validated: present only when the listener serves TLS.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    pub files: crate::tls::CertificateFiles,
    pub reload_interval: Duration,
    pub redirect_http_listen: Option<SocketAddr>,
    /// `tls.ticket_rotation` when `tls.session_tickets` is on; `None`: no
    /// tickets, resumption from each process's memory only.
    pub ticket_rotation: Option<Duration>,
}

impl TlsConfig {
    /// Loads the certificate and key once, as the listener will, so that a
    /// missing, unreadable or mismatched file is an error naming its key.
    pub fn load_files(&self) -> Result<crate::tls::ReloadingCertificate, ConfigError> {
        use crate::tls::TlsError;
        crate::tls::ReloadingCertificate::load(self.files.clone()).map_err(|error| match error {
            TlsError::File { path, problem } => {
                let key = if path == self.files.key_file { "tls.key_file" } else { "tls.cert_file" };
                invalid(key, format!("{}: {problem}", path.display()))
            }
            TlsError::Mismatch => invalid("tls.key_file", "does not match the certificate in tls.cert_file"),
            TlsError::Rustls(error) => invalid("tls", error.to_string()),
            TlsError::TicketKeys(error) => invalid("tls.session_tickets", error.to_string()),
        })
    }
}

/// `[server]`, validated.
#[derive(Clone, Copy, Debug)]
pub struct ServerConfig {
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_url_bytes: usize,
    pub max_connections: usize,
    pub max_concurrent_streams: u32,
    /// Resolved: `server.worker_threads`, or the number of CPU cores when it is 0.
    pub worker_threads: crate::workers::WorkerCount,
    pub shutdown_grace: Duration,
    pub drain_timeout: Duration,
    pub http2_idle_timeout: Duration,
    pub max_connections_per_ip: usize,
    pub max_connection_age: Duration,
    /// `server.watch_config`: how often the configuration file is read for a
    /// change to reload (`server.watch_config_interval`); `None`: SIGHUP only.
    pub watch_config: Option<Duration>,
}

/// The validated configuration the gateway runs on.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// The origin users reach the gateway at (no path).
    pub public_url: Url,
    pub upstream: Url,
    /// Hosts (besides our own) that redirects after login/logout may target.
    pub allowed_redirect_hosts: Vec<String>,
    /// The providers, in configuration order (`[oidc]` alone is provider `default`).
    pub providers: Vec<OidcConfig>,
    pub session: SessionConfig,
    pub proxy: ProxyConfig,
    pub log: LogConfig,
    pub tls: Option<TlsConfig>,
    pub server: ServerConfig,
    /// Where `GET /metrics` is served; `None` when disabled.
    pub metrics_listen: Option<SocketAddr>,
    /// `[authz]`, compiled.
    pub authz: crate::authz::Policy,
    /// `[bearer]`, validated.
    pub bearer: BearerConfig,
    /// `[forward_auth]`, validated.
    pub forward_auth: ForwardAuthConfig,
    /// `[ext_authz]`; `None`: no gRPC listener (the default).
    pub ext_authz: Option<ExtAuthzConfig>,
    /// `[[upstreams]]`, validated (the gateway builds their clients).
    pub upstreams: Vec<UpstreamConfig>,
    /// `[tracing]`; `None`: no OpenTelemetry export.
    pub tracing: Option<TracingConfig>,
}

/// Bounds of `server.watch_config_interval`: reading a small file this often costs nothing noticeable.
const MIN_WATCH_INTERVAL: Duration = Duration::from_millis(100);
const MAX_WATCH_INTERVAL: Duration = Duration::from_secs(3600);

impl Config {
    /// Loads defaults < `config_file` < `PORTCULLIS_*` and validates the result.
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let raw: RawConfig =
            raw::figment(config_file).extract().map_err(|error| ConfigError::Load(describe_figment_error(&error)))?;
        Self::from_raw(raw)
    }

    /// Loads and validates like [`Config::load`], and also returns the effective
    /// configuration as JSON with every secret replaced by `"<redacted>"` (for
    /// `portcullis check-config`).
    pub fn load_with_effective(config_file: Option<&Path>) -> Result<(Self, serde_json::Value), ConfigError> {
        let raw: RawConfig =
            raw::figment(config_file).extract().map_err(|error| ConfigError::Load(describe_figment_error(&error)))?;
        let effective = raw.redacted_json();
        Ok((Self::from_raw(raw)?, effective))
    }

    /// Everything `portcullis check-config` checks: [`Config::load_with_effective`],
    /// then the `[tls]` listener's certificate and key files (read by the
    /// server, not by validation). A configuration reload checks the same.
    pub fn load_checked(config_file: Option<&Path>) -> Result<(Self, serde_json::Value), ConfigError> {
        let (config, effective) = Self::load_with_effective(config_file)?;
        if let Some(tls) = &config.tls {
            tls.load_files()?;
        }
        if let Some(ext_authz) = &config.ext_authz {
            ext_authz.load_files()?;
        }
        Ok((config, effective))
    }

    /// Validates a raw configuration.
    pub fn from_raw(raw: RawConfig) -> Result<Self, ConfigError> {
        let listen: SocketAddr =
            raw.listen.parse().map_err(|_| invalid("listen", "must be an address with a port, e.g. 127.0.0.1:4180"))?;

        let public_url = parse_origin(raw.public_url.as_deref())?;
        let upstream_text = raw.upstream.as_deref().ok_or_else(|| invalid("upstream", "is required"))?;
        let upstream = upstreams::upstream_url("upstream", upstream_text)?;

        for (index, host) in raw.allowed_redirect_hosts.iter().enumerate() {
            if host.is_empty() || host.contains(['/', '@', ' ', '\\']) {
                return Err(invalid(
                    format!("allowed_redirect_hosts[{index}]"),
                    "must be a bare host name like app.example.com",
                ));
            }
        }

        let providers = providers::validate_providers(raw.oidc, &public_url, raw.bearer.audience.as_deref())?;
        let authz = compile_policy(&raw.authz, &providers)?;
        let bearer = bearer::validate(&raw.bearer, &providers)?;
        let forward_auth = forward_auth::validate(&raw.forward_auth)?;
        let ext_authz = ext_authz::validate(&raw.ext_authz, raw.tls.reload_interval)?;
        let upstreams = upstreams::validate(&raw.upstreams, raw.authz.case_insensitive, &providers)?;
        let session = validate_session(raw.session, &public_url)?;
        for provider in &providers {
            check_callback_in_cookie_domain(&session, provider)?;
        }

        let log = LogConfig {
            format: match raw.log.format.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(invalid("log.format", "must be \"text\" or \"json\"")),
            },
            level: raw.log.level,
        };

        let proxy = ProxyConfig {
            connect_timeout: non_zero("proxy.connect_timeout", raw.proxy.connect_timeout)?,
            response_timeout: non_zero("proxy.response_timeout", raw.proxy.response_timeout)?,
            pool_idle_timeout: raw.proxy.pool_idle_timeout,
            pool_max_idle_per_host: raw.proxy.pool_max_idle_per_host,
            tls: proxy_tls(&raw.proxy)?,
            tunnels: TunnelSettings {
                protocols: upgrade_protocols(&raw.proxy.upgrade_protocols)?,
                idle_timeout: non_zero("proxy.upgrade_idle_timeout", raw.proxy.upgrade_idle_timeout)?,
                max_lifetime: non_zero("proxy.upgrade_max_lifetime", raw.proxy.upgrade_max_lifetime)?,
            },
        };

        let ticket_rotation = raw.tls.ticket_rotation;
        if !(crate::tls::tickets::MIN_ROTATION..=crate::tls::tickets::MAX_ROTATION).contains(&ticket_rotation) {
            return Err(invalid("tls.ticket_rotation", "must be between 10m and 24h"));
        }
        let tls = match (raw.tls.cert_file, raw.tls.key_file) {
            (Some(cert_file), Some(key_file)) => Some(TlsConfig {
                ticket_rotation: raw.tls.session_tickets.then_some(ticket_rotation),
                files: crate::tls::CertificateFiles { cert_file, key_file },
                reload_interval: non_zero("tls.reload_interval", raw.tls.reload_interval)?,
                redirect_http_listen: raw.tls.redirect_http_listen.map(|text| text.parse()).transpose().map_err(
                    |_| invalid("tls.redirect_http_listen", "must be an address with a port, e.g. 0.0.0.0:80"),
                )?,
            }),
            (None, None) if raw.tls.redirect_http_listen.is_some() => {
                return Err(invalid("tls.redirect_http_listen", "needs tls.cert_file and tls.key_file"));
            }
            (None, None) => None,
            (Some(_), None) => return Err(invalid("tls.key_file", "is required with tls.cert_file")),
            (None, Some(_)) => return Err(invalid("tls.cert_file", "is required with tls.key_file")),
        };
        let server = ServerConfig {
            header_read_timeout: non_zero("server.header_read_timeout", raw.server.header_read_timeout)?,
            max_header_bytes: at_least("server.max_header_bytes", raw.server.max_header_bytes, 4096)?,
            max_url_bytes: at_least("server.max_url_bytes", raw.server.max_url_bytes, 256)?,
            max_connections: at_least("server.max_connections", raw.server.max_connections, 1)?,
            max_concurrent_streams: raw.server.max_concurrent_streams.max(1),
            worker_threads: crate::workers::WorkerCount::resolve(at_most(
                "server.worker_threads",
                raw.server.worker_threads,
                MAX_WORKER_THREADS,
            )?),
            shutdown_grace: raw.server.shutdown_grace,
            drain_timeout: raw.server.drain_timeout,
            http2_idle_timeout: non_zero("server.http2_idle_timeout", raw.server.http2_idle_timeout)?,
            max_connections_per_ip: at_least("server.max_connections_per_ip", raw.server.max_connections_per_ip, 1)?,
            max_connection_age: non_zero("server.max_connection_age", raw.server.max_connection_age)?,
            watch_config: if raw.server.watch_config {
                let interval = raw.server.watch_config_interval;
                if !(MIN_WATCH_INTERVAL..=MAX_WATCH_INTERVAL).contains(&interval) {
                    return Err(invalid("server.watch_config_interval", "must be between 100ms and 1h"));
                }
                Some(interval)
            } else {
                None
            },
        };

        let tracing = self::traces::validate_tracing(raw.tracing)?;

        let metrics_listen = if raw.metrics.enabled {
            Some(
                raw.metrics
                    .listen
                    .parse()
                    .map_err(|_| invalid("metrics.listen", "must be an address with a port, e.g. 127.0.0.1:9464"))?,
            )
        } else {
            None
        };

        Ok(Self {
            tracing,
            authz,
            bearer,
            forward_auth,
            ext_authz,
            upstreams,
            metrics_listen,
            tls,
            server,
            listen,
            public_url,
            upstream,
            allowed_redirect_hosts: raw.allowed_redirect_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            providers,
            session,
            proxy,
            log,
        })
    }

    /// Whether users reach the gateway over TLS (cookies then get `Secure` and `__Host-`).
    pub fn is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }
}

/// The CA certificates of the PEM file at `path`, each checked to be usable as
/// a trust anchor (as the TLS client will), so a bad file fails here, naming `key`.
pub(super) fn load_roots(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let roots = load_certificates(path).map_err(|problem| invalid(key, problem))?;
    let mut store = rustls::RootCertStore::empty();
    for root in &roots {
        store.add(root.clone()).map_err(|error| invalid(key, format!("unusable CA certificate: {error}")))?;
    }
    Ok(roots)
}

/// `[proxy]` TLS keys, loaded so a bad file fails here, naming its key.
fn proxy_tls(raw: &raw::RawProxy) -> Result<ClientTls, ConfigError> {
    let roots = raw.ca_file.as_deref().map(|path| load_roots("proxy.ca_file", path)).transpose()?;
    let identity = match (&raw.client_cert_file, &raw.client_key_file) {
        (Some(cert), Some(key)) => Some((
            load_certificates(cert).map_err(|problem| invalid("proxy.client_cert_file", problem))?,
            load_private_key(key).map_err(|problem| invalid("proxy.client_key_file", problem))?,
        )),
        (Some(_), None) => return Err(invalid("proxy.client_key_file", "is required with proxy.client_cert_file")),
        (None, Some(_)) => return Err(invalid("proxy.client_cert_file", "is required with proxy.client_key_file")),
        (None, None) => None,
    };
    if let Some((chain, key)) = &identity {
        // The check rustls makes when the upstream client is built, made here so check-config reports it.
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider).map_err(
            |error| match error {
                rustls::Error::InconsistentKeys(_) => {
                    invalid("proxy.client_key_file", "does not match the certificate in proxy.client_cert_file")
                }
                other => invalid("proxy.client_cert_file", format!("cannot be used with its key: {other}")),
            },
        )?;
    }
    if raw.dangerous_skip_tls_verify && roots.is_some() {
        return Err(invalid("proxy.dangerous_skip_tls_verify", "cannot be combined with proxy.ca_file"));
    }
    let tls = ClientTls { roots, identity, dangerous_skip_verify: raw.dangerous_skip_tls_verify };
    if tls.identity.is_some() {
        // Building once here checks that the client certificate fits its key.
        let probe = ClientTls { roots: Some(Vec::new()), dangerous_skip_verify: false, ..tls.clone() };
        crate::tls_client::client_config(&probe, "upstream")
            .map_err(|problem| invalid("proxy.client_key_file", problem))?;
    }
    Ok(tls)
}

/// More serving threads than this is a typo, not a machine.
const MAX_WORKER_THREADS: usize = 1024;

/// `proxy.upgrade_protocols`: protocol names (tokens, RFC 9110 §5.6.2),
/// lowercased; `h2c` is refused, since the gateway speaks HTTP/2 itself.
fn upgrade_protocols(names: &[String]) -> Result<Vec<String>, ConfigError> {
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    names
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let key = format!("proxy.upgrade_protocols[{index}]");
            if name.is_empty() || !name.chars().all(is_token_char) {
                return Err(invalid(key, format!("{name:?} is not a protocol name")));
            }
            if name.eq_ignore_ascii_case("h2c") {
                return Err(invalid(key, "must not be h2c (HTTP/2 is served by the gateway itself)"));
            }
            Ok(name.to_ascii_lowercase())
        })
        .collect()
}

fn non_zero(key: impl Into<String>, value: Duration) -> Result<Duration, ConfigError> {
    if value.is_zero() { Err(invalid(key, "must be longer than zero")) } else { Ok(value) }
}

fn at_least(key: &'static str, value: usize, minimum: usize) -> Result<usize, ConfigError> {
    if value < minimum { Err(invalid(key, format!("must be at least {minimum}"))) } else { Ok(value) }
}

fn at_most(key: &'static str, value: usize, maximum: usize) -> Result<usize, ConfigError> {
    if value > maximum { Err(invalid(key, format!("must be at most {maximum}"))) } else { Ok(value) }
}

fn parse_origin(text: Option<&str>) -> Result<Url, ConfigError> {
    const KEY: &str = "public_url";
    let text = text.ok_or_else(|| invalid(KEY, "is required: the origin users see, e.g. https://app.example.com"))?;
    let url = Url::parse(text).map_err(|_| invalid(KEY, "must be an absolute http(s) URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid(KEY, "must be an http(s) URL with a host"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(invalid(KEY, "must be an origin only (scheme, host, port), without path, query or credentials"));
    }
    Ok(url)
}

/// Loopback hosts, where plain HTTP is acceptable for a provider.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn validate_oidc(raw: raw::RawOidc, public_url: &Url, at: &ProviderKey) -> Result<OidcConfig, ConfigError> {
    let issuer = raw.issuer.ok_or_else(|| invalid(at.key("issuer"), "is required"))?;
    let issuer_url = Url::parse(&issuer).map_err(|_| invalid(at.key("issuer"), "must be an absolute URL"))?;
    let secure = issuer_url.scheme() == "https"
        || (issuer_url.scheme() == "http"
            && (is_loopback_host(&issuer_url) || raw.dangerous_allow_insecure_http_issuer));
    if !secure || issuer_url.query().is_some() || issuer_url.fragment().is_some() {
        return Err(invalid(
            at.key("issuer"),
            "must be an https URL without query or fragment (http only on loopback)",
        ));
    }

    let client_id =
        raw.client_id.filter(|id| !id.trim().is_empty()).ok_or_else(|| invalid(at.key("client_id"), "is required"))?;

    let method = match raw.client_auth_method.as_str() {
        "client_secret_basic" => ClientAuthMethod::SecretBasic,
        "client_secret_post" => ClientAuthMethod::SecretPost,
        _ => {
            return Err(invalid(
                at.key("client_auth_method"),
                "must be \"client_secret_basic\" or \"client_secret_post\"",
            ));
        }
    };
    let secret = match (raw.client_secret, raw.client_secret_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(at.key("client_secret"), "set either client_secret or client_secret_file, not both"));
        }
        (Some(secret), None) => Some(secret),
        (None, Some(path)) => Some(SecretString::new(
            std::fs::read_to_string(&path)
                .map_err(|error| {
                    invalid(at.key("client_secret_file"), format!("cannot read {}: {error}", path.display()))
                })?
                .trim()
                .to_owned(),
        )),
        (None, None) => None,
    };
    let credentials = match secret {
        None => ClientCredentials::Public,
        Some(secret) if secret.expose().is_empty() => {
            return Err(invalid(at.key("client_secret"), "is empty; remove it for a public client"));
        }
        Some(secret) => ClientCredentials::Confidential { secret, method },
    };

    if !raw.scopes.iter().any(|scope| scope == "openid") {
        return Err(invalid(at.key("scopes"), "must include \"openid\""));
    }
    if let Some(index) = raw.scopes.iter().position(|scope| scope.is_empty() || scope.contains([' ', '"', '\\'])) {
        return Err(invalid(at.key(&format!("scopes[{index}]")), "must be a single non-empty word"));
    }

    let redirect_url = match raw.redirect_url {
        Some(text) => {
            let url = Url::parse(&text).map_err(|_| invalid(at.key("redirect_url"), "must be an absolute URL"))?;
            if !matches!(url.scheme(), "http" | "https") || url.fragment().is_some() {
                return Err(invalid(at.key("redirect_url"), "must be an http(s) URL without fragment"));
            }
            if url.path() != "/oauth2/callback" {
                return Err(invalid(
                    at.key("redirect_url"),
                    "its path must be /oauth2/callback, where the gateway answers",
                ));
            }
            url
        }
        None => {
            public_url.join("/oauth2/callback").map_err(|_| invalid("public_url", "cannot derive the callback URL"))?
        }
    };

    let mut id_token_algorithms = Vec::new();
    for (index, name) in raw.id_token_algorithms.iter().enumerate() {
        let key = at.key(&format!("id_token_algorithms[{index}]"));
        let algorithm: jsonwebtoken::Algorithm =
            name.parse().map_err(|_| invalid(&key, format!("unknown algorithm {name:?}")))?;
        if matches!(
            algorithm,
            jsonwebtoken::Algorithm::HS256 | jsonwebtoken::Algorithm::HS384 | jsonwebtoken::Algorithm::HS512
        ) {
            return Err(invalid(key, "HMAC algorithms are not accepted; use the provider's asymmetric keys"));
        }
        id_token_algorithms.push(algorithm);
    }
    if id_token_algorithms.is_empty() {
        return Err(invalid(at.key("id_token_algorithms"), "must list at least one algorithm"));
    }

    if let Some(index) = raw.trusted_audiences.iter().position(|audience| audience.trim().is_empty()) {
        return Err(invalid(at.key(&format!("trusted_audiences[{index}]")), "must not be empty"));
    }

    let post_logout_redirect_url = match raw.post_logout_redirect_url {
        Some(text) => Url::parse(&text)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.fragment().is_none())
            .ok_or_else(|| invalid(at.key("post_logout_redirect_url"), "must be an absolute http(s) URL"))?,
        None => public_url.clone(),
    };

    let tls = ClientTls {
        roots: raw.ca_file.as_deref().map(|path| load_roots(&at.key("ca_file"), path)).transpose()?,
        identity: None,
        dangerous_skip_verify: raw.dangerous_skip_tls_verify,
    };
    if tls.dangerous_skip_verify && tls.roots.is_some() {
        return Err(invalid(
            at.key("dangerous_skip_tls_verify"),
            format!("cannot be combined with {}", at.key("ca_file")),
        ));
    }

    if let Some(claim) = &raw.groups_claim
        && (claim.is_empty() || claim.split('.').any(str::is_empty))
    {
        return Err(invalid(at.key("groups_claim"), "must be a claim name or dotted path like realm_access.roles"));
    }
    let mut provider = OidcConfig {
        groups_claim: raw.groups_claim,
        id: at.id.clone(),
        display_name: at.display_name.clone(),
        tls,
        issuer,
        end_session_on_sign_out: raw.end_session_on_sign_out,
        post_logout_redirect_url,
        client_id,
        credentials,
        scopes: raw.scopes,
        redirect_url,
        id_token_algorithms,
        bearer_audience: String::new(),
        trusted_audiences: raw.trusted_audiences,
        clock_skew: raw.clock_skew,
        http_timeout: non_zero(at.key("http_timeout"), raw.http_timeout)?,
    };
    provider.bearer_audience.clone_from(&provider.client_id);
    Ok(provider)
}

fn validate_session(raw: raw::RawSession, public_url: &Url) -> Result<SessionConfig, ConfigError> {
    let keys = match (raw.secret, raw.secrets, raw.secret_file) {
        (Some(secret), None, None) => {
            vec![parse_session_secret(secret.expose()).map_err(|problem| invalid("session.secret", problem))?]
        }
        (None, Some(secrets), None) => {
            let mut keys = Vec::with_capacity(secrets.len());
            for (index, secret) in secrets.iter().enumerate() {
                keys.push(
                    parse_session_secret(secret.expose())
                        .map_err(|problem| invalid(format!("session.secrets[{index}]"), problem))?,
                );
            }
            if keys.is_empty() {
                return Err(invalid("session.secrets", "holds no key"));
            }
            keys
        }
        (None, None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|error| invalid("session.secret_file", format!("cannot read {}: {error}", path.display())))?;
            let mut keys = Vec::new();
            for line in text.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')) {
                keys.push(parse_session_secret(line).map_err(|problem| invalid("session.secret_file", problem))?);
            }
            if keys.is_empty() {
                return Err(invalid("session.secret_file", "holds no key"));
            }
            keys
        }
        (None, None, None) => {
            return Err(invalid("session.secret", "is required: generate one with `portcullis secret`"));
        }
        _ => return Err(invalid("session.secret", "set only one of secret, secrets and secret_file")),
    };
    let name_ok = !raw.cookie_name.is_empty()
        && raw.cookie_name.len() <= 64
        && raw.cookie_name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !raw.cookie_name.to_ascii_lowercase().starts_with("__host-")
        && !raw.cookie_name.to_ascii_lowercase().starts_with("__secure-");
    if !name_ok {
        return Err(invalid(
            "session.cookie_name",
            "must be 1-64 letters, digits, '_' or '-', without a __Host-/__Secure- prefix (added automatically)",
        ));
    }
    if raw.lifetime < Duration::from_secs(60) {
        return Err(invalid("session.lifetime", "must be at least one minute"));
    }
    if raw.login_timeout < Duration::from_secs(30) || raw.login_timeout > Duration::from_secs(3600) {
        return Err(invalid("session.login_timeout", "must be between 30s and 1h"));
    }
    if !raw.idle_timeout.is_zero() && raw.idle_timeout < Duration::from_secs(60) {
        return Err(invalid("session.idle_timeout", "must be at least one minute, or 0s to disable it"));
    }
    if raw.refresh_margin > Duration::from_secs(3600) {
        return Err(invalid("session.refresh_margin", "must be at most one hour"));
    }
    if raw.cache_max_entries == 0 {
        return Err(invalid("session.cache_max_entries", "must be at least 1"));
    }
    if raw.ended_max_entries == 0 {
        return Err(invalid("session.ended_max_entries", "must be at least 1"));
    }
    if raw.cache_max_bytes < 1024 * 1024 {
        return Err(invalid("session.cache_max_bytes", "must be at least 1048576 (1 MiB)"));
    }
    let cookie_domain = raw.cookie_domain.map(|domain| validate_cookie_domain(domain, public_url)).transpose()?;
    let store = validate_store(raw.store)?;
    Ok(SessionConfig {
        store,
        keys,
        cookie_name: raw.cookie_name,
        cookie_domain,
        remember_provider_choice: raw.remember_provider_choice,
        lifetime: raw.lifetime,
        idle_timeout: (!raw.idle_timeout.is_zero()).then_some(raw.idle_timeout),
        refresh_margin: raw.refresh_margin,
        login_timeout: raw.login_timeout,
        cache_max_entries: raw.cache_max_entries,
        ended_max_entries: raw.ended_max_entries,
        cache_max_bytes: raw.cache_max_bytes,
    })
}

/// `session.cookie_domain`: a lowercase DNS name of at least two labels (no
/// scheme, port, leading dot or IP address), over https only, covering the
/// public URL's host.
fn validate_cookie_domain(domain: String, public_url: &Url) -> Result<String, ConfigError> {
    const KEY: &str = "session.cookie_domain";
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let labels: Vec<&str> = domain.split('.').collect();
    // An all-digit last label is an IPv4 address (or a typo of one), never a registrable domain.
    let looks_like_ip = labels.last().is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()));
    if domain.len() > 253 || labels.len() < 2 || !labels.iter().all(|label| label_ok(label)) || looks_like_ip {
        return Err(invalid(
            KEY,
            "must be a lowercase domain name of at least two labels, like example.com \
             (no scheme, port, leading dot or IP address)",
        ));
    }
    if public_url.scheme() != "https" {
        return Err(invalid(
            KEY,
            "works only over https: public_url must be https (shared cookies need Secure and the __Secure- prefix)",
        ));
    }
    if !covers(&domain, public_url) {
        let host = public_url.host_str().unwrap_or_default();
        return Err(invalid(
            KEY,
            format!("public_url's host {host} is outside {domain}: it must be {domain} or a subdomain of it"),
        ));
    }
    Ok(domain)
}

/// Whether `url` is https on `domain` or one of its subdomains: where cookies with `Domain=domain` are sent.
fn covers(domain: &str, url: &Url) -> bool {
    let Some(url::Host::Domain(host)) = url.host() else { return false };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    url.scheme() == "https"
        && (host == domain || host.strip_suffix(domain).is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')))
}

/// With `session.cookie_domain`, the callback must be inside it too: the flow
/// cookie set where the login starts is only sent there.
fn check_callback_in_cookie_domain(session: &SessionConfig, provider: &OidcConfig) -> Result<(), ConfigError> {
    let key = if provider.id == DEFAULT_PROVIDER_ID {
        "oidc.redirect_url".to_owned()
    } else {
        format!("oidc.providers[{}].redirect_url", provider.id)
    };
    match &session.cookie_domain {
        Some(domain) if !covers(domain, &provider.redirect_url) => Err(invalid(
            key,
            format!(
                "must be https on session.cookie_domain ({domain}) or a subdomain of it: the login's cookie is sent only there"
            ),
        )),
        _ => Ok(()),
    }
}

/// Figment errors name the key and the expected shape; they can quote the
/// offending value, which may be a secret, so values are never included.
fn describe_figment_error(error: &figment::Error) -> String {
    error
        .clone()
        .into_iter()
        .map(|error| {
            let key = if error.path.is_empty() { "(top level)".to_owned() } else { dotted(&error.path) };
            let problem = match &error.kind {
                figment::error::Kind::InvalidType(_, expected) => format!("has the wrong type, expected {expected}"),
                figment::error::Kind::InvalidValue(_, expected) => format!("has an invalid value, expected {expected}"),
                figment::error::Kind::UnknownField(field, _) => {
                    return format!("{}: unknown key", full_key(&error.path, field));
                }
                figment::error::Kind::MissingField(field) => {
                    return format!("{}: is required", full_key(&error.path, field));
                }
                figment::error::Kind::Message(message) => message.clone(),
                other => other.to_string(),
            };
            format!("{key}: {problem}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The dotted key of `field` under `path`; figment sometimes ends the path with the field itself.
fn full_key(path: &[String], field: &str) -> String {
    match path.split_last() {
        None => field.to_owned(),
        Some((last, _)) if last == field => dotted(path),
        Some(_) => format!("{}.{field}", dotted(path)),
    }
}

/// A figment path as operators write keys: `upstreams[2].token`, not `upstreams.2.token`.
fn dotted(path: &[String]) -> String {
    let mut key = String::new();
    for segment in path {
        if !segment.is_empty() && segment.bytes().all(|byte| byte.is_ascii_digit()) {
            key.push_str(&format!("[{segment}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(segment);
        }
    }
    key
}

#[cfg(test)]
mod tests;
