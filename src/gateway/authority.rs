//! The host a request is for: one value, read once, used both to choose the
//! `[[upstreams]]` entry and as the `Host` the upstream receives.
//!
//! HTTP/2 clients (every browser over TLS) name it in `:authority`, which
//! hyper keeps in the URI, and usually send no `Host`; an HTTP/1.1
//! absolute-form target carries it in the URI too. The URI's authority wins
//! when present and a `Host` that names something else is refused (RFC 9113
//! §8.3.1, RFC 9112 §3.2.2), as is anything that is not `host[:port]`. One
//! trailing dot is removed (`admin.example.` is `admin.example`). When
//! `[[upstreams]]` entries are chosen by host, a host the gateway does not
//! serve is refused with 421 Misdirected Request (RFC 9110 §15.5.20).

use http::{HeaderMap, HeaderValue, Uri, header};

use super::Gateway;

/// A request's host and optional port, as routed and forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RequestAuthority {
    /// `host[:port]`, the host without its trailing dot: the upstream's `Host`.
    value: HeaderValue,
    /// The length of the host part of `value`.
    host_len: usize,
    /// `value` is the header value it was parsed from, unchanged.
    as_received: bool,
}

/// The request's authority cannot be given one meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum BadAuthority {
    #[error("the host is not host[:port]")]
    Malformed,
    #[error("the URI's authority and the Host header differ")]
    Conflicting,
}

impl BadAuthority {
    /// The `reason` its refusal is logged with.
    pub(super) fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "malformed_host",
            Self::Conflicting => "conflicting_host",
        }
    }
}

impl RequestAuthority {
    /// The host, without port or trailing dot.
    pub(super) fn host(&self) -> &str {
        // Parsed as ASCII already: only the host's bytes are looked at again.
        self.value.as_bytes().get(..self.host_len).and_then(|host| std::str::from_utf8(host).ok()).unwrap_or_default()
    }

    /// `host[:port]` for the upstream's `Host` and `X-Forwarded-Host`.
    pub(super) fn header_value(&self) -> &HeaderValue {
        &self.value
    }

    /// Whether this is the header value it was parsed from, unchanged (for
    /// [`of_request`], the request's own `Host`).
    pub(super) fn is_as_received(&self) -> bool {
        self.as_received
    }

    /// Parses a `Host` (or `X-Forwarded-Host`) value; kept as it is (no copy)
    /// unless a trailing dot has to go.
    pub(super) fn from_header(value: &HeaderValue) -> Result<Self, BadAuthority> {
        let host_end = host_end(value.as_bytes()).ok_or(BadAuthority::Malformed)?;
        if value.as_bytes().get(..host_end).is_some_and(|host| host.ends_with(b".")) {
            return Self::without_dot(value.to_str().map_err(|_| BadAuthority::Malformed)?, host_end);
        }
        Ok(Self { value: value.clone(), host_len: host_end, as_received: true })
    }

    /// Parses the authority of a request URI.
    fn from_uri(authority: &http::uri::Authority) -> Result<Self, BadAuthority> {
        let text = authority.as_str();
        Self::without_dot(text, host_end(text.as_bytes()).ok_or(BadAuthority::Malformed)?)
    }

    /// `authority` (whose host ends at `host_end`) without its host's trailing dot, if any.
    fn without_dot(authority: &str, host_end: usize) -> Result<Self, BadAuthority> {
        let (host, port) = authority.split_at_checked(host_end).ok_or(BadAuthority::Malformed)?;
        let host = without_trailing_dot(host);
        let value =
            if port.is_empty() { HeaderValue::from_str(host) } else { HeaderValue::from_str(&format!("{host}{port}")) };
        Ok(Self { value: value.map_err(|_| BadAuthority::Malformed)?, host_len: host.len(), as_received: false })
    }
}

/// The authority of a request: the URI's (HTTP/2 `:authority`, HTTP/1.1
/// absolute form), else `Host`; `None` when neither names one.
pub(super) fn of_request(uri: &Uri, headers: &HeaderMap) -> Result<Option<RequestAuthority>, BadAuthority> {
    let host = match headers.get(header::HOST) {
        // RFC 9112 §3.2: an empty Host when the target has no authority.
        Some(value) if value.is_empty() => None,
        Some(value) => Some(RequestAuthority::from_header(value)?),
        None => None,
    };
    let Some(authority) = uri.authority() else { return Ok(host) };
    let from_uri = RequestAuthority::from_uri(authority)?;
    match host {
        Some(host) if !host.value.as_bytes().eq_ignore_ascii_case(from_uri.value.as_bytes()) => {
            Err(BadAuthority::Conflicting)
        }
        _ => Ok(Some(from_uri)),
    }
}

/// `host` without one trailing dot.
pub(super) fn without_trailing_dot(host: &str) -> &str {
    host.strip_suffix('.').unwrap_or(host)
}

