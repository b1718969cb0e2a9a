//! End-to-end tests of forwarding over loopback TCP.
//!
//! A tiny hyper upstream reports what it received; a tiny hyper "gateway" calls
//! [`forward`] exactly as the real gateway will; requests come from raw TCP
//! (to control header spelling on the wire) or a hyper-util client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};

use super::*;
use crate::body::{BoxError, ProxyBody, full};

/// A failure guard for awaits that should finish quickly; never used to synchronise.
const GUARD: Duration = Duration::from_secs(20);
const CHUNK: usize = 64 * 1024;
const LARGE: usize = 8 * 1024 * 1024;

/// A body fed chunk by chunk from a channel, so tests control when data exists.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// Rendezvous points between the test and the upstream's handlers.
struct Hooks {
    upload_first_chunk: mpsc::Sender<()>,
    download_body: Mutex<Option<mpsc::Receiver<Bytes>>>,
}

async fn guarded<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(GUARD, future).await.expect("test step took too long")
}

/// The test upstream: `/ws` echoes after a 101, `/upload` counts, `/download`
/// streams from the test, anything else reports the request line and headers.
async fn upstream_handler(hooks: Arc<Hooks>, mut req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    match req.uri().path() {
        "/ws" if req.headers().contains_key(http::header::UPGRADE) => {
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let upgraded = on_upgrade.await.unwrap();
                let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
            Ok(Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "echo")
                .body(crate::body::empty())
                .unwrap())
        }
        "/upload" => {
            let mut body = req.into_body();
            let (mut frames, mut bytes) = (0usize, 0usize);
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.unwrap().into_data() {
                    frames += 1;
                    bytes += data.len();
                    if frames == 1 {
                        hooks.upload_first_chunk.send(()).await.unwrap();
                    }
                }
            }
            Ok(Response::new(full(format!("bytes={bytes}"))))
        }
        "/download" => {
            let receiver = hooks.download_body.lock().await.take().unwrap();
            Ok(Response::new(crate::body::boxed(ChannelBody(receiver))))
        }
        _ => {
            let mut report = format!("uri: {}\n", req.uri());
            for (name, value) in req.headers() {
                report.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
            }
            Ok(Response::builder()
                .header("connection", "x-upstream-hop")
                .header("x-upstream-hop", "1")
                .header("keep-alive", "timeout=5")
                .header("x-upstream-kept", "1")
                .body(full(report))
                .unwrap())
        }
    }
}

async fn start_upstream() -> (SocketAddr, Arc<Hooks>, mpsc::Receiver<()>) {
    let (first_tx, first_rx) = mpsc::channel(1);
    let hooks = Arc::new(Hooks { upload_first_chunk: first_tx, download_body: Mutex::new(None) });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = hooks.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let hooks = served.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| upstream_handler(hooks.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, hooks, first_rx)
}

fn is_gateway_cookie(name: &str) -> bool {
    name.starts_with("_pc_")
}

