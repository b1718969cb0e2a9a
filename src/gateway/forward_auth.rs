//! `/oauth2/auth`: the forward-auth endpoint for nginx `auth_request`,
//! Traefik `ForwardAuth`, Caddy `forward_auth` and Envoy `ext_authz` (HTTP).
//! Answers 200 with `X-Auth-Request-*` identity headers when the caller may
//! reach the original request, 401 without a caller, 403 otherwise. A 200 to
//! a trusted proxy also carries `X-Auth-Request-Cookie`, the request's cookies
//! without the gateway's, for the proxy to hand the application instead.
//!
//! The original method, host and URI are believed only from peers in
//! `forward_auth.trusted_proxies`, and only from the one convention
//! `forward_auth.original_request` names: `X-Forwarded-Method/-Uri/-Host`,
//! `X-Original-Method/-URL` (ingress-nginx) or, for Envoy, the path after
//! `/oauth2/auth`. Proxies pass their clients' own headers on, so a header of
//! another convention next to the believed one is a 403, as is anything
//! unparseable or repeated. From any other peer the auth request itself is
//! judged — and with `[[upstreams]]` host routes, whose host only a trusted
//! proxy can state, nothing passes.

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, header};
use hyper::body::Incoming;

use super::authority::RequestAuthority;
use super::decide::{Decision, Identified, RequestFacts};
use super::refusal::Refusal;
use super::{Connection, Gateway, LoggedUser, Outcome, RequestId, paths};
use crate::body::{ProxyBody, empty};
use crate::config::OriginalRequest;
use crate::pages::{self, Audience};

/// Headers that state the original request, by convention.
const X_FORWARDED_METHOD: &str = "x-forwarded-method";
const X_FORWARDED_URI: &str = "x-forwarded-uri";
const X_FORWARDED_HOST: &str = "x-forwarded-host";
const X_ORIGINAL_METHOD: &str = "x-original-method";
const X_ORIGINAL_URL: &str = "x-original-url";
/// Believed in no convention, but recognised: its presence is a 403.
const X_ORIGINAL_URI: &str = "x-original-uri";
/// The application's cookies in a 200 answer (see `answer_application_cookies`).
const X_AUTH_REQUEST_COOKIE: HeaderName = HeaderName::from_static("x-auth-request-cookie");

/// The original request a proxy asks about.
#[derive(Debug, PartialEq, Eq)]
struct Original {
    method: Method,
    /// Path only (no query), still raw: the rules normalise it.
    path: String,
    /// Path and query, where a browser returns after signing in.
    target: String,
    /// The application's host as the proxy states it; `None`: unknown.
    host: Option<RequestAuthority>,
}

/// A header's single value as text; `Err` when repeated or not text.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ()> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(());
    }
    value.to_str().map(Some).map_err(|_| ())
}

/// `Err` when any of `names` is present: a header of a convention not believed.
fn absent(headers: &HeaderMap, names: &[&str]) -> Result<(), ()> {
    if names.iter().any(|name| headers.contains_key(*name)) { Err(()) } else { Ok(()) }
}

/// The path and query of a request target or absolute URL.
fn target_of(target: &str) -> Result<&str, ()> {
    if target.starts_with('/') {
        return Ok(target);
    }
    let rest = target.strip_prefix("https://").or_else(|| target.strip_prefix("http://")).ok_or(())?;
    Ok(rest.find('/').and_then(|slash| rest.get(slash..)).unwrap_or("/"))
}

/// The authority of an absolute http(s) URL; `None` for a path.
fn authority_of(target: &str) -> Result<Option<RequestAuthority>, ()> {
    let Some(rest) = target.strip_prefix("https://").or_else(|| target.strip_prefix("http://")) else {
        return Ok(None);
    };
    one_authority(rest.split(['/', '?', '#']).next().unwrap_or_default()).map(Some)
}

/// A stated host: exactly one `host[:port]` (no list a proxy appended to, no
/// user part, no spaces), or it could choose the wrong host route.
fn one_authority(text: &str) -> Result<RequestAuthority, ()> {
    let value = HeaderValue::from_str(text).map_err(|_| ())?;
    RequestAuthority::from_header(&value).map_err(|_| ())
}

/// The path of a request target or absolute URL, without query or fragment.
pub(super) fn path_of(target: &str) -> Result<String, ()> {
    let path = if target.starts_with('/') {
        target
    } else {
        let rest = target.strip_prefix("https://").or_else(|| target.strip_prefix("http://")).ok_or(())?;
        rest.find('/').and_then(|slash| rest.get(slash..)).unwrap_or("/")
    };
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path.get(..end).filter(|path| path.starts_with('/')).map(str::to_owned).ok_or(())
}

