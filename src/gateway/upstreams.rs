//! Where requests go: the `Upstreams` service owns the top-level `upstream`,
//! the `[[upstreams]]` entries (chosen by the request's host, see `authority`,
//! and normalised path prefix, first match; each with its own rules, extra
//! headers and choice of token), their connection pools, and the open tunnels.
//! Requests no entry matches go to the top-level `upstream`. The entries are
//! validated by `config::upstreams`.

use http::{HeaderName, HeaderValue};

use crate::authz::rules::RuleSet;
use crate::config::{Config, IdentitySelection, TokenChoice};
use crate::proxy::{ProxyError, Tunnels, Upstream, UpstreamSettings};

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

/// The upstreams: the default one, the extra ones in order, and the
/// upgraded connections (WebSockets) still open to any of them.
#[derive(Debug)]
pub(super) struct Upstreams {
    default: Upstream,
    routes: Vec<Route>,
    tunnels: Tunnels,
}

impl Upstreams {
    /// Whether any upstream receives the session's ID token (so sessions must keep its header ready).
    pub(super) fn sends_id_token(&self) -> bool {
        self.routes.iter().any(|route| route.token == TokenChoice::Id)
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
        let entries = &config.upstreams;
        let mut routes = Vec::with_capacity(entries.len());
        for entry in entries {
            routes.push(Route {
                name: entry.name.clone(),
                host: entry.host.clone(),
                path_prefix: entry.path_prefix.clone(),
                case_insensitive: entry.case_insensitive,
                upstream: Upstream::new(entry.url.clone(), settings.clone(), worker_count)?,
                token: entry.token,
                identity: entry.identity,
                set_headers: entry.set_headers.clone(),
                rules: entry.rules.clone(),
                providers: entry.providers,
            });
        }
        let default = Upstream::new(config.upstream.clone(), settings, worker_count)?;
        Ok(Self { default, routes, tunnels: Tunnels::new(config.proxy.tunnels.clone()) })
    }

    /// The upstream a request goes to: `via`'s, or the default one.
    pub(super) fn target<'a>(&'a self, via: Option<&'a Route>) -> &'a Upstream {
        via.map_or(&self.default, |route| &route.upstream)
    }

    /// The upgraded connections (WebSockets) still open.
    pub(super) fn tunnels(&self) -> &Tunnels {
        &self.tunnels
    }

    /// Whether any entry is chosen by host (then requests must name a host
    /// the gateway serves: see [`Upstreams::serves_host`]).
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
