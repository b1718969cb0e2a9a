//! Pure header hygiene for forwarded requests and responses.
//!
//! Every function here works on a `HeaderMap` with static name lists, allocates
//! only when something actually has to change, and never looks at a value more
//! than it must. The order in which `forward` applies them matters: hop-by-hop
//! first, then client-sent identity, then gateway cookies, then `X-Forwarded-*`.

use std::io::Write as _;
use std::net::IpAddr;

use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CONNECTION, COOKIE, HOST, HeaderMap, HeaderName, HeaderValue, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};

use crate::owned_headers::is_spoofable;

/// `Keep-Alive`, a hop-by-hop header without an `http` constant.
pub const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
/// `Proxy-Connection`, the non-standard predecessor of `Connection`.
pub const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// `X-Forwarded-For`: the client IP as the gateway saw it.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`: the scheme the client used to reach the gateway.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`: the host the client asked the gateway for.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `X-Request-Id`: the gateway's request correlation id.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Hop-by-hop headers a proxy must not forward (RFC 9110 §7.6.1, plus the
/// legacy `Keep-Alive`/`Proxy-Connection` of RFC 7230 §A.1.2 and
/// `Proxy-Authorization`, which is addressed to this hop only, RFC 9110 §11.7.2).
pub static HOP_BY_HOP: [HeaderName; 8] =
    [CONNECTION, KEEP_ALIVE, PROXY_CONNECTION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE, PROXY_AUTHORIZATION];

/// Whether any `Connection` header lists `token` (case-insensitive, RFC 9110 §7.6.1).
pub fn connection_has_token(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .any(|value| connection_tokens(value).any(|listed| listed.eq_ignore_ascii_case(token.as_bytes())))
}

/// The `Upgrade` value of an upgrade request (`Connection: upgrade` plus `Upgrade`), if any.
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let protocol = headers.get(UPGRADE)?;
    connection_has_token(headers, "upgrade").then(|| protocol.clone())
}

/// Removes hop-by-hop headers and every header nominated in `Connection` (RFC 9110 §7.6.1).
///
/// `Host` is never removed even if nominated: it identifies the target, not the hop.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Allocates only when a client nominates something beyond the usual tokens.
    let mut nominated: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(CONNECTION) {
        for token in connection_tokens(value) {
            if token.is_empty()
                || token.eq_ignore_ascii_case(b"close")
                || token.eq_ignore_ascii_case(HOST.as_str().as_bytes())
                || HOP_BY_HOP.iter().any(|name| token.eq_ignore_ascii_case(name.as_str().as_bytes()))
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token) {
                nominated.push(name);
            }
        }
    }
    // Only the names present are removed: each removal hashes its name, and a
    // message has a few headers to scan against eight fixed names.
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(index) = hop_by_hop_index(name) {
            present |= 1 << index;
        }
    }
    for (index, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << index) != 0 {
            headers.remove(name);
        }
    }
    for name in nominated {
        headers.remove(name);
    }
}

/// The position of `name` in [`HOP_BY_HOP`]: one match on the lowercase text
/// (decided mostly by its length) instead of eight name comparisons.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    let index = match name.as_str() {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "te" => 3,
        "trailer" => 4,
        "transfer-encoding" => 5,
        "upgrade" => 6,
        "proxy-authorization" => 7,
        _ => return None,
    };
    Some(index)
}

/// Removes every client-sent identity header, and `Authorization` when `strip_authorization`.
///
/// Names match case-insensitively and with `_` in place of `-`, so
/// `X-AUTH_REQUEST_EMAIL` and `x_forwarded_user` are caught too.
pub fn remove_spoofed_identity(headers: &mut HeaderMap, strip_authorization: bool) {
    let mut spoofed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        if is_spoofable(name.as_str().as_bytes()) {
            spoofed.push(name.clone());
        }
    }
    for name in spoofed {
        headers.remove(name);
    }
    if strip_authorization {
        headers.remove(AUTHORIZATION);
    }
}

