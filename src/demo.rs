//! `portcullis demo`: the whole login on one machine, with nothing to set up.
//! Two loopback development OpenID providers ("Staff" and "Partners", each
//! with its own users), an echo upstream and one gateway accepting both, with
//! `/admin` for staff only and `/partners` for partners only (two applications
//! one browser can be signed in to at once). It refuses to listen anywhere but loopback.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::net::TcpListener;

use portcullis::clock::Clock;
use portcullis::config::raw::{RawProvider, RawRule};
use portcullis::config::{Config, RawConfig};
use portcullis_devkit::devidp::{DevProvider, DevProviderConfig, DevUser};

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

/// The path only staff may open, to show a route accepting one provider.
pub(crate) const STAFF_ONLY_PATH: &str = "/admin";
/// The path only partners may open.
pub(crate) const PARTNERS_ONLY_PATH: &str = "/partners";

/// One of the demo's providers: its id, chooser label and users (password = name).
struct DemoProvider {
    id: &'static str,
    display_name: &'static str,
    users: [(&'static str, &'static str, &'static [&'static str]); 2],
}

const DEMO_PROVIDERS: [DemoProvider; 2] = [
    DemoProvider {
        id: "staff",
        display_name: "Staff",
        users: [("alice", "Alice Example", &["admins", "staff"]), ("bob", "Bob Example", &["staff"])],
    },
    DemoProvider {
        id: "partners",
        display_name: "Partners",
        users: [("carol", "Carol Partner", &["partners"]), ("dave", "Dave Partner", &["partners"])],
    },
];

/// A running demo: where to point the browser.
#[derive(Debug)]
pub(crate) struct DemoAddresses {
    pub(crate) gateway: String,
    /// Each provider: its chooser label, issuer and user names.
    pub(crate) providers: Vec<DemoProviderAddress>,
    pub(crate) upstream: SocketAddr,
}

/// One running demo provider.
#[derive(Debug)]
pub(crate) struct DemoProviderAddress {
    pub(crate) display_name: &'static str,
    pub(crate) issuer: String,
    pub(crate) users: [&'static str; 2],
}

impl DemoProvider {
    fn provider_config(&self, public_url: &str) -> DevProviderConfig {
        let mut config = DevProviderConfig::demo(DEMO_CLIENT_ID, format!("{public_url}/oauth2/callback"));
        config.post_logout_redirect_uris = vec![format!("{public_url}/")];
        config.users = self
            .users
            .iter()
            .map(|(name, full_name, groups)| DevUser {
                username: (*name).to_owned(),
                password: (*name).to_owned(),
                email: format!("{name}@{}.example.test", self.id),
                name: (*full_name).to_owned(),
                groups: groups.iter().map(|group| (*group).to_owned()).collect(),
                email_verified: true,
            })
            .collect();
        config
    }
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

    let mut providers = Vec::with_capacity(DEMO_PROVIDERS.len());
    for demo in &DEMO_PROVIDERS {
        providers
            .push(DevProvider::start(TcpListener::bind(loopback).await?, demo.provider_config(&public_url)).await?);
    }

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
    raw.oidc.providers = DEMO_PROVIDERS
        .iter()
        .zip(&providers)
        .map(|(demo, provider)| RawProvider {
            id: Some(demo.id.to_owned()),
            display_name: Some(demo.display_name.to_owned()),
            issuer: Some(provider.issuer().to_owned()),
            client_id: Some(DEMO_CLIENT_ID.to_owned()),
            ..RawProvider::default()
        })
        .collect();
    // Both providers are accepted everywhere (the chooser), but only staff at
    // /admin and only partners at /partners.
    let only = |name: &str, path: &str, provider: &str| RawRule {
        name: Some(name.to_owned()),
        path_prefix: Some(path.to_owned()),
        allow: Some("authenticated".to_owned()),
        providers: Some(vec![provider.to_owned()]),
        ..RawRule::default()
    };
    raw.authz.rules =
        vec![only("staff-only", STAFF_ONLY_PATH, "staff"), only("partners-only", PARTNERS_ONLY_PATH, "partners")];
    // A fresh key each run: demo sessions end with the process.
    let key = portcullis::random::bytes::<32>().map_err(|_| DemoError::Random)?;
    raw.session.secret = Some(portcullis::secret::SecretString::new(STANDARD.encode(key)));
    raw.proxy.response_timeout = Duration::from_secs(30);
    let config = Config::from_raw(raw)?;

