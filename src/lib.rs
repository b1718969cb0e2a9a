//! Portcullis: a reverse-proxy authentication gateway.
//!
//! Every request passes one decision (see [`gateway`]): protected requests need
//! a session made by an OpenID Connect login with PKCE; authenticated requests
//! are forwarded to the upstream with a bearer token and trusted identity
//! headers. [`run`] serves a validated [`config::Config`] on bound listeners.

pub mod body;
pub mod clock;
pub mod config;
pub mod demo;
pub mod devidp;
pub mod echo;
pub mod gateway;
pub mod oidc;
pub mod pages;
pub mod proxy;
pub mod random;
pub mod redirect;
pub mod secret;
pub mod server;
pub mod session;
pub mod telemetry;

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
    #[error("identity provider {issuer}: {error}")]
    Provider { issuer: String, error: oidc::provider::ProviderError },
}

/// Builds the gateway and tries the provider once. A provider that cannot be
/// used as configured (issuer mismatch, no S256) is an error; one that is
/// merely unreachable is retried in the background while the gateway serves
/// and reports not-ready.
pub async fn start(config: Config, clock: Clock) -> Result<Arc<Gateway>, StartError> {
    let gateway = Arc::new(Gateway::new(config, clock)?);
    let provider = Arc::clone(gateway.provider());
    match provider.load().await {
        Ok(()) => tracing::info!(issuer = %gateway.config().oidc.issuer, "identity provider loaded"),
        Err(error) if error.is_fatal() => {
            return Err(StartError::Provider { issuer: gateway.config().oidc.issuer.clone(), error });
        }
        Err(error) => {
            tracing::warn!(issuer = %gateway.config().oidc.issuer, %error, "identity provider not reachable yet; starting not-ready and retrying");
            tokio::spawn(provider.load_until_ready());
        }
    }
    Ok(gateway)
}

/// Serves a started gateway on `listener` until `shutdown` completes.
pub async fn run(gateway: Arc<Gateway>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    server::serve(listener, gateway, server::ServerLimits::default(), shutdown).await;
}
