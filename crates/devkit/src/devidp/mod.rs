//! Development OpenID provider (loopback only), used by `portcullis demo` and the tests.
//!
//! A small but correct OpenID Connect provider: authorization code flow with
//! mandatory PKCE S256, ES256-signed ID and access tokens, refresh tokens with
//! optional rotation and reuse detection, userinfo, revocation (RFC 7009) and
//! RP-initiated logout. With the `faults` feature, `Faults` lets tests make it
//! misbehave at runtime.
//! It only ever binds to loopback addresses: it has fixed demo passwords.

// Handlers return a ready `Response` as their error: error paths are cold here,
// so boxing it would only add noise.
#![allow(clippy::result_large_err)]

mod authorize;
mod client_auth;
mod discovery;
mod faults;
mod introspection;
mod keys;
mod login_page;
mod logout;
mod mint;
mod revocation;
mod store;
mod token;
mod userinfo;
mod web;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

#[cfg(not(feature = "faults"))]
use faults::Faults;
#[cfg(feature = "faults")]
pub use faults::{FaultClaims, FaultDuration, FaultFlag, FaultMode, FaultText, Faults, Misbehaviour};

/// Seconds since the Unix epoch.
type UnixSeconds = i64;

/// Where the provider reads the time. Tests hand it the gateway's clock, so
/// moving that clock forward moves the provider's too.
#[derive(Clone)]
pub struct TimeSource(Arc<dyn Fn() -> UnixSeconds + Send + Sync>);

impl TimeSource {
    /// The system clock.
    #[allow(
        clippy::disallowed_methods,
        reason = "the devkit's one wall-clock reader (it cannot use portcullis::clock)"
    )]
    pub fn system() -> Self {
        Self::from_fn(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
                .unwrap_or(0)
        })
    }

    /// Reads the time from `now` (seconds since the Unix epoch).
    pub fn from_fn(now: impl Fn() -> UnixSeconds + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    fn now(&self) -> UnixSeconds {
        (self.0)()
    }
}

impl std::fmt::Debug for TimeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TimeSource")
    }
}

/// Paths of the provider's endpoints, relative to the issuer.
mod paths {
    pub const DISCOVERY: &str = "/.well-known/openid-configuration";
    pub const AUTHORIZE: &str = "/authorize";
    pub const TOKEN: &str = "/token";
    pub const JWKS: &str = "/jwks";
    pub const USERINFO: &str = "/userinfo";
    pub const REVOKE: &str = "/revoke";
    pub const INTROSPECT: &str = "/introspect";
    pub const END_SESSION: &str = "/logout";
}

/// A user who can sign in at the development provider.
#[derive(Clone, Debug)]
pub struct DevUser {
    /// Login name; also the `preferred_username` claim.
    pub username: String,
    /// Plain-text password (development only).
    pub password: String,
    /// The `email` claim.
    pub email: String,
    /// The `name` claim.
    pub name: String,
    /// The `groups` claim.
    pub groups: Vec<String>,
    /// The `email_verified` claim.
    pub email_verified: bool,
}

/// Configuration of the development provider: one client and its users.
#[derive(Clone, Debug)]
pub struct DevProviderConfig {
    /// The one registered client.
    pub client_id: String,
    /// `None` = public client: token requests carrying any client secret are rejected.
    pub client_secret: Option<String>,
    /// Registered redirect URIs, matched as exact strings.
    pub redirect_uris: Vec<String>,
    /// Registered post-logout redirect URIs, matched as exact strings.
    pub post_logout_redirect_uris: Vec<String>,
    /// Users who can sign in.
    pub users: Vec<DevUser>,
    /// Lifetime of access tokens.
    pub access_token_ttl: Duration,
    /// Lifetime of ID tokens.
    pub id_token_ttl: Duration,
    /// The refresh grant issues a new refresh token and invalidates the old one;
    /// reusing an old one revokes the whole family. When off, the refresh grant
    /// answers without a `refresh_token` and the old one stays valid.
    pub rotate_refresh_tokens: bool,
    /// Source of every `iat`/`exp` and of code expiry (tests move it forward).
    pub clock: TimeSource,
}

impl DevProviderConfig {
    /// A public client with users alice/alice (admins, staff) and bob/bob (staff),
    /// 5 minute access and ID tokens, refresh token rotation on.
    pub fn demo(client_id: impl Into<String>, redirect_uri: String) -> Self {
        let user = |name: &str, full_name: &str, groups: &[&str]| DevUser {
            username: name.to_owned(),
            password: name.to_owned(),
            email: format!("{name}@example.test"),
            name: full_name.to_owned(),
            groups: groups.iter().map(|group| (*group).to_owned()).collect(),
            email_verified: true,
        };
        Self {
            client_id: client_id.into(),
            client_secret: None,
            redirect_uris: vec![redirect_uri],
            post_logout_redirect_uris: Vec::new(),
            users: vec![user("alice", "Alice Example", &["admins", "staff"]), user("bob", "Bob Example", &["staff"])],
            access_token_ttl: Duration::from_secs(300),
            id_token_ttl: Duration::from_secs(300),
            rotate_refresh_tokens: true,
            clock: TimeSource::system(),
        }
    }
}

