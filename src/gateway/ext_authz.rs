//! Envoy's `ext_authz` over gRPC (`envoy.service.auth.v3.Authorization/Check`):
//! the HTTP twin of `forward_auth.rs`. The original request is read from the
//! `CheckRequest`'s `attributes.request.http` alone — method, scheme, host,
//! path and headers — and asks [`Gateway::decide`] like the proxy path and
//! `/oauth2/auth`. The decision becomes a `CheckResponse`:
//!
//! - allowed (or public): OK, with the identity headers the proxy path would
//!   send (the access token as `Authorization` only with
//!   `ext_authz.pass_access_token`), every client-sent identity header and the
//!   gateway's cookies in `headers_to_remove` (the application's own cookies
//!   are set back as `cookie`), and a renewed session cookie in
//!   `response_headers_to_add`;
//! - refused: the proxy path's answer ([`Gateway::refuse`]: a browser that
//!   needs a login is sent to the provider with its flow cookie, an API client
//!   gets a 401 JSON with `WWW-Authenticate`, a rule a 403, an outage a 503)
//!   carried whole — status, headers, body — in a `DeniedHttpResponse`.
//!
//! The attributes are believed as stated: the listener answers only the peers
//! in `ext_authz.trusted_peers` (see `server::ext_authz`).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use envoy_types::ext_authz::v3::pb::{
    CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue as EnvoyHeader, HeaderValueOption,
    HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use envoy_types::pb::google::rpc;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::BodyExt as _;

use super::authority::RequestAuthority;
use super::decide::{Decision, Identified, RequestFacts};
use super::refusal::Refusal;
use super::{Asked, Connection, Gateway, RequestId, upstream_identity};
use crate::body::ProxyBody;
use crate::owned_headers::is_spoofable;
use crate::pages::Audience;

/// The `google.rpc.Code`s a `CheckResponse` carries (Envoy allows on `OK` only).
mod code {
    pub const OK: i32 = 0;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

/// Forwarding headers Envoy itself sets (and sanitises per its
/// `use_remote_address` / `xff_num_trusted_hops`): left to it, while every
/// other gateway-owned name a client sent is removed.
const SET_BY_ENVOY: [&str; 2] = ["x-forwarded-for", "x-forwarded-proto"];

/// The original request, as the `CheckRequest` states it.
#[derive(Debug)]
struct Original {
    method: Method,
    /// Path only (no query or fragment), still raw: the rules normalise it.
    path: String,
    /// The request target (path and query), where a browser returns after signing in.
    target: String,
    authority: Option<RequestAuthority>,
    headers: HeaderMap,
    /// The client's scheme was https.
    tls: bool,
    /// The downstream client, when Envoy states it.
    client: Option<SocketAddr>,
}

impl Original {
    /// Reads the original request from a `CheckRequest`; `Err` for anything
    /// missing, malformed or not an http(s) request.
    fn of(check: &CheckRequest) -> Result<Self, ()> {
        let attributes = check.attributes.as_ref().ok_or(())?;
        let http = attributes.request.as_ref().and_then(|request| request.http.as_ref()).ok_or(())?;
        let tls = match http.scheme.as_str() {
            "https" => true,
            "http" => false,
            _ => return Err(()),
        };
        let method = Method::from_bytes(http.method.as_bytes()).map_err(|_| ())?;
        if !http.path.starts_with('/') {
            return Err(());
        }
        let path = super::forward_auth::path_of(&http.path)?;
        let target = http.path.split('#').next().unwrap_or("/").to_owned();
        let authority = if http.host.is_empty() {
            None
        } else {
            let value = HeaderValue::from_str(&http.host).map_err(|_| ())?;
            Some(RequestAuthority::from_header(&value).map_err(|_| ())?)
        };
        let client = attributes.source.as_ref().and_then(|source| source.address.as_ref()).and_then(|address| {
            match address.address.as_ref()? {
                envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(socket) => {
                    let ip: IpAddr = socket.address.parse().ok()?;
                    let port = match socket.port_specifier.as_ref()? {
                        envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(port) => {
                            u16::try_from(*port).ok()?
                        }
                        _ => 0,
                    };
                    Some(SocketAddr::new(ip, port))
                }
                _ => None,
            }
        });
        Ok(Self { method, path, target, authority, headers: headers_of(http)?, tls, client })
    }
}

/// The request headers: `header_map` (Envoy's `encode_raw_headers`) when
/// present, else the `headers` map; pseudo-headers are skipped (their
/// meaning is in the other attributes). `Err` for a name or value that no
/// HTTP request can carry.
fn headers_of(http: &HttpRequest) -> Result<HeaderMap, ()> {
    let mut headers = HeaderMap::new();
    let mut add = |key: &str, value: &[u8]| -> Result<(), ()> {
        if key.starts_with(':') {
            return Ok(());
        }
        let name = HeaderName::from_bytes(key.as_bytes()).map_err(|_| ())?;
        headers.append(name, HeaderValue::from_bytes(value).map_err(|_| ())?);
        Ok(())
    };
    match &http.header_map {
        Some(map) if !map.headers.is_empty() => {
            for entry in &map.headers {
                let value = if entry.raw_value.is_empty() { entry.value.as_bytes() } else { &entry.raw_value };
                add(&entry.key, value)?;
            }
        }
        _ => {
            for (key, value) in &http.headers {
                add(key, value.as_bytes())?;
            }
        }
    }
    Ok(headers)
}

impl Gateway {
    /// Answers one `CheckRequest` from `peer` (a trusted proxy). Logs one
    /// access line and counts the answer under the route `ext_authz`.
    pub async fn check_ext_authz(&self, check: &CheckRequest, peer: SocketAddr) -> CheckResponse {
        let started = Instant::now();
        let original = Original::of(check);
        let no_headers = HeaderMap::new();
        let request_id = self.request_ids.take(original.as_ref().map_or(&no_headers, |original| &original.headers));
        let mut user = None;
        let (status, response) = match &original {
            Ok(original) => Box::pin(self.check_original(original, peer, &request_id, &mut user)).await,
            Err(()) => {
                tracing::info!(target: "portcullis::authz", request_id = %request_id, decision = "deny", reason = "malformed_check_request");
                let refusal = Refusal::UnknownOriginal.render(Audience::Api, &request_id);
                (refusal.status(), denied(refusal, &request_id).await)
            }
        };
        self.metrics.request("ext_authz", status);
        tracing::info!(
            target: "portcullis::access",
            request_id = %request_id,
            method = %original.as_ref().map_or("-", |original| original.method.as_str()),
            path = %original.as_ref().map_or("-", |original| original.path.as_str()),
            status = status.as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            user = user.as_deref().unwrap_or("-"),
            "ext_authz check"
        );
        response
    }

