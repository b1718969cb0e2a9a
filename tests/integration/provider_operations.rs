//! Operating a gateway with several providers: `/ready` and the per-provider
//! readiness metric while one provider is down and after it comes up, a
//! start refused naming the misconfigured provider, `check-config` listing
//! every provider without printing any client secret, and each provider's
//! own groups claim.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use portcullis::clock::Clock;
use portcullis::config::raw::RawProvider;
use portcullis::config::{Config, RawConfig};
use portcullis::gateway::Gateway;
use portcullis::secret::SecretString;
use portcullis_devkit::devidp::{DevProvider, DevProviderConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::browser::PendingLogin;
use crate::support::{Browser, CLIENT_ID, Reply, eventually, query_params, random_session_secret, raw_exchange};

/// A gateway with the providers `staff` and `partners`, serving on loopback.
struct TwoProviders {
    gateway: Arc<Gateway>,
    addr: SocketAddr,
    public_url: String,
    serving: JoinHandle<Result<(), portcullis::ServeError>>,
}

impl Drop for TwoProviders {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

/// The gateway's listener and public URL, before anything else exists (the
/// providers register its callback).
async fn gateway_listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the gateway");
    let url = format!("http://{}", listener.local_addr().expect("gateway address"));
    (listener, url)
}

/// A development provider for the gateway at `public_url`.
async fn dev_provider(public_url: &str, listener: Option<TcpListener>) -> DevProvider {
    let listener = match listener {
        Some(listener) => listener,
        None => TcpListener::bind("127.0.0.1:0").await.expect("bind a provider"),
    };
    let config = DevProviderConfig::demo(CLIENT_ID, format!("{public_url}/oauth2/callback"));
    DevProvider::start(listener, config).await.expect("start a provider")
}

/// The configuration: `staff` and `partners` at these issuers, adjusted by `tweak`.
fn two_provider_config(
    listener: &TcpListener,
    public_url: &str,
    upstream: &str,
    [staff, partners]: [&str; 2],
    tweak: impl FnOnce(&mut RawConfig),
) -> Config {
    let mut raw = RawConfig {
        listen: listener.local_addr().expect("gateway address").to_string(),
        public_url: Some(public_url.to_owned()),
        upstream: Some(upstream.to_owned()),
        ..RawConfig::default()
    };
    raw.oidc.http_timeout = Duration::from_secs(5);
    raw.oidc.providers = [("staff", staff), ("partners", partners)]
        .into_iter()
        .map(|(id, issuer)| RawProvider {
            id: Some(id.to_owned()),
            issuer: Some(issuer.to_owned()),
            client_id: Some(CLIENT_ID.to_owned()),
            ..RawProvider::default()
        })
        .collect();
    raw.session.secret = Some(SecretString::new(random_session_secret()));
    tweak(&mut raw);
    Config::from_raw(raw).expect("a valid two-provider configuration")
}

impl TwoProviders {
    async fn start(listener: TcpListener, public_url: String, config: Config) -> Result<Self, portcullis::StartError> {
        crate::support::logs::install();
        let addr = listener.local_addr().expect("gateway address");
        let gateway = portcullis::start(config, Clock::system()).await?;
        let serving = tokio::spawn(portcullis::run(Arc::clone(&gateway), listener, std::future::pending()));
        Ok(Self { gateway, addr, public_url, serving })
    }

    async fn ready(&self) -> Reply {
        raw_exchange(self.addr, "GET /ready HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n").await
    }

    /// `/metrics` from a metrics listener over TCP, as Prometheus scrapes it.
    async fn scrape_metrics(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a metrics listener");
        let addr = listener.local_addr().expect("metrics address");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(portcullis::server::serve_metrics(listener, Arc::clone(&self.gateway), async {
            let _ = stopped.await;
        }));
        let reply = raw_exchange(addr, "GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n").await;
        let _ = stop.send(());
        let _ = server.await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body
    }

    /// The value of `portcullis_provider_ready{provider="id"}`, if exported.
    async fn provider_ready(&self, id: &str) -> Option<String> {
        let metrics = self.scrape_metrics().await;
        let prefix = format!("portcullis_provider_ready{{provider=\"{id}\"}} ");
        metrics.lines().find_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
    }
}

/// A provider address that accepts connections and closes them at once (a
/// provider that refuses to talk), counting them, until told to stop.
struct Refuser {
    stop: oneshot::Sender<()>,
    task: JoinHandle<TcpListener>,
    connections: Arc<AtomicUsize>,
}

impl Refuser {
    /// Stops refusing and hands the listener back.
    async fn into_listener(self) -> TcpListener {
        let _ = self.stop.send(());
        self.task.await.expect("the refusing task hands the listener back")
    }
}

fn refuse_connections(listener: TcpListener) -> Refuser {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => return listener,
                accepted = listener.accept() => {
                    counted.fetch_add(1, Ordering::SeqCst);
                    drop(accepted);
                }
            }
        }
    });
    Refuser { stop, task, connections }
}

