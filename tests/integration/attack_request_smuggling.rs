//! Request smuggling and oversized requests: ambiguous framing (both
//! `Transfer-Encoding` and `Content-Length`, several differing lengths, several
//! `Host`s, obs-fold) is refused with 400 before anything is forwarded, also
//! pipelined behind clean requests and trickled byte by byte, and oversized
//! heads, cookies and URLs get 431/414. Raw sockets, exact bytes.

use http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::guarded::raw_bytes;
use crate::support::http::EXCHANGE_TIMEOUT;
use crate::support::upstreams::RecordingUpstream;
use crate::support::{Guarded, TestWorld};

/// Builds a request head (CRLF line ends) with the session cookie, `lines`
/// after it, then `body`.
fn request(guarded: &Guarded, start: &str, lines: &[&str], body: &str) -> Vec<u8> {
    let mut text = format!("{start}\r\nHost: {}\r\nCookie: {}\r\n", guarded.host(), guarded.session_pair());
    for line in lines {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.push_str(body);
    text.into_bytes()
}

/// Each case: the extra head lines and the body that follows, all ambiguous.
const AMBIGUOUS: &[(&str, &[&str], &str)] = &[
    ("two differing Content-Length headers", &["Content-Length: 4", "Content-Length: 5"], "abcde"),
    ("a Content-Length list with differing values", &["Content-Length: 4, 5"], "abcde"),
    ("a Content-Length that is not a number", &["Content-Length: +4"], "abcd"),
    ("a Transfer-Encoding that does not end in chunked", &["Transfer-Encoding: chunked, identity"], "abcd"),
    ("an unknown Transfer-Encoding", &["Transfer-Encoding: xchunked"], "0\r\n\r\n"),
    ("a second Host header", &["Host: evil.example", "Content-Length: 0"], ""),
    ("an obs-folded header", &["X-Folded: first", " second", "Content-Length: 0"], ""),
    ("an obs-folded Transfer-Encoding", &["Transfer-Encoding: identity", " chunked", "Content-Length: 4"], "abcd"),
    ("whitespace before the colon", &["Content-Length : 4"], "abcd"),
    ("a header name with a space", &["Transfer Encoding: chunked", "Content-Length: 0"], ""),
];

#[tokio::test]
async fn ambiguous_framing_is_refused_with_400_and_never_forwarded() {
    let guarded = Guarded::start().await;
    for (what, lines, body) in AMBIGUOUS {
        let mut all_lines = lines.to_vec();
        all_lines.push("Connection: close");
        let bytes = request(&guarded, "POST /smuggle HTTP/1.1", &all_lines, body);
        let reply = guarded.raw(&bytes).await.unwrap_or_else(|| panic!("{what}: closed without an answer"));
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{what}: {}", reply.body);
        guarded.assert_upstream_untouched(what);
    }
    // The same connection layout with clean framing does reach the upstream,
    // so the refusals above are about the framing and nothing else.
    let clean = request(&guarded, "POST /clean HTTP/1.1", &["Content-Length: 4", "Connection: close"], "abcd");
    let reply = guarded.raw(&clean).await.expect("an answer");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(guarded.upstream.requests(), 1);
    assert_eq!(guarded.upstream.body_bytes(), 4);
}

#[tokio::test]
async fn a_pipelined_request_after_a_refusal_is_not_served() {
    let guarded = Guarded::start().await;
    // A refused request followed by a second one on the same connection: the
    // connection closes after the 400, so the second is never read.
    let mut bytes = request(&guarded, "POST /first HTTP/1.1", &["Content-Length: 4", "Content-Length: 5"], "abcd");
    bytes.extend(request(&guarded, "GET /second HTTP/1.1", &["Connection: close"], ""));
    let all = raw_bytes(guarded.world.gateway_addr, &bytes, EXCHANGE_TIMEOUT).await;
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "only one response: {text}");
    guarded.assert_upstream_untouched("a pipelined request after a refusal");
}

/// Sends `bytes` on a fresh connection with `TCP_NODELAY`, `piece` bytes per
/// write (each flushed), and reads until the gateway closes; fails the test if
/// it does not close within [`EXCHANGE_TIMEOUT`].
async fn exchange_until_close(addr: std::net::SocketAddr, bytes: &[u8], piece: usize) -> String {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        for chunk in bytes.chunks(piece) {
            // The gateway may answer and close before everything is written.
            if stream.write_all(chunk).await.is_err() || stream.flush().await.is_err() {
                break;
            }
        }
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        answer
    };
    let answer = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await.expect("the gateway closed the connection");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status codes of the responses in `answer`, in order.
fn statuses(answer: &str) -> Vec<u16> {
    answer
        .split("HTTP/1.1 ")
        .skip(1)
        .map(|response| response.get(..3).and_then(|code| code.parse().ok()).expect("a status code"))
        .collect()
}

