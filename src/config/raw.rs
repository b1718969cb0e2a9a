//! The raw configuration as operators write it: a serde mirror of the TOML file
//! and the `PORTCULLIS_*` environment, layered by figment. Nothing here is
//! trusted yet; [`super::Config::from_raw`] validates it.

use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::secret::SecretString;

/// Everything an operator can set. Unknown keys are errors, so a typo never
/// silently leaves a default in place.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address the gateway listens on.
    pub listen: String,
    /// The origin users see, e.g. `https://app.example.com`.
    pub public_url: Option<String>,
    /// Where authenticated requests are forwarded.
    pub upstream: Option<String>,
    /// Extra hosts a post-login or post-logout redirect may point at.
    pub allowed_redirect_hosts: Vec<String>,
    /// OpenID Connect provider and client.
    pub oidc: RawOidc,
    /// Session cookies.
    pub session: RawSession,
    /// Upstream connection behaviour.
    pub proxy: RawProxy,
    /// Logging.
    pub log: RawLog,
    /// TLS on the listener.
    pub tls: RawTls,
    /// Connection limits and timeouts of the listener.
    pub server: RawServer,
    /// The Prometheus endpoint.
    pub metrics: RawMetrics,
    /// Who may reach which route.
    pub authz: RawAuthz,
    /// Bearer tokens from API clients.
    pub bearer: RawBearer,
    /// The `/oauth2/auth` endpoint for nginx, Traefik, Caddy and Envoy.
    pub forward_auth: RawForwardAuth,
    /// Envoy's `ext_authz` over gRPC, on a listener of its own; off unless `grpc_listen` is set.
    pub ext_authz: RawExtAuthz,
    /// Extra upstreams chosen by host and path prefix.
    pub upstreams: Vec<RawUpstream>,
    /// OpenTelemetry traces over OTLP/HTTP; off unless `otlp_endpoint` is set.
    pub tracing: RawTracing,
}

/// `[tracing]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// The collector's OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces`; unset: no tracing.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// Share of new traces recorded (0.0-1.0); a sampled parent's decision is followed.
    pub sample_ratio: f64,
    /// Extra request headers for the collector (often an API key), hence secret.
    #[serde(default, skip_serializing)]
    pub headers: std::collections::BTreeMap<String, SecretString>,
    /// Timeout of each export request.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Trust only the CAs in this PEM file for an https collector (default: system roots).
    pub ca_file: Option<PathBuf>,
}

/// `[metrics]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub enabled: bool,
    /// A separate listener for `GET /metrics`, so metrics stay off the public port.
    pub listen: String,
}

/// `[tls]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// How often the files are checked for a renewed certificate.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// A plain-HTTP listener that only redirects to https.
    pub redirect_http_listen: Option<String>,
    /// Stateless session tickets whose keys derive from the session keys, so replicas resume each other's sessions.
    pub session_tickets: bool,
    /// How often the ticket key changes (wall-clock periods shared by every replica).
    #[serde(with = "humantime_serde")]
    pub ticket_rotation: Duration,
}

/// `[server]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_url_bytes: usize,
    pub max_connections: usize,
    pub max_concurrent_streams: u32,
    /// Threads serving connections, each with its own runtime; 0: one per CPU core.
    pub worker_threads: usize,
    /// After SIGTERM, keep accepting this long while load balancers notice /ready failing.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Then wait at most this long for in-flight requests.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// An HTTP/2 connection with no open stream for this long is closed.
    #[serde(with = "humantime_serde")]
    pub http2_idle_timeout: Duration,
    /// Connections (tunnels included) one client IP may hold open at once.
    pub max_connections_per_ip: usize,
    /// A connection is asked to close (after its requests in flight) at this age.
    #[serde(with = "humantime_serde")]
    pub max_connection_age: Duration,
    /// Reload the configuration when the file's content changes (besides SIGHUP).
    pub watch_config: bool,
    /// How often the watched file is read for a change.
    #[serde(with = "humantime_serde")]
    pub watch_config_interval: Duration,
}