#[tokio::test]
async fn one_provider_down_leaves_the_gateway_ready_and_the_metric_says_which_until_it_comes_up() {
    let (listener, public_url) = gateway_listener().await;
    let staff = dev_provider(&public_url, None).await;
    let partners_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the partners provider");
    let partners_issuer = format!("http://{}", partners_listener.local_addr().expect("partners address"));
    let refuser = refuse_connections(partners_listener);
    let config =
        two_provider_config(&listener, &public_url, "http://127.0.0.1:9", [staff.issuer(), &partners_issuer], |_| {});
    let gateway = TwoProviders::start(listener, public_url.clone(), config).await.expect("the gateway starts");

    let ready = gateway.ready().await;
    assert_eq!(ready.status, StatusCode::OK, "one provider loaded is enough: {}", ready.body);
    assert_eq!(gateway.provider_ready("staff").await.as_deref(), Some("1"));
    assert_eq!(gateway.provider_ready("partners").await.as_deref(), Some("0"));
    // A retry (after 1 s) fails too before the provider comes up: the outage is still logged once.
    // (The start's attempt is over: `start` awaited it.)
    let connections = Arc::clone(&refuser.connections);
    let at_start = connections.load(Ordering::SeqCst);
    assert!(at_start >= 1, "the start tried the provider");
    let retried = eventually(Duration::from_secs(10), || {
        let connections = Arc::clone(&connections);
        async move { connections.load(Ordering::SeqCst) > at_start }
    })
    .await;
    assert!(retried, "the background retry tried the provider again");

    // The partners provider comes up on the address the gateway keeps trying.
    let partners_listener = refuser.into_listener().await;
    let partners = dev_provider(&public_url, Some(partners_listener)).await;
    assert_eq!(partners.issuer(), partners_issuer);
    // The background retry starts after 1 s and doubles; allow a few rounds.
    let came_up = eventually(Duration::from_secs(10), || async {
        gateway.provider_ready("partners").await.as_deref() == Some("1")
    })
    .await;
    assert!(came_up, "the metric turns 1 once the provider has loaded");
    assert_eq!(gateway.provider_ready("staff").await.as_deref(), Some("1"));
    assert_eq!(gateway.ready().await.status, StatusCode::OK);
    let logged = logged_about(&partners_issuer);
    let count = |text: &str| logged.iter().filter(|line| line.contains(text)).count();
    assert_eq!(count("identity provider down"), 1, "{logged:#?}");
    assert!(count("identity provider still down") >= 1, "the failed retry logs at debug level: {logged:#?}");
    assert_eq!(count("identity provider up"), 1, "{logged:#?}");
    assert!(logged.iter().all(|line| line.contains("provider=partners")), "{logged:#?}");
}

/// The captured log lines that name `issuer`.
fn logged_about(issuer: &str) -> Vec<String> {
    let field = format!("issuer={issuer}");
    let names_it = |line: &&str| line.split_whitespace().any(|word| word == field);
    crate::support::logs::captured().lines().filter(names_it).map(str::to_owned).collect()
}

