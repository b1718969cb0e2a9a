//! Several upstreams: `[[upstreams]]` entries chosen by the request's host
//! (see `authority`) and normalised path prefix (first match), each with its
//! own rules, extra headers and choice of token; requests no entry matches go
//! to the top-level `upstream`.

use http::{HeaderName, HeaderValue, header};

use crate::authz::rules::RuleSet;
use crate::authz::settings::{RawUpstream, TokenChoice};
use crate::config::ConfigError;
use crate::proxy::{IdentitySelection, Upstream, UpstreamSettings};

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

fn invalid(problem: String) -> ConfigError {
    ConfigError::Invalid { key: "upstreams", problem }
}

impl Routes {
    /// Whether any upstream receives the session's ID token (so sessions must keep its header ready).
    pub(super) fn sends_id_token(&self) -> bool {
        self.routes.iter().any(|route| route.token == TokenChoice::Id)
    }

    /// Builds every `[[upstreams]]` entry; errors name the key and the entry.
    /// `case_insensitive` is `authz.case_insensitive`, the entries' default;
    /// each of the `worker_count` serving workers gets its own pools.
    pub(super) fn new(
        raw: &[RawUpstream],
        case_insensitive: bool,
        settings: &UpstreamSettings,
        worker_count: crate::workers::WorkerCount,
    ) -> Result<Self, ConfigError> {
        let mut routes = Vec::with_capacity(raw.len());
        for (index, entry) in raw.iter().enumerate() {
            let name = entry.name.clone().unwrap_or_else(|| format!("upstreams[{index}]"));
            let at = |problem: &str| invalid(format!("{name:?}: {problem}"));
            let url = url::Url::parse(&entry.url).map_err(|_| at("url must be an absolute http(s) URL"))?;
            let upstream =
                Upstream::new(url, settings.clone(), worker_count).map_err(|error| at(&error.to_string()))?;
            if entry.host.is_none() && entry.path_prefix.is_none() {
                return Err(at("needs host or path_prefix"));
            }
            if entry.path_prefix.as_ref().is_some_and(|prefix| !prefix.starts_with('/')) {
                return Err(at("path_prefix must start with /"));
            }
            let host = match &entry.host {
                None => None,
                Some(host) => Some(
                    super::authority::configured_host(host)
                        .ok_or_else(|| at("host must be a host name or IP address, without port"))?,
                ),
            };
            let token = match entry.token.as_deref().unwrap_or("access") {
                "access" => TokenChoice::Access,
                "id" => TokenChoice::Id,
                "none" => TokenChoice::None,
                _ => return Err(at("token must be \"access\", \"id\" or \"none\"")),
            };
            let identity = match &entry.identity_headers {
                None => IdentitySelection::ALL,
                Some(names) => IdentitySelection::from_names(names.iter().map(String::as_str)).map_err(|unknown| {
                    at(&format!(
                        "identity_headers: {unknown:?} is not one of \"user\", \"email\", \"groups\", \"preferred_username\""
                    ))
                })?,
            };
            let mut set_headers = Vec::with_capacity(entry.set_headers.len());
            for (header_name, value) in &entry.set_headers {
                let header_name = HeaderName::from_bytes(header_name.as_bytes())
                    .map_err(|_| at(&format!("set_headers: {header_name:?} is not a header name")))?;
                if crate::proxy::is_spoofable(header_name.as_str().as_bytes()) || header_name == header::AUTHORIZATION {
                    return Err(at(&format!("set_headers: {header_name} is set by the gateway")));
                }
                let value =
                    HeaderValue::from_str(value).map_err(|_| at("set_headers: a value is not a header value"))?;
                set_headers.push((header_name, value));
            }
            let rules = RuleSet::compile(&entry.rules, "upstreams")?;
            routes.push(Route {
                name,
                host,
                path_prefix: entry.path_prefix.clone(),
                case_insensitive: entry.case_insensitive.unwrap_or(case_insensitive),
                upstream,
                token,
                identity,
                set_headers,
                rules,
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
