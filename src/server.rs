//! The listener: accepts connections, speaks HTTP/1.1 and HTTP/2 (with
//! upgrades), bounds slow clients, isolates panics to one request, and drains
//! in-flight requests on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::gateway::{Connection, Gateway};
use crate::pages;

/// Limits applied to every client connection.
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    /// Time allowed to send the request head (slow-loris defence).
    pub header_read_timeout: Duration,
    /// Time to let in-flight requests finish after shutdown starts.
    pub drain_timeout: Duration,
    /// HTTP/1 read buffer, which bounds the request head.
    pub max_header_bytes: usize,
    pub max_concurrent_streams: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(25),
            max_header_bytes: 64 * 1024,
            max_concurrent_streams: 250,
        }
    }
}

/// Serves `gateway` on `listener` until `shutdown` completes, then stops
/// accepting and waits (up to the drain timeout) for open requests.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let (stream, client_addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: keep serving existing connections.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connection_info = Connection { client_addr, tls: false };
        let gateway = Arc::clone(&gateway);
        let service = service_fn(move |request: Request<Incoming>| {
            let gateway = Arc::clone(&gateway);
            async move { Ok::<_, Infallible>(handle_isolated(gateway, request, connection_info).await) }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }

    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(limits.drain_timeout) => tracing::warn!("drain timeout reached; closing remaining connections"),
    }
}

/// A panic while handling one request becomes a 500 for that request only.
async fn handle_isolated(
    gateway: Arc<Gateway>,
    request: Request<Incoming>,
    connection: Connection,
) -> http::Response<crate::body::ProxyBody> {
    match AssertUnwindSafe(gateway.handle(request, connection)).catch_unwind().await {
        Ok(response) => response,
        Err(_) => {
            tracing::error!("request handler panicked");
            pages::text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}
