//! Keep-alive HTTP/1.1 connections to a plain-http upstream, for one serving
//! worker.
//!
//! hyper-util's pooled client spent about 6,000 instructions of every proxied
//! request on pooling: hashing its pool key (SipHash, three times), a checkout
//! future, and a task spawned to hand each connection back. A worker's
//! requests share one thread, so this pool is a short list of idle
//! connections behind an uncontended lock: a request takes the most recently
//! used one, and the connection goes back once both its request body and its
//! response body have ended (either dropped before its end closes the
//! connection instead): an upstream may answer before it has read the whole
//! request, and a connection still sending a body is busy.
//! https upstreams keep hyper-util's client (TLS and HTTP/2 by ALPN).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
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
        let handoff = Handoff::new(&self.idle, &mut request);
        while let Some(mut sender) = self.checkout() {
            // Idle connections are done with both bodies of their last
            // exchange; readiness only waits for its connection task to notice,
            // and a connection not ready within a connect timeout is dropped.
            if !matches!(tokio::time::timeout(self.connect_timeout, sender.ready()).await, Ok(Ok(()))) {
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(handoff.returning(response, sender)),
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
        Ok(handoff.returning(response, sender))
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

/// One exchange's claim on its connection: the connection goes back to the
/// idle ones when the last of its two bodies (request, response) ends, and
/// is dropped (hyper then closes it) if either is dropped or fails first.
struct Handoff {
    idle: Arc<Idle>,
    /// Bodies of the exchange still running.
    running: AtomicUsize,
    /// Set once the response has arrived; taken to return or drop the connection.
    sender: Mutex<Option<SendRequest<ProxyBody>>>,
}

impl Handoff {
    /// Starts tracking the exchange of `request`, whose body now reports its end.
    fn new(idle: &Arc<Idle>, request: &mut Request<ProxyBody>) -> Arc<Self> {
        let request_body_running = !request.body().is_end_stream();
        let handoff = Arc::new(Self {
            idle: Arc::clone(idle),
            running: AtomicUsize::new(1 + usize::from(request_body_running)),
            sender: Mutex::new(None),
        });
        if request_body_running {
            let body = std::mem::replace(request.body_mut(), crate::body::empty());
            *request.body_mut() = crate::body::boxed(Tracked { body, handoff: Some(Arc::clone(&handoff)) });
        }
        handoff
    }

    /// `response`, whose body (with the request's) puts `sender` back among
    /// the idle connections once both have ended.
    fn returning(self: Arc<Self>, response: Response<Incoming>, sender: SendRequest<ProxyBody>) -> Response<ProxyBody> {
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // The connection now belongs to the tunnel.
            return response.map(crate::body::boxed);
        }
        if let Ok(mut slot) = self.sender.lock() {
            *slot = Some(sender);
        }
        response.map(|body| {
            let mut body = Tracked { body, handoff: Some(self) };
            body.end_if_ended();
            crate::body::boxed(body)
        })
    }

    /// One body has ended; the last one returns the connection.
    fn body_ended(&self) {
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(sender) = self.sender.lock().ok().and_then(|mut slot| slot.take())
        {
            self.idle.put_back(sender);
        }
    }

    /// A body was dropped or failed before its end: the connection is not reused.
    fn body_abandoned(&self) {
        // Never counts down to zero now: the other body's end cannot return it.
        self.running.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut slot) = self.sender.lock() {
            slot.take();
        }
    }
}

/// A request or response body that tells its exchange's [`Handoff`] when it
/// has ended (read to the end, or known to be empty), or when it was dropped
/// or failed before that.
struct Tracked<B: Body> {
    body: B,
    handoff: Option<Arc<Handoff>>,
}

impl<B: Body> Tracked<B> {
    fn end_if_ended(&mut self) {
        if self.body.is_end_stream()
            && let Some(handoff) = self.handoff.take()
        {
            handoff.body_ended();
        }
    }
}

impl<B> Body for Tracked<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            // hyper stops polling once `is_end_stream` says so: check after every frame.
            Poll::Ready(Some(Ok(_))) => this.end_if_ended(),
            Poll::Ready(None) => {
                if let Some(handoff) = this.handoff.take() {
                    handoff.body_ended();
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(handoff) = this.handoff.take() {
                    handoff.body_abandoned();
                }
            }
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

impl<B: Body> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.end_if_ended();
        if let Some(handoff) = self.handoff.take() {
            handoff.body_abandoned();
        }
    }
}

/// `/path?query` of an absolute URI: what an HTTP/1.1 request line to an
/// origin server carries (RFC 9112 §3.2.1).
fn to_origin_form(uri: &mut Uri) {
    let path_and_query = uri.path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    *uri = Uri::from(path_and_query);
}