/// The test gateway: forwards everything, answering errors with their status and kind.
async fn start_gateway(upstream: Upstream, identity: Option<IdentityHeaders>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let identity = Arc::new(identity);
    tokio::spawn(async move {
        loop {
            let (stream, client_addr) = listener.accept().await.unwrap();
            let upstream = upstream.clone();
            let identity = identity.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let upstream = upstream.clone();
                    let identity = identity.clone();
                    async move {
                        let request_id = HeaderValue::from_static("rid-7");
                        let tunnels = super::Tunnels::new(crate::config::TunnelSettings {
                            protocols: vec!["echo".to_owned()],
                            ..crate::config::TunnelSettings::default()
                        });
                        let forwarded_for = super::headers::ip_header_value(client_addr.ip());
                        let ctx = ForwardContext {
                            tunnels: &tunnels,
                            tunnel_session: None,
                            connection_slot: None,
                            forwarded_for: forwarded_for.as_ref(),
                            client_scheme: "https",
                            is_gateway_cookie: &is_gateway_cookie,
                            identity: identity.as_ref().as_ref(),
                            forward_client_authorization: true,
                            request_id: Some(&request_id),
                            set_headers: &[],
                        };
                        let response = match forward(&upstream, req, ctx).await {
                            Ok(response) => response,
                            Err(error) => Response::builder()
                                .status(error.status())
                                .header("x-proxy-error", error.kind())
                                .body(crate::body::empty())
                                .unwrap(),
                        };
                        Ok::<_, Infallible>(response)
                    }
                });
                // As the real gateway: HTTP/1.1 (with upgrades) or HTTP/2 prior knowledge.
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn upstream_at(base: &str, response_timeout: Duration) -> Upstream {
    let settings = UpstreamSettings { response_timeout, ..UpstreamSettings::default() };
    Upstream::new(base.parse().unwrap(), settings, crate::workers::WorkerCount::resolve(1)).unwrap()
}

fn alice() -> IdentityHeaders {
    IdentityHeaders::new(
        "alice",
        Some("alice@example.test"),
        Some("ali"),
        &["admins".into(), "dev ops".into()],
        Some("tok-1"),
    )
    .unwrap()
}

/// A parsed HTTP/1.1 response read from a raw socket until EOF.
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The upstream's report: `(lowercase name, value)` lines plus the URI it saw.
    fn reported(&self) -> (String, Vec<(String, String)>) {
        let mut lines = self.body.lines();
        let uri = lines.next().unwrap().strip_prefix("uri: ").unwrap().to_owned();
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(": ").unwrap();
                (name.to_owned(), value.to_owned())
            })
            .collect();
        (uri, headers)
    }
}

/// Sends `head` verbatim (it must ask for `Connection: close`) and reads the whole answer.
async fn raw_request(addr: SocketAddr, head: &str) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    guarded(stream.read_to_end(&mut raw)).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    RawResponse { status, headers, body: body.to_owned() }
}

fn values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
}

const SPOOFED: &[&str] = &[
    "X-Forwarded-User: evil",
    "x_forwarded_user: evil",
    "X-FORWARDED-EMAIL: evil@example.test",
    "X_Forwarded_Email: evil@example.test",
    "x-forwarded-groups: admins",
    "X-Forwarded_Groups: root",
    "X-Forwarded-Preferred-Username: evil",
    "x_forwarded_preferred_username: evil",
    "X-Forwarded-Access-Token: stolen",
    "X-Auth-Request-User: evil",
    "X-AUTH_REQUEST_EMAIL: evil",
    "x_auth_request_access_token: stolen",
    "X-Auth-Request-Groups: admins",
    "X-Remote-User: evil",
    "Remote-User: evil",
    "remote_user: evil",
    "Forwarded: for=6.6.6.6;proto=http",
    "X-Forwarded-For: 6.6.6.6",
    "x_forwarded_for: 6.6.6.6",
    "X-Forwarded-Proto: gopher",
    "X-Forwarded-Host: evil.test",
    "X-Request-Id: client-chosen",
];