/// Removes the gateway's own cookies from every `Cookie` header.
///
/// Several `Cookie` headers (as HTTP/2 sends them) are joined into one with
/// "; " (RFC 9113 §8.2.3, RFC 6265 §5.4); the header is dropped if nothing is
/// left. Headers with no gateway cookie and a single `Cookie` line are untouched.
pub fn remove_gateway_cookies(headers: &mut HeaderMap, is_gateway_cookie: &dyn Fn(&str) -> bool) {
    let mut count = 0usize;
    let mut total_len = 0usize;
    let mut has_gateway_cookie = false;
    let mut has_other_cookie = false;
    for value in headers.get_all(COOKIE) {
        count += 1;
        total_len += value.len() + 2;
        for pair in cookie_pairs(value).filter(|pair| !pair.is_empty()) {
            if is_gateway_pair(pair, is_gateway_cookie) {
                has_gateway_cookie = true;
            } else {
                has_other_cookie = true;
            }
        }
    }
    if count <= 1 && !has_gateway_cookie {
        return;
    }
    if !has_other_cookie {
        // Only the gateway's own (the usual case behind it): nothing to rebuild.
        headers.remove(COOKIE);
        return;
    }
    let mut joined = Vec::with_capacity(total_len);
    for value in headers.get_all(COOKIE) {
        for pair in cookie_pairs(value) {
            if pair.is_empty() || is_gateway_pair(pair, is_gateway_cookie) {
                continue;
            }
            if !joined.is_empty() {
                joined.extend_from_slice(b"; ");
            }
            joined.extend_from_slice(pair);
        }
    }
    headers.remove(COOKIE);
    if joined.is_empty() {
        return;
    }
    // The bytes came from valid header values joined by "; ", so this cannot fail;
    // if it somehow did, dropping the cookies fails closed.
    if let Ok(mut value) = HeaderValue::from_maybe_shared(Bytes::from(joined)) {
        value.set_sensitive(true);
        headers.insert(COOKIE, value);
    }
}

/// Trimmed `name=value` pairs of one `Cookie` header value (RFC 6265 §4.2.1).
fn cookie_pairs(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    split_cookie_pairs(value.as_bytes()).map(<[u8]>::trim_ascii)
}

/// The `;`-separated pieces of a `Cookie` header value, untrimmed.
pub(crate) fn split_cookie_pairs(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    cookie_pair_ranges(bytes).filter_map(|range| bytes.get(range))
}

/// Where the `;`-separated pieces of a `Cookie` value are.
///
/// A session cookie makes the value ~5 KB and it is scanned twice per
/// request, so `;` is found with SIMD `memchr`, and nothing is validated here
/// (`str::split` first needs a UTF-8 check of the whole value).
fn cookie_pair_ranges(bytes: &[u8]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let from = start?;
        let rest = bytes.get(from..)?;
        match memchr::memchr(b';', rest) {
            Some(at) => {
                start = Some(from + at + 1);
                Some(from..from + at)
            }
            None => {
                start = None;
                Some(from..bytes.len())
            }
        }
    })
}

/// Whether a `name=value` pair's name is one the gateway owns.
fn is_gateway_pair(pair: &[u8], is_gateway_cookie: &dyn Fn(&str) -> bool) -> bool {
    let name = match pair.iter().position(|b| *b == b'=') {
        Some(eq) => pair.get(..eq).unwrap_or_default(),
        None => pair,
    };
    // A name that is not UTF-8 cannot be one the gateway set.
    std::str::from_utf8(name.trim_ascii()).is_ok_and(is_gateway_cookie)
}

/// Comma-separated tokens of a `Connection` value, trimmed.
fn connection_tokens(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    value.as_bytes().split(|b| *b == b',').map(<[u8]>::trim_ascii)
}

/// What the gateway knows about how the client reached it.
#[derive(Debug)]
pub struct Forwarding<'a> {
    /// The client's IP address as the header value ([`ip_header_value`]); `None` removes the header.
    pub forwarded_for: Option<&'a HeaderValue>,
    /// `http` or `https`.
    pub client_scheme: &'a str,
    /// The original `Host` (or HTTP/2 `:authority`), if the client sent one.
    pub original_host: Option<HeaderValue>,
    /// The gateway's request id, if any.
    pub request_id: Option<&'a HeaderValue>,
}

