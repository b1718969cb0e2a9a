//! The echo upstream used by `portcullis demo` and the proxy tests: it answers
//! every request with what it received (method, path, headers, body size), so
//! a browser or a test can see exactly what the gateway forwarded.
//!
//! Besides echoing, `POST /stream?bytes=N` answers a streamed body of N bytes
//! and `GET /slow?ms=N` answers after a delay. Loopback only.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::body::{Body, BoxError, boxed, full};
use crate::html::escape;

/// Size of each chunk of a `/stream` response.
const STREAM_CHUNK_BYTES: usize = 16 * 1024;
/// Largest `/stream` body, so a typo cannot make the echo server send forever.
const MAX_STREAM_BYTES: u64 = 1 << 30;
/// Longest `/slow` delay.
const MAX_SLOW_MS: u64 = 60_000;

static CHUNK: [u8; STREAM_CHUNK_BYTES] = [b'.'; STREAM_CHUNK_BYTES];

/// Serves the echo upstream on `listener` until `shutdown` completes, then
/// drops every open connection and returns `Ok(())`. Refuses (`InvalidInput`)
/// a listener that is not on loopback.
pub async fn serve_echo(listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> io::Result<()> {
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the echo upstream only binds to loopback, not {addr}"),
        ));
    }
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    // Transient accept errors (e.g. too many open files): back off briefly.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                connections.spawn(async move {
                    let service = service_fn(|request| async move {
                        Ok::<_, Infallible>(respond(request).await)
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    // A client hanging up mid-request is not an echo server problem.
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
            Some(_finished) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// What the echo server saw of a request.
struct Received {
    method: String,
    path: String,
    headers: BTreeMap<String, Vec<String>>,
    body_bytes: u64,
}

fn query_number(request: &Request<Incoming>, name: &str) -> Option<u64> {
    let query = request.uri().query()?;
    form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == name).and_then(|(_, value)| value.parse().ok())
}

async fn respond(request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    if path == "/slow" && request.method() == Method::GET {
        let delay = query_number(&request, "ms").unwrap_or(0).min(MAX_SLOW_MS);
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let stream_bytes = (path == "/stream" && request.method() == Method::POST).then(|| query_number(&request, "bytes"));
    let wants_html = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .any(|value| value.to_str().is_ok_and(|text| text.contains("text/html")));
    let received = match receive(request).await {
        Ok(received) => received,
        Err(_) => {
            return plain(StatusCode::BAD_REQUEST, "the request body could not be read\n");
        }
    };
    match stream_bytes {
        Some(Some(bytes)) if bytes <= MAX_STREAM_BYTES => streamed(bytes),
        Some(_) => plain(StatusCode::BAD_REQUEST, "POST /stream needs ?bytes=N with N at most 1 GiB\n"),
        None if wants_html => html_page(&received),
        None => json_page(&received),
    }
}

/// Reads the whole request, counting (not keeping) the body.
async fn receive(request: Request<Incoming>) -> Result<Received, hyper::Error> {
    let (parts, mut body) = request.into_parts();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let mut body_bytes: u64 = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            body_bytes = body_bytes.saturating_add(u64::try_from(data.len()).unwrap_or(u64::MAX));
        }
    }
    Ok(Received {
        method: parts.method.to_string(),
        path: parts.uri.path_and_query().map_or_else(|| "/".to_owned(), ToString::to_string),
        headers,
        body_bytes,
    })
}

fn with_type(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    with_type(status, "text/plain; charset=utf-8", full(text))
}

fn json_page(received: &Received) -> Response<Body> {
    let body = serde_json::json!({
        "method": received.method,
        "path": received.path,
        "headers": received.headers,
        "body_bytes": received.body_bytes,
    });
    with_type(StatusCode::OK, "application/json", full(body.to_string()))
}

fn html_page(received: &Received) -> Response<Body> {
    let rows: String = received
        .headers
        .iter()
        .flat_map(|(name, values)| {
            values.iter().map(move |value| format!("<tr><th>{}</th><td>{}</td></tr>\n", escape(name), escape(value)))
        })
        .collect();
    let page = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Echo upstream</title>\n\
         <style>body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1f2933; }}\n\
         table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: .3rem .8rem; \
         border-bottom: 1px solid #e4e7eb; font-family: ui-monospace, monospace; font-size: .9rem; }}\n\
         th {{ color: #52606d; }} td {{ word-break: break-all; }}</style>\n</head>\n<body>\n\
         <h1>Echo upstream</h1>\n<p>This is what the upstream received from the gateway. \
         <a href=\"/oauth2/sign_out\">Sign out</a></p>\n\
         <p>Method: <code id=\"method\">{method}</code></p>\n<p>Path: <code id=\"path\">{path}</code></p>\n\
         <p>Body bytes: <code id=\"body-bytes\">{body_bytes}</code></p>\n<h2>Request headers</h2>\n\
         <table id=\"request-headers\">\n{rows}</table>\n</body>\n</html>\n",
        method = escape(&received.method),
        path = escape(&received.path),
        body_bytes = received.body_bytes,
    );
    with_type(StatusCode::OK, "text/html; charset=utf-8", full(page))
}

