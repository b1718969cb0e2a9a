//! A whole deployment on loopback for one test: the development provider, an
//! upstream (the echo server unless the test brings its own) and the gateway,
//! all on `127.0.0.1:0`, sharing one test [`Clock`]. Dropping it stops them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use portcullis::clock::Clock;
use portcullis::config::{Config, RawConfig};
use portcullis::secret::{SecretBytes, SecretString};
use portcullis::session::data::SessionData;
use portcullis::session::flow::LoginFlow;
use portcullis::session::seal::{KeyRing, Purpose};
use portcullis_devkit::devidp::{DevProvider, DevProviderConfig, Faults, TimeSource};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::browser::Browser;
use super::http::Reply;
use super::logs;

/// The client id registered at the provider for the gateway.
pub const CLIENT_ID: &str = "portcullis-itest";

type Tweak = Arc<dyn Fn(&mut RawConfig) + Send + Sync>;
type ProviderSetup = Box<dyn FnOnce(&Faults)>;

/// Options for a [`TestWorld`].
#[must_use]
pub struct WorldBuilder {
    https: bool,
    client_secret: Option<(String, String)>,
    upstream: Option<String>,
    provider_setup: Vec<ProviderSetup>,
    tweak: Option<Tweak>,
    public_url: Option<String>,
    public_host: Option<String>,
    /// `[[oidc.providers]]` as (id, display name); empty: a single `[oidc]`.
    provider_list: Vec<(String, String)>,
}

/// A fresh random session secret, base64.
pub fn random_session_secret() -> String {
    STANDARD.encode(portcullis::random::bytes::<32>().expect("randomness"))
}

impl WorldBuilder {
    /// Users reach the gateway at an `https://` public URL (the socket stays
    /// plain HTTP; only cookie names and attributes change).
    pub fn https(mut self) -> Self {
        self.https = true;
        self
    }

    /// A confidential client: `secret` registered at the provider and sent by
    /// the gateway with `method` (`client_secret_basic` or `client_secret_post`).
    pub fn confidential(mut self, secret: &str, method: &str) -> Self {
        self.client_secret = Some((secret.to_owned(), method.to_owned()));
        self
    }

    /// Forwards to `url` instead of a fresh echo server.
    pub fn upstream(mut self, url: String) -> Self {
        self.upstream = Some(url);
        self
    }

    /// Changes the provider's faults before the gateway first contacts it.
    pub fn before_gateway_start(mut self, setup: impl FnOnce(&Faults) + 'static) -> Self {
        self.provider_setup.push(Box::new(setup));
        self
    }

    /// Adjusts the gateway's raw configuration (applied on every (re)start).
    pub fn tweak(mut self, tweak: impl Fn(&mut RawConfig) + Send + Sync + 'static) -> Self {
        self.tweak = Some(Arc::new(tweak));
        self
    }

    /// Users reach the gateway at `origin` (a proxy in front of it, such as
    /// nginx) instead of at the gateway's own address.
    pub fn public_url(mut self, origin: String) -> Self {
        self.public_url = Some(origin);
        self
    }

    /// Users reach the gateway as `host` on its own port (a name resolved to
    /// loopback, such as `auth.portcullis.localhost`).
    pub fn public_host(mut self, host: &str) -> Self {
        self.public_host = Some(host.to_owned());
        self
    }

    /// Configures `[[oidc.providers]]` instead of `[oidc]`: the world's
    /// provider gets the first (id, display name), and each further entry a
    /// development provider of its own (its own issuer, with one user,
    /// carol/carol), kept in [`TestWorld::other_providers`].
    pub fn providers(mut self, list: &[(&str, &str)]) -> Self {
        self.provider_list = list.iter().map(|(id, name)| ((*id).to_owned(), (*name).to_owned())).collect();
        self
    }

    /// Starts everything; fails the test if the gateway does not start.
    pub async fn start(self) -> TestWorld {
        self.try_start().await.unwrap_or_else(|error| panic!("the gateway did not start: {error}"))
    }