/// State shared by every request handler.
struct Shared {
    issuer: String,
    config: DevProviderConfig,
    faults: Faults,
    keys: Mutex<keys::KeyRing>,
    store: Mutex<store::Store>,
    token_requests: Mutex<HashMap<String, u64>>,
    revoked_tokens: AtomicU64,
    jwks_requests: AtomicU64,
    introspections: AtomicU64,
    /// Opaque access tokens minted for tests: token → introspection answer.
    opaque_tokens: Mutex<HashMap<String, serde_json::Value>>,
}

impl Shared {
    fn keys(&self) -> MutexGuard<'_, keys::KeyRing> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn store(&self) -> MutexGuard<'_, store::Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    fn is_public_client(&self) -> bool {
        self.config.client_secret.is_none()
    }

    fn count_token_request(&self, grant_type: &str) {
        let mut counts = self.token_requests.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.entry(grant_type.to_owned()).or_insert(0) += 1;
    }
}

/// A running development provider; dropping it (or [`DevProvider::shutdown`]) stops the server.
#[derive(Debug)]
pub struct DevProvider {
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

impl DevProvider {
    /// Serves the provider on `listener`; refuses (`InvalidInput`) a listener that is not on loopback.
    pub async fn start(listener: TcpListener, config: DevProviderConfig) -> io::Result<DevProvider> {
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the development provider only binds to loopback, not {addr}"),
            ));
        }
        let shared = Arc::new(Shared {
            issuer: format!("http://{addr}"),
            config,
            faults: Faults::default(),
            keys: Mutex::new(keys::KeyRing::generate()?),
            store: Mutex::new(store::Store::default()),
            token_requests: Mutex::new(HashMap::new()),
            revoked_tokens: AtomicU64::new(0),
            jwks_requests: AtomicU64::new(0),
            introspections: AtomicU64::new(0),
            opaque_tokens: Mutex::new(HashMap::new()),
        });
        let server = tokio::spawn(serve(listener, Arc::clone(&shared)));
        Ok(DevProvider { shared, server })
    }

    /// The issuer identifier, `http://127.0.0.1:PORT` without a trailing slash.
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// Runtime knobs that make the provider misbehave; all off by default.
    #[cfg(feature = "faults")]
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// How many requests reached the token endpoint with this `grant_type`
    /// (including failed ones and those answered by a fault).
    pub fn token_requests(&self, grant_type: &str) -> u64 {
        self.shared.token_requests.lock().unwrap_or_else(PoisonError::into_inner).get(grant_type).copied().unwrap_or(0)
    }

    /// Replaces the signing key with a new one under a new `kid`; the JWKS then
    /// serves only the new key (the provider itself still accepts its old tokens).
    pub fn rotate_signing_key(&self) {
        if let Err(error) = self.shared.keys().rotate() {
            // Key generation failing is an aws-lc internal error; keep serving the old key.
            tracing::error!(%error, "development provider could not generate a new signing key");
        }
    }

    /// The `kid` of the current signing key.
    pub fn current_kid(&self) -> String {
        self.shared.keys().current().kid().to_owned()
    }

    /// How many requests reached the JWKS endpoint (tests: no fetch storms).
    pub fn jwks_requests(&self) -> u64 {
        self.shared.jwks_requests.load(Ordering::SeqCst)
    }

    /// A signed JWT access token (`typ: at+jwt`, `aud` = the client id) for
    /// `username`, as the token endpoint would issue; `None` if the user is unknown.
    pub fn mint_access_token(&self, username: &str, ttl: Duration) -> Option<String> {
        let user = self.shared.config.users.iter().find(|user| user.username == username)?;
        let now = self.shared.config.clock.now();
        let claims = serde_json::json!({
            "iss": self.shared.issuer,
            "sub": mint::subject(user),
            "aud": self.shared.config.client_id,
            "client_id": self.shared.config.client_id,
            "email": user.email,
            "email_verified": user.email_verified,
            "groups": user.groups,
            "iat": now,
            "exp": now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(0)),
            "jti": web::random_token(16),
        });
        let keys = self.shared.keys();
        let key = keys.current();
        key.sign("at+jwt", key.kid(), &claims).ok()
    }

    /// `claims` signed with the current key under `header` (ES256; the current
    /// `kid` unless the header names one), for tests of tokens the provider
    /// would never issue: a `crit` header, a future `nbf`, an empty `sub`...
    pub fn sign_with_current_key(
        &self,
        mut header: jsonwebtoken::Header,
        claims: &serde_json::Value,
    ) -> Option<String> {
        let keys = self.shared.keys();
        let key = keys.current();
        header.alg = jsonwebtoken::Algorithm::ES256;
        header.kid = header.kid.or_else(|| Some(key.kid().to_owned()));
        key.sign_with_header(&header, claims).ok()
    }

    /// How many requests reached the introspection endpoint.
    pub fn introspections(&self) -> u64 {
        self.shared.introspections.load(Ordering::SeqCst)
    }

    /// An opaque (non-JWT) access token for `username`, valid for `ttl`, that
    /// only the introspection endpoint knows; `None` if the user is unknown.
    pub fn mint_opaque_access_token(&self, username: &str, ttl: Duration) -> Option<String> {
        self.mint_opaque_access_token_with(username, ttl, serde_json::json!({}))
    }

    /// As [`DevProvider::mint_opaque_access_token`], with the introspection
    /// answer's claims changed by `changes` (an object; a `null` member removes
    /// that claim), e.g. a token issued to another client.
    pub fn mint_opaque_access_token_with(
        &self,
        username: &str,
        ttl: Duration,
        changes: serde_json::Value,
    ) -> Option<String> {
        let user = self.shared.config.users.iter().find(|user| user.username == username)?;
        let token = web::random_token(24);
        let now = self.shared.config.clock.now();
        let mut claims = mint::profile_claims(user);
        claims.insert("active".into(), serde_json::json!(true));
        claims.insert("iss".into(), serde_json::json!(self.shared.issuer));
        claims.insert("aud".into(), serde_json::json!(self.shared.config.client_id));
        claims.insert("client_id".into(), serde_json::json!(self.shared.config.client_id));
        claims.insert("token_type".into(), serde_json::json!("Bearer"));
        claims.insert("exp".into(), serde_json::json!(now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(0))));
        for (name, value) in changes.as_object().into_iter().flatten() {
            if value.is_null() {
                claims.remove(name);
            } else {
                claims.insert(name.clone(), value.clone());
            }
        }
        self.shared
            .opaque_tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.clone(), serde_json::Value::Object(claims));
        Some(token)
    }

    /// How many calls to the revocation endpoint revoked something.
    pub fn revoked_tokens(&self) -> u64 {
        self.shared.revoked_tokens.load(Ordering::SeqCst)
    }

    /// A signed back-channel logout token (OpenID Back-Channel Logout 1.0) for
    /// `username` and optionally a session id (`sid` from an ID token); `None`
    /// if the user is unknown. The caller delivers it (POST `logout_token=...`).
    pub fn backchannel_logout_token(&self, username: &str, sid: Option<&str>) -> Option<String> {
        mint::logout_token(&self.shared, username, sid)
    }

    /// Stops the server and drops every open connection.
    pub fn shutdown(self) {
        // Drop does the work.
    }
}