#[tokio::test]
async fn no_provider_loaded_is_not_ready_with_the_reason() {
    let (listener, public_url) = gateway_listener().await;
    let mut refusers = Vec::new();
    let mut issuers = Vec::new();
    for _ in 0..2 {
        let provider_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a provider address");
        issuers.push(format!("http://{}", provider_listener.local_addr().expect("provider address")));
        refusers.push(refuse_connections(provider_listener));
    }
    let config = two_provider_config(&listener, &public_url, "http://127.0.0.1:9", [&issuers[0], &issuers[1]], |_| {});
    let gateway = TwoProviders::start(listener, public_url, config).await.expect("the gateway starts");
    let ready = gateway.ready().await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{}", ready.body);
    assert!(ready.body.contains("no identity provider loaded"), "{}", ready.body);
    assert!(ready.header("retry-after").is_some());
    assert_eq!(gateway.provider_ready("staff").await.as_deref(), Some("0"));
    assert_eq!(gateway.provider_ready("partners").await.as_deref(), Some("0"));
}

#[tokio::test]
async fn a_misconfigured_provider_stops_the_start_naming_it() {
    let (listener, public_url) = gateway_listener().await;
    let staff = dev_provider(&public_url, None).await;
    let partners = dev_provider(&public_url, None).await;
    // The provider's metadata names its issuer without the slash: a mismatch retrying cannot fix.
    let mismatched = format!("{}/", partners.issuer());
    let config =
        two_provider_config(&listener, &public_url, "http://127.0.0.1:9", [staff.issuer(), &mismatched], |_| {});
    let Err(error) = TwoProviders::start(listener, public_url, config).await else {
        panic!("a provider whose issuer does not match must stop the start")
    };
    let portcullis::StartError::Provider { provider, error: cause, .. } = &error else { panic!("{error}") };
    assert_eq!(provider, "partners");
    assert!(
        matches!(
            cause,
            portcullis::oidc::provider::ProviderError::Discovery(
                portcullis::oidc::discovery::DiscoveryError::IssuerMismatch { .. }
            )
        ),
        "{cause}"
    );
    let message = error.to_string();
    assert!(message.contains("partners") && !message.contains("staff"), "{message}");
}

#[test]
fn check_config_lists_every_provider_and_redacts_every_client_secret() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("portcullis.toml");
    let staff_secret = "staff-client-secret-value";
    let partners_secret = "partners-client-secret-value";
    std::fs::write(
        &path,
        format!(
            "public_url = \"https://app.example.com\"\nupstream = \"http://127.0.0.1:8080\"\n\
             [[oidc.providers]]\nid = \"staff\"\nissuer = \"https://staff.example.com\"\nclient_id = \"gw\"\n\
             client_secret = \"{staff_secret}\"\n\
             [[oidc.providers]]\nid = \"partners\"\nissuer = \"https://partners.example.com\"\nclient_id = \"gw\"\n\
             client_secret = \"{partners_secret}\"\n"
        ),
    )
    .expect("write the config");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
    for (name, _) in std::env::vars() {
        if name.starts_with("PORTCULLIS_") {
            command.env_remove(name);
        }
    }
    let output = command
        .args(["check-config", "--config"])
        .arg(&path)
        .env("PORTCULLIS_SESSION__SECRET", random_session_secret())
        .output()
        .expect("run check-config");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("providers staff (https://staff.example.com), partners (https://partners.example.com)"),
        "{stdout}"
    );
    let effective_end = stdout.rfind('}').expect("the effective configuration as JSON");
    let effective: serde_json::Value =
        serde_json::from_str(&stdout[..=effective_end]).expect("the effective configuration parses");
    let providers = effective["oidc"]["providers"].as_array().expect("the providers, listed");
    assert_eq!(providers.len(), 2);
    for provider in providers {
        assert_eq!(provider["client_secret"], "<redacted>", "{provider}");
    }
    for leaked in [staff_secret, partners_secret] {
        assert!(!stdout.contains(leaked) && !stderr.contains(leaked), "a client secret was printed");
    }
}

