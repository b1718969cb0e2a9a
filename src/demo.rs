//! `portcullis demo`: the whole login on one machine, with nothing to set up.
//! A loopback development OpenID provider, an echo upstream and the gateway,
//! wired together. It refuses to listen anywhere but loopback.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::net::TcpListener;

use portcullis::clock::Clock;
use portcullis::config::{Config, RawConfig};
use portcullis_devkit::devidp::{DevProvider, DevProviderConfig};

/// The client id the demo provider registers for the gateway.
const DEMO_CLIENT_ID: &str = "portcullis-demo";

/// The demo could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DemoError {
    #[error("the demo only listens on loopback (127.0.0.1 or [::1]), not {0}")]
    NotLoopback(SocketAddr),
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
    #[error("configuration: {0}")]
    Config(#[from] portcullis::config::ConfigError),
    #[error(transparent)]
    Start(#[from] portcullis::StartError),
    #[error(transparent)]
    Serve(#[from] portcullis::ServeError),
    #[error("random number generator failed")]
    Random,
}

/// A running demo: where to point the browser.
#[derive(Debug)]
pub(crate) struct DemoAddresses {
    pub(crate) gateway: String,
    pub(crate) provider: String,
    pub(crate) upstream: SocketAddr,
}

/// Starts provider, echo upstream and gateway; calls `on_ready` once the
/// gateway serves, then runs until `shutdown` completes.
pub(crate) async fn run(
    listen: SocketAddr,
    on_ready: impl FnOnce(&DemoAddresses),
    shutdown: impl Future<Output = ()>,
) -> Result<(), DemoError> {
    if !listen.ip().is_loopback() {
        return Err(DemoError::NotLoopback(listen));
    }
    let gateway_listener = TcpListener::bind(listen).await?;
    let gateway_addr = gateway_listener.local_addr()?;
    let loopback = SocketAddr::new(gateway_addr.ip(), 0);
    let public_url = format!("http://{gateway_addr}");

    let mut provider_config = DevProviderConfig::demo(DEMO_CLIENT_ID, format!("{public_url}/oauth2/callback"));
    provider_config.post_logout_redirect_uris = vec![format!("{public_url}/")];
    let provider = DevProvider::start(TcpListener::bind(loopback).await?, provider_config).await?;

    let echo_listener = TcpListener::bind(loopback).await?;
    let upstream = echo_listener.local_addr()?;
    let (stop_echo, echo_stopped) = tokio::sync::oneshot::channel::<()>();
    let echo = tokio::spawn(portcullis_devkit::echo::serve_echo(echo_listener, async move {
        let _ = echo_stopped.await;
    }));

    let mut raw = RawConfig {
        listen: gateway_addr.to_string(),
        public_url: Some(public_url.clone()),
        upstream: Some(format!("http://{upstream}")),
        ..RawConfig::default()
    };
    raw.oidc.issuer = Some(provider.issuer().to_owned());
    raw.oidc.client_id = Some(DEMO_CLIENT_ID.to_owned());
    // A fresh key each run: demo sessions end with the process.
    let key = portcullis::random::bytes::<32>().map_err(|_| DemoError::Random)?;
    raw.session.secret = Some(portcullis::secret::SecretString::new(STANDARD.encode(key)));
    raw.proxy.response_timeout = Duration::from_secs(30);
    let config = Config::from_raw(raw)?;

    let gateway = portcullis::start(config, Clock::system()).await?;
    on_ready(&DemoAddresses { gateway: format!("{public_url}/"), provider: provider.issuer().to_owned(), upstream });
    portcullis::run(gateway, gateway_listener, shutdown).await?;

    let _ = stop_echo.send(());
    let _ = echo.await;
    provider.shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_anything_but_loopback() {
        let result = run("0.0.0.0:0".parse().unwrap_or_else(|_| panic!("address")), |_| {}, async {}).await;
        assert!(matches!(result, Err(DemoError::NotLoopback(_))), "{result:?}");
    }
}
