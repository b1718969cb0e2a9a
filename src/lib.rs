//! Portcullis: a reverse-proxy authentication gateway.
//!
//! Every request passes one decision (see [`gateway`]): protected requests need
//! a session made by an OpenID Connect login with PKCE; authenticated requests
//! are forwarded to the upstream with a bearer token and trusted identity
//! headers. [`run`] serves a validated [`config::Config`] on bound listeners.

// The auto-trait (`Send`) check of a connection's future walks the whole request path (hyper, the
// gateway, the session store's Redis client): deeper than the default limit of 128 since connections are
// accepted on the worker that serves them (`server::accept_loop`).
#![recursion_limit = "256"]

pub mod authz;
pub mod body;
pub mod clock;
pub mod config;
pub mod gateway;
#[doc(hidden)]
pub mod http1_guard;
pub mod oidc;
pub mod owned_headers;
pub mod pages;
pub mod proxy;
pub mod random;
pub mod redirect;
pub mod reload;
pub mod secret;
pub mod server;
pub mod session;
pub mod sessions;
pub mod telemetry;
pub mod tls;
pub mod tls_client;
pub mod workers;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::clock::Clock;
use crate::config::Config;
use crate::gateway::{Gateway, GatewayError};

/// Starting the gateway failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("identity provider {provider} ({issuer}): {error}")]
    Provider { provider: String, issuer: String, error: oidc::provider::ProviderError },
}

/// Builds the gateway and tries every provider once, all at once. A provider
/// that cannot be used as configured (issuer mismatch, no S256) is an error
/// naming it; one that is merely unreachable is retried in the background
/// while the gateway serves with the others (not ready while none is loaded).
pub async fn start(config: Config, clock: Clock) -> Result<Arc<Gateway>, StartError> {
    if !config.is_https() && !config::is_loopback_host(&config.public_url) {
        // Legal behind a TLS-terminating proxy only if public_url says https; an
        // http public URL means cookies without Secure and without __Host-.
        tracing::warn!(
            public_url = %config.public_url,
            "public_url is plain http on a non-loopback host: session cookies are sent without Secure and the __Host- prefix; set an https public_url"
        );
    }
    let gateway = Arc::new(Gateway::new(config, clock)?);
    gateway.start_background().await;
    let providers = gateway.providers().iter().map(Arc::clone).zip(&gateway.config().providers);
    let attempts = providers.map(|(provider, oidc)| async move { (provider.load().await, provider, oidc) });
    let attempts = futures_util::future::join_all(attempts).await;
    // Every fatal error is known before any retry is spawned: a failed start leaves nothing running.
    let mut unreachable = Vec::new();
    for (loaded, provider, oidc) in attempts {
        match loaded {
            Ok(()) => {
                tracing::info!(provider = %oidc.id, issuer = %oidc.issuer, "identity provider loaded");
                warn_without_iss(gateway.config(), &provider, &oidc.id);
            }
            Err(error) if error.is_fatal() => {
                return Err(StartError::Provider { provider: oidc.id.clone(), issuer: oidc.issuer.clone(), error });
            }
            Err(error) => unreachable.push((provider, oidc, error)),
        }
    }
    let serving = gateway.config().providers.len() - unreachable.len();
    for (provider, oidc, error) in unreachable {
        // Logged once now and once when it comes up, not at every retry.
        tracing::warn!(
            provider = %oidc.id, issuer = %oidc.issuer, %error, providers_loaded = serving,
            "identity provider down; retrying in the background (logins at the other providers work meanwhile)"
        );
        let several_issuers = has_several_issuers(gateway.config());
        tokio::spawn(load_in_background(provider, oidc.id.clone(), oidc.issuer.clone(), several_issuers));
    }
    Ok(gateway)
}

/// Retries an unreachable provider with backoff (1 s doubling to 60 s) until it
/// loads; logs its coming up once (its failures only at debug level: the
/// transition to down was logged by `start`).
async fn load_in_background(
    provider: Arc<oidc::provider::Provider>,
    id: String,
    issuer: String,
    several_issuers: bool,
) {
    let mut delay = std::time::Duration::from_secs(1);
    loop {
        tokio::time::sleep(delay).await;
        match provider.load().await {
            Ok(()) => {
                tracing::info!(provider = %id, %issuer, "identity provider up: loaded after an outage");
                if several_issuers {
                    warn_without_iss_at(&provider, &id);
                }
                return;
            }
            Err(error) => {
                tracing::debug!(provider = %id, %issuer, %error, retry_in = ?delay, "identity provider still down");
                delay = (delay * 2).min(std::time::Duration::from_secs(60));
            }
        }
    }
}

