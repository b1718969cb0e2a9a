//! `/oauth2/auth`: the forward-auth endpoint for nginx `auth_request`,
//! Traefik `ForwardAuth`, Caddy `forward_auth` and Envoy `ext_authz` (HTTP).
//! Answers 200 with `X-Auth-Request-*` identity headers when the caller may
//! reach the original request, 401 without a caller, 403 otherwise.
//!
//! The original method, host and URI are read from `X-Forwarded-Method`,
//! `X-Forwarded-Host`, `X-Forwarded-Uri` / `X-Original-URL` (or, for Envoy,
//! the path after `/oauth2/auth`) only when the peer is in
//! `forward_auth.trusted_proxies`; from anyone else those headers are ignored
//! and the auth request itself is judged. Anything unparseable is a 403.

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::bearer::{self, BearerOutcome};
use super::{Connection, Gateway, LoggedUser, Outcome, RecentSession, RequestId, paths};
use crate::body::{ProxyBody, empty};
use crate::pages::{self, Audience};

/// The original request a proxy asks about.
#[derive(Debug, PartialEq, Eq)]
struct Original {
    method: Method,
    /// Path only (no query), still raw: the rules normalise it.
    path: String,
    /// Path and query, where a browser returns after signing in.
    target: String,
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

/// The path and query of a request target or absolute URL.
fn target_of(target: &str) -> Result<&str, ()> {
    if target.starts_with('/') {
        return Ok(target);
    }
    let rest = target.strip_prefix("https://").or_else(|| target.strip_prefix("http://")).ok_or(())?;
    Ok(rest.find('/').and_then(|slash| rest.get(slash..)).unwrap_or("/"))
}

/// The path of a request target or absolute URL, without query or fragment.
fn path_of(target: &str) -> Result<String, ()> {
    let path = if target.starts_with('/') {
        target
    } else {
        let rest = target.strip_prefix("https://").or_else(|| target.strip_prefix("http://")).ok_or(())?;
        rest.find('/').and_then(|slash| rest.get(slash..)).unwrap_or("/")
    };
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path.get(..end).filter(|path| path.starts_with('/')).map(str::to_owned).ok_or(())
}

/// The original request from a trusted proxy's headers; `Err` for anything malformed.
fn original_from_headers(request: &Request<Incoming>) -> Result<Original, ()> {
    let headers = request.headers();
    let method = match single(headers, "x-forwarded-method")?.or(single(headers, "x-original-method")?) {
        Some(text) => Method::from_bytes(text.as_bytes()).map_err(|_| ())?,
        None => Method::GET,
    };
    let uri = single(headers, "x-forwarded-uri")?
        .or(single(headers, "x-original-url")?)
        .or(single(headers, "x-original-uri")?);
    match uri {
        Some(target) => Ok(Original { method, path: path_of(target)?, target: target_of(target)?.to_owned() }),
        // Envoy ext_authz (HTTP) appends the original path to the auth path and keeps the method.
        None => match request.uri().path().strip_prefix(paths::AUTH) {
            Some(rest) if rest.starts_with('/') => {
                let query = request.uri().query().map(|query| format!("?{query}")).unwrap_or_default();
                Ok(Original {
                    method: request.method().clone(),
                    path: rest.to_owned(),
                    target: format!("{rest}{query}"),
                })
            }
            _ => Err(()),
        },
    }
}

impl Gateway {
    /// Answers a forward-auth request.
    pub(super) async fn forward_auth(
        &self,
        request: &Request<Incoming>,
        connection: &Connection,
        recent: &RecentSession,
        request_id: &RequestId,
        outcome: &mut Outcome,
    ) -> Response<ProxyBody> {
        let deny = |status: StatusCode, code: &str, message: &str| {
            let mut response = self.fail(Audience::Api, status, code, message, request_id);
            if status == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"portcullis\""));
            }
            response
        };
        let original = if self.config.forward_auth.trusts(connection.client_addr.ip()) {
            match original_from_headers(request) {
                Ok(original) => original,
                Err(()) => {
                    tracing::info!(target: "portcullis::authz", request_id = %request_id, decision = "deny", reason = "malformed_forwarded_headers");
                    return deny(StatusCode::FORBIDDEN, "forbidden", "The original request could not be determined.");
                }
            }
        } else {
            // An untrusted peer's X-Forwarded-* are ignored: the auth request itself is judged.
            Original { method: request.method().clone(), path: paths::AUTH.to_owned(), target: "/".to_owned() }
        };
        let Some(target) = self.target(&original.method, request.headers(), &original.path) else {
            tracing::info!(target: "portcullis::authz", request_id = %request_id, decision = "deny", reason = "ambiguous_path");
            return deny(StatusCode::FORBIDDEN, "ambiguous_path", "The original request path is ambiguous.");
        };
        if target.is_public() {
            let mut response = Response::new(empty());
            pages::harden(&mut response);
            return response;
        }

        let authenticated = self.authenticate(request.headers(), recent).await;
        let caller = match authenticated.session {
            Some(session) => session.caller,
            None if authenticated.provider_unavailable => {
                return deny(StatusCode::UNAUTHORIZED, "idp_unavailable", "The session cannot be renewed right now.");
            }
            None => match self.authenticate_bearer(request.headers(), connection).await {
                BearerOutcome::Valid(caller) => caller,
                // auth_request proxies understand only 2xx, 401 and 403: refuse as for a bad token.
                BearerOutcome::Throttled => {
                    let mut response =
                        deny(StatusCode::UNAUTHORIZED, "too_many_failures", "Too many failed attempts; wait a minute.");
                    bearer::challenge_invalid_token(response.headers_mut());
                    return response;
                }
                BearerOutcome::Invalid(reason) => {
                    tracing::info!(target: "portcullis::auth", request_id = %request_id, event = "bearer_refused", reason);
                    let mut response =
                        deny(StatusCode::UNAUTHORIZED, "invalid_token", "The bearer token is not valid here.");
                    bearer::challenge_invalid_token(response.headers_mut());
                    return response;
                }
                BearerOutcome::Absent | BearerOutcome::Unavailable => {
                    let browser = super::audience::classify(&original.method, request.headers()) == Audience::Browser;
                    if self.config.forward_auth.redirect_browsers && browser {
                        let return_to = self.redirects.sanitise(&original.target);
                        let query =
                            form_urlencoded::Serializer::new(String::new()).append_pair("rd", &return_to).finish();
                        return pages::redirect(&format!("{}?{query}", paths::START));
                    }
                    return deny(StatusCode::UNAUTHORIZED, "unauthenticated", "Authentication is required.");
                }
            },
        };
        outcome.user = Some(LoggedUser::Caller(std::sync::Arc::clone(&caller.principal)));
        if let Some(denied) = self.authorize(&target, &caller.principal, || Audience::Api, request_id) {
            return denied;
        }
        let mut response = Response::new(empty());
        *response.status_mut() = StatusCode::OK;
        caller
            .identity_with_access_token()
            .apply_auth_request(response.headers_mut(), self.config.forward_auth.pass_access_token);
        pages::harden(&mut response);
        for cookie in authenticated.set_cookies {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths_of_targets_and_urls() {
        assert_eq!(path_of("/a/b?x=1").unwrap(), "/a/b");
        assert_eq!(path_of("https://app.example.com/a#f").unwrap(), "/a");
        assert_eq!(path_of("http://app.example.com").unwrap(), "/");
        assert!(path_of("ftp://x/").is_err());
        assert!(path_of("a/b").is_err());
    }
}