    /// Starts everything, returning the gateway's start error as is.
    pub async fn try_start(self) -> Result<TestWorld, portcullis::StartError> {
        logs::install();
        let clock = Clock::system();
        let gateway_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the gateway");
        let gateway_addr = gateway_listener.local_addr().expect("gateway address");
        let scheme = if self.https { "https" } else { "http" };
        let public_url = match (self.public_url, self.public_host) {
            (Some(origin), _) => origin,
            (None, Some(host)) => format!("{scheme}://{host}:{}", gateway_addr.port()),
            (None, None) => format!("{scheme}://{gateway_addr}"),
        };

        let mut provider_config = DevProviderConfig::demo(CLIENT_ID, format!("{public_url}/oauth2/callback"));
        let gateway_clock = clock.clone();
        provider_config.clock = TimeSource::from_fn(move || gateway_clock.now());
        provider_config.client_secret = self.client_secret.as_ref().map(|(secret, _)| secret.clone());
        provider_config.post_logout_redirect_uris = vec![format!("{public_url}/")];
        let provider_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the provider");
        let provider = DevProvider::start(provider_listener, provider_config).await.expect("start the provider");
        for setup in self.provider_setup {
            setup(provider.faults());
        }
        let mut other_providers = Vec::new();
        for _ in self.provider_list.iter().skip(1) {
            let mut config = DevProviderConfig::demo(CLIENT_ID, format!("{public_url}/oauth2/callback"));
            let other_clock = clock.clone();
            config.clock = TimeSource::from_fn(move || other_clock.now());
            config.post_logout_redirect_uris = vec![format!("{public_url}/")];
            config.users.truncate(1);
            if let Some(user) = config.users.first_mut() {
                "carol".clone_into(&mut user.username);
                "carol".clone_into(&mut user.password);
                "carol@example.test".clone_into(&mut user.email);
                "Carol Example".clone_into(&mut user.name);
                user.groups = vec!["partners".to_owned()];
            }
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind another provider");
            other_providers.push(DevProvider::start(listener, config).await.expect("start another provider"));
        }

        let (upstream_url, echo) = match self.upstream {
            Some(url) => (url, None),
            None => {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the echo upstream");
                let url = format!("http://{}", listener.local_addr().expect("echo address"));
                let (stop, stopped) = oneshot::channel::<()>();
                let task = tokio::spawn(async move {
                    let _ = portcullis_devkit::echo::serve_echo(listener, async move {
                        let _ = stopped.await;
                    })
                    .await;
                });
                (url, Some((stop, task)))
            }
        };

        let mut world = TestWorld {
            provider,
            other_providers,
            provider_list: self.provider_list,
            clock,
            gateway_addr,
            public_url,
            upstream_url,
            session_secret: random_session_secret(),
            client_secret: self.client_secret,
            https: self.https,
            tweak: self.tweak,
            gateway_task: None,
            gateway: None,
            older_secrets: Vec::new(),
            shutdown: None,
            echo,
        };
        world.start_gateway(gateway_listener).await?;
        Ok(world)
    }
}