/// `[oidc]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    #[serde(skip_serializing)]
    pub client_secret: Option<SecretString>,
    pub client_secret_file: Option<PathBuf>,
    /// `client_secret_basic` (default) or `client_secret_post`.
    pub client_auth_method: String,
    pub scopes: Vec<String>,
    pub redirect_url: Option<String>,
    /// Signing algorithms accepted for ID tokens.
    pub id_token_algorithms: Vec<String>,
    /// Audiences a token may name besides the one it is for (OIDC Core
    /// §3.1.3.7 step 3: any other audience makes it refused).
    pub trusted_audiences: Vec<String>,
    /// Allowed clock difference with the provider.
    #[serde(with = "humantime_serde")]
    pub clock_skew: Duration,
    /// Timeout of each call to the provider.
    #[serde(with = "humantime_serde")]
    pub http_timeout: Duration,
    /// On sign-out, also end the provider's session (RP-initiated logout) when
    /// the provider has an `end_session_endpoint`.
    pub end_session_on_sign_out: bool,
    /// Where the provider sends the browser after its logout; must be registered
    /// there. Default: `{public_url}/`.
    pub post_logout_redirect_url: Option<String>,
    /// Allows an `http://` issuer that is not on loopback. Never in production.
    pub dangerous_allow_insecure_http_issuer: bool,
    /// Trust only the CAs in this PEM file for the provider (default: system roots).
    pub ca_file: Option<PathBuf>,
    /// Accept any provider certificate. Never in production; warned about at every start.
    pub dangerous_skip_tls_verify: bool,
    /// Dotted path of the ID-token claim holding this provider's groups or roles; default: `authz.groups_claim`.
    pub groups_claim: Option<String>,
    /// Several providers (`[[oidc.providers]]`); the keys above are then their defaults.
    pub providers: Vec<RawProvider>,
}

/// `[[oidc.providers]]`: one provider and client; an unset key takes the
/// `[oidc]` value (its issuer and client credentials excepted: those are per provider).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Names the provider in routes, rules, cookies, metrics and `/oauth2/start?provider=`.
    pub id: Option<String>,
    /// What the sign-in chooser shows; default: the id.
    pub display_name: Option<String>,
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    #[serde(skip_serializing)]
    pub client_secret: Option<SecretString>,
    pub client_secret_file: Option<PathBuf>,
    pub client_auth_method: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub redirect_url: Option<String>,
    pub id_token_algorithms: Option<Vec<String>>,
    pub trusted_audiences: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde::option")]
    pub clock_skew: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    pub http_timeout: Option<Duration>,
    pub end_session_on_sign_out: Option<bool>,
    pub post_logout_redirect_url: Option<String>,
    pub dangerous_allow_insecure_http_issuer: Option<bool>,
    pub ca_file: Option<PathBuf>,
    pub dangerous_skip_tls_verify: Option<bool>,
    /// The audience bearer tokens from this provider must name; default: its client id.
    pub bearer_audience: Option<String>,
    /// Where this provider puts groups or roles (e.g. `roles`); default: `[oidc]`'s, then `authz.groups_claim`.
    pub groups_claim: Option<String>,
}

/// `[session]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    #[serde(skip_serializing)]
    pub secret: Option<SecretString>,
    /// Several keys for rotation: the first seals, all open.
    #[serde(skip_serializing)]
    pub secrets: Option<Vec<SecretString>>,
    pub secret_file: Option<PathBuf>,
    pub cookie_name: String,
    /// Share the session with every subdomain of this domain (single sign-on;
    /// https only, `__Secure-` cookies with `Domain`). Unset: host-only `__Host-` cookies.
    pub cookie_domain: Option<String>,
    /// With several providers: the sign-in chooser remembers the last choice
    /// in a small non-secret cookie (`{cookie_name}_choice`) and lists it first.
    pub remember_provider_choice: bool,
    /// Absolute session lifetime, from login.
    #[serde(with = "humantime_serde")]
    pub lifetime: Duration,
    /// A session unused for this long ends; `0s` disables the idle timeout.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Access tokens this close to expiry are refreshed before forwarding.
    #[serde(with = "humantime_serde")]
    pub refresh_margin: Duration,
    /// How long a login attempt (the flow cookie) stays valid.
    #[serde(with = "humantime_serde")]
    pub login_timeout: Duration,
    /// Live sessions kept in the in-memory token cache.
    pub cache_max_entries: u64,
    /// Records of ended sessions (sign-outs, back-channel logouts) kept per replica; reaching it ends every session.
    /// Also bounds the used logout tokens remembered (without a store); reaching it refuses new ones.
    pub ended_max_entries: u64,
    /// Bytes the in-memory session cache may hold (it never holds tokens).
    pub cache_max_bytes: u64,
    /// The optional shared session store (Redis/Valkey) for several replicas.
    pub store: RawSessionStore,
}