impl Drop for DevProvider {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.server.abort();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    // Transient accept errors (e.g. too many open files): back off briefly.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let shared = Arc::clone(&shared);
                connections.spawn(async move {
                    let service = service_fn(move |request| {
                        let shared = Arc::clone(&shared);
                        async move { Ok::<_, std::convert::Infallible>(route(shared, request).await) }
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    // A client hanging up mid-request is not our problem.
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
            Some(_finished) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn route(shared: Arc<Shared>, request: web::Request) -> web::Response {
    use hyper::Method;
    let path = request.uri().path().to_owned();
    #[cfg(feature = "faults")]
    if let Some(misbehaviour) = shared.faults.back_channel.get()
        && matches!(path.as_str(), paths::DISCOVERY | paths::JWKS | paths::TOKEN)
    {
        return web::misbehave(misbehaviour).await;
    }
    if path == paths::TOKEN && request.method() == Method::POST {
        // The token endpoint counts requests even during an outage, so it checks the fault itself.
        return token::handle(&shared, request).await;
    }
    if shared.faults.unavailable.get() {
        return web::unavailable();
    }
    match (request.method().clone(), path.as_str()) {
        (Method::GET, paths::DISCOVERY) => discovery::configuration(&shared),
        (Method::GET, paths::JWKS) => {
            shared.jwks_requests.fetch_add(1, Ordering::SeqCst);
            discovery::jwks(&shared)
        }
        (Method::GET, paths::AUTHORIZE) => authorize::show(&shared, &request),
        (Method::POST, paths::AUTHORIZE) => authorize::submit(&shared, request).await,
        (Method::GET | Method::POST, paths::USERINFO) => userinfo::handle(&shared, &request),
        (Method::POST, paths::REVOKE) => revocation::handle(&shared, request).await,
        (Method::POST, paths::INTROSPECT) => introspection::handle(&shared, request).await,
        (Method::GET, paths::END_SESSION) => logout::end_session(&shared, &request),
        (_, paths::DISCOVERY | paths::JWKS | paths::AUTHORIZE | paths::TOKEN)
        | (_, paths::USERINFO | paths::REVOKE | paths::END_SESSION) => web::method_not_allowed(),
        _ => web::not_found(),
    }
}