fn spoofing_request(path: &str) -> String {
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: app.example.test\r\nAuthorization: Basic ZXZpbDpldmls\r\n\
         Connection: close, X-Nominated\r\nX-Nominated: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
         Proxy-Authorization: Basic abc\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\n\
         Cookie: a=1; _pc_session=secret-session; b=2\r\nCookie: _pc_csrf=secret-csrf; c=3\r\n"
    );
    for line in SPOOFED {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

#[tokio::test]
async fn identity_is_injected_and_every_spoof_and_hop_header_removed() {
    let (upstream_addr, _hooks, _first) = start_upstream().await;
    let upstream = upstream_at(&format!("http://{upstream_addr}/base/"), GUARD);
    let gateway = start_gateway(upstream, Some(alice())).await;

    let response = raw_request(gateway, &spoofing_request("/p/q?x=1&y=%2F")).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let (uri, seen) = response.reported();
    assert_eq!(uri, "/base/p/q?x=1&y=%2F");

    let expected = [
        ("x-forwarded-user", "alice"),
        ("x-forwarded-email", "alice@example.test"),
        ("x-forwarded-preferred-username", "ali"),
        ("x-forwarded-groups", "admins,dev ops"),
        ("authorization", "Bearer tok-1"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "app.example.test"),
        ("host", "app.example.test"),
        ("x-request-id", "rid-7"),
        ("cookie", "a=1; b=2; c=3"),
        ("x-kept", "yes"),
    ];
    for (name, value) in expected {
        assert_eq!(values(&seen, name), [value], "{name}");
    }
    // Nothing else reached the upstream: every spoofed, hop-by-hop and nominated header is gone.
    let mut names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    let mut allowed: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
    allowed.sort_unstable();
    assert_eq!(names, allowed);
    assert!(!response.body.contains("secret"), "gateway cookie leaked");

    // Response hygiene: hop-by-hop and nominated upstream headers are dropped.
    assert_eq!(response.header("x-upstream-kept"), Some("1"));
    assert_eq!(response.header("x-upstream-hop"), None);
    assert_eq!(response.header("keep-alive"), None);
}

#[tokio::test]
async fn public_route_keeps_client_authorization_but_not_spoofed_identity() {
    let (upstream_addr, _hooks, _first) = start_upstream().await;
    let upstream = upstream_at(&format!("http://{upstream_addr}"), GUARD);
    let gateway = start_gateway(upstream, None).await;

    let response = raw_request(gateway, &spoofing_request("/public")).await;
    assert_eq!(response.status, 200);
    let (uri, seen) = response.reported();
    assert_eq!(uri, "/public");
    assert_eq!(values(&seen, "authorization"), ["Basic ZXZpbDpldmls"]);
    let mut names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "authorization",
            "cookie",
            "host",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-kept",
            "x-request-id",
        ]
    );
}

fn http_client() -> Client<HttpConnector, ProxyBody> {
    Client::builder(TokioExecutor::new()).build_http()
}

#[tokio::test]
async fn large_request_body_streams_before_it_is_complete() {
    let (upstream_addr, _hooks, mut upload_first_chunk) = start_upstream().await;
    let gateway = start_gateway(upstream_at(&format!("http://{upstream_addr}"), GUARD), Some(alice())).await;

    let (chunks, receiver) = mpsc::channel::<Bytes>(4);
    let request =
        Request::post(format!("http://{gateway}/upload")).body(crate::body::boxed(ChannelBody(receiver))).unwrap();
    let pending = tokio::spawn(http_client().request(request));
    chunks.send(Bytes::from(vec![7u8; CHUNK])).await.unwrap();
    // The upstream sees the first chunk while the rest does not exist yet: nothing buffers whole.
    guarded(upload_first_chunk.recv()).await.unwrap();
    for _ in 1..LARGE / CHUNK {
        guarded(chunks.send(Bytes::from(vec![7u8; CHUNK]))).await.unwrap();
    }
    drop(chunks);

    let response = guarded(pending).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = guarded(response.into_body().collect()).await.unwrap().to_bytes();
    assert_eq!(body, format!("bytes={LARGE}"));
}