/// `[session.store]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessionStore {
    /// `redis://` or `rediss://` (TLS) URL, `redis+sentinel://s1:26379,s2:26379/<master-name>[/db]`
    /// (`rediss+sentinel://` for TLS) or `redis+cluster://n1:6379,n2:6379` (`rediss+cluster://`);
    /// unset: sessions live in the cookie only.
    #[serde(skip_serializing)]
    pub url: Option<SecretString>,
    /// The ACL user on the data nodes (instead of one in a `redis://` URL).
    pub username: Option<String>,
    /// A file holding the Redis password (instead of one in the URL).
    pub password_file: Option<PathBuf>,
    /// The ACL user on the sentinels, when they require authentication.
    pub sentinel_username: Option<String>,
    /// A file holding the sentinels' password, when they require one.
    pub sentinel_password_file: Option<PathBuf>,
    /// With a TLS URL (`rediss://`, `rediss+sentinel://`, `rediss+cluster://`): trust only the CAs
    /// in this PEM file for every store node and sentinel (default: the system roots).
    pub ca_file: Option<PathBuf>,
    /// Replicas that must acknowledge a session write or sign-out (Redis `WAIT`) before it
    /// counts as done; 0 (the default) does not wait. See docs/sessions.md.
    pub min_replica_acks: u32,
    /// Prefix of every key and of the pub/sub channel, so deployments can share a Redis.
    pub key_prefix: String,
    /// How long a replica trusts its in-memory copy of a stored session (bounds a lost pub/sub message).
    #[serde(with = "humantime_serde")]
    pub local_cache_ttl: Duration,
    /// Connect and response timeout of each Redis operation.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

/// `[proxy]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    /// Idle upstream connections kept per host, per serving thread (each has its own pool).
    pub pool_max_idle_per_host: usize,
    /// Trust only the CAs in this PEM file for an https upstream (default: system roots).
    pub ca_file: Option<PathBuf>,
    /// Present this certificate to the upstream (mTLS); needs `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// Accept any upstream certificate. Never in production; warned about at every start.
    pub dangerous_skip_tls_verify: bool,
    /// `Upgrade` protocols tunnelled to the upstream (never `h2c`).
    pub upgrade_protocols: Vec<String>,
    /// A tunnel (WebSocket) with no byte either way for this long is closed.
    #[serde(with = "humantime_serde")]
    pub upgrade_idle_timeout: Duration,
    /// A tunnel is closed at this age, or when its session expires if sooner.
    #[serde(with = "humantime_serde")]
    pub upgrade_max_lifetime: Duration,
}

