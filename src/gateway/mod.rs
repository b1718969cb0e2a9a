//! The gateway: one decision per request, in explicit phases —
//! route → authenticate → forward — each a plain async function that either
//! continues or answers. See `docs/architecture.md`.

mod audience;
mod authority;
mod authorize;
mod backchannel;
mod bearer;
mod callback;
mod chooser;
mod decide;
mod endpoint;
mod ext_authz;
mod form;
mod forward_auth;
mod login;
mod providers;
mod refusal;
mod reload;
mod request_id;
mod sign_out;
mod throttle;
mod upstreams;
mod userinfo;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use tracing::Instrument as _;

use crate::authz::ProviderSet;
use crate::body::ProxyBody;
use crate::clock::Clock;
use crate::config::Config;
use crate::oidc::provider::Provider;
use crate::pages::{self, Audience};
use crate::proxy::{self, ForwardContext};
use crate::redirect::RedirectPolicy;
use crate::sessions::{Caller, RecentSession, Sessions, SessionsError};
use crate::telemetry::metrics::Metrics;

use self::decide::{Credential, Decision, Identified, RequestFacts};
use self::endpoint::Endpoint;
pub use self::endpoint::paths;
use self::providers::Providers;
use self::refusal::Refusal;
pub use self::reload::ApplyError;
pub use self::request_id::RequestId;
use self::upstreams::Upstreams;

/// What the server knows about the connection a request came on, and what
/// its requests share.
#[derive(Debug)]
pub struct Connection {
    pub client_addr: SocketAddr,
    /// Whether the client reached the gateway over TLS.
    pub tls: bool,
    /// The client's IP as `X-Forwarded-For` sends it, formatted once per
    /// connection rather than per request (about 1,100 instructions each).
    pub forwarded_for: Option<HeaderValue>,
    /// The connection's place in the connection limits; a tunnel keeps it.
    pub slot: Option<proxy::ConnectionSlot>,
    /// The session cookie this connection sent last, kept opened for its next requests.
    recent: RecentSession,
}

impl Connection {
    pub fn new(client_addr: SocketAddr, tls: bool) -> Self {
        Self {
            client_addr,
            tls,
            forwarded_for: proxy::headers::ip_header_value(client_addr.ip()),
            slot: None,
            recent: RecentSession::new(),
        }
    }
}