#[tokio::test]
async fn large_response_body_streams_before_it_is_complete() {
    let (upstream_addr, hooks, _first) = start_upstream().await;
    let gateway = start_gateway(upstream_at(&format!("http://{upstream_addr}"), GUARD), Some(alice())).await;

    let (chunks, receiver) = mpsc::channel::<Bytes>(4);
    *hooks.download_body.lock().await = Some(receiver);
    chunks.send(Bytes::from(vec![1u8; CHUNK])).await.unwrap();
    let request = Request::get(format!("http://{gateway}/download")).body(crate::body::empty()).unwrap();
    let response = guarded(http_client().request(request)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();

    // The client reads data while the upstream has produced only the first chunk.
    let mut received = 0usize;
    while received < CHUNK {
        let frame = guarded(body.frame()).await.unwrap().unwrap();
        received += frame.into_data().unwrap().len();
    }
    let feeder = tokio::spawn(async move {
        for _ in 1..LARGE / CHUNK {
            chunks.send(Bytes::from(vec![1u8; CHUNK])).await.unwrap();
        }
    });
    while let Some(frame) = guarded(body.frame()).await {
        if let Ok(data) = frame.unwrap().into_data() {
            received += data.len();
        }
    }
    guarded(feeder).await.unwrap();
    assert_eq!(received, LARGE);
}

#[tokio::test]
async fn unreachable_upstream_answers_502() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let gateway = start_gateway(upstream_at(&format!("http://{closed_addr}"), GUARD), Some(alice())).await;

    let response = raw_request(gateway, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
    assert_eq!(response.status, 502);
    assert_eq!(response.header("x-proxy-error"), Some("unreachable"));
    assert_eq!(ProxyError::Unreachable.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn silent_upstream_answers_504() {
    // Accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (stream, _) = silent.accept().await.unwrap();
            held.push(stream);
        }
    });
    let upstream = upstream_at(&format!("http://{silent_addr}"), Duration::from_millis(200));
    let gateway = start_gateway(upstream, Some(alice())).await;

    let response = raw_request(gateway, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
    assert_eq!(response.status, 504);
    assert_eq!(response.header("x-proxy-error"), Some("timeout"));
    assert_eq!(ProxyError::Timeout.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn upgrade_is_tunnelled_both_ways() {
    let (upstream_addr, _hooks, _first) = start_upstream().await;
    let gateway = start_gateway(upstream_at(&format!("http://{upstream_addr}"), GUARD), Some(alice())).await;

    let mut stream = TcpStream::connect(gateway).await.unwrap();
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: app\r\nConnection: keep-alive, Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    // Read the 101 head byte by byte so no tunnelled byte is consumed with it.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 8192, "response head too long");
        head.push(guarded(stream.read_u8()).await.unwrap());
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");

    for message in [&b"hello through the tunnel"[..], &[0u8, 255, 13, 10, 42][..]] {
        stream.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        guarded(stream.read_exact(&mut echoed)).await.unwrap();
        assert_eq!(echoed, message);
    }
}

#[tokio::test]
async fn upgrade_refused_by_upstream_passes_through_with_upgrade_headers_sent() {
    let (upstream_addr, _hooks, _first) = start_upstream().await;
    let gateway = start_gateway(upstream_at(&format!("http://{upstream_addr}"), GUARD), Some(alice())).await;

    // `/report` does not upgrade: the upstream answers 200, which is relayed as is.
    let response = raw_request(
        gateway,
        "GET /report HTTP/1.1\r\nHost: app\r\nConnection: Upgrade, close\r\nUpgrade: echo\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 200);
    let (_, seen) = response.reported();
    assert_eq!(values(&seen, "connection"), ["upgrade"]);
    assert_eq!(values(&seen, "upgrade"), ["echo"]);
}

#[tokio::test]
async fn http2_client_is_forwarded_as_http1_with_host_from_authority() {
    let (upstream_addr, _hooks, _first) = start_upstream().await;
    let gateway = start_gateway(upstream_at(&format!("http://{upstream_addr}"), GUARD), Some(alice())).await;

    let client: Client<HttpConnector, ProxyBody> = Client::builder(TokioExecutor::new()).http2_only(true).build_http();
    let request = Request::get(format!("http://{gateway}/h2?q=1"))
        .header("cookie", "a=1")
        .header("cookie", "_pc_session=secret")
        .header("cookie", "b=2")
        .header("x_forwarded_user", "evil")
        .body(crate::body::empty())
        .unwrap();
    let response = guarded(client.request(request)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = guarded(response.into_body().collect()).await.unwrap().to_bytes();
    let report = RawResponse { status: 200, headers: Vec::new(), body: String::from_utf8(body.to_vec()).unwrap() };
    let (uri, seen) = report.reported();
    assert_eq!(uri, "/h2?q=1");
    let authority = gateway.to_string();
    assert_eq!(values(&seen, "host"), [authority.as_str()]);
    assert_eq!(values(&seen, "x-forwarded-host"), [authority.as_str()]);
    assert_eq!(values(&seen, "cookie"), ["a=1; b=2"]);
    assert_eq!(values(&seen, "x-forwarded-user"), ["alice"]);
    assert!(values(&seen, "x_forwarded_user").is_empty());
}