/// Both framing headers, in any order, case and count: refused with 400
/// (RFC 9112 §6.1 allows either refusing or reading as chunked; a proxy
/// refuses), nothing forwarded, and the connection closed.
#[tokio::test]
async fn transfer_encoding_with_content_length_is_refused_with_400() {
    let guarded = Guarded::start().await;
    let smuggled = "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases: &[(&str, &[&str])] = &[
        ("Content-Length first", &["Content-Length: 40", "Transfer-Encoding: chunked"]),
        ("Transfer-Encoding first", &["Transfer-Encoding: chunked", "Content-Length: 40"]),
        ("mixed case", &["tRANSFER-eNCODING: chunked", "content-LENGTH: 40"]),
        ("a zero Content-Length", &["Transfer-Encoding: chunked", "Content-Length: 0"]),
        (
            "several Transfer-Encodings",
            &["Transfer-Encoding: gzip", "Content-Length: 40", "Transfer-Encoding: chunked"],
        ),
    ];
    for (what, lines) in cases {
        let bytes = request(&guarded, "POST /te-cl HTTP/1.1", lines, smuggled);
        let answer = exchange_until_close(guarded.world.gateway_addr, &bytes, bytes.len()).await;
        assert_eq!(statuses(&answer), [400], "{what}: one 400, then close: {answer}");
        guarded.assert_upstream_untouched(what);
    }
}

/// A split head is no way round: byte by byte, a refused head still gets 400
/// and a clean one is still served.
#[tokio::test]
async fn a_head_sent_byte_by_byte_is_judged_the_same() {
    let guarded = Guarded::start().await;
    let refused = request(&guarded, "POST /te-cl HTTP/1.1", &["Transfer-Encoding: chunked", "Content-Length: 5"], "");
    let answer = exchange_until_close(guarded.world.gateway_addr, &refused, 1).await;
    assert_eq!(statuses(&answer), [400], "{answer}");
    guarded.assert_upstream_untouched("a trickled TE+CL head");

    let clean = request(&guarded, "POST /clean HTTP/1.1", &["Content-Length: 4", "Connection: close"], "abcd");
    let answer = exchange_until_close(guarded.world.gateway_addr, &clean, 1).await;
    assert_eq!(statuses(&answer), [200], "{answer}");
    assert_eq!(guarded.upstream.requests(), 1);
    assert_eq!(guarded.upstream.body_bytes(), 4);
}

/// Keep-alive and pipelining: the guard follows chunked bodies (extensions,
/// trailers) and length bodies (even one that looks like a refused head), so
/// clean requests are all served in order and a later ambiguous one is
/// refused after them.
#[tokio::test]
async fn pipelined_requests_are_followed_and_a_later_ambiguous_one_is_refused() {
    let upstream = RecordingUpstream::start().await;
    let world = TestWorld::builder().upstream(upstream.url.clone()).start().await;
    let browser = world.browser();
    browser.login().await;
    let cookie = format!("{}={}", world.session_cookie_name(), browser.session_value());
    let host = world.gateway_addr.to_string();
    let head = |start: &str, lines: &[&str]| {
        let mut text = format!("{start}\r\nHost: {host}\r\nCookie: {cookie}\r\n");
        for line in lines {
            text.push_str(line);
            text.push_str("\r\n");
        }
        text.push_str("\r\n");
        text
    };
    let lookalike = "GET /hidden HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n".to_owned();
    let three = |last_lines: &[&str]| {
        let mut text = head("POST /one HTTP/1.1", &["Transfer-Encoding: chunked", "Trailer: X-Checksum"]);
        text.push_str("5;ext=1;flag\r\nhello\r\na\r\n0123456789\r\n0\r\nX-Checksum: abc\r\n\r\n");
        text.push_str(&head("POST /two HTTP/1.1", &[&format!("Content-Length: {}", lookalike.len())]));
        text.push_str(&lookalike);
        text.push_str(&head("GET /three HTTP/1.1", last_lines));
        text
    };

    let answer = exchange_until_close(world.gateway_addr, three(&["Connection: close"]).as_bytes(), 64 * 1024).await;
    assert_eq!(statuses(&answer), [200, 200, 200], "{answer}");
    let seen = upstream.seen();
    let paths: Vec<&str> = seen.iter().map(|recorded| recorded.path.as_str()).collect();
    assert_eq!(paths, ["/one", "/two", "/three"]);
    let body_sizes: Vec<usize> = seen.iter().map(|recorded| recorded.body_bytes).collect();
    assert_eq!(body_sizes, [15, lookalike.len(), 0]);

    let mut bytes = three(&[]);
    bytes.push_str(&head("POST /four HTTP/1.1", &["Content-Length: 5", "Transfer-Encoding: chunked"]));
    bytes.push_str("0\r\n\r\n");
    let answer = exchange_until_close(world.gateway_addr, bytes.as_bytes(), 64 * 1024).await;
    assert_eq!(statuses(&answer), [200, 200, 200, 400], "{answer}");
    let paths: Vec<String> = upstream.seen().into_iter().map(|recorded| recorded.path).collect();
    assert_eq!(paths, ["/one", "/two", "/three", "/one", "/two", "/three"], "the fourth never reached the upstream");
}