/// Where the host of `host[:port]` ends (a `:` and the port follow, or
/// nothing); `None` unless the host is an IP literal in brackets or a name of
/// letters, digits, `-` and `_` in dotted labels (one trailing dot allowed),
/// and the port 1 to 5 digits. One pass over the bytes: this runs for every
/// request.
fn host_end(authority: &[u8]) -> Option<usize> {
    let host_end = if authority.first() == Some(&b'[') {
        let close = authority.iter().position(|&byte| byte == b']')?;
        let literal = authority.get(1..close)?;
        if literal.is_empty() || !literal.iter().all(|&byte| byte.is_ascii_hexdigit() || byte == b':' || byte == b'.') {
            return None;
        }
        close + 1
    } else {
        // A dot first refuses a leading dot; a dot after a dot, an empty label.
        let mut previous = b'.';
        let mut end = authority.len();
        for (index, &byte) in authority.iter().enumerate() {
            match byte {
                b':' => {
                    end = index;
                    break;
                }
                b'.' if previous == b'.' => return None,
                b'.' | b'-' | b'_' => {}
                byte if byte.is_ascii_alphanumeric() => {}
                _ => return None,
            }
            previous = byte;
        }
        if end == 0 {
            return None;
        }
        end
    };
    match authority.get(host_end..)? {
        [] => Some(host_end),
        [b':', port @ ..] if (1..=5).contains(&port.len()) && port.iter().all(u8::is_ascii_digit) => Some(host_end),
        _ => None,
    }
}

impl Gateway {
    /// Whether the gateway serves `host` (a request's, without port): any
    /// host, unless `[[upstreams]]` entries are chosen by host; then only
    /// theirs and the public URL's.
    pub(super) fn serves_host(&self, routes: &super::upstreams::Routes, host: Option<&str>) -> bool {
        if !routes.has_host_routes() {
            return true;
        }
        host.is_some_and(|host| {
            routes.serves_host(host)
                || self
                    .config
                    .public_url
                    .host_str()
                    .is_some_and(|public| without_trailing_dot(public).eq_ignore_ascii_case(without_trailing_dot(host)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(host) = host {
            headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        headers
    }

    fn authority(uri: &str, host: Option<&str>) -> Result<Option<(String, String)>, BadAuthority> {
        let uri: Uri = uri.parse().unwrap();
        of_request(&uri, &headers(host)).map(|found| {
            found.map(|found| (found.host().to_owned(), found.header_value().to_str().unwrap().to_owned()))
        })
    }

    fn found(host: &str, value: &str) -> Result<Option<(String, String)>, BadAuthority> {
        Ok(Some((host.to_owned(), value.to_owned())))
    }

    #[test]
    fn the_uri_authority_comes_first_and_one_trailing_dot_goes() {
        assert_eq!(authority("/x", Some("app.example:8443")), found("app.example", "app.example:8443"));
        assert_eq!(authority("https://admin.example/x", None), found("admin.example", "admin.example"));
        assert_eq!(authority("https://admin.example./x", None), found("admin.example", "admin.example"));
        assert_eq!(authority("/x", Some("Admin.Example.:443")), found("Admin.Example", "Admin.Example:443"));
        assert_eq!(authority("http://[::1]:9/x", Some("[::1]:9")), found("[::1]", "[::1]:9"));
        assert_eq!(authority("https://a.example/x", Some("A.example.")), found("a.example", "a.example"));
        assert_eq!(authority("/x", None), Ok(None));
        assert_eq!(authority("/x", Some("")), Ok(None));
        assert_eq!(authority("/x", Some("a-b_c.example.:80")), found("a-b_c.example", "a-b_c.example:80"));
        assert_eq!(authority("/x", Some("10.0.0.1:65535")), found("10.0.0.1", "10.0.0.1:65535"));
        assert_eq!(authority("/x", Some("[::ffff:10.0.0.1]")), found("[::ffff:10.0.0.1]", "[::ffff:10.0.0.1]"));
        assert_eq!(authority("http://a.example.:8080/x", None), found("a.example", "a.example:8080"));
    }

    #[test]
    fn conflicting_and_malformed_authorities_are_refused() {
        assert_eq!(authority("https://admin.example/x", Some("app.example")), Err(BadAuthority::Conflicting));
        assert_eq!(authority("https://a.example:8443/x", Some("a.example")), Err(BadAuthority::Conflicting));
        for host in [
            "a.example..",
            ".a.example",
            "a..example",
            "a.example:",
            "a.example:x",
            "a.example:123456",
            "user@a.example",
            "a example",
            "a.example/x",
            "[]",
            "[::1",
            "[::1]x",
            "[zz::1]",
            "a.example:1:2",
            ".",
            "..",
            ":80",
            "a.example.:",
            "[::1]:",
            "[::1]:123456",
            "[::1]]",
            "[[::1]",
            "[a.example]",
            "a.exämple",
            "a\texample",
        ] {
            assert_eq!(authority("/x", Some(host)), Err(BadAuthority::Malformed), "{host}");
        }
        assert_eq!(authority("http://user@a.example/x", None), Err(BadAuthority::Malformed));
    }
}