/// Whether the configured providers are more than one authorization server.
fn has_several_issuers(config: &Config) -> bool {
    let mut issuers = config.providers.iter().map(|provider| provider.issuer.as_str());
    let first = issuers.next();
    issuers.any(|issuer| Some(issuer) != first)
}

/// With several authorization servers, the callback's mix-up defence before
/// the code exchange is RFC 9207's `iss` (RFC 9700 §4.4.2): a provider that
/// does not announce it is named once, at load.
fn warn_without_iss(config: &Config, provider: &oidc::provider::Provider, id: &str) {
    if has_several_issuers(config) {
        warn_without_iss_at(provider, id);
    }
}

fn warn_without_iss_at(provider: &oidc::provider::Provider, id: &str) {
    let announced =
        provider.current().is_some_and(|loaded| loaded.metadata.authorization_response_iss_parameter_supported);
    if !announced {
        tracing::warn!(
            provider = %id,
            "identity provider does not announce the RFC 9207 iss parameter: with several providers, a response without iss cannot be checked against the login's provider before the code is redeemed (mix-up, RFC 9700 §4.4); see docs/providers.md"
        );
    }
}

/// Serving failed before it began (TLS files unusable, listener trouble).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("cannot listen on {addr}: {error}")]
    Listen { addr: std::net::SocketAddr, error: std::io::Error },
    #[error("cannot start the worker threads: {0}")]
    Workers(std::io::Error),
}

/// Serves a started gateway on `listener` until `shutdown` completes: TLS when
/// `[tls]` is configured (with certificate reloading and the optional
/// redirect listener), plain HTTP otherwise.
pub async fn run(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let Some(tls_config) = gateway.config().tls.clone() else {
        return server::serve(listener, None, gateway, shutdown).await.map_err(ServeError::Workers);
    };
    let certificate = Arc::new(tls::ReloadingCertificate::load(tls_config.files.clone())?);
    let tickets = match tls_config.ticket_rotation {
        Some(rotation) => Some(Arc::new(
            tls::TicketKeys::new(&gateway.config().session.keys, rotation, gateway.clock().clone())
                .map_err(tls::TlsError::from)?,
        )),
        None => None,
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(Arc::clone(&certificate), tickets)?);
    let watcher = tokio::spawn(Arc::clone(&certificate).watch(tls_config.reload_interval));
    let (stop_redirect, redirect_stopped) = tokio::sync::oneshot::channel::<()>();
    let redirect = match tls_config.redirect_http_listen {
        Some(addr) => {
            let redirect_listener =
                TcpListener::bind(addr).await.map_err(|error| ServeError::Listen { addr, error })?;
            let origin = gateway.config().public_url.clone();
            Some(tokio::spawn(server::serve_https_redirect(redirect_listener, origin, async move {
                let _ = redirect_stopped.await;
            })))
        }
        None => None,
    };
    let served = server::serve(listener, Some(acceptor), gateway, shutdown).await.map_err(ServeError::Workers);
    let _ = stop_redirect.send(());
    if let Some(redirect) = redirect {
        let _ = redirect.await;
    }
    watcher.abort();
    served
}

/// Serves Envoy's `ext_authz` gRPC service for a started gateway on
/// `listener` (bound to `ext_authz.grpc_listen`; TLS with reloading when
/// `ext_authz.cert_file` is set) until `shutdown` completes. Does nothing
/// when `[ext_authz]` is off.
pub async fn serve_ext_authz(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let Some(ext_authz) = gateway.config().ext_authz.clone() else { return Ok(()) };
    let Some(files) = ext_authz.tls else {
        server::ext_authz::serve(listener, None, gateway, shutdown).await;
        return Ok(());
    };
    let certificate = Arc::new(tls::ReloadingCertificate::load(files)?);
    // gRPC is HTTP/2 only: no `http/1.1` in ALPN. No session tickets: Envoy
    // keeps its few HTTP/2 connections open, so resumption would buy nothing.
    let mut config = Arc::unwrap_or_clone(tls::server_config(Arc::clone(&certificate), None)?);
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let watcher = tokio::spawn(Arc::clone(&certificate).watch(ext_authz.reload_interval));
    server::ext_authz::serve(listener, Some(acceptor), gateway, shutdown).await;
    watcher.abort();
    Ok(())
}
