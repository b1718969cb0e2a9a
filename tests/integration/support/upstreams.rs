//! Upstreams a test can bring instead of the echo server: one that only counts
//! what reaches it, a WebSocket echo, and an address where nothing listens.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// An upstream that counts requests (and body bytes) and answers `200 counted`.
#[derive(Debug)]
pub struct CountingUpstream {
    pub url: String,
    requests: Arc<AtomicUsize>,
    body_bytes: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingUpstream {
    /// Starts it on loopback.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the counting upstream");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let requests = Arc::new(AtomicUsize::new(0));
        let body_bytes = Arc::new(AtomicUsize::new(0));
        let (counted, bytes) = (Arc::clone(&requests), Arc::clone(&body_bytes));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (counted, bytes) = (Arc::clone(&counted), Arc::clone(&bytes));
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let (counted, bytes) = (Arc::clone(&counted), Arc::clone(&bytes));
                        async move {
                            counted.fetch_add(1, Ordering::SeqCst);
                            let body = request.into_body().collect().await.map(|body| body.to_bytes().len());
                            bytes.fetch_add(body.unwrap_or(0), Ordering::SeqCst);
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"counted"))))
                        }
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { url, requests, body_bytes, task }
    }

    /// Requests that reached the upstream so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Body bytes that reached the upstream so far.
    pub fn body_bytes(&self) -> usize {
        self.body_bytes.load(Ordering::SeqCst)
    }
}

impl Drop for CountingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A WebSocket server that echoes every text or binary message; returns its `http://` URL.
pub async fn websocket_echo() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the WebSocket upstream");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else { return };
                while let Some(Ok(message)) = socket.next().await {
                    if (message.is_text() || message.is_binary()) && socket.send(message).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// An `http://` URL on loopback where nothing listens (bound, then released).
pub async fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    url
}

/// What a [`RecordingUpstream`] saw of one request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    /// The request target exactly as sent (origin form: path and query).
    pub target: String,
    /// Which of the upstream's accepted connections it came on (0, 1, ...).
    pub connection: usize,
    pub headers: http::HeaderMap,
    /// Trailer fields of a chunked body, if any arrived.
    pub trailers: Option<http::HeaderMap>,
    pub body_bytes: usize,
}

/// An upstream that keeps every request's headers and trailers and answers `200 recorded`.
#[derive(Debug)]
pub struct RecordingUpstream {
    pub url: String,
    seen: Arc<std::sync::Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RecordingUpstream {
    /// Starts it on loopback.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the recording upstream");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let seen: Arc<std::sync::Mutex<Vec<Recorded>>> = Arc::default();
        let record = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            for connection in 0.. {
                let Ok((stream, _)) = listener.accept().await else { return };
                let record = Arc::clone(&record);
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let record = Arc::clone(&record);
                        async move {
                            let (parts, mut body) = request.into_parts();
                            let (mut trailers, mut body_bytes) = (None, 0);
                            while let Some(Ok(frame)) = body.frame().await {
                                match frame.into_data() {
                                    Ok(data) => body_bytes += data.len(),
                                    Err(frame) => trailers = frame.into_trailers().ok(),
                                }
                            }
                            let path = parts.uri.path().to_owned();
                            record.lock().expect("lock").push(Recorded {
                                path,
                                target: parts.uri.to_string(),
                                connection,
                                headers: parts.headers,
                                trailers,
                                body_bytes,
                            });
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"recorded"))))
                        }
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { url, seen, task }
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Recorded> {
        self.seen.lock().expect("lock").clone()
    }
}

impl Drop for RecordingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a [`FaultyUpstream`] misbehaves after reading a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFault {
    /// Never answers; counts the connection as released when the gateway closes it.
    Hang,
    /// Closes the connection without answering.
    CloseBeforeAnswer,
    /// Answers something that is not HTTP.
    Garbage,
    /// Promises 1 MB, sends 64 KB, then resets the connection.
    ResetMidStream,
    /// Answers `200 ok` as if the connection stayed open, then closes it.
    AnswerThenClose,
    /// Promises 1 MB, sends 1 KB and never more; counts the connection as
    /// released when the gateway closes it.
    StallBody,
}

/// A raw-TCP upstream that misbehaves in one chosen way.
#[derive(Debug)]
pub struct FaultyUpstream {
    pub url: String,
    accepted: Arc<AtomicUsize>,
    released: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyUpstream {
    /// Starts it on loopback.
    pub async fn start(fault: UpstreamFault) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the faulty upstream");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let accepted = Arc::new(AtomicUsize::new(0));
        let released = Arc::new(AtomicUsize::new(0));
        let (count_accepted, count_released) = (Arc::clone(&accepted), Arc::clone(&released));
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                count_accepted.fetch_add(1, Ordering::SeqCst);
                let released = Arc::clone(&count_released);
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    if read_request_head(&mut stream).await.is_none() {
                        return;
                    }
                    match fault {
                        UpstreamFault::Hang => {
                            // Wait for the gateway to give up and close.
                            while matches!(stream.read(&mut buffer).await, Ok(read) if read > 0) {}
                            released.fetch_add(1, Ordering::SeqCst);
                        }
                        UpstreamFault::CloseBeforeAnswer => {}
                        UpstreamFault::Garbage => {
                            let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n\x00\x01\x02").await;
                        }
                        UpstreamFault::ResetMidStream => {
                            let _ = stream
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\nContent-Type: application/octet-stream\r\n\r\n")
                                .await;
                            let _ = stream.write_all(&[b'x'; 64 * 1024]).await;
                            let _ = stream.set_zero_linger();
                        }
                        UpstreamFault::AnswerThenClose => {
                            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                        }
                        UpstreamFault::StallBody => {
                            let _ = stream
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\nContent-Type: application/octet-stream\r\n\r\n")
                                .await;
                            let _ = stream.write_all(&[b'x'; 1024]).await;
                            while matches!(stream.read(&mut buffer).await, Ok(read) if read > 0) {}
                            released.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        Self { url, accepted, released, task }
    }

    /// Connections the gateway opened so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Hanging connections the gateway has closed so far.
    pub fn released(&self) -> usize {
        self.released.load(Ordering::SeqCst)
    }
}

impl Drop for FaultyUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads from `stream` until a request head has ended (`\r\n\r\n`); `None`
/// when the peer closes or fails first. Bytes after the head may be included.
pub async fn read_request_head(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => head.extend_from_slice(buffer.get(..read)?),
        }
    }
    Some(head)
}

/// An `[[upstreams]]` entry named `name`, chosen by `host`, sending to `url`,
/// whose one rule lets only the `admins` group through.
pub fn admins_only_host_route(name: &str, url: &str, host: &str) -> portcullis::config::raw::RawUpstream {
    use portcullis::config::raw::{RawRule, RawUpstream};
    RawUpstream {
        name: Some(name.to_owned()),
        url: url.to_owned(),
        host: Some(host.to_owned()),
        rules: vec![RawRule {
            name: Some("admins-only".to_owned()),
            path_prefix: Some("/".to_owned()),
            groups: vec!["admins".to_owned()],
            ..RawRule::default()
        }],
        ..RawUpstream::default()
    }
}