/// The most headers [`set_forwarding`] adds: `X-Forwarded-For/-Proto/-Host`,
/// `X-Request-Id`, and `Host` when only HTTP/2's `:authority` carried it.
pub const FORWARDING_HEADERS: usize = 5;

/// Sets (replacing any client value) `X-Forwarded-For/-Proto/-Host`, keeps the
/// original `Host` for the upstream, and sets `X-Request-Id` when given.
pub fn set_forwarding(headers: &mut HeaderMap, forwarding: Forwarding<'_>) {
    match forwarding.forwarded_for {
        Some(ip) => headers.insert(X_FORWARDED_FOR, ip.clone()),
        None => headers.remove(X_FORWARDED_FOR),
    };
    match scheme_header_value(forwarding.client_scheme) {
        Some(proto) => headers.insert(X_FORWARDED_PROTO, proto),
        None => headers.remove(X_FORWARDED_PROTO),
    };
    match forwarding.original_host {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST, host.clone());
            // HTTP/2 carries the host in `:authority` only; give the upstream a Host.
            headers.entry(HOST).or_insert(host);
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
    if let Some(request_id) = forwarding.request_id {
        headers.insert(X_REQUEST_ID, request_id.clone());
    }
}

/// The client IP as an `X-Forwarded-For` value, IPv4-mapped IPv6 shown as plain IPv4.
pub fn ip_header_value(ip: IpAddr) -> Option<HeaderValue> {
    // Formats on the stack: the longest IPv6 text form is 45 bytes.
    let mut buffer = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    write!(cursor, "{}", ip.to_canonical()).ok()?;
    let len = usize::try_from(cursor.position()).ok()?;
    HeaderValue::from_bytes(buffer.get(..len)?).ok()
}

