//! The gateway: one decision per request, in explicit phases —
//! route → authenticate → forward — each a plain async function that either
//! continues or answers. See `docs/architecture.md`.

mod audience;
mod authority;
mod authorize;
mod backchannel;
mod bearer;
mod callback;
mod form;
mod forward_auth;
mod login;
mod recent_session;
mod refresh;
mod request_id;
mod session_auth;
mod shared;
mod sign_out;
mod throttle;
mod tunnel_session;
mod upstreams;
mod userinfo;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use tracing::Instrument as _;

use crate::body::ProxyBody;
use crate::clock::Clock;
use crate::config::Config;
use crate::oidc::http_client::IdpHttpClient;
use crate::oidc::provider::Provider;
use crate::pages::{self, Audience, ErrorPage};
use crate::proxy::{self, ForwardContext, Upstream, UpstreamSettings};
use crate::redirect::RedirectPolicy;
use crate::session::cache::SessionCache;
use crate::session::cookies::CookieJarSpec;
use crate::session::ended::EndedSessions;
use crate::session::seal::KeyRing;
use crate::telemetry::metrics::Metrics;

pub use self::recent_session::RecentSession;
pub use self::request_id::RequestId;

/// Paths the gateway answers itself.
pub mod paths {
    pub const PING: &str = "/ping";
    pub const READY: &str = "/ready";
    pub const START: &str = "/oauth2/start";
    pub const CALLBACK: &str = "/oauth2/callback";
    pub const SIGN_OUT: &str = "/oauth2/sign_out";
    pub const BACKCHANNEL_LOGOUT: &str = "/oauth2/backchannel_logout";
    pub const AUTH: &str = "/oauth2/auth";
    pub const USERINFO: &str = "/oauth2/userinfo";
}

/// Why a session that needs renewing is refused while the provider is down.
const SESSION_NOT_RENEWABLE: &str =
    "Your session needs renewing, but the sign-in service is unavailable right now. Please try again in a minute.";

/// What the server knows about the connection a request came on.
#[derive(Clone, Debug)]
pub struct Connection {
    pub client_addr: SocketAddr,
    /// Whether the client reached the gateway over TLS.
    pub tls: bool,
    /// The client's IP as `X-Forwarded-For` sends it, formatted once per
    /// connection rather than per request (about 1,100 instructions each).
    pub forwarded_for: Option<HeaderValue>,
    /// The connection's place in the connection limits; a tunnel keeps it.
    pub slot: Option<proxy::ConnectionSlot>,
}

impl Connection {
    pub fn new(client_addr: SocketAddr, tls: bool) -> Self {
        Self { client_addr, tls, forwarded_for: proxy::headers::ip_header_value(client_addr.ip()), slot: None }
    }
}

