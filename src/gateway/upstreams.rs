//! Where requests go: the `Upstreams` service owns the top-level `upstream`,
//! the `[[upstreams]]` entries (chosen by the request's host, see `authority`,
//! and normalised path prefix, first match; each with its own rules, extra
//! headers and choice of token), their connection pools, and the open tunnels.
//! Requests no entry matches go to the top-level `upstream`. The entries are
//! validated by `config::upstreams`.
//!
//! The routes and the `[authz]` policy are one [`Routes`] snapshot, which a
//! configuration reload replaces whole ([`Upstreams::replace`]). A request
//! takes the snapshot once ([`Upstreams::current`]) and keeps it to its end,
//! so it finishes under the rules and upstream it started with; the pools of
//! an upstream the new configuration still names (same URL) are kept, those of
//! a removed one close once its last request has finished.

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue};

use crate::authz::Policy;
use crate::authz::rules::RuleSet;
use crate::config::{Config, IdentitySelection, TokenChoice};
use crate::proxy::{ProxyError, Tunnels, Upstream, UpstreamSettings};
use crate::workers::WorkerCount;

/// One extra upstream, ready to serve.
#[derive(Debug)]
pub(super) struct Route {
    pub name: String,
    /// Lower-case, without a trailing dot.
    host: Option<String>,
    path_prefix: Option<String>,
    /// Whether this upstream routes paths ignoring ASCII case: its path prefix
    /// and every rule (its own and `[authz]`'s) match its requests that way.
    pub case_insensitive: bool,
    upstream: Upstream,
    pub token: TokenChoice,
    /// Which identity headers this upstream receives.
    pub identity: IdentitySelection,
    pub set_headers: Vec<(HeaderName, HeaderValue)>,
    pub rules: RuleSet,
    /// Whose sessions and tokens this upstream accepts.
    pub providers: crate::authz::ProviderSet,
}

/// The upstreams and rules of one configuration: what a request is decided
/// and forwarded by, from its start to its end.
#[derive(Debug)]
pub(super) struct Routes {
    default: Upstream,
    routes: Vec<Route>,
    /// `[authz]`: the global rules and the settings around them.
    pub authz: Policy,
}

/// Where a decided request goes: `via` an `[[upstreams]]` entry of `routes`
/// (the request's snapshot), or their default upstream.
#[derive(Clone, Copy, Debug)]
pub(super) struct Destination<'r> {
    pub routes: &'r Routes,
    pub via: Option<&'r Route>,
}

/// The current [`Routes`], the settings their pools are built with (which
/// need a restart to change), and the upgraded connections (WebSockets) still
/// open to any upstream.
#[derive(Debug)]
pub(super) struct Upstreams {
    current: ArcSwap<Routes>,
    settings: UpstreamSettings,
    worker_count: WorkerCount,
    /// Whether an upstream received the ID token at start (sessions keep its header ready only then).
    sends_id_token: bool,
    tunnels: Tunnels,
}

impl Upstreams {
    /// Whether any upstream receives the session's ID token (so sessions must keep its header ready).
    pub(super) fn sends_id_token(&self) -> bool {
        self.sends_id_token
    }

    /// Builds the client of the default upstream and of every validated
    /// `[[upstreams]]` entry; each of the serving workers gets its own pools.
    pub(super) fn new(config: &Config) -> Result<Self, ProxyError> {
        let settings = UpstreamSettings {
            connect_timeout: config.proxy.connect_timeout,
            response_timeout: config.proxy.response_timeout,
            pool_idle_timeout: config.proxy.pool_idle_timeout,
            pool_max_idle_per_host: config.proxy.pool_max_idle_per_host,
            tls: config.proxy.tls.clone(),
        };
        // The count the server starts its workers with.
        let worker_count = config.server.worker_threads;
        let routes = Routes::build(config, &settings, worker_count, &[])?;
        Ok(Self {
            sends_id_token: routes.sends_id_token(),
            current: ArcSwap::from_pointee(routes),
            settings,
            worker_count,
            tunnels: Tunnels::new(config.proxy.tunnels.clone()),
        })
    }

