//! The `ext_authz` gRPC listener (`[ext_authz] grpc_listen`): HTTP/2 over
//! plain TCP or our own rustls (`ext_authz.cert_file`), serving Envoy's
//! `Authorization` service built from the published protos (`envoy-types`,
//! tonic's codec and routing; the connections are hyper's, as on the main
//! listener). A peer outside `ext_authz.trusted_peers` gets
//! `PERMISSION_DENIED` for every call: its attributes would be believed.
//! Runs on the main runtime; stops accepting at shutdown and lets the checks
//! in flight finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::{Authorization, AuthorizationServer, CheckRequest, CheckResponse};
use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tonic::codegen::Service as _;

use crate::gateway::Gateway;

/// The largest `CheckRequest` decoded: headers within `server.max_header_bytes`
/// and a path within `server.max_url_bytes` fit with room to spare (Envoy
/// sends no body unless configured to).
const MAX_CHECK_REQUEST_BYTES: usize = 1 << 20;

/// The peer of the connection a call came on.
#[derive(Clone, Copy, Debug)]
struct Peer(SocketAddr);

/// The `Authorization` service: every call asks the gateway.
#[derive(Debug)]
struct Checks {
    gateway: Arc<Gateway>,
}

#[tonic::async_trait]
impl Authorization for Checks {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let Some(Peer(peer)) = request.extensions().get::<Peer>().copied() else {
            return Err(tonic::Status::internal("no peer"));
        };
        Ok(tonic::Response::new(self.gateway.check_ext_authz(request.get_ref(), peer).await))
    }
}

/// Serves the `Authorization` service on `listener` (TLS when `tls` is given)
/// until `shutdown` completes, then waits up to `server.drain_timeout` for the
/// calls in flight.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) {
    let Some(config) = gateway.config().ext_authz.clone() else { return };
    let limits = gateway.config().server;
    let service = AuthorizationServer::new(Checks { gateway: Arc::clone(&gateway) })
        .max_decoding_message_size(MAX_CHECK_REQUEST_BYTES);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (drain, draining) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut untrusted_seen = false;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "ext_authz: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::warn!(
                limit = limits.max_connections,
                "ext_authz: connection limit reached; refusing a connection"
            );
            continue;
        };
        let trusted = config.trusts(peer.ip());
        if !trusted {
            // Once at warn, then at debug: any host that reaches the port could
            // otherwise force a warning line per connection.
            if untrusted_seen {
                tracing::debug!(peer = %peer.ip(), "ext_authz: a peer outside ext_authz.trusted_peers; its checks are refused");
            } else {
                untrusted_seen = true;
                tracing::warn!(peer = %peer.ip(), "ext_authz: a peer outside ext_authz.trusted_peers; its checks are refused (further such peers are logged at debug)");
            }
        }
        let _ = stream.set_nodelay(true);
        let connection = Calls { service: service.clone(), peer, trusted, draining: draining.clone(), limits };
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => connection.serve(stream).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => connection.serve(stream).await,
                        Ok(Err(error)) => tracing::debug!(%error, "ext_authz: TLS handshake failed"),
                        Err(_) => tracing::debug!("ext_authz: TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    drain.send_replace(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.drain_timeout, permits.acquire_many(all)).await.is_err() {
        tracing::warn!("ext_authz: drain timeout reached; closing remaining connections");
    }
}

/// One connection's calls.
struct Calls {
    service: AuthorizationServer<Checks>,
    peer: SocketAddr,
    trusted: bool,
    draining: watch::Receiver<bool>,
    limits: crate::config::ServerConfig,
}

impl Calls {
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self { service, peer, trusted, mut draining, limits } = self;
        let calls = service_fn(move |mut request: Request<Incoming>| {
            let mut service = service.clone();
            async move {
                if !trusted {
                    return Ok::<_, Infallible>(
                        tonic::Status::permission_denied("not in ext_authz.trusted_peers").into_http(),
                    );
                }
                request.extensions_mut().insert(Peer(peer));
                service.call(request).await
            }
        });
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        let connection = builder.serve_connection(TokioIo::new(stream), calls);
        let mut connection = std::pin::pin!(connection);
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            () = async { let _ = draining.wait_for(|draining| *draining).await; } => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(error) = ended {
            tracing::debug!(%error, "ext_authz: connection ended with an error");
        }
    }
}