/// `[log]`
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter such as `info` or `portcullis=debug`.
    pub level: String,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:4180".to_owned(),
            public_url: None,
            upstream: None,
            allowed_redirect_hosts: Vec::new(),
            oidc: RawOidc {
                issuer: None,
                client_id: None,
                client_secret: None,
                client_secret_file: None,
                client_auth_method: "client_secret_basic".to_owned(),
                scopes: vec!["openid".to_owned(), "profile".to_owned(), "email".to_owned()],
                redirect_url: None,
                id_token_algorithms: ["RS256", "PS256", "ES256", "ES384", "RS384", "RS512", "PS384", "PS512", "EdDSA"]
                    .map(str::to_owned)
                    .to_vec(),
                trusted_audiences: Vec::new(),
                clock_skew: Duration::from_secs(60),
                http_timeout: Duration::from_secs(10),
                end_session_on_sign_out: false,
                post_logout_redirect_url: None,
                dangerous_allow_insecure_http_issuer: false,
                ca_file: None,
                dangerous_skip_tls_verify: false,
                groups_claim: None,
                providers: Vec::new(),
            },
            session: RawSession {
                secret: None,
                secrets: None,
                secret_file: None,
                cookie_name: "_portcullis".to_owned(),
                cookie_domain: None,
                remember_provider_choice: false,
                lifetime: Duration::from_secs(12 * 3600),
                idle_timeout: Duration::from_secs(2 * 3600),
                refresh_margin: Duration::from_secs(60),
                login_timeout: Duration::from_secs(600),
                cache_max_entries: 200_000,
                ended_max_entries: 500_000,
                cache_max_bytes: 128 * 1024 * 1024,
                store: RawSessionStore {
                    url: None,
                    username: None,
                    password_file: None,
                    sentinel_username: None,
                    sentinel_password_file: None,
                    ca_file: None,
                    min_replica_acks: 0,
                    key_prefix: "portcullis:".to_owned(),
                    local_cache_ttl: Duration::from_secs(5),
                    timeout: Duration::from_secs(2),
                },
            },
            proxy: RawProxy {
                connect_timeout: Duration::from_secs(5),
                response_timeout: Duration::from_secs(60),
                pool_idle_timeout: Duration::from_secs(90),
                pool_max_idle_per_host: 256,
                ca_file: None,
                client_cert_file: None,
                client_key_file: None,
                dangerous_skip_tls_verify: false,
                upgrade_protocols: vec!["websocket".to_owned()],
                upgrade_idle_timeout: Duration::from_secs(600),
                upgrade_max_lifetime: Duration::from_secs(12 * 3600),
            },
            log: RawLog { format: "text".to_owned(), level: "info".to_owned() },
            tls: RawTls {
                cert_file: None,
                key_file: None,
                reload_interval: Duration::from_secs(30),
                redirect_http_listen: None,
                session_tickets: true,
                ticket_rotation: Duration::from_secs(6 * 60 * 60),
            },
            metrics: RawMetrics { enabled: true, listen: "127.0.0.1:9464".to_owned() },
            authz: RawAuthz::default(),
            bearer: RawBearer::default(),
            forward_auth: RawForwardAuth::default(),
            ext_authz: RawExtAuthz::default(),
            upstreams: Vec::new(),
            tracing: RawTracing {
                otlp_endpoint: None,
                service_name: "portcullis".to_owned(),
                sample_ratio: 1.0,
                headers: std::collections::BTreeMap::new(),
                timeout: Duration::from_secs(10),
                ca_file: None,
            },
            server: RawServer {
                header_read_timeout: Duration::from_secs(10),
                max_header_bytes: 32 * 1024,
                max_url_bytes: 8 * 1024,
                max_connections: 10_000,
                max_concurrent_streams: 250,
                worker_threads: 0,
                shutdown_grace: Duration::from_secs(5),
                drain_timeout: Duration::from_secs(20),
                http2_idle_timeout: Duration::from_secs(60),
                max_connections_per_ip: 512,
                max_connection_age: Duration::from_secs(3600),
                watch_config: false,
                watch_config_interval: Duration::from_secs(5),
            },
        }
    }
}

impl RawConfig {
    /// This configuration as JSON, secrets shown only as `"<redacted>"` where set.
    pub fn redacted_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let redact = |value: &mut serde_json::Value, path: &[&str], present: bool| {
            let Some((last, parents)) = path.split_last() else { return };
            let mut node = value;
            for key in parents {
                let Some(next) = node.get_mut(*key) else { return };
                node = next;
            }
            if let Some(object) = node.as_object_mut() {
                let shown = if present { serde_json::json!("<redacted>") } else { serde_json::Value::Null };
                object.insert((*last).to_owned(), shown);
            }
        };
        redact(&mut value, &["oidc", "client_secret"], self.oidc.client_secret.is_some());
        if let Some(providers) = value.pointer_mut("/oidc/providers").and_then(serde_json::Value::as_array_mut) {
            for (shown, provider) in providers.iter_mut().zip(&self.oidc.providers) {
                if let Some(object) = shown.as_object_mut() {
                    let secret = if provider.client_secret.is_some() {
                        serde_json::json!("<redacted>")
                    } else {
                        serde_json::Value::Null
                    };
                    object.insert("client_secret".to_owned(), secret);
                }
            }
        }
        redact(&mut value, &["session", "secret"], self.session.secret.is_some());
        redact(&mut value, &["session", "secrets"], self.session.secrets.is_some());
        redact(&mut value, &["session", "store", "url"], self.session.store.url.is_some());
        // Header names stay visible (they say what is configured); values may be API keys.
        if let Some(tracing) = value.get_mut("tracing").and_then(serde_json::Value::as_object_mut) {
            let headers = self.tracing.headers.keys().map(|name| (name.clone(), serde_json::json!("<redacted>")));
            tracing.insert("headers".to_owned(), serde_json::Value::Object(headers.collect()));
        }
        value
    }
}