/// The method a header states; GET when absent.
fn method_in(headers: &HeaderMap, name: &str) -> Result<Method, ()> {
    match single(headers, name)? {
        Some(text) => Method::from_bytes(text.as_bytes()).map_err(|_| ()),
        None => Ok(Method::GET),
    }
}

/// The original request from a trusted proxy's headers, in the configured
/// convention; `Err` for anything malformed, missing or competing.
fn original_from_headers(request: &Request<Incoming>, convention: OriginalRequest) -> Result<Original, ()> {
    let headers = request.headers();
    let suffix = request.uri().path().strip_prefix(paths::AUTH).ok_or(())?;
    match convention {
        OriginalRequest::XForwarded => {
            absent(headers, &[X_ORIGINAL_METHOD, X_ORIGINAL_URL, X_ORIGINAL_URI])?;
            if !suffix.is_empty() {
                return Err(());
            }
            let target = single(headers, X_FORWARDED_URI)?.ok_or(())?;
            let host = match single(headers, X_FORWARDED_HOST)? {
                Some(host) => Some(one_authority(host)?),
                None => None,
            };
            Ok(Original {
                method: method_in(headers, X_FORWARDED_METHOD)?,
                path: path_of(target)?,
                target: target_of(target)?.to_owned(),
                host,
            })
        }
        OriginalRequest::XOriginal => {
            absent(headers, &[X_FORWARDED_METHOD, X_FORWARDED_URI, X_ORIGINAL_URI])?;
            if !suffix.is_empty() {
                return Err(());
            }
            let target = single(headers, X_ORIGINAL_URL)?.ok_or(())?;
            Ok(Original {
                method: method_in(headers, X_ORIGINAL_METHOD)?,
                path: path_of(target)?,
                target: target_of(target)?.to_owned(),
                host: authority_of(target)?,
            })
        }
        // Envoy's ext_authz (HTTP) appends the original path to the auth path and keeps the method and Host.
        OriginalRequest::Envoy => {
            absent(headers, &[X_FORWARDED_METHOD, X_FORWARDED_URI, X_ORIGINAL_METHOD, X_ORIGINAL_URL, X_ORIGINAL_URI])?;
            if !suffix.starts_with('/') {
                return Err(());
            }
            let query = request.uri().query().map(|query| format!("?{query}")).unwrap_or_default();
            Ok(Original {
                method: request.method().clone(),
                path: suffix.to_owned(),
                target: format!("{suffix}{query}"),
                host: headers.get(header::HOST).map(RequestAuthority::from_header).transpose().map_err(|_| ())?,
            })
        }
    }
}