/// Building the gateway failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Sessions(#[from] SessionsError),
    #[error("upstream: {0}")]
    Upstream(#[from] proxy::ProxyError),
    #[error("provider HTTP client: {0}")]
    Client(#[from] std::io::Error),
}

/// The gateway: its configuration and the services its requests ask.
#[derive(Debug)]
pub struct Gateway {
    config: Config,
    clock: Clock,
    providers: Providers,
    sessions: Sessions,
    upstreams: Upstreams,
    redirects: RedirectPolicy,
    request_ids: request_id::RequestIds,
    /// Shutdown has begun: not ready from then on.
    draining: std::sync::atomic::AtomicBool,
    metrics: Arc<Metrics>,
}

impl Gateway {
    /// Builds the gateway from a validated configuration. The provider is not
    /// contacted here; see [`Gateway::providers`].
    pub fn new(config: Config, clock: Clock) -> Result<Self, GatewayError> {
        let providers = Providers::new(&config)?;
        let metrics = Arc::new(Metrics::new());
        let upstreams = Upstreams::new(&config)?;
        let redirects = RedirectPolicy::for_config(&config);
        let sessions = Sessions::new(
            &config,
            clock.clone(),
            providers.handles(),
            Arc::clone(&metrics),
            upstreams.tunnels().clone(),
            upstreams.sends_id_token(),
        )?;
        Ok(Self {
            config,
            clock,
            providers,
            sessions,
            upstreams,
            redirects,
            request_ids: request_id::RequestIds::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
            metrics,
        })
    }

    /// The identity providers' handles, in configuration order (load them before or while serving).
    pub fn providers(&self) -> &[Arc<Provider>] {
        self.providers.handles()
    }

    /// The configuration this gateway runs on.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The clock its expiry decisions read (and the TLS ticket keys rotate by).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Whether the gateway should get traffic: not shutting down, the session
    /// store (if any) healthy, and able to log users in at one provider at
    /// least (its metadata and keys loaded). One provider down never makes the
    /// gateway unready while another is loaded: `portcullis_provider_ready`
    /// says which are.
    pub fn is_ready(&self) -> bool {
        !self.draining.load(std::sync::atomic::Ordering::Relaxed)
            && self.providers.is_ready()
            && self.sessions.is_healthy()
    }

    /// Starts the shared store's background work (health checks, logout
    /// broadcasts); does nothing without `[session.store]`.
    pub async fn start_background(self: &Arc<Self>) {
        Sessions::start_background(self, |gateway| &gateway.sessions).await;
    }

    /// The upgraded connections (WebSockets) this gateway is tunnelling.
    pub fn tunnels(&self) -> &proxy::Tunnels {
        self.upstreams.tunnels()
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The Prometheus text exposition of the metrics.
    pub fn render_metrics(&self) -> String {
        let (sessions, bytes) = self.sessions.cache_figures();
        for (_, provider) in self.providers.accepted(ProviderSet::ALL) {
            self.metrics.provider_ready(&provider.config.id, provider.current().is_some());
        }
        self.metrics.render(sessions, bytes)
    }

    /// Applies the session cache's pending maintenance (evictions, counters) now,
    /// so its figures are exact; for benchmarks and tests.
    pub async fn sync_caches(&self) {
        self.sessions.settle().await;
    }

    /// Shutdown has begun: report not-ready from now on.
    pub fn begin_draining(&self) {
        self.draining.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Handles one request: route, authenticate, forward. Logs one line.
    pub async fn handle(&self, request: Request<Incoming>, connection: &Connection) -> Response<ProxyBody> {
        let started = Instant::now();
        let request_id = self.request_ids.take(request.headers());
        let method = request.method().clone();
        // Only the path is logged: queries can carry codes and states. (The
        // URI shares the request head's bytes: cloning it copies nothing.)
        let uri = request.uri().clone();
        let path = uri.path();
        let endpoint = Endpoint::of(path);
        let mut outcome = Outcome::default();
        let span = request_span(&method, path, endpoint, &request_id);
        crate::telemetry::otel::adopt_remote_parent(&span, request.headers());
        let handled = async {
            if let Some(refusal) = self.refuse_malformed(&request, &request_id) {
                return refusal;
            }
            outcome.route = endpoint.label();
            // Rare endpoints are boxed so that this future, which hyper moves
            // several times per request, stays small: at 15 KB, copying it
            // cost more than opening the session cookie.
            match endpoint {
                Endpoint::Ping => pages::text(StatusCode::OK, "OK"),
                Endpoint::Ready => self.readiness(),
                Endpoint::Start => Box::pin(self.start_login_explicit(&request, &request_id)).await,
                Endpoint::Callback => Box::pin(self.callback(&request, connection, &request_id, &mut outcome)).await,
                Endpoint::SignOut => Box::pin(self.sign_out(request, &request_id)).await,
                Endpoint::BackchannelLogout => Box::pin(self.backchannel_logout(request, &request_id)).await,
                Endpoint::ForwardAuth => {
                    Box::pin(self.forward_auth(&request, connection, &request_id, &mut outcome)).await
                }
                Endpoint::Userinfo => Box::pin(self.userinfo(&request, connection, &request_id)).await,
                Endpoint::Proxy => self.proxy(request, path, connection, &request_id, &mut outcome).await,
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

    /// `/ready`: 200 while the gateway should get traffic, else 503 with the reason.
    fn readiness(&self) -> Response<ProxyBody> {
        if self.is_ready() {
            return pages::text(StatusCode::OK, "ready");
        }
        let mut response = pages::text(StatusCode::SERVICE_UNAVAILABLE, self.not_ready_reason());
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        response
    }

    /// Routes, authenticates and forwards a request for the upstream. `path`
    /// is the request's path, borrowed from the caller's copy of its URI (the
    /// request itself is handed on).
    // Rare branches (login, bearer checks...) are boxed to keep this future small.
    async fn proxy(
        &self,
        mut request: Request<Incoming>,
        path: &str,
        connection: &Connection,
        request_id: &RequestId,
        outcome: &mut Outcome,
    ) -> Response<ProxyBody> {
        // Authorization routing first: ambiguous hosts and paths are refused,
        // public routes skip authentication.
        let authority = match authority::of_request(request.uri(), request.headers()) {
            Ok(authority) => authority,
            Err(problem) => {
                tracing::info!(target: "portcullis::authz", request_id = %request_id, decision = "refuse", reason = problem.reason());
                return Refusal::BadAuthority.render(self.audience_of(&request), request_id);
            }
        };
        let host = authority.as_ref().map(authority::RequestAuthority::host);
        // The routes and rules this request is decided and forwarded by, to
        // its end, whatever a configuration reload installs meanwhile.
        let routes = self.upstreams.current();
        if !self.serves_host(&routes, host) {
            tracing::info!(target: "portcullis::authz", request_id = %request_id, decision = "refuse", reason = "unknown_host");
            return Refusal::Misdirected.render(self.audience_of(&request), request_id);
        }
        let facts = RequestFacts { method: request.method(), host, path, headers: request.headers() };
        let (caller, route) = match self.decide(&routes, &facts, connection, request_id).await {
            Decision::Public { route } => (None, route),
            Decision::Allowed { caller, route } => (Some(caller), route),
            Decision::Refused(refusal) => {
                let asked = Asked {
                    method: request.method(),
                    target: request.uri().path_and_query().map_or("/", |pq| pq.as_str()),
                    authority: authority.as_ref(),
                    headers: request.headers(),
                };
                return Box::pin(self.refuse(refusal, &asked, request_id)).await;
            }
        };
        // From here on the request is what was authorised: its normal path
        // and its one authority are what the upstream receives.
        if address_as_authorised(&mut request, &route.path, authority.as_ref()).is_err() {
            return authorize::ambiguous_path(request_id).render(self.audience_of(&request), request_id);
        }
        let Some(Identified { caller, set_cookies, credential }) = caller else {
            let to = upstreams::Destination { routes: &routes, via: route.upstream };
            return self.forward(request, connection, None, to, Vec::new(), request_id).await;
        };
        if let Credential::Session { cookies_only, provider } = credential {
            // hyper marks every HTTP/1.1 request with `Upgrade` (the only kind the proxy
            // tunnels) as upgradable; testing that first spares most requests a header lookup.
            if request.extensions().get::<hyper::upgrade::OnUpgrade>().is_some()
                && request.headers().contains_key(header::UPGRADE)
            {
                // A tunnel is closed when its session ends: noted before the cookie is removed.
                if let Some(session) = self.sessions.tunnel_session(request.headers(), usize::from(provider)) {
                    request.extensions_mut().insert(session);
                }
            }
            if cookies_only {
                // What the proxy's removal of the gateway's cookies would come to,
                // known here without scanning the ~5 KB header again.
                request.headers_mut().remove(header::COOKIE);
            }
        }
        outcome.user = Some(LoggedUser::Caller(Arc::clone(&caller.principal)));
        let to = upstreams::Destination { routes: &routes, via: route.upstream };
        self.forward(request, connection, Some(&caller), to, set_cookies, request_id).await
    }

    /// The answer to a refusal of the proxy path and ext_authz: a browser
    /// navigation that needs a login starts one; anything else is the refusal,
    /// for the audience the request shows. An invalid session cookie is cleared either way.
    async fn refuse(&self, refusal: Refusal, asked: &Asked<'_>, request_id: &RequestId) -> Response<ProxyBody> {
        let audience = if refusal.is_about_a_token() {
            Audience::Api
        } else {
            self.audience(asked.method, asked.target, asked.headers)
        };
        let mut response = match refusal.needs_login() {
            Some(accepted) if audience == Audience::Browser => self.login_redirect(asked, accepted, request_id).await,
            _ => refusal.render(audience, request_id),
        };
        if let Some(challenge) = refusal.needs_login().and_then(|accepted| self.login_challenge(accepted))
            && response.status() == StatusCode::UNAUTHORIZED
        {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Refusal::SessionInvalid(accepted) = refusal {
            self.clear_session_cookie(asked.headers, accepted, &mut response);
        }
        response
    }

    /// Appends the `Set-Cookie`s that clear the request's session cookies
    /// (all their parts) of the `accepted` providers.
    fn clear_session_cookie(
        &self,
        request: &http::HeaderMap,
        accepted: ProviderSet,
        response: &mut Response<ProxyBody>,
    ) {
        for clear in self.sessions.clear_session_cookie(request, accepted) {
            response.headers_mut().append(header::SET_COOKIE, clear);
        }
    }

    /// Browser or API client: the request's signals, or a configured API path
    /// (`target`: the path, with or without its query).
    fn audience(&self, method: &http::Method, target: &str, headers: &http::HeaderMap) -> Audience {
        let path = target.split(['?', '#']).next().unwrap_or(target);
        if self.upstreams.current().authz.is_api_path(path) {
            return Audience::Api;
        }
        audience::classify(method, headers)
    }

    /// [`Self::audience`] of a request the gateway serves.
    fn audience_of(&self, request: &Request<Incoming>) -> Audience {
        self.audience(request.method(), request.uri().path(), request.headers())
    }

    /// Forwards to the upstream `to` names (an `[[upstreams]]` entry, or the default, of the request's routes)
    /// with the caller's identity (none on public routes) and the token the
    /// upstream is configured for; appends `set_cookies` to the answer.
    async fn forward(
        &self,
        mut request: Request<Incoming>,
        connection: &Connection,
        caller: Option<&Caller>,
        to: upstreams::Destination<'_>,
        set_cookies: Vec<HeaderValue>,
        request_id: &RequestId,
    ) -> Response<ProxyBody> {
        let upstreams::Destination { routes, via } = to;
        let identity = caller.map(|caller| upstream_identity(caller, via));
        let identity = identity.as_ref();
        let upstream = routes.target(via);
        let is_ours = |name: &str| self.sessions.is_ours(name);
        let context = ForwardContext {
            tunnels: self.upstreams.tunnels(),
            tunnel_session: request.extensions_mut().remove::<proxy::TunnelSession>(),
            connection_slot: connection.slot.as_ref(),
            forwarded_for: connection.forwarded_for.as_ref(),
            client_scheme: if connection.tls { "https" } else { "http" },
            is_gateway_cookie: &is_ours,
            identity,
            forward_client_authorization: caller.is_none() && routes.authz.forwards_client_authorization_on_public(),
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
                let refusal = match error.status() {
                    StatusCode::GATEWAY_TIMEOUT => Refusal::UpstreamTimeout,
                    status => Refusal::UpstreamUnavailable(status),
                };
                refusal.render(Audience::Browser, request_id)
            }
        };
        self.sessions.drop_upstream_set_cookies(response.headers_mut());
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
            return Some(Refusal::UriTooLong.render(Audience::Api, request_id));
        }
        if request.headers().get_all(header::HOST).iter().nth(1).is_some() {
            return Some(Refusal::SeveralHosts.render(Audience::Api, request_id));
        }
        None
    }

    fn not_ready_reason(&self) -> &'static str {
        if !self.providers.is_ready() {
            if self.providers.handles().len() == 1 {
                "identity provider not loaded"
            } else {
                "no identity provider loaded: none of the configured providers has answered yet"
            }
        } else if self.draining.load(std::sync::atomic::Ordering::Relaxed) {
            "shutting down"
        } else {
            "session store unavailable"
        }
    }
}

/// The identity headers an upstream (`via` an `[[upstreams]]` entry, or the
/// default) gets for `caller`, with the token it is configured for.
fn upstream_identity(caller: &Caller, via: Option<&upstreams::Route>) -> proxy::IdentityHeaders {
    use crate::config::TokenChoice;
    match via {
        None => caller.identity_with_access_token(),
        Some(route) => {
            let authorization = match route.token {
                TokenChoice::Access => Some(caller.access_authorization.clone()),
                TokenChoice::Id => caller.id_token_authorization(),
                TokenChoice::None => None,
            };
            caller.identity_with(route.identity, authorization)
        }
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

/// A refused request as its answer needs it: what the decision was asked about.
#[derive(Debug)]
struct Asked<'a> {
    method: &'a http::Method,
    /// Path and query as requested: where a browser returns after signing in.
    target: &'a str,
    /// The application's host, when known.
    authority: Option<&'a authority::RequestAuthority>,
    headers: &'a http::HeaderMap,
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
fn request_span(method: &http::Method, path: &str, endpoint: Endpoint, request_id: &RequestId) -> tracing::Span {
    let route = endpoint.label();
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