/// `http`/`https` as static values; anything else parsed once.
fn scheme_header_value(scheme: &str) -> Option<HeaderValue> {
    match scheme {
        "https" => Some(HeaderValue::from_static("https")),
        "http" => Some(HeaderValue::from_static("http")),
        other => HeaderValue::from_str(other).ok(),
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn hop_by_hop_and_nominated_headers_are_removed() {
        let mut headers = map(&[
            ("connection", "keep-alive, X-Secret-Hop , close"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-t"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic abc"),
            ("x-secret-hop", "1"),
            ("x-other", "2"),
            ("x-kept", "3"),
            ("host", "example.test"),
        ]);
        remove_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["host", "x-kept"]);
    }

    #[test]
    fn hop_by_hop_index_matches_the_list_and_nothing_else() {
        for (index, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(index), "{name}");
        }
        for other in
            [HOST, COOKIE, X_FORWARDED_FOR, HeaderName::from_static("connections"), HeaderName::from_static("t")]
        {
            assert_eq!(hop_by_hop_index(&other), None, "{other}");
        }
    }

    #[test]
    fn hop_by_hop_headers_are_removed_whichever_few_are_present() {
        for (index, hop) in HOP_BY_HOP.iter().enumerate() {
            let mut headers = map(&[("x-before", "1"), (&hop.as_str().to_ascii_uppercase(), "v"), ("x-after", "2")]);
            if index % 2 == 0 {
                headers.append(hop.clone(), HeaderValue::from_static("again"));
            }
            remove_hop_by_hop(&mut headers);
            let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
            left.sort_unstable();
            assert_eq!(left, ["x-after", "x-before"], "{hop}");
        }
    }

    #[test]
    fn host_cannot_be_nominated_away() {
        let mut headers = map(&[("connection", "host"), ("host", "a.test")]);
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.get(HOST).unwrap(), "a.test");
    }

    #[test]
    fn upgrade_is_detected_only_with_connection_upgrade() {
        let upgrade = map(&[("connection", "keep-alive, Upgrade"), ("upgrade", "websocket")]);
        assert_eq!(upgrade_protocol(&upgrade).unwrap(), "websocket");
        let no_connection = map(&[("upgrade", "websocket")]);
        assert!(upgrade_protocol(&no_connection).is_none());
        let no_upgrade = map(&[("connection", "upgrade")]);
        assert!(upgrade_protocol(&no_upgrade).is_none());
    }

    #[test]
    fn spoofed_identity_and_authorization_are_removed() {
        let mut headers = map(&[
            ("x_forwarded_user", "evil"),
            ("x-auth-request-groups", "admins"),
            ("authorization", "Basic evil"),
            ("accept", "*/*"),
        ]);
        remove_spoofed_identity(&mut headers, false);
        assert!(headers.get("x_forwarded_user").is_none());
        assert!(headers.get("x-auth-request-groups").is_none());
        assert!(headers.get(AUTHORIZATION).is_some());
        remove_spoofed_identity(&mut headers, true);
        assert!(headers.get(AUTHORIZATION).is_none());
        assert_eq!(headers.len(), 1);
    }

    fn is_gateway(name: &str) -> bool {
        name.starts_with("_pc_")
    }

    #[test]
    fn gateway_cookies_are_removed_and_others_joined() {
        let mut headers =
            map(&[("cookie", "a=1; _pc_session=secret;b=2"), ("cookie", "_pc_csrf=x"), ("cookie", " c=3 ")]);
        remove_gateway_cookies(&mut headers, &is_gateway);
        let cookies: Vec<_> = headers.get_all(COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1; b=2; c=3"]);
    }

    #[test]
    fn cookie_header_is_dropped_when_only_gateway_cookies() {
        let mut headers = map(&[("cookie", "_pc_session=secret"), ("cookie", "_pc_x=1")]);
        remove_gateway_cookies(&mut headers, &is_gateway);
        assert!(headers.get(COOKIE).is_none());
    }

    #[test]
    fn a_single_header_of_gateway_cookies_and_empty_pairs_is_dropped() {
        let mut headers = map(&[("cookie", " ; _pc_session=secret;; _pc_session_1=more ;")]);
        remove_gateway_cookies(&mut headers, &is_gateway);
        assert!(headers.get(COOKIE).is_none());
    }

    #[test]
    fn cookie_without_gateway_cookies_is_untouched() {
        let mut headers = map(&[("cookie", "a=1;b=2")]);
        remove_gateway_cookies(&mut headers, &is_gateway);
        assert_eq!(headers.get(COOKIE).unwrap(), "a=1;b=2");
    }

    #[test]
    fn forwarding_headers_replace_client_values() {
        let mut headers = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "gopher"),
            ("x-forwarded-host", "evil.test"),
            ("host", "app.test"),
        ]);
        let request_id = HeaderValue::from_static("req-1");
        let original_host = headers.get(HOST).cloned();
        set_forwarding(
            &mut headers,
            Forwarding {
                forwarded_for: ip_header_value("::ffff:10.0.0.7".parse().unwrap()).as_ref(),
                client_scheme: "https",
                original_host,
                request_id: Some(&request_id),
            },
        );
        assert_eq!(headers.get(X_FORWARDED_FOR).unwrap(), "10.0.0.7");
        assert_eq!(headers.get(X_FORWARDED_PROTO).unwrap(), "https");
        assert_eq!(headers.get(X_FORWARDED_HOST).unwrap(), "app.test");
        assert_eq!(headers.get(HOST).unwrap(), "app.test");
        assert_eq!(headers.get(X_REQUEST_ID).unwrap(), "req-1");
        assert_eq!(headers.get_all(X_FORWARDED_FOR).iter().count(), 1);
    }

    #[test]
    fn http2_authority_becomes_host() {
        let mut headers = HeaderMap::new();
        set_forwarding(
            &mut headers,
            Forwarding {
                forwarded_for: ip_header_value("2001:db8::1".parse().unwrap()).as_ref(),
                client_scheme: "http",
                original_host: Some(HeaderValue::from_static("h2.test:8443")),
                request_id: None,
            },
        );
        assert_eq!(headers.get(HOST).unwrap(), "h2.test:8443");
        assert_eq!(headers.get(X_FORWARDED_HOST).unwrap(), "h2.test:8443");
        assert_eq!(headers.get(X_FORWARDED_FOR).unwrap(), "2001:db8::1");
        assert!(headers.get(X_REQUEST_ID).is_none());
    }
}