    /// Decides `original` and answers it; `status` is the HTTP status the
    /// answer stands for (200 for OK), for the access log and metrics.
    async fn check_original(
        &self,
        original: &Original,
        peer: SocketAddr,
        request_id: &RequestId,
        user: &mut Option<String>,
    ) -> (StatusCode, CheckResponse) {
        let asked = Asked {
            method: &original.method,
            target: &original.target,
            authority: original.authority.as_ref(),
            headers: &original.headers,
        };
        if original.target.len() > self.config.server.max_url_bytes {
            return self.refused(Refusal::UriTooLong, &asked, request_id).await;
        }
        // Host routes are chosen by the application's host: without one, nothing can be routed.
        let host = original.authority.as_ref().map(RequestAuthority::host);
        // One snapshot of the routes and rules for the whole decision (a reload may come meanwhile).
        let routes = self.upstreams.current();
        if host.is_none() && routes.has_host_routes() {
            tracing::info!(target: "portcullis::authz", request_id = %request_id, decision = "deny", reason = "unknown_host");
            return self.refused(Refusal::UnknownOriginal, &asked, request_id).await;
        }
        let facts = RequestFacts { method: &original.method, host, path: &original.path, headers: &original.headers };
        // Each check stands alone: the gRPC connection carries every user's requests.
        let connection = Connection::new(original.client.unwrap_or(peer), original.tls);
        let mut upstream = HeaderMap::new();
        let (set_cookies, client_authorization) = match self.decide(&routes, &facts, &connection, request_id).await {
            Decision::Public { .. } => (Vec::new(), routes.authz.forwards_client_authorization_on_public()),
            Decision::Allowed { caller: Identified { caller, set_cookies, .. }, route } => {
                *user = Some(caller.principal.subject.clone());
                let identity = upstream_identity(&caller, route.upstream);
                let pass_token = self.config.ext_authz.as_ref().is_some_and(|ext_authz| ext_authz.pass_access_token);
                let identity = if pass_token { identity } else { identity.with_authorization(None) };
                identity.apply(&mut upstream);
                (set_cookies, false)
            }
            Decision::Refused(refusal) => return self.refused(refusal, &asked, request_id).await,
        };
        let headers_to_remove = self.headers_to_remove(&original.headers, &mut upstream, client_authorization);
        let ok = OkHttpResponse {
            headers: options(&upstream, HeaderAppendAction::OverwriteIfExistsOrAdd),
            headers_to_remove,
            response_headers_to_add: set_cookies
                .iter()
                .filter_map(|cookie| option(&header::SET_COOKIE, cookie, HeaderAppendAction::AppendIfExistsOrAdd))
                .collect(),
            ..OkHttpResponse::default()
        };
        let response = CheckResponse {
            status: Some(rpc::Status { code: code::OK, ..rpc::Status::default() }),
            http_response: Some(HttpResponse::OkResponse(ok)),
            dynamic_metadata: None,
        };
        (StatusCode::OK, response)
    }