/// HTTP/2 with prior knowledge (h2c) is not HTTP/1: the guard steps aside.
#[tokio::test]
async fn h2c_with_prior_knowledge_is_still_served() {
    let guarded = Guarded::start().await;
    let stream = TcpStream::connect(guarded.world.gateway_addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.expect("h2c");
    tokio::spawn(connection);
    for path in ["/app/a", "/app/b"] {
        let request = http::Request::get(format!("http://{}{path}", guarded.host()))
            .header(http::header::COOKIE, guarded.session_pair())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = tokio::time::timeout(EXCHANGE_TIMEOUT, sender.send_request(request)).await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(guarded.upstream.requests(), 2);
}

#[tokio::test]
async fn oversized_heads_cookies_and_urls_are_refused() {
    let guarded = Guarded::start().await;
    let limit = 32 * 1024; // The default server.max_header_bytes.
    let big_value = "a".repeat(limit + 1);

    let one_big_header = format!("X-Big: {big_value}");
    let reply =
        guarded.raw(&request(&guarded, "GET /big-header HTTP/1.1", &[&one_big_header, "Connection: close"], "")).await;
    let reply = reply.expect("an answer to an oversized header");
    assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "{}", reply.body);

    let big_cookie = format!("Cookie: filler={big_value}");
    let reply =
        guarded.raw(&request(&guarded, "GET /big-cookie HTTP/1.1", &[&big_cookie, "Connection: close"], "")).await;
    let reply = reply.expect("an answer to an oversized cookie");
    assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "{}", reply.body);

    let many: Vec<String> = (0..2000).map(|i| format!("X-Many-{i}: {}", "b".repeat(20))).collect();
    let mut lines: Vec<&str> = many.iter().map(String::as_str).collect();
    lines.push("Connection: close");
    let reply = guarded.raw(&request(&guarded, "GET /many-headers HTTP/1.1", &lines, "")).await;
    let reply = reply.expect("an answer to too many headers");
    assert!(
        matches!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE | StatusCode::BAD_REQUEST),
        "{}: {}",
        reply.status,
        reply.body
    );

    let long_url = format!("GET /{} HTTP/1.1", "u".repeat(8 * 1024 + 1));
    let reply = guarded.raw(&request(&guarded, &long_url, &["Connection: close"], "")).await;
    let reply = reply.expect("an answer to a long URL");
    assert_eq!(reply.status, StatusCode::URI_TOO_LONG, "{}", reply.body);

    let long_query = format!("GET /q?{} HTTP/1.1", "q=1&".repeat(2100));
    let reply = guarded.raw(&request(&guarded, &long_query, &["Connection: close"], "")).await;
    assert_eq!(reply.expect("an answer to a long query").status, StatusCode::URI_TOO_LONG);

    guarded.assert_upstream_untouched("an oversized request");
}

#[tokio::test]
async fn gateway_pages_carry_the_hardening_headers() {
    let guarded = Guarded::start().await;
    let fresh = guarded.world.browser();
    let pages = [
        ("/ping", fresh.api_get("/ping").await),
        ("/ready", fresh.api_get("/ready").await),
        ("401", fresh.api_get("/protected").await),
        ("login redirect", fresh.navigate("/protected").await),
        ("callback error", fresh.navigate("/oauth2/callback?state=x&code=y").await),
        ("414", fresh.api_get(&format!("/{}", "u".repeat(9000))).await),
    ];
    for (what, reply) in pages {
        assert_eq!(reply.header("cache-control").as_deref(), Some("no-store"), "{what}");
        assert_eq!(reply.header("referrer-policy").as_deref(), Some("no-referrer"), "{what}");
        assert_eq!(reply.header("x-content-type-options").as_deref(), Some("nosniff"), "{what}");
        let csp = reply.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp:?}");
    }
    let refused = guarded
        .raw(
            format!("GET / HTTP/1.1\r\nHost: {0}\r\nHost: {0}\r\nConnection: close\r\n\r\n", guarded.host()).as_bytes(),
        )
        .await
        .expect("an answer");
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.header("cache-control").as_deref(), Some("no-store"));
    guarded.assert_upstream_untouched("a gateway page");
}
