//! Several upstreams: `[[upstreams]]` entries chosen by the request's host
//! (see `authority`) and normalised path prefix (first match), each with its
//! own rules, extra headers and choice of token; requests no entry matches go
//! to the top-level `upstream`. The entries are validated by `config::upstreams`.

use http::{HeaderName, HeaderValue};

use crate::authz::rules::RuleSet;
use crate::config::{IdentitySelection, TokenChoice, UpstreamConfig};
use crate::proxy::{ProxyError, Upstream, UpstreamSettings};

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
    pub upstream: Upstream,
    pub token: TokenChoice,
    /// Which identity headers this upstream receives.
    pub identity: IdentitySelection,
    pub set_headers: Vec<(HeaderName, HeaderValue)>,
    pub rules: RuleSet,
}

/// The extra upstreams in order.
#[derive(Debug, Default)]
pub(super) struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// Whether any upstream receives the session's ID token (so sessions must keep its header ready).
    pub(super) fn sends_id_token(&self) -> bool {
        self.routes.iter().any(|route| route.token == TokenChoice::Id)
    }

    /// Builds the client of every validated `[[upstreams]]` entry; each of
    /// the `worker_count` serving workers gets its own pools.
    pub(super) fn new(
        entries: &[UpstreamConfig],
        settings: &UpstreamSettings,
        worker_count: crate::workers::WorkerCount,
    ) -> Result<Self, ProxyError> {
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
            });
        }
        Ok(Self { routes })
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