    /// The names the upstream must not see: every gateway-owned header the
    /// client sent (but those set in `upstream` and Envoy's own forwarding
    /// headers), its `Authorization` unless `client_authorization` passes it or
    /// `upstream` replaces it, and its `Cookie` when it held gateway cookies
    /// (then the application's own cookies go into `upstream` instead).
    fn headers_to_remove(
        &self,
        request: &HeaderMap,
        upstream: &mut HeaderMap,
        client_authorization: bool,
    ) -> Vec<String> {
        let mut remove: Vec<String> = request
            .keys()
            .map(HeaderName::as_str)
            .filter(|name| {
                is_spoofable(name.as_bytes()) && !SET_BY_ENVOY.contains(name) && !upstream.contains_key(*name)
            })
            .map(str::to_owned)
            .collect();
        if request.contains_key(header::AUTHORIZATION)
            && !client_authorization
            && !upstream.contains_key(header::AUTHORIZATION)
        {
            remove.push(header::AUTHORIZATION.as_str().to_owned());
        }
        if request.contains_key(header::COOKIE) {
            let mut cookies = HeaderMap::new();
            for value in request.get_all(header::COOKIE) {
                cookies.append(header::COOKIE, value.clone());
            }
            crate::proxy::remove_gateway_cookies(&mut cookies, &|name| self.sessions.is_ours(name));
            let unchanged = cookies.get_all(header::COOKIE).iter().eq(request.get_all(header::COOKIE).iter());
            if !unchanged {
                match cookies.remove(header::COOKIE) {
                    Some(remaining) => {
                        upstream.insert(header::COOKIE, remaining);
                    }
                    None => remove.push(header::COOKIE.as_str().to_owned()),
                }
            }
        }
        remove
    }

    /// A refusal, answered as the proxy path answers it, as a denied `CheckResponse`.
    async fn refused(
        &self,
        refusal: Refusal,
        asked: &Asked<'_>,
        request_id: &RequestId,
    ) -> (StatusCode, CheckResponse) {
        let response = self.refuse(refusal, asked, request_id).await;
        (response.status(), denied(response, request_id).await)
    }
}

/// A gateway-made answer as a denied `CheckResponse`: Envoy sends its status,
/// headers (`Set-Cookie` appended, each one kept) and body to the client.
async fn denied(response: Response<ProxyBody>, request_id: &RequestId) -> CheckResponse {
    let (parts, body) = response.into_parts();
    // The gateway's own pages are complete in memory: collecting cannot fail or wait.
    let body = body.collect().await.map(|collected| collected.to_bytes()).unwrap_or_default();
    let mut headers = Vec::with_capacity(parts.headers.len() + 1);
    for (name, value) in &parts.headers {
        let action = if name == header::SET_COOKIE {
            HeaderAppendAction::AppendIfExistsOrAdd
        } else {
            HeaderAppendAction::OverwriteIfExistsOrAdd
        };
        headers.extend(option(name, value, action));
    }
    headers.extend(option(
        &crate::proxy::headers::X_REQUEST_ID,
        request_id.header_value(),
        HeaderAppendAction::OverwriteIfExistsOrAdd,
    ));
    let code = match parts.status {
        StatusCode::UNAUTHORIZED => code::UNAUTHENTICATED,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => code::UNAVAILABLE,
        status if status.is_server_error() => code::INTERNAL,
        _ => code::PERMISSION_DENIED,
    };
    CheckResponse {
        status: Some(rpc::Status { code, ..rpc::Status::default() }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: i32::from(parts.status.as_u16()) }),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })),
        dynamic_metadata: None,
    }
}

