//! Keep-alive HTTP/1.1 connections to a plain-http upstream, for one serving
//! worker.
//!
//! hyper-util's pooled client spent about 6,000 instructions of every proxied
//! request on pooling: hashing its pool key (SipHash, three times), a checkout
//! future, and a task spawned to hand each connection back. A worker's
//! requests share one thread, so this pool is a short list of idle
//! connections behind an uncontended lock: a request takes the most recently
//! used one, and its response body puts the connection back when it ends
//! (a body dropped before its end closes the connection instead).
//! https upstreams keep hyper-util's client (TLS and HTTP/2 by ALPN).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{ProxyError, classify_hyper_error as classify};
use crate::body::ProxyBody;

/// Where the upstream's connections go.
#[derive(Clone, Debug)]
pub(super) enum Address {
    /// An IP address: no lookup.
    Ip(SocketAddr),
    /// A name, looked up (off the worker thread) for every new connection.
    Name(String, u16),
}

/// One worker's connections to one plain-http upstream.
pub(super) struct PlainPool {
    address: Address,
    /// `Host` for requests that arrive without one (HTTP/2 clients send `:authority`).
    host: HeaderValue,
    connect_timeout: Duration,
    idle: Arc<Idle>,
}

/// The idle connections, shared with the response bodies that return them.
struct Idle {
    timeout: Duration,
    /// At most this many are kept; one more is closed instead.
    max: usize,
    connections: Mutex<Vec<IdleConnection>>,
}

struct IdleConnection {
    sender: SendRequest<ProxyBody>,
    since: Instant,
}

impl Idle {
    fn put_back(&self, sender: SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut connections) = self.connections.lock()
            && connections.len() < self.max
        {
            connections.push(IdleConnection { sender, since: Instant::now() });
        }
    }
}

impl PlainPool {
    pub(super) fn new(
        address: Address,
        host: HeaderValue,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_kept: usize,
    ) -> Self {
        let idle = Idle { timeout: idle_timeout, max: max_kept, connections: Mutex::new(Vec::new()) };
        Self { address, host, connect_timeout, idle: Arc::new(idle) }
    }

    /// Sends `request` (absolute URI of this upstream) over an idle
    /// connection or a new one, and returns the response, whose body returns
    /// the connection when it ends.
    pub(super) async fn send(&self, mut request: Request<ProxyBody>) -> Result<Response<ProxyBody>, ProxyError> {
        to_origin_form(request.uri_mut());
        if !request.headers().contains_key(header::HOST) {
            request.headers_mut().insert(header::HOST, self.host.clone());
        }
        while let Some(mut sender) = self.checkout() {
            // Idle connections are done with their last response; readiness
            // only waits for its connection task to notice.
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.returning(response, sender)),
                // The upstream closed the connection before the request went out
                // (an idle keep-alive timeout): it is sent on another one.
                Err(mut error) => match error.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(classify(error.error())),
                },
            }
        }
        let mut sender = self.connect().await?;
        let response = sender.send_request(request).await.map_err(|error| classify(&error))?;
        Ok(self.returning(response, sender))
    }

    /// `response`, whose body puts `sender` back among the idle connections once it has ended.
    fn returning(&self, response: Response<Incoming>, sender: SendRequest<ProxyBody>) -> Response<ProxyBody> {
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // The connection now belongs to the tunnel.
            return response.map(crate::body::boxed);
        }
        let idle = Arc::clone(&self.idle);
        response.map(|body| {
            let mut body = ReturningBody { body, connection: Some((idle, sender)) };
            body.return_if_ended();
            crate::body::boxed(body)
        })
    }

    /// The most recently used idle connection; closed ones and ones idle past
    /// the idle timeout are dropped on the way.
    fn checkout(&self) -> Option<SendRequest<ProxyBody>> {
        let now = Instant::now();
        let mut connections = self.idle.connections.lock().ok()?;
        connections.retain(|connection| {
            !connection.sender.is_closed() && now.saturating_duration_since(connection.since) <= self.idle.timeout
        });
        connections.pop().map(|connection| connection.sender)
    }

    async fn connect(&self) -> Result<SendRequest<ProxyBody>, ProxyError> {
        let connecting = async {
            match &self.address {
                Address::Ip(address) => TcpStream::connect(address).await,
                Address::Name(host, port) => TcpStream::connect((host.as_str(), *port)).await,
            }
        };
        let stream = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(_)) | Err(_) => return Err(ProxyError::Unreachable),
        };
        // Small requests and heads go out at once (as hyper-util's connector does).
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.map_err(|error| classify(&error))?;
        tokio::spawn(async move {
            // Upgrades: a `101` hands the connection to the WebSocket tunnel.
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

impl std::fmt::Debug for PlainPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.idle.connections.lock().map(|connections| connections.len()).unwrap_or_default();
        f.debug_struct("PlainPool").field("address", &self.address).field("idle", &idle).finish_non_exhaustive()
    }
}

/// An upstream response body that returns its connection to the idle ones
/// once it has ended (read to the end, or known to be empty). Dropped before
/// its end, it drops the connection, which hyper then closes.
struct ReturningBody {
    body: Incoming,
    connection: Option<(Arc<Idle>, SendRequest<ProxyBody>)>,
}

impl ReturningBody {
    fn return_if_ended(&mut self) {
        if self.body.is_end_stream()
            && let Some((idle, sender)) = self.connection.take()
        {
            idle.put_back(sender);
        }
    }
}

impl Body for ReturningBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            // hyper stops polling once `is_end_stream` says so: check after every frame.
            Poll::Ready(Some(Ok(_))) => this.return_if_ended(),
            Poll::Ready(None) => {
                if let Some((idle, sender)) = this.connection.take() {
                    idle.put_back(sender);
                }
            }
            Poll::Ready(Some(Err(_))) => this.connection = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for ReturningBody {
    fn drop(&mut self) {
        self.return_if_ended();
    }
}

/// `/path?query` of an absolute URI: what an HTTP/1.1 request line to an
/// origin server carries (RFC 9112 §3.2.1).
fn to_origin_form(uri: &mut Uri) {
    let path_and_query = uri.path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    *uri = Uri::from(path_and_query);
}