/// Provider, upstream and gateway, running.
pub struct TestWorld {
    pub provider: DevProvider,
    /// With [`WorldBuilder::providers`]: the providers after the first, in order.
    pub other_providers: Vec<DevProvider>,
    provider_list: Vec<(String, String)>,
    /// The clock shared by provider and gateway; `advance` it instead of sleeping.
    pub clock: Clock,
    pub gateway_addr: SocketAddr,
    /// The public origin, without a trailing slash.
    pub public_url: String,
    pub upstream_url: String,
    session_secret: String,
    client_secret: Option<(String, String)>,
    https: bool,
    tweak: Option<Tweak>,
    gateway_task: Option<JoinHandle<Result<(), portcullis::ServeError>>>,
    /// The running gateway, for its metrics.
    gateway: Option<std::sync::Arc<portcullis::gateway::Gateway>>,
    /// Older keys configured after the current one (`session.secrets`), for rotation tests.
    older_secrets: Vec<String>,
    /// Completing it starts the gateway's graceful shutdown.
    shutdown: Option<oneshot::Sender<()>>,
    echo: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl TestWorld {
    /// Options for a new world.
    pub fn builder() -> WorldBuilder {
        WorldBuilder {
            https: false,
            client_secret: None,
            upstream: None,
            provider_setup: Vec::new(),
            tweak: None,
            public_url: None,
            public_host: None,
            provider_list: Vec::new(),
        }
    }

    /// A default world: public client, plain HTTP public URL, echo upstream.
    pub async fn start() -> TestWorld {
        Self::builder().start().await
    }

    fn raw_config(&self) -> RawConfig {
        let mut raw = RawConfig {
            listen: self.gateway_addr.to_string(),
            public_url: Some(self.public_url.clone()),
            upstream: Some(self.upstream_url.clone()),
            ..RawConfig::default()
        };
        raw.oidc.issuer = Some(self.provider.issuer().to_owned());
        raw.oidc.client_id = Some(CLIENT_ID.to_owned());
        if let Some((secret, method)) = &self.client_secret {
            raw.oidc.client_secret = Some(SecretString::new(secret.clone()));
            raw.oidc.client_auth_method = method.clone();
        }
        raw.oidc.http_timeout = Duration::from_secs(5);
        if !self.provider_list.is_empty() {
            self.configure_providers(&mut raw);
        }
        if self.older_secrets.is_empty() {
            raw.session.secret = Some(SecretString::new(self.session_secret.clone()));
        } else {
            let keys = std::iter::once(&self.session_secret).chain(&self.older_secrets);
            raw.session.secrets = Some(keys.map(|key| SecretString::new(key.clone())).collect());
        }
        raw.proxy.connect_timeout = Duration::from_secs(2);
        raw.proxy.response_timeout = Duration::from_secs(10);
        if let Some(tweak) = &self.tweak {
            tweak(&mut raw);
        }
        raw
    }

    /// Moves the world's provider into `[[oidc.providers]]` and adds the others.
    fn configure_providers(&self, raw: &mut RawConfig) {
        let issuers = std::iter::once(&self.provider).chain(&self.other_providers).map(DevProvider::issuer);
        let secret = raw.oidc.client_secret.take();
        raw.oidc.issuer = None;
        raw.oidc.client_id = None;
        raw.oidc.providers = self
            .provider_list
            .iter()
            .zip(issuers)
            .enumerate()
            .map(|(index, ((id, display_name), issuer))| {
                let mut provider = serde_json::json!({
                    "id": id, "display_name": display_name, "issuer": issuer, "client_id": CLIENT_ID,
                });
                if index == 0
                    && let Some(secret) = &secret
                {
                    provider["client_secret"] = secret.expose().into();
                }
                serde_json::from_value(provider).expect("a valid provider")
            })
            .collect();
    }

    /// The gateway's configuration for another replica listening on `listen`
    /// (same secret, provider, upstream and public URL), then changed by `tweak`.
    pub fn replica_config_with(&self, listen: SocketAddr, tweak: impl FnOnce(&mut RawConfig)) -> Config {
        let mut raw = self.raw_config();
        raw.listen = listen.to_string();
        tweak(&mut raw);
        Config::from_raw(raw).expect("a valid replica configuration")
    }

    async fn start_gateway(&mut self, listener: TcpListener) -> Result<(), portcullis::StartError> {
        let config = Config::from_raw(self.raw_config()).expect("a valid test configuration");
        let gateway = portcullis::start(config, self.clock.clone()).await?;
        self.gateway = Some(std::sync::Arc::clone(&gateway));
        let (shutdown, shutdown_requested) = oneshot::channel::<()>();
        self.shutdown = Some(shutdown);
        let signal = async move {
            // A dropped sender (world restarted or dropped) is not a shutdown request.
            if shutdown_requested.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        self.gateway_task = Some(tokio::spawn(portcullis::run(gateway, listener, signal)));
        Ok(())
    }

    /// The running gateway (to serve its other listeners, such as ext_authz).
    pub fn gateway(&self) -> std::sync::Arc<portcullis::gateway::Gateway> {
        std::sync::Arc::clone(self.gateway.as_ref().expect("a running gateway"))
    }

    /// The gateway's Prometheus metrics, as `/metrics` serves them.
    pub fn metrics(&self) -> String {
        self.gateway.as_ref().map(|gateway| gateway.render_metrics()).unwrap_or_default()
    }

    /// `/metrics` as Prometheus scrapes it: over TCP, from a metrics listener
    /// on an ephemeral port (`metrics_listen` in production).
    pub async fn scrape_metrics(&self) -> String {
        let gateway = std::sync::Arc::clone(self.gateway.as_ref().expect("a running gateway"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a metrics listener");
        let addr = listener.local_addr().expect("the metrics listener's address");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(portcullis::server::serve_metrics(listener, gateway, async {
            let _ = stopped.await;
        }));
        let reply =
            super::http::raw_exchange(addr, "GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
                .await;
        let _ = stop.send(());
        let _ = server.await;
        assert_eq!(reply.status, http::StatusCode::OK, "{}", reply.body);
        reply.body
    }

    /// Starts the gateway's graceful shutdown, as SIGTERM does.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Waits up to `limit` for the gateway to finish serving; returns whether it did.
    pub async fn gateway_finished(&mut self, limit: Duration) -> bool {
        let Some(task) = self.gateway_task.as_mut() else { return true };
        match tokio::time::timeout(limit, task).await {
            Ok(result) => {
                self.gateway_task = None;
                matches!(result, Ok(Ok(())))
            }
            Err(_) => false,
        }
    }

    /// Stops the gateway and starts a new instance on the same address, with the
    /// same provider, upstream and configuration, and `secret` as its session
    /// secret (or the current one).
    pub async fn restart_gateway(&mut self, secret: Option<String>) {
        if let Some(task) = self.gateway_task.take() {
            task.abort();
            let _ = task.await;
        }
        if let Some(secret) = secret {
            self.session_secret = secret;
        }
        let listener = TcpListener::bind(self.gateway_addr).await.expect("rebind the gateway address");
        self.start_gateway(listener).await.unwrap_or_else(|error| panic!("the gateway did not restart: {error}"));
    }

    /// Restarts the gateway with `keys` as `session.secrets` (the first seals, all open).
    pub async fn restart_gateway_with_keys(&mut self, keys: &[String]) {
        let (first, older) = keys.split_first().expect("at least one key");
        self.older_secrets = older.to_vec();
        self.restart_gateway(Some(first.clone())).await;
    }

    /// The current session key (base64), the one that seals.
    pub fn session_secret(&self) -> String {
        self.session_secret.clone()
    }

    /// A browser with an empty cookie jar.
    pub fn browser(&self) -> Browser {
        Browser::new(
            format!("http://{}", self.gateway_addr),
            self.public_url.clone(),
            self.provider.issuer().to_owned(),
            self.session_cookie_name(),
        )
    }

    /// The session cookie's name (`__Host-` prefixed over https).
    pub fn session_cookie_name(&self) -> String {
        if self.https { "__Host-_portcullis".to_owned() } else { "_portcullis".to_owned() }
    }

    fn key_ring(&self) -> KeyRing {
        let bytes = STANDARD.decode(&self.session_secret).expect("base64 secret");
        KeyRing::new(&[SecretBytes::new(bytes)]).expect("a key ring")
    }

    /// Opens a session cookie value with the gateway's key (tests only: to learn
    /// the tokens it holds).
    pub fn open_session(&self, value: &str) -> SessionData {
        let (json, _) =
            self.key_ring().open(Purpose::Session, &self.session_cookie_name(), value).expect("a sealed session");
        serde_json::from_slice(&json).expect("session JSON")
    }

    /// Opens a store-mode session cookie (a handle: id, sub, sid, lifetimes; no tokens).
    pub fn open_handle(&self, value: &str) -> portcullis::session::data::SessionHandle {
        let (json, _) =
            self.key_ring().open(Purpose::Handle, &self.session_cookie_name(), value).expect("a sealed handle");
        serde_json::from_slice(&json).expect("handle JSON")
    }

    /// Opens a flow cookie value (to learn its verifier and return path).
    pub fn open_flow(&self, name: &str, value: &str) -> LoginFlow {
        let (json, _) = self.key_ring().open(Purpose::Flow, name, value).expect("a sealed flow");
        serde_json::from_slice(&json).expect("flow JSON")
    }

    /// `GET /ready` (plain HTTP, no cookies).
    pub async fn ready(&self) -> Reply {
        self.browser().api_get("/ready").await
    }
}

impl Drop for TestWorld {
    fn drop(&mut self) {
        if let Some(task) = self.gateway_task.take() {
            task.abort();
        }
        if let Some((stop, task)) = self.echo.take() {
            let _ = stop.send(());
            task.abort();
        }
        // The provider stops when it is dropped.
    }
}