/// Layers defaults < TOML file (when given) < `PORTCULLIS_*` environment
/// (`__` separates nesting: `PORTCULLIS_OIDC__CLIENT_ID`).
pub fn figment(config_file: Option<&std::path::Path>) -> Figment {
    let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
    if let Some(path) = config_file {
        figment = figment.merge(Toml::file_exact(path));
    }
    figment.merge(
        Env::prefixed("PORTCULLIS_").split("__").ignore(&["CONFIG"]).filter(|key| !is_service_link(key.as_str())),
    )
}

/// Kubernetes injects "service link" variables for every Service in the
/// namespace; a Service named `portcullis` yields `PORTCULLIS_PORT`,
/// `PORTCULLIS_SERVICE_HOST`, `PORTCULLIS_PORT_4180_TCP_ADDR` and so on. They
/// are not configuration, and must not fail the strict key check.
fn is_service_link(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "port" || key.starts_with("port_") || key.starts_with("service_")
}

/// `[authz]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuthz {
    /// Only these addresses may pass (with the domains and groups below); empty: no email gate.
    pub allowed_emails: Vec<String>,
    /// Only addresses in these domains (`example.com`, or `.example.com` for subdomains).
    pub allowed_email_domains: Vec<String>,
    /// Only members of these groups/roles.
    pub allowed_groups: Vec<String>,
    /// Dotted path of the claim holding groups or roles, e.g. `realm_access.roles`.
    pub groups_claim: String,
    /// Email addresses count only when the provider says `email_verified: true`.
    pub require_email_verified: bool,
    /// Access for routes no rule matches: `authenticated` or `deny`.
    pub default: String,
    /// Paths (prefixes) that are APIs: never a login redirect, always a 401.
    pub api_path_prefixes: Vec<String>,
    /// Per-route rules; the first match decides.
    pub rules: Vec<RawRule>,
    /// Rule paths match ignoring ASCII case, for an upstream that routes that
    /// way (Express, ASP.NET); also the default for `[[upstreams]]` entries.
    pub case_insensitive: bool,
    /// Forward the client's own `Authorization` header on public routes
    /// (`allow = "public"`); off, it is removed like any gateway-owned header.
    pub forward_client_authorization_on_public: bool,
    /// The providers whose sessions and tokens the default upstream accepts; unset: all.
    pub providers: Option<Vec<String>>,
}

impl Default for RawAuthz {
    fn default() -> Self {
        Self {
            allowed_emails: Vec::new(),
            allowed_email_domains: Vec::new(),
            allowed_groups: Vec::new(),
            groups_claim: "groups".to_owned(),
            require_email_verified: true,
            default: "authenticated".to_owned(),
            api_path_prefixes: Vec::new(),
            rules: Vec::new(),
            case_insensitive: false,
            forward_client_authorization_on_public: false,
            providers: None,
        }
    }
}

/// `[[authz.rules]]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRule {
    /// Shown in logs when the rule decides.
    pub name: Option<String>,
    /// HTTP methods the rule applies to; empty: all.
    pub methods: Vec<String>,
    /// Matches this path and everything below it (segment boundaries).
    pub path_prefix: Option<String>,
    /// Matches the whole path: `*` is one segment, a final `**` any rest.
    pub path_pattern: Option<String>,
    /// `public` (no authentication at all), `authenticated` (default) or `deny`.
    pub allow: Option<String>,
    /// With `authenticated`: only these addresses, domains or groups (any one suffices).
    pub emails: Vec<String>,
    pub email_domains: Vec<String>,
    pub groups: Vec<String>,
    /// The providers whose sessions and tokens the rule accepts; unset: all.
    pub providers: Option<Vec<String>>,
}

