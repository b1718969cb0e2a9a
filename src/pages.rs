//! Responses the gateway writes itself: HTML pages for browsers, JSON for API
//! clients. Every one carries `no-store` and anti-framing headers, and none
//! carries internal error text: only a short public message and the request id.

use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{ProxyBody, full};

/// Whether the caller is a browser (HTML) or a program (JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    Browser,
    Api,
}

/// A gateway-made error response.
#[derive(Debug)]
pub struct ErrorPage<'a> {
    pub status: StatusCode,
    /// Machine-readable code for JSON bodies, e.g. `unauthenticated`.
    pub code: &'a str,
    /// One sentence a person can act on.
    pub message: &'a str,
    pub request_id: &'a str,
}

/// Adds the headers every gateway-made response carries.
pub fn harden(response: &mut Response<ProxyBody>) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    );
}

/// Renders an error for a browser or an API client.
pub fn error(audience: Audience, page: &ErrorPage<'_>) -> Response<ProxyBody> {
    let (content_type, body) = match audience {
        Audience::Api => (
            "application/json",
            serde_json::json!({ "error": page.code, "message": page.message, "request_id": page.request_id })
                .to_string(),
        ),
        Audience::Browser => ("text/html; charset=utf-8", html_page(page)),
    };
    let mut response = Response::new(full(body));
    *response.status_mut() = page.status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    harden(&mut response);
    response
}

/// A plain-text response for the operational endpoints.
pub fn text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    harden(&mut response);
    response
}

/// A `302 Found` to `location`, never cached.
pub fn redirect(location: &str) -> Response<ProxyBody> {
    let mut response = Response::new(crate::body::empty());
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(value) = HeaderValue::try_from(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    harden(&mut response);
    response
}

fn html_page(page: &ErrorPage<'_>) -> String {
    let title = page.status.canonical_reason().unwrap_or("Error");
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}\
h1{{font-size:1.4rem}}code{{background:#f3f3f3;padding:0 .3em}}</style></head>\
<body><h1>{status} {title}</h1><p>{message}</p><p><a href=\"/\">Go to the start page</a></p>\
<p><small>Request id: <code>{request_id}</code></small></p></body></html>",
        status = page.status.as_u16(),
        message = escape_html(page.message),
        request_id = escape_html(page.request_id),
    )
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped_and_hardened() {
        let response = error(
            Audience::Browser,
            &ErrorPage {
                status: StatusCode::BAD_REQUEST,
                code: "x",
                message: "<script>alert(1)</script>",
                request_id: "r\"1",
            },
        );
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert!(
            response.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("frame-ancestors 'none'")
        );
        assert_eq!(escape_html("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