/// A body of `total` bytes sent as 16 KiB chunks, produced as it is read.
fn streamed(total: u64) -> Response<Body> {
    let chunks = futures_util::stream::unfold(total, |remaining| async move {
        if remaining == 0 {
            return None;
        }
        let size = usize::try_from(remaining).unwrap_or(STREAM_CHUNK_BYTES).min(STREAM_CHUNK_BYTES);
        let chunk = Bytes::from_static(&CHUNK).slice(..size);
        let left = remaining.saturating_sub(u64::try_from(size).unwrap_or(remaining));
        Some((Ok::<_, BoxError>(Frame::data(chunk)), left))
    });
    with_type(StatusCode::OK, "application/octet-stream", boxed(StreamBody::new(chunks)))
}

#[cfg(test)]
mod tests {

    use super::*;
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use std::net::SocketAddr;
    use tokio::sync::oneshot;

    type TestClient = Client<HttpConnector, Full<Bytes>>;

    struct Echo {
        addr: SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        server: tokio::task::JoinHandle<io::Result<()>>,
        client: TestClient,
    }

    async fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_echo(listener, async move {
            let _ = stopped.await;
        }));
        Echo { addr, stop: Some(stop), server, client: Client::builder(TokioExecutor::new()).build_http() }
    }

    impl Echo {
        async fn send(&self, request: hyper::http::request::Builder, body: Bytes) -> Response<Incoming> {
            let request = request.body(Full::new(body)).unwrap();
            self.client.request(request).await.unwrap()
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }
    }

    async fn text(response: Response<Incoming>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn echoes_requests_as_json() {
        let echo = start().await;
        let request = Request::builder()
            .method(Method::PUT)
            .uri(echo.url("/some/path?a=1&b=two"))
            .header("x-identity", "alice")
            .header("x-multi", "one")
            .header("x-multi", "two");
        let response = echo.send(request, Bytes::from(vec![7_u8; 100_000])).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body: serde_json::Value = serde_json::from_str(&text(response).await).unwrap();
        assert_eq!(body["method"], "PUT");
        assert_eq!(body["path"], "/some/path?a=1&b=two");
        assert_eq!(body["headers"]["x-identity"], serde_json::json!(["alice"]));
        assert_eq!(body["headers"]["x-multi"], serde_json::json!(["one", "two"]));
        assert_eq!(body["body_bytes"], 100_000);
    }

    #[tokio::test]
    async fn echoes_requests_as_escaped_html_for_browsers() {
        let echo = start().await;
        let request = Request::builder()
            .uri(echo.url("/page?q=1&r='x'"))
            .header(header::ACCEPT, "text/html,application/xhtml+xml")
            .header("x-zeta", "last")
            .header("x-alpha", "<script>alert(1)</script>");
        let response = echo.send(request, Bytes::new()).await;
        assert!(response.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        let page = text(response).await;
        assert!(page.contains("<title>Echo upstream</title>"));
        assert!(page.contains("<code id=\"method\">GET</code>"));
        assert!(page.contains("<code id=\"path\">/page?q=1&amp;r=&#39;x&#39;</code>"), "{page}");
        assert!(page.contains("<tr><th>x-alpha</th><td>&lt;script&gt;alert(1)&lt;/script&gt;</td></tr>"));
        assert!(!page.contains("<script>"));
        let alpha = page.find("<th>x-alpha</th>").unwrap();
        let zeta = page.find("<th>x-zeta</th>").unwrap();
        let accept = page.find("<th>accept</th>").unwrap();
        assert!(accept < alpha && alpha < zeta, "rows are sorted by name");
    }

    #[tokio::test]
    async fn streams_the_requested_number_of_bytes_in_chunks() {
        let echo = start().await;
        let request = Request::builder().method(Method::POST).uri(echo.url("/stream?bytes=100000"));
        let mut body = echo.send(request, Bytes::from_static(b"ignored")).await.into_body();
        let (mut total, mut frames) = (0_usize, 0_usize);
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                assert!(data.len() <= STREAM_CHUNK_BYTES);
                total += data.len();
                frames += 1;
            }
        }
        assert_eq!(total, 100_000);
        assert!(frames >= 100_000 / STREAM_CHUNK_BYTES);

        let request = Request::builder().method(Method::POST).uri(echo.url("/stream"));
        let response = echo.send(request, Bytes::new()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn slow_answers_after_the_delay() {
        let echo = start().await;
        let started = std::time::Instant::now();
        let request = Request::builder().uri(echo.url("/slow?ms=120"));
        let response = echo.send(request, Bytes::new()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(started.elapsed() >= Duration::from_millis(120));
        let body: serde_json::Value = serde_json::from_str(&text(response).await).unwrap();
        assert_eq!(body["path"], "/slow?ms=120");
    }

    #[tokio::test]
    async fn stops_on_shutdown_and_refuses_non_loopback() {
        let mut echo = start().await;
        echo.stop.take().unwrap().send(()).unwrap();
        let result = (&mut echo.server).await.unwrap();
        assert!(result.is_ok());
        assert!(tokio::net::TcpStream::connect(echo.addr).await.is_err());

        let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
        let error = serve_echo(listener, std::future::pending()).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
