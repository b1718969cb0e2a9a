//! HTTP plumbing for the tests: a collected response ([`Reply`]), `Set-Cookie`
//! parsing ([`SetCookie`]), and a raw-socket client for exact header spellings.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderMap, StatusCode, header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single exchange may take before the test fails (never a hang).
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The `Location` header; fails the test if absent.
    pub fn location(&self) -> String {
        self.header(header::LOCATION.as_str()).unwrap_or_else(|| panic!("no Location in {} {}", self.status, self.body))
    }

    /// The first value of `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|value| value.to_str().expect("a text header").to_owned())
    }

    /// Every `Set-Cookie`, parsed.
    pub fn set_cookies(&self) -> Vec<SetCookie> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|value| SetCookie::parse(value.to_str().expect("a text Set-Cookie")))
            .collect()
    }

    /// The `Set-Cookie` for `name`, if the response has one.
    pub fn set_cookie(&self, name: &str) -> Option<SetCookie> {
        self.set_cookies().into_iter().find(|cookie| cookie.name == name)
    }

    /// The body as JSON; fails the test if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, self.body))
    }

    /// Fails the test unless this is a 302; returns the Location.
    pub fn expect_redirect(&self) -> String {
        assert_eq!(self.status, StatusCode::FOUND, "expected a redirect, got: {}", self.body);
        self.location()
    }
}

/// One `Set-Cookie` header: name, value and attributes (names lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCookie {
    pub name: String,
    pub value: String,
    /// Attribute name (lowercase) to value (empty for flags such as `HttpOnly`).
    pub attributes: HashMap<String, String>,
    pub raw: String,
}

impl SetCookie {
    /// Parses `name=value; Attr=x; Flag`.
    pub fn parse(raw: &str) -> Self {
        let mut parts = raw.split(';');
        let (name, value) = parts.next().and_then(|pair| pair.split_once('=')).expect("name=value first");
        let attributes = parts
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| match part.split_once('=') {
                Some((key, value)) => (key.trim().to_ascii_lowercase(), value.trim().to_owned()),
                None => (part.to_ascii_lowercase(), String::new()),
            })
            .collect();
        Self { name: name.trim().to_owned(), value: value.trim().to_owned(), attributes, raw: raw.to_owned() }
    }

    /// Whether the attribute (case-insensitive) is present.
    pub fn has(&self, attribute: &str) -> bool {
        self.attributes.contains_key(&attribute.to_ascii_lowercase())
    }

    /// The attribute's value, if present.
    pub fn attribute(&self, attribute: &str) -> Option<&str> {
        self.attributes.get(&attribute.to_ascii_lowercase()).map(String::as_str)
    }

    /// Whether this header deletes the cookie (`Max-Age=0` or less).
    pub fn is_deletion(&self) -> bool {
        self.attribute("max-age").is_some_and(|age| age.parse::<i64>().is_ok_and(|age| age <= 0))
    }

    /// Fails the test unless the cookie is locked down as the gateway promises:
    /// `HttpOnly`, `SameSite=Lax`, `Path=/`, no `Domain`, and `Secure` exactly when `secure`.
    pub fn assert_locked_down(&self, secure: bool) {
        assert!(self.has("httponly"), "{} lacks HttpOnly", self.raw);
        assert_eq!(self.attribute("samesite").map(str::to_ascii_lowercase).as_deref(), Some("lax"), "{}", self.raw);
        assert_eq!(self.attribute("path"), Some("/"), "{}", self.raw);
        assert!(!self.has("domain"), "{} must be host-only", self.raw);
        assert_eq!(self.has("secure"), secure, "{}: Secure expected {secure}", self.raw);
    }
}

/// Sends `request` (the exact bytes of the head and any body) on a fresh
/// connection and reads the answer until the server closes. The request should
/// carry `Connection: close`.
pub async fn raw_exchange(addr: SocketAddr, request: &str) -> Reply {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect to the gateway");
        stream.write_all(request.as_bytes()).await.expect("send the request");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.expect("read the response");
        bytes
    };
    let bytes = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await.expect("the raw exchange finished in time");
    parse_raw_response(&bytes)
}

/// Parses an HTTP/1.1 response (Content-Length, chunked or read-to-close body).
pub fn parse_raw_response(bytes: &[u8]) -> Reply {
    let split = bytes.windows(4).position(|window| window == b"\r\n\r\n").expect("a complete response head");
    let head = std::str::from_utf8(&bytes[..split]).expect("a text head");
    let mut body = bytes[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let code: u16 = status_line.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("a status code");
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').expect("name: value");
        headers.append(
            http::HeaderName::from_bytes(name.trim().as_bytes()).expect("a header name"),
            http::HeaderValue::from_str(value.trim()).expect("a header value"),
        );
    }
    let chunked = headers
        .get(header::TRANSFER_ENCODING)
        .is_some_and(|value| value.to_str().is_ok_and(|text| text.eq_ignore_ascii_case("chunked")));
    if chunked {
        body = dechunk(&body);
    }
    Reply {
        status: StatusCode::from_u16(code).expect("a valid status"),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn dechunk(mut input: &[u8]) -> Vec<u8> {
    let mut output = Vec::new();
    // Each round consumes one chunk; the input shrinks every time, so this ends.
    while let Some(line_end) = input.windows(2).position(|window| window == b"\r\n") {
        let size_text = std::str::from_utf8(&input[..line_end]).expect("a chunk size");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16).expect("hex size");
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        output.extend_from_slice(&input[start..start + size]);
        input = &input[start + size + 2..];
    }
    output
}