#[tokio::test]
async fn each_provider_reads_groups_from_its_own_claim() {
    let (listener, public_url) = gateway_listener().await;
    let staff = dev_provider(&public_url, None).await;
    let partners = dev_provider(&public_url, None).await;
    // The partners provider puts roles in `roles`; its `groups` claim is left as minted.
    partners.faults().id_token_claims.set(Some(serde_json::json!({ "roles": ["contractors"] })));
    let echo_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the echo upstream");
    let upstream = format!("http://{}", echo_listener.local_addr().expect("echo address"));
    let echo = tokio::spawn(portcullis_devkit::echo::serve_echo(echo_listener, std::future::pending()));
    let config = two_provider_config(&listener, &public_url, &upstream, [staff.issuer(), partners.issuer()], |raw| {
        if let Some(partners) =
            raw.oidc.providers.iter_mut().find(|provider| provider.id.as_deref() == Some("partners"))
        {
            partners.groups_claim = Some("roles".to_owned());
        }
    });
    assert_eq!(config.providers[0].groups_claim, None, "staff keeps authz.groups_claim");
    let gateway = TwoProviders::start(listener, public_url, config).await.expect("the gateway starts");

    for (id, issuer, expected_groups) in
        [("staff", staff.issuer(), "admins,staff"), ("partners", partners.issuer(), "contractors")]
    {
        let browser = Browser::new(
            format!("http://{}", gateway.addr),
            gateway.public_url.clone(),
            issuer.to_owned(),
            format!("_portcullis_{id}"),
        );
        let landed = log_in_at(&browser, id, issuer).await;
        assert_eq!(landed, "/landing");
        let reply = browser.api_get("/whoami").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.json()["headers"]["x-forwarded-groups"][0], expected_groups, "{id}: {}", reply.body);
    }
    // Each provider's code exchange is timed under its own label.
    let metrics = gateway.scrape_metrics().await;
    for id in ["staff", "partners"] {
        let line = format!("portcullis_idp_request_seconds_count{{operation=\"token_exchange\",provider=\"{id}\"}} 1");
        assert!(metrics.lines().any(|exported| exported == line), "missing {line}");
    }
    echo.abort();
}

/// Logs alice in at the provider `id` through `/oauth2/start`; where the
/// gateway sends the browser at the end. (The flow cookies are shared by all
/// providers, so their names do not follow the provider's session cookie.)
async fn log_in_at(browser: &Browser, id: &str, issuer: &str) -> String {
    let started = browser.navigate(&format!("/oauth2/start?provider={id}&rd=/landing")).await;
    let authorize_url = started.expect_redirect();
    assert!(authorize_url.starts_with(&format!("{issuer}/authorize?")), "{id}: {authorize_url}");
    let params = query_params(&authorize_url);
    let flow_cookie_name = format!("_portcullis_flow_{}", params["state"]);
    let flow = started.set_cookie(&flow_cookie_name).expect("a flow cookie named after the state");
    let pending = PendingLogin { authorize_url, params, flow_cookie_name, flow_cookie_value: flow.value };
    let callback = browser.sign_in_at_provider(&pending, "alice", "alice").await;
    let finished = browser.finish_login(&callback).await;
    let session = finished.set_cookie(browser.session_cookie_name()).expect("the callback sets the session cookie");
    assert!(!session.is_deletion());
    finished.expect_redirect()
}

#[test]
fn a_bad_groups_claim_is_refused_naming_its_provider() {
    let mut raw = RawConfig {
        public_url: Some("https://app.example.com".to_owned()),
        upstream: Some("http://127.0.0.1:8080".to_owned()),
        ..RawConfig::default()
    };
    raw.session.secret = Some(SecretString::new(random_session_secret()));
    raw.oidc.providers = ["staff", "partners"]
        .map(|id| RawProvider {
            id: Some(id.to_owned()),
            issuer: Some(format!("https://{id}.example.com")),
            client_id: Some("gw".to_owned()),
            groups_claim: (id == "partners").then(|| "realm_access..roles".to_owned()),
            ..RawProvider::default()
        })
        .into();
    let Err(error) = Config::from_raw(raw) else { panic!("an empty segment in groups_claim must be refused") };
    assert!(error.to_string().contains("oidc.providers[partners].groups_claim"), "{error}");
}