/// `[bearer]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBearer {
    /// Accept `Authorization: Bearer <JWT>` from requests without a session.
    pub enabled: bool,
    /// The `aud` tokens from `oidc.issuer` must carry; default: `oidc.client_id`.
    pub audience: Option<String>,
    /// Require `typ: at+jwt` (RFC 9068). When off, tokens that look like ID
    /// tokens (`nonce`, `at_hash`, `c_hash`, or `typ` claim `ID`) are still refused.
    pub require_access_token_type: bool,
    /// Other issuers whose tokens are accepted, each with its own audience.
    pub issuers: Vec<RawIssuer>,
    /// Check opaque (non-JWT) tokens at the provider's RFC 7662 introspection
    /// endpoint; needs a confidential client (`oidc.client_secret`).
    pub introspection: bool,
}

impl Default for RawBearer {
    fn default() -> Self {
        Self {
            enabled: false,
            audience: None,
            require_access_token_type: true,
            issuers: Vec::new(),
            introspection: false,
        }
    }
}

/// `[[bearer.issuers]]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawIssuer {
    pub issuer: String,
    pub audience: String,
    /// Signature algorithms accepted; default: the `oidc.id_token_algorithms` list.
    pub algorithms: Vec<String>,
}

/// `[forward_auth]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawForwardAuth {
    /// Peers (CIDRs like `10.0.0.0/8`, or single addresses) whose
    /// `X-Forwarded-Method/-Host/-Uri` and `X-Original-URL` are believed. Empty: none.
    pub trusted_proxies: Vec<String>,
    /// Also answer `X-Auth-Request-Access-Token` (the session's access token).
    pub pass_access_token: bool,
    /// Answer browser navigations without a session with a 302 to sign in
    /// (Traefik, Caddy relay it) instead of a 401 (what nginx `auth_request` needs).
    pub redirect_browsers: bool,
    /// Which headers of a trusted proxy state the original request:
    /// `x-forwarded` (default), `x-original` or `envoy`.
    pub original_request: Option<String>,
}

/// `[ext_authz]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawExtAuthz {
    /// Where `envoy.service.auth.v3.Authorization/Check` is served (gRPC over
    /// HTTP/2), e.g. `127.0.0.1:9191`; unset: off.
    pub grpc_listen: Option<String>,
    /// Peers (CIDRs or single addresses) that may ask; every other peer gets
    /// `PERMISSION_DENIED`. Default: loopback only.
    pub trusted_peers: Vec<String>,
    /// TLS on the gRPC listener: its certificate chain (PEM); unset: plaintext.
    pub cert_file: Option<std::path::PathBuf>,
    /// The private key of `cert_file` (PEM).
    pub key_file: Option<std::path::PathBuf>,
    /// Also send the caller's access token upstream as `Authorization: Bearer`.
    pub pass_access_token: bool,
}

impl Default for RawExtAuthz {
    fn default() -> Self {
        Self {
            grpc_listen: None,
            trusted_peers: vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()],
            cert_file: None,
            key_file: None,
            pass_access_token: false,
        }
    }
}

/// `[[upstreams]]`: an extra upstream chosen by host and/or path prefix.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    pub name: Option<String>,
    /// Base URL, like the top-level `upstream`.
    pub url: String,
    /// Requests for this host (`:authority` or `Host`; port and one trailing dot
    /// ignored, case-insensitive); absent: any host.
    pub host: Option<String>,
    /// Requests whose normalised path is this prefix or below; absent: any path.
    pub path_prefix: Option<String>,
    /// Which token the upstream gets as `Authorization: Bearer`: `access` (default), `id` or `none`.
    pub token: Option<String>,
    /// Which identity headers this upstream gets, of `user`, `email`, `groups` and
    /// `preferred_username`; absent: all of them. Client-sent ones are stripped either way.
    pub identity_headers: Option<Vec<String>>,
    /// Headers added to every request to this upstream (replacing the client's).
    pub set_headers: std::collections::BTreeMap<String, String>,
    /// Rules checked before the `[authz]` rules for this upstream's requests.
    pub rules: Vec<RawRule>,
    /// This upstream routes paths ignoring ASCII case: its `path_prefix`, its
    /// rules and the `[authz]` rules match its requests that way. Absent:
    /// `authz.case_insensitive`.
    pub case_insensitive: Option<bool>,
    /// The providers whose sessions and tokens this upstream accepts; unset: all.
    pub providers: Option<Vec<String>>,
}