/// Building the gateway failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("session keys: {0}")]
    Keys(#[from] crate::session::seal::KeyError),
    #[error("upstream: {0}")]
    Upstream(#[from] proxy::ProxyError),
    #[error("provider HTTP client: {0}")]
    Client(#[from] std::io::Error),
    #[error("{0}")]
    Store(#[from] crate::session::store::StoreError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// Shared state of the gateway: configuration, provider, keys, cache, upstream.
#[derive(Debug)]
pub struct Gateway {
    config: Config,
    clock: Clock,
    provider: Arc<Provider>,
    keys: KeyRing,
    cookies: CookieJarSpec,
    cache: SessionCache,
    ended: EndedSessions,
    refreshes: refresh::RefreshFlights,
    /// Store mode (`[session.store]`); `None`: sessions live in the cookie.
    shared: Option<shared::Shared>,
    used_logout_tokens: backchannel::UsedLogoutTokens,
    upstream: Upstream,
    extra_issuers: bearer::ExtraIssuers,
    upstream_routes: upstreams::Routes,
    redirects: RedirectPolicy,
    request_ids: request_id::RequestIds,
    draining: std::sync::atomic::AtomicBool,
    metrics: Metrics,
    /// Upgraded connections (WebSockets) still open.
    tunnels: proxy::Tunnels,
    /// Refused code exchanges per client address (see `throttle`).
    failed_callbacks: throttle::FailureBudget,
}

impl Gateway {
    /// Builds the gateway from a validated configuration. The provider is not
    /// contacted here; see [`Gateway::provider`].
    pub fn new(config: Config, clock: Clock) -> Result<Self, GatewayError> {
        let client = IdpHttpClient::new(config.oidc.http_timeout, &config.oidc.tls)?;
        let extra_issuers = bearer::ExtraIssuers::new(&config.bearer.issuers, &client);
        let provider = Arc::new(Provider::new(config.oidc.issuer.clone(), client, Duration::from_secs(10)));
        let keys = KeyRing::new(&config.session.keys)?;
        let cookies = CookieJarSpec::new(&config.session.cookie_name, config.is_https());
        let cache = SessionCache::new(config.session.cache_max_entries, config.session.cache_max_bytes);
        let metrics = Metrics::new();
        let ended = EndedSessions::new(
            config.session.lifetime,
            config.session.ended_max_entries,
            metrics.ended_sessions_overflows(),
        );
        let used_logout_tokens = backchannel::UsedLogoutTokens::new(
            config.session.ended_max_entries,
            metrics.used_logout_tokens_overflows(),
        );
        let refreshes = refresh::flights(config.session.cache_max_entries);
        let shared = match &config.session.store {
            Some(store) => Some(shared::Shared::new(
                crate::session::store::SessionStore::new(store, config.session.lifetime)?,
                store.local_cache_ttl,
                config.session.cache_max_entries,
            )),
            None => None,
        };
        let upstream_settings = UpstreamSettings {
            connect_timeout: config.proxy.connect_timeout,
            response_timeout: config.proxy.response_timeout,
            pool_idle_timeout: config.proxy.pool_idle_timeout,
            pool_max_idle_per_host: config.proxy.pool_max_idle_per_host,
            tls: config.proxy.tls.clone(),
        };
        // The count the server starts its workers with: each gets its own pools.
        let workers = config.server.worker_threads;
        let upstream_routes =
            upstreams::Routes::new(&config.upstreams, config.authz.case_insensitive(), &upstream_settings, workers)?;
        let upstream = Upstream::new(config.upstream.clone(), upstream_settings, workers)?;
        let redirects = RedirectPolicy::new(config.public_url.clone(), config.allowed_redirect_hosts.clone());
        let tunnels = proxy::Tunnels::new(config.proxy.tunnels.clone());
        Ok(Self {
            config,
            clock,
            provider,
            keys,
            cookies,
            cache,
            ended,
            refreshes,
            shared,
            used_logout_tokens,
            upstream,
            extra_issuers,
            upstream_routes,
            redirects,
            request_ids: request_id::RequestIds::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
            metrics,
            tunnels,
            failed_callbacks: throttle::FailureBudget::new(throttle::FAILED_CALLBACKS_PER_CLIENT),
        })
    }

    /// The identity provider handle (load it before or while serving).
    pub fn provider(&self) -> &Arc<Provider> {
        &self.provider
    }

    /// The configuration this gateway runs on.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether the gateway should get traffic: not shutting down, and able to
    /// log users in (provider metadata and keys loaded).
    pub fn is_ready(&self) -> bool {
        !self.draining.load(std::sync::atomic::Ordering::Relaxed)
            && self.provider.current().is_some()
            && self.shared.as_ref().is_none_or(|shared| shared.store.is_healthy())
    }

    /// Starts the shared store's background work (health checks, logout
    /// broadcasts); does nothing without `[session.store]`.
    pub async fn start_background(self: &Arc<Self>) {
        shared::start_background(self).await;
    }

    /// The upgraded connections (WebSockets) this gateway is tunnelling.
    pub fn tunnels(&self) -> &proxy::Tunnels {
        &self.tunnels
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The Prometheus text exposition of the metrics.
    pub fn render_metrics(&self) -> String {
        self.metrics.render(self.cache.len(), self.cache.weighted_bytes())
    }

    /// Applies the session cache's pending maintenance (evictions, counters) now,
    /// so its figures are exact; for benchmarks and tests.
    pub async fn sync_caches(&self) {
        self.cache.settle().await;
    }

    /// Shutdown has begun: report not-ready from now on.
    pub fn begin_draining(&self) {
        self.draining.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Handles one request: route, authenticate, forward. Logs one line.
    /// `recent` is the connection's last opened session cookie (one per connection).
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        connection: &Connection,
        recent: &RecentSession,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let request_id = self.request_ids.take(request.headers());
        let method = request.method().clone();
        // Only the path is logged: queries can carry codes and states. (The
        // URI shares the request head's bytes: cloning it copies nothing.)
        let uri = request.uri().clone();
        let path = uri.path();
        let mut outcome = Outcome::default();
        let span = request_span(&method, path, &request_id);
        crate::telemetry::otel::adopt_remote_parent(&span, request.headers());
        let handled = async {
            match self.refuse_malformed(&request, &request_id) {
                Some(refusal) => refusal,
                None => self.route(request, path, connection, recent, &request_id, &mut outcome).await,
            }
        };
        let mut response = handled.instrument(span.clone()).await;
        response.headers_mut().insert(crate::proxy::headers::X_REQUEST_ID, request_id.header_value().clone());
        record_outcome(&span, response.status());
        self.metrics.request(outcome.route, response.status());
        tracing::info!(
            target: "portcullis::access",
            request_id = %request_id,
            method = %method,
            path = %path,
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            user = outcome.user.as_ref().map_or("-", LoggedUser::subject),
            "request"
        );
        response
    }

    /// Routes, authenticates and forwards one request. `path` is the request's
    /// path, borrowed from the caller's copy of its URI (the request itself is
    /// handed on).
    // Rare branches (login, callback, sign-out, bearer checks...) are boxed so that
    // this future, which hyper moves several times per request, stays small: at
    // 15 KB, copying it cost more than opening the session cookie.
    async fn route(
        &self,
        mut request: Request<Incoming>,
        path: &str,
        connection: &Connection,
        recent: &RecentSession,
        request_id: &RequestId,
        outcome: &mut Outcome,
    ) -> Response<ProxyBody> {
        outcome.route = route_class(path);
        match path {
            paths::PING => return pages::text(StatusCode::OK, "OK"),
            paths::READY => {
                return if self.is_ready() {
                    pages::text(StatusCode::OK, "ready")
                } else {
                    let mut response = pages::text(StatusCode::SERVICE_UNAVAILABLE, self.not_ready_reason());
                    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                    response
                };
            }
            paths::START => return Box::pin(self.start_login_explicit(&request, request_id)).await,
            paths::CALLBACK => return Box::pin(self.callback(&request, connection, request_id, outcome)).await,
            paths::SIGN_OUT => return Box::pin(self.sign_out(request, request_id)).await,
            paths::BACKCHANNEL_LOGOUT => return Box::pin(self.backchannel_logout(request, request_id)).await,
            path if path == paths::AUTH || path.starts_with("/oauth2/auth/") => {
                return Box::pin(self.forward_auth(&request, connection, recent, request_id, outcome)).await;
            }
            paths::USERINFO => return Box::pin(self.userinfo(&request, recent, request_id)).await,
            _ => {}
        }

        // Authorization routing first: ambiguous hosts and paths are refused,
        // public routes skip authentication.
        let authority = match authority::of_request(request.uri(), request.headers()) {
            Ok(authority) => authority,
            Err(problem) => return self.bad_authority(problem, self.audience(&request), request_id),
        };
        let host = authority.as_ref().map(authority::RequestAuthority::host);
        if !self.serves_host(host) {
            return self.misdirected(self.audience(&request), request_id);
        }
        let Some(target) = self.target(request.method(), host, path) else {
            return self.ambiguous_path(self.audience(&request), request_id);
        };
        // From here on the request is what was authorised: its normal path
        // and its one authority are what the upstream receives.
        if address_as_authorised(&mut request, &target.path, authority.as_ref()).is_err() {
            return self.ambiguous_path(self.audience(&request), request_id);
        }
        record_upstream(target.upstream.map_or("default", |route| route.name.as_str()));
        if target.is_public() {
            return self.forward(request, connection, None, target.upstream, Vec::new(), request_id).await;
        }

        let authenticated = self.authenticate(request.headers(), recent).await;
        // hyper marks every HTTP/1.1 request with `Upgrade` (the only kind the proxy
        // tunnels) as upgradable; testing that first spares most requests a header lookup.
        if authenticated.session.is_some()
            && request.extensions().get::<hyper::upgrade::OnUpgrade>().is_some()
            && request.headers().contains_key(header::UPGRADE)
        {
            // A tunnel is closed when its session ends: noted before the cookie is removed.
            if let Some(session) = self.tunnel_session(request.headers()) {
                request.extensions_mut().insert(session);
            }
        }
        if authenticated.session.is_some() && authenticated.cookies_only_session {
            // What the proxy's removal of the gateway's cookies would come to,
            // known here without scanning the ~5 KB header again.
            request.headers_mut().remove(header::COOKIE);
        }
        let (decision, reason) =
            match (&authenticated.session, authenticated.provider_unavailable, authenticated.clear_cookie) {
                (Some(_), _, _) => ("authenticated", "session"),
                (None, true, _) => ("unavailable", "idp_unavailable"),
                (None, false, _) if authenticated.store_unavailable => ("unavailable", "store_unavailable"),
                (None, false, true) => ("unauthenticated", "invalid_session"),
                (None, false, false) => ("unauthenticated", "no_session"),
            };
        self.metrics.auth_decision(decision, reason);
        // One rule when both are sent: a valid session decides and the client's
        // Authorization header is replaced; only without one does a bearer token count.
        let caller = match (authenticated.session, authenticated.provider_unavailable) {
            (Some(session), _) => {
                outcome.user = Some(LoggedUser::Caller(Arc::clone(&session.caller.principal)));
                Some(session.caller)
            }
            (None, true) => None,
            (None, false) => match Box::pin(self.authenticate_bearer(request.headers(), connection)).await {
                bearer::BearerOutcome::Absent => None,
                bearer::BearerOutcome::Valid(caller) => {
                    self.metrics.auth_decision("authenticated", "bearer");
                    outcome.user = Some(LoggedUser::Caller(Arc::clone(&caller.principal)));
                    Some(caller)
                }
                bearer::BearerOutcome::Invalid(reason) => {
                    tracing::info!(target: "portcullis::auth", request_id = %request_id, event = "bearer_refused", reason);
                    self.metrics.auth_decision("unauthenticated", "invalid_token");
                    let mut response = self.fail(
                        Audience::Api,
                        StatusCode::UNAUTHORIZED,
                        "invalid_token",
                        "The bearer token is not valid here.",
                        request_id,
                    );
                    bearer::challenge_invalid_token(response.headers_mut());
                    return response;
                }
                bearer::BearerOutcome::Throttled => return self.too_many_failures(Audience::Api, request_id),
                bearer::BearerOutcome::Unavailable => {
                    return self.provider_unavailable_page(
                        Audience::Api,
                        "The token's issuer cannot be reached to check it. Try again shortly.",
                        request_id,
                    );
                }
            },
        };
        let Some(caller) = caller else {
            // Only a refusal needs to know who is asking.
            let audience = self.audience(&request);
            if authenticated.store_unavailable {
                return self.store_unavailable_page(audience, request_id);
            }
            if authenticated.provider_unavailable {
                return self.provider_unavailable_page(audience, SESSION_NOT_RENEWABLE, request_id);
            }
            let mut response = Box::pin(self.unauthenticated(&request, audience, request_id)).await;
            if authenticated.clear_cookie {
                for clear in self.cookies.clear_session(request.headers()) {
                    response.headers_mut().append(header::SET_COOKIE, clear);
                }
            }
            return response;
        };
        if let Some(denied) = self.authorize(&target, &caller.principal, || self.audience(&request), request_id) {
            return denied;
        }
        self.forward(request, connection, Some(&caller), target.upstream, authenticated.set_cookies, request_id).await
    }

    /// Browser or API client: the request's signals, or a configured API path.
    fn audience(&self, request: &Request<Incoming>) -> Audience {
        if self.config.authz.is_api_path(request.uri().path()) {
            return Audience::Api;
        }
        audience::classify(request.method(), request.headers())
    }

    /// Forwards to the upstream (`via` an `[[upstreams]]` entry, or the default)
    /// with the caller's identity (none on public routes) and the token the
    /// upstream is configured for; appends `set_cookies` to the answer.
    async fn forward(
        &self,
        mut request: Request<Incoming>,
        connection: &Connection,
        caller: Option<&session_auth::Caller>,
        via: Option<&upstreams::Route>,
        set_cookies: Vec<HeaderValue>,
        request_id: &RequestId,
    ) -> Response<ProxyBody> {
        use crate::authz::settings::TokenChoice;
        let identity = caller.map(|caller| match via {
            None => caller.identity_with_access_token(),
            Some(route) => {
                let authorization = match route.token {
                    TokenChoice::Access => Some(caller.access_authorization.clone()),
                    TokenChoice::Id => caller.id_token_authorization(),
                    TokenChoice::None => None,
                };
                caller.identity_with(route.identity, authorization)
            }
        });
        let identity = identity.as_ref();
        let upstream = via.map_or(&self.upstream, |route| &route.upstream);
        let is_ours = |name: &str| self.cookies.is_ours(name);
        let context = ForwardContext {
            tunnels: &self.tunnels,
            tunnel_session: request.extensions_mut().remove::<proxy::TunnelSession>(),
            connection_slot: connection.slot.as_ref(),
            forwarded_for: connection.forwarded_for.as_ref(),
            client_scheme: if connection.tls { "https" } else { "http" },
            is_gateway_cookie: &is_ours,
            identity,
            forward_client_authorization: caller.is_none()
                && self.config.authz.forwards_client_authorization_on_public(),
            request_id: Some(request_id.header_value()),
            set_headers: via.map_or(&[], |route| route.set_headers.as_slice()),
        };
        let started = Instant::now();
        // On the heap: the exchange's future (about 3 KB) would otherwise be
        // part of this one, of `route`'s and `handle`'s, and copied with each.
        let forwarded = Box::pin(proxy::forward(upstream, request, context)).await;
        self.metrics.upstream_response(started.elapsed().as_secs_f64());
        let mut response = match forwarded {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(request_id = %request_id, %error, "upstream request failed");
                let message = if error.status() == StatusCode::GATEWAY_TIMEOUT {
                    "The service behind this gateway did not answer in time. Try again shortly."
                } else {
                    "The service behind this gateway is unavailable. Try again shortly."
                };
                pages::error(
                    Audience::Browser,
                    &ErrorPage {
                        status: error.status(),
                        code: "upstream_unavailable",
                        message,
                        request_id: request_id.as_str(),
                    },
                )
            }
        };
        self.cookies.drop_upstream_set_cookies(response.headers_mut());
        for cookie in set_cookies {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        response
    }

    /// Requests no part of the gateway or upstream should interpret: overlong
    /// targets (414) and several `Host` headers (400, RFC 9112 §3.2).
    fn refuse_malformed(&self, request: &Request<Incoming>, request_id: &RequestId) -> Option<Response<ProxyBody>> {
        let target_len = request.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
        if target_len > self.config.server.max_url_bytes {
            return Some(self.fail(
                Audience::Api,
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                "The request URL is too long.",
                request_id,
            ));
        }
        if request.headers().get_all(header::HOST).iter().nth(1).is_some() {
            return Some(self.fail(
                Audience::Api,
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Several Host headers.",
                request_id,
            ));
        }
        None
    }

    fn not_ready_reason(&self) -> &'static str {
        if self.provider.current().is_none() {
            "identity provider not loaded"
        } else if self.draining.load(std::sync::atomic::Ordering::Relaxed) {
            "shutting down"
        } else {
            "session store unavailable"
        }
    }

    /// 503 `idp_unavailable` with `Retry-After`: the identity provider cannot be
    /// reached for what this request needs. Never a 401: forward-auth proxies
    /// would turn that into a sign-in redirect, and signing in needs the provider too.
    fn provider_unavailable_page(
        &self,
        audience: Audience,
        message: &str,
        request_id: &RequestId,
    ) -> Response<ProxyBody> {
        let mut response = self.fail(audience, StatusCode::SERVICE_UNAVAILABLE, "idp_unavailable", message, request_id);
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        response
    }

    /// 503 with `Retry-After`: the shared session store cannot be reached. The
    /// session cookie is left alone; it works again once the store is back.
    fn store_unavailable_page(&self, audience: Audience, request_id: &RequestId) -> Response<ProxyBody> {
        let mut response = self.fail(
            audience,
            StatusCode::SERVICE_UNAVAILABLE,
            "session_store_unavailable",
            "Your session cannot be checked right now because the session store is unavailable. Please try again in a few seconds.",
            request_id,
        );
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        response
    }

    /// A page or JSON error for the client, chosen by audience.
    fn fail(
        &self,
        audience: Audience,
        status: StatusCode,
        code: &str,
        message: &str,
        request_id: &RequestId,
    ) -> Response<ProxyBody> {
        pages::error(audience, &ErrorPage { status, code, message, request_id: request_id.as_str() })
    }
}

/// Gives `request` the normal form of its path (query kept) when it was not
/// already in it, and `authority` as its `Host`; `Err` if the normal form
/// cannot be a request target (it is made of the original's characters, so
/// this does not happen; refusing is the safe answer if it ever did).
fn address_as_authorised(
    request: &mut Request<Incoming>,
    path: &crate::authz::path::NormalPath<'_>,
    authority: Option<&authority::RequestAuthority>,
) -> Result<(), http::Error> {
    if !path.canonical {
        let query = request.uri().query();
        let mut target = String::with_capacity(path.path.len() + query.map_or(0, |query| query.len() + 1));
        target.push_str(&path.path);
        if let Some(query) = query {
            target.push('?');
            target.push_str(query);
        }
        let mut parts = request.uri().clone().into_parts();
        parts.path_and_query = Some(http::uri::PathAndQuery::from_maybe_shared(bytes::Bytes::from(target))?);
        *request.uri_mut() = http::Uri::from_parts(parts)?;
    }
    // An authority read unchanged from the request's `Host` is that header already.
    if let Some(authority) = authority
        && !authority.is_as_received()
    {
        request.headers_mut().insert(header::HOST, authority.header_value().clone());
    }
    Ok(())
}

/// What the access log and metrics record besides the response.
#[derive(Debug)]
struct Outcome {
    user: Option<LoggedUser>,
    route: &'static str,
}

/// The user a request was answered for, as the access line names them.
#[derive(Debug)]
enum LoggedUser {
    /// An authenticated caller (shared with the session, not copied per request).
    Caller(Arc<crate::authz::Principal>),
    /// The subject of a login that just succeeded.
    SignedIn(String),
}

impl LoggedUser {
    fn subject(&self) -> &str {
        match self {
            Self::Caller(principal) => &principal.subject,
            Self::SignedIn(subject) => subject,
        }
    }
}

impl Default for Outcome {
    fn default() -> Self {
        Self { user: None, route: "other" }
    }
}

/// The server span of one request, exported only when `[tracing]` is on
/// (otherwise disabled, costing one check). It carries the path without its
/// query, and never the user, cookies or credentials.
fn request_span(method: &http::Method, path: &str, request_id: &RequestId) -> tracing::Span {
    let route = route_class(path);
    tracing::info_span!(
        target: crate::telemetry::SPAN_TARGET,
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        url.path = path,
        portcullis.route = route,
        portcullis.request_id = request_id.as_str(),
        portcullis.upstream = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    )
}

/// Names the matched upstream (`default` or an `[[upstreams]]` name) on the
/// current request span; a static check only when tracing is off.
fn record_upstream(name: &str) {
    if tracing::span_enabled!(target: crate::telemetry::SPAN_TARGET, tracing::Level::INFO) {
        tracing::Span::current().record("portcullis.upstream", name);
    }
}

/// Records the answer on the request span; 5xx marks the span as failed.
fn record_outcome(span: &tracing::Span, status: StatusCode) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

/// The route class of a path, a metric label.
fn route_class(path: &str) -> &'static str {
    match path {
        paths::PING => "ping",
        paths::READY => "ready",
        paths::START => "login",
        paths::CALLBACK => "callback",
        paths::SIGN_OUT => "sign_out",
        paths::BACKCHANNEL_LOGOUT => "backchannel_logout",
        paths::AUTH => "forward_auth",
        paths::USERINFO => "userinfo",
        _ => "proxy",
    }
}