    /// The routes and rules now: a request takes them once and keeps them.
    pub(super) fn current(&self) -> arc_swap::Guard<Arc<Routes>> {
        self.current.load()
    }

    /// Builds the routes of a reloaded `config` (reusing the pools of every
    /// upstream whose URL it still names), for [`Upstreams::install`].
    pub(super) fn prepare(&self, config: &Config) -> Result<Routes, ProxyError> {
        let current = self.current.load();
        let mut existing: Vec<Upstream> = current.routes.iter().map(|route| route.upstream.clone()).collect();
        existing.push(current.default.clone());
        Routes::build(config, &self.settings, self.worker_count, &existing)
    }

    /// Makes `routes` the current ones: requests from now on take them; those
    /// in flight keep theirs.
    pub(super) fn install(&self, routes: Routes) {
        self.current.store(Arc::new(routes));
    }

    /// The upgraded connections (WebSockets) still open.
    pub(super) fn tunnels(&self) -> &Tunnels {
        &self.tunnels
    }
}

impl Routes {
    /// The routes of `config`; an upstream with the URL of one in `existing` shares its pools.
    fn build(
        config: &Config,
        settings: &UpstreamSettings,
        worker_count: WorkerCount,
        existing: &[Upstream],
    ) -> Result<Self, ProxyError> {
        let upstream = |url: &url::Url| match existing.iter().find(|upstream| upstream.base() == url) {
            Some(upstream) => Ok(upstream.clone()),
            None => Upstream::new(url.clone(), settings.clone(), worker_count),
        };
        let entries = &config.upstreams;
        let mut routes = Vec::with_capacity(entries.len());
        for entry in entries {
            routes.push(Route {
                name: entry.name.clone(),
                host: entry.host.clone(),
                path_prefix: entry.path_prefix.clone(),
                case_insensitive: entry.case_insensitive,
                upstream: upstream(&entry.url)?,
                token: entry.token,
                identity: entry.identity,
                set_headers: entry.set_headers.clone(),
                rules: entry.rules.clone(),
                providers: entry.providers,
            });
        }
        let default = upstream(&config.upstream)?;
        Ok(Self { default, routes, authz: config.authz.clone() })
    }

    /// Whether any upstream receives the session's ID token.
    pub(super) fn sends_id_token(&self) -> bool {
        self.routes.iter().any(|route| route.token == TokenChoice::Id)
    }

    /// The upstream a request goes to: `via`'s, or the default one.
    pub(super) fn target<'a>(&'a self, via: Option<&'a Route>) -> &'a Upstream {
        via.map_or(&self.default, |route| &route.upstream)
    }

    /// Whether any entry is chosen by host (then requests must name a host
    /// the gateway serves: see [`Routes::serves_host`]).
    pub(super) fn has_host_routes(&self) -> bool {
        self.routes.iter().any(|route| route.host.is_some())
    }

    /// Whether some entry is chosen by `host` (a request's host, without port).
    pub(super) fn serves_host(&self, host: &str) -> bool {
        let host = super::authority::without_trailing_dot(host);
        self.routes.iter().any(|route| route.host.as_deref().is_some_and(|wanted| wanted.eq_ignore_ascii_case(host)))
    }

    /// The first entry matching `host` (the request's host, or for forward-auth
    /// the original request's, without port; `None`: no host) and the
    /// normalised `path`.
    pub(super) fn select(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        if self.routes.is_empty() {
            return None;
        }
        let host = host.map(super::authority::without_trailing_dot);
        self.routes.iter().find(|route| {
            route.host.as_deref().is_none_or(|wanted| host.is_some_and(|host| wanted.eq_ignore_ascii_case(host)))
                && route.path_prefix.as_deref().is_none_or(|prefix| {
                    let head = path.get(..prefix.len());
                    let same = if route.case_insensitive {
                        head.is_some_and(|head| head.eq_ignore_ascii_case(prefix))
                    } else {
                        head == Some(prefix)
                    };
                    same && (path.len() == prefix.len()
                        || prefix.ends_with('/')
                        || path.as_bytes().get(prefix.len()) == Some(&b'/'))
                })
        })
    }
}