    let gateway = portcullis::start(config, Clock::system()).await?;
    let addresses = DEMO_PROVIDERS
        .iter()
        .zip(&providers)
        .map(|(demo, provider)| DemoProviderAddress {
            display_name: demo.display_name,
            issuer: provider.issuer().to_owned(),
            users: demo.users.map(|(name, _, _)| name),
        })
        .collect();
    on_ready(&DemoAddresses { gateway: format!("{public_url}/"), providers: addresses, upstream });
    portcullis::run(gateway, gateway_listener, shutdown).await?;

    let _ = stop_echo.send(());
    let _ = echo.await;
    for provider in providers {
        provider.shutdown();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `GET path` as a browser navigation, over a fresh connection; the status line and headers.
    async fn navigate(gateway: &str, path: &str) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let authority = gateway.trim_start_matches("http://").trim_end_matches('/');
        let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap_or_else(|error| panic!("{error}"));
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: text/html\r\nSec-Fetch-Mode: navigate\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap_or_else(|error| panic!("{error}"));
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap_or_else(|error| panic!("{error}"));
        let answer = String::from_utf8_lossy(&answer).into_owned();
        answer.split("\r\n\r\n").next().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn two_providers_with_their_own_users_and_a_staff_only_path() {
        let (addresses_sent, addresses) = tokio::sync::oneshot::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let listen = "127.0.0.1:0".parse().unwrap_or_else(|_| panic!("address"));
        let demo = tokio::spawn(run(
            listen,
            move |addresses: &DemoAddresses| {
                let providers: Vec<(&str, String, [&str; 2])> = addresses
                    .providers
                    .iter()
                    .map(|provider| (provider.display_name, provider.issuer.clone(), provider.users))
                    .collect();
                let _ = addresses_sent.send((addresses.gateway.clone(), providers));
            },
            async move {
                let _ = stopped.await;
            },
        ));
        let (gateway, providers) = addresses.await.unwrap_or_else(|_| panic!("the demo did not start"));
        let [(staff, staff_issuer, staff_users), (partners, partners_issuer, partners_users)] = providers.as_slice()
        else {
            panic!("two providers: {providers:?}")
        };
        assert_eq!((*staff, *partners), ("Staff", "Partners"));
        assert_eq!((staff_users, partners_users), (&["alice", "bob"], &["carol", "dave"]));
        assert_ne!(staff_issuer, partners_issuer);

        let ready = navigate(&gateway, "/ready").await;
        assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
        // Only staff may open /admin: its login goes straight to the staff provider.
        let admin = navigate(&gateway, STAFF_ONLY_PATH).await;
        let location = admin.lines().find_map(|line| line.strip_prefix("location: ")).unwrap_or_default();
        assert!(location.starts_with(&format!("{staff_issuer}/authorize?")), "{admin}");
        let partners_app = navigate(&gateway, PARTNERS_ONLY_PATH).await;
        let location = partners_app.lines().find_map(|line| line.strip_prefix("location: ")).unwrap_or_default();
        assert!(location.starts_with(&format!("{partners_issuer}/authorize?")), "{partners_app}");

        let _ = stop.send(());
        let finished = demo.await.unwrap_or_else(|error| panic!("{error}"));
        assert!(finished.is_ok(), "{finished:?}");
    }

    #[tokio::test]
    async fn refuses_anything_but_loopback() {
        let result = run("0.0.0.0:0".parse().unwrap_or_else(|_| panic!("address")), |_| {}, async {}).await;
        assert!(matches!(result, Err(DemoError::NotLoopback(_))), "{result:?}");
    }
}
