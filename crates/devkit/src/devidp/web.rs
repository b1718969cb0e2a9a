//! HTTP plumbing shared by the provider's endpoints: response builders,
//! bounded form/query parsing and URL building.

use std::collections::HashMap;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, StatusCode};

use crate::body::{Body, full};

/// A request as the provider receives it.
pub(super) type Request = hyper::Request<Incoming>;
/// A response as the provider sends it.
pub(super) type Response = hyper::Response<Body>;

/// Form bodies are tiny; anything larger is refused rather than buffered.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Request parameters (query or form), each name at most once.
#[derive(Debug, Default)]
pub(super) struct Params(HashMap<String, String>);

impl Params {
    /// Parses `application/x-www-form-urlencoded` text; a repeated parameter is
    /// an error (RFC 6749 §3.1: parameters MUST NOT be included more than once).
    pub(super) fn parse(input: &[u8]) -> Result<Self, String> {
        let mut params = HashMap::new();
        for (name, value) in form_urlencoded::parse(input) {
            if params.insert(name.to_string(), value.into_owned()).is_some() {
                return Err(format!("parameter {name} is repeated"));
            }
        }
        Ok(Self(params))
    }

    /// The query string of a request.
    pub(super) fn from_query(request: &Request) -> Result<Self, String> {
        Self::parse(request.uri().query().unwrap_or("").as_bytes())
    }

    /// Whether `name` was sent at all, even empty.
    pub(super) fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// The value of `name`, if present and not empty.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|value| !value.is_empty())
    }
}

/// Reads a form-encoded request body (bounded), or the error response to send instead.
pub(super) async fn read_form(request: Request) -> Result<(HeaderMap, Params), Response> {
    let (parts, body) = request.into_parts();
    let is_form = parts.headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).is_some_and(|value| {
        value
            .split(';')
            .next()
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    });
    if !is_form {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let bytes: Bytes = match Limited::new(body, MAX_FORM_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Err(oauth_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the request body is too large or was cut short",
            ));
        }
    };
    match Params::parse(&bytes) {
        Ok(params) => Ok((parts.headers, params)),
        Err(description) => Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &description)),
    }
}

/// `base` with `params` appended to its query (keeping any query it already has).
pub(super) fn with_query(base: &str, params: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        query.append_pair(name, value);
    }
    let query = query.finish();
    let (without_fragment, _) = base.split_once('#').unwrap_or((base, ""));
    let separator = if without_fragment.contains('?') { '&' } else { '?' };
    format!("{without_fragment}{separator}{query}")
}

fn response(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response {
    let mut response = hyper::Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// A JSON response; always `Cache-Control: no-store` since many carry tokens.
pub(super) fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    response(status, "application/json", value.to_string())
}

/// A JSON response that caches may keep (discovery, JWKS).
pub(super) fn public_json(value: &serde_json::Value) -> Response {
    let mut response = json(StatusCode::OK, value);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    response
}

/// An HTML page that must not be framed or cached.
pub(super) fn html(status: StatusCode, page: String) -> Response {
    let mut response = response(status, "text/html; charset=utf-8", page);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// A `302 Found` to `location`, or a 500 if `location` is not a valid header value.
pub(super) fn redirect(location: &str) -> Response {
    let Ok(value) = HeaderValue::from_str(location) else {
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the redirect location is not a valid header value",
        );
    };
    let mut response = response(StatusCode::FOUND, "text/plain; charset=utf-8", "");
    response.headers_mut().insert(header::LOCATION, value);
    response
}

/// An RFC 6749 §5.2 error: `{"error": ..., "error_description": ...}`.
pub(super) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json(status, &serde_json::json!({ "error": error, "error_description": description }))
}

/// `invalid_client` (401) with the challenge RFC 6749 §5.2 asks for.
pub(super) fn invalid_client(description: &str) -> Response {
    let mut response = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"portcullis-devidp\""));
    response
}

/// The outage answer used by the `unavailable` fault.
pub(super) fn unavailable() -> Response {
    let mut response = oauth_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "the development provider is simulating an outage",
    );
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The answer of the `back_channel` fault.
#[cfg(feature = "faults")]
pub(super) async fn misbehave(misbehaviour: super::faults::Misbehaviour) -> Response {
    use super::faults::Misbehaviour;
    match misbehaviour {
        Misbehaviour::Hang => std::future::pending().await,
        Misbehaviour::Garbage => response(StatusCode::OK, "application/json", "\u{0}<html>not json{{{"),
        Misbehaviour::Huge => response(StatusCode::OK, "application/json", Bytes::from(vec![b' '; 10 * 1024 * 1024])),
    }
}

/// 404 for paths the provider does not serve.
pub(super) fn not_found() -> Response {
    response(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found\n")
}

/// 405 for a known path with the wrong method.
pub(super) fn method_not_allowed() -> Response {
    response(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "method not allowed\n")
}

/// A random URL-safe string carrying `bytes` random bytes (codes, tokens, ids).
pub(super) fn random_token(bytes: usize) -> String {
    use base64::Engine;
    let mut buffer = vec![0_u8; bytes];
    if aws_lc_rs::rand::fill(&mut buffer).is_err() {
        // aws-lc's RNG does not fail in practice; never hand out a predictable value anyway.
        std::process::abort();
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buffer)
}