/// Every header of `headers` as an Envoy header option with `action`.
fn options(headers: &HeaderMap, action: HeaderAppendAction) -> Vec<HeaderValueOption> {
    headers.iter().filter_map(|(name, value)| option(name, value, action)).collect()
}

/// One header as an Envoy header option; `None` for a value that is not text
/// (the gateway's own headers always are).
fn option(name: &HeaderName, value: &HeaderValue, action: HeaderAppendAction) -> Option<HeaderValueOption> {
    Some(HeaderValueOption {
        header: Some(EnvoyHeader {
            key: name.as_str().to_owned(),
            value: value.to_str().ok()?.to_owned(),
            raw_value: Vec::new(),
        }),
        append_action: action.into(),
        ..HeaderValueOption::default()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashMap;

    use envoy_types::pb::envoy::config::core::v3::HeaderMap as EnvoyHeaderMap;
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::Request;

    use super::*;

    fn check(http: HttpRequest) -> CheckRequest {
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request { http: Some(http), ..Request::default() }),
                ..AttributeContext::default()
            }),
        }
    }

    fn http(method: &str, scheme: &str, host: &str, path: &str) -> HttpRequest {
        HttpRequest {
            method: method.to_owned(),
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            path: path.to_owned(),
            headers: HashMap::from([
                (":authority".to_owned(), "spoofed.example".to_owned()),
                ("accept".to_owned(), "text/html".to_owned()),
            ]),
            ..HttpRequest::default()
        }
    }

    #[test]
    fn the_original_request_comes_from_the_attributes_only() {
        let original = Original::of(&check(http("POST", "https", "App.example.com:8443", "/a/b?c=d#f"))).unwrap();
        assert_eq!(original.method, Method::POST);
        assert_eq!(original.path, "/a/b");
        assert_eq!(original.target, "/a/b?c=d");
        assert_eq!(original.authority.unwrap().host(), "App.example.com");
        assert!(original.tls);
        assert_eq!(original.headers.len(), 1, "pseudo-headers are not headers");
        assert_eq!(original.headers["accept"], "text/html");
    }

    #[test]
    fn raw_headers_keep_repeated_names() {
        let mut request = http("GET", "http", "app.example.com", "/");
        request.header_map = Some(EnvoyHeaderMap {
            headers: vec![
                EnvoyHeader { key: "x-a".to_owned(), value: String::new(), raw_value: b"1".to_vec() },
                EnvoyHeader { key: "x-a".to_owned(), value: String::new(), raw_value: b"2".to_vec() },
            ],
        });
        let original = Original::of(&check(request)).unwrap();
        assert_eq!(original.headers.get_all("x-a").iter().count(), 2);
        assert!(!original.headers.contains_key("accept"), "the map is not read beside header_map");
    }

    #[test]
    fn anything_malformed_is_refused() {
        assert!(Original::of(&CheckRequest::default()).is_err());
        for (method, scheme, host, path) in [
            ("GET", "ftp", "a.example", "/"),
            ("GET", "", "a.example", "/"),
            ("G T", "http", "a.example", "/"),
            ("GET", "http", "a.example, b.example", "/"),
            ("GET", "http", "user@a.example", "/"),
            ("GET", "http", "a.example", "relative"),
            ("GET", "http", "a.example", "https://b.example/"),
            ("GET", "http", "a.example", ""),
        ] {
            assert!(Original::of(&check(http(method, scheme, host, path))).is_err(), "{method} {scheme} {host} {path}");
        }
        let mut bad_header = http("GET", "http", "a.example", "/");
        bad_header.headers.insert("x-bad".to_owned(), "a\nb".to_owned());
        assert!(Original::of(&check(bad_header)).is_err());
        let mut bad_name = http("GET", "http", "a.example", "/");
        bad_name.headers.insert("bad name".to_owned(), "x".to_owned());
        assert!(Original::of(&check(bad_name)).is_err());
    }
}