impl Gateway {
    /// Answers a forward-auth request.
    pub(super) async fn forward_auth(
        &self,
        request: &Request<Incoming>,
        connection: &Connection,
        request_id: &RequestId,
        outcome: &mut Outcome,
    ) -> Response<ProxyBody> {
        let refuse = |refusal: Refusal| {
            let mut response = refusal.render_for_auth_request(request_id);
            if let Some(challenge) = refusal.needs_login().and_then(|accepted| self.login_challenge(accepted))
                && response.status() == http::StatusCode::UNAUTHORIZED
            {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
            }
            response
        };
        let trusted = self.config.forward_auth.trusts(connection.client_addr.ip());
        let original = if trusted {
            match original_from_headers(request, self.config.forward_auth.original_request) {
                Ok(original) => original,
                Err(()) => {
                    tracing::info!(target: "portcullis::authz", request_id = %request_id, decision = "deny", reason = "malformed_forwarded_headers");
                    return refuse(Refusal::UnknownOriginal);
                }
            }
        } else {
            // An untrusted peer's X-Forwarded-* are ignored: the auth request itself is judged.
            Original {
                method: request.method().clone(),
                path: paths::AUTH.to_owned(),
                target: "/".to_owned(),
                host: None,
            }
        };
        // Host routes are chosen by the application's host, which only a trusted proxy states.
        let host = original.host.as_ref().map(RequestAuthority::host);
        // One snapshot of the routes and rules for the whole decision (a reload may come meanwhile).
        let routes = self.upstreams.current();
        if host.is_none() && routes.has_host_routes() {
            tracing::info!(target: "portcullis::authz", request_id = %request_id, decision = "deny", reason = "unknown_host");
            return refuse(Refusal::UnknownOriginal);
        }
        let facts = RequestFacts { method: &original.method, host, path: &original.path, headers: request.headers() };
        // The one match from a decision to what auth_request proxies understand.
        let (identity, set_cookies) = match self.decide(&routes, &facts, connection, request_id).await {
            Decision::Public { .. } => (None, Vec::new()),
            Decision::Allowed { caller: Identified { caller, set_cookies, .. }, .. } => {
                outcome.user = Some(LoggedUser::Caller(std::sync::Arc::clone(&caller.principal)));
                (Some(caller.identity_with_access_token()), set_cookies)
            }
            Decision::Refused(refusal)
                if refusal.needs_login().is_some()
                    && self.config.forward_auth.redirect_browsers
                    && super::audience::classify(&original.method, request.headers()) == Audience::Browser =>
            {
                let return_to = self.redirects.sanitise(&original.target);
                let mut query = form_urlencoded::Serializer::new(String::new());
                // With several providers configured, a page that accepts only one goes straight to it
                // (a single provider keeps the plain `?rd=`); several: `/oauth2/start` shows the chooser.
                if self.config.providers.len() > 1
                    && let Some(accepted) = refusal.needs_login()
                    && let Some((_, provider)) = self.providers.accepted(accepted).next()
                    && accepted.single(self.config.providers.len()).is_some()
                {
                    query.append_pair("provider", &provider.config.id);
                }
                let query = query.append_pair("rd", &return_to).finish();
                return pages::redirect(&self.sign_in_url(original.host.as_ref(), &query));
            }
            Decision::Refused(refusal) => return refuse(refusal),
        };
        let mut response = Response::new(empty());
        if let Some(identity) = identity {
            identity.apply_auth_request(response.headers_mut(), trusted && self.config.forward_auth.pass_access_token);
        }
        if trusted {
            self.answer_application_cookies(request.headers(), response.headers_mut());
        }
        pages::harden(&mut response);
        for cookie in set_cookies {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        response
    }

    /// The sign-in URL: absolute on the application's host when the trusted
    /// proxy states it (with the public URL's scheme), because Traefik resolves
    /// a relative `Location` against the auth service's own address and would
    /// send browsers to an internal name; a path when the host is unknown.
    fn sign_in_url(&self, host: Option<&RequestAuthority>, query: &str) -> String {
        let scheme = self.config.public_url.scheme();
        match host.and_then(|host| host.header_value().to_str().ok()) {
            Some(authority) => format!("{scheme}://{authority}{}?{query}", paths::START),
            None => format!("{}?{query}", paths::START),
        }
    }

    /// Answers `X-Auth-Request-Cookie`: the request's cookies without the
    /// gateway's own, for the proxy to send to the application in place of
    /// `Cookie` (proxies cannot remove single cookies). Absent when nothing is left.
    fn answer_application_cookies(&self, request: &HeaderMap, answer: &mut HeaderMap) {
        let mut cookies = HeaderMap::new();
        for value in request.get_all(header::COOKIE) {
            cookies.append(header::COOKIE, value.clone());
        }
        crate::proxy::remove_gateway_cookies(&mut cookies, &|name| self.sessions.is_ours(name));
        // At most one is left: remove_gateway_cookies joins several into one.
        if let Some(mut remaining) = cookies.remove(header::COOKIE) {
            remaining.set_sensitive(true);
            answer.insert(X_AUTH_REQUEST_COOKIE, remaining);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_targets_and_urls() {
        assert_eq!(path_of("/a/b?x=1").unwrap(), "/a/b");
        assert_eq!(path_of("https://app.example.com/a#f").unwrap(), "/a");
        assert_eq!(path_of("http://app.example.com").unwrap(), "/");
        assert!(path_of("ftp://x/").is_err());
        assert!(path_of("a/b").is_err());
    }

    #[test]
    fn authorities_of_absolute_urls() {
        assert_eq!(
            authority_of("https://App.example.com:8443/a?b").unwrap().unwrap().header_value(),
            "App.example.com:8443"
        );
        assert_eq!(authority_of("http://app.example.com").unwrap().unwrap().header_value(), "app.example.com");
        assert!(authority_of("/a/b").unwrap().is_none());
        assert!(authority_of("https://user@app.example.com/").is_err());
        assert!(authority_of("https:///a").is_err());
        assert_eq!(one_authority("[::1]:8443").unwrap().header_value(), "[::1]:8443");
        for not_one in ["a.example, b.example", "a.example b", "", "a.example/x", "a@b.example"] {
            assert!(one_authority(not_one).is_err(), "{not_one:?}");
        }
    }
}
