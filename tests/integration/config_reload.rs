//! Configuration reload without a restart, on the real `portcullis` process
//! with a real configuration file: SIGHUP (and the opt-in file watch) applies
//! a changed rule; a broken file keeps the running configuration (the error
//! names the key, the rejected counter moves); a request in flight when the
//! reload lands finishes under the rules and upstream it started with; a
//! session key added keeps existing sessions and seals new ones.
//! Reloads are awaited by polling `/metrics`, never by sleeping.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis::secret::SecretBytes;
use portcullis::session::seal::{KeyRing, Purpose};
use portcullis_devkit::devidp::{DevProvider, DevProviderConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::support::http::EXCHANGE_TIMEOUT;
use crate::support::{Browser, CLIENT_ID, eventually, random_session_secret};

const COOKIE: &str = "_portcullis";
/// How long a reload may take to show in `/metrics`.
const RELOAD_LIMIT: Duration = Duration::from_secs(20);

/// An upstream that answers only once released, counting the requests that arrived.
struct GatedUpstream {
    url: String,
    arrived: Arc<AtomicUsize>,
    release: watch::Sender<bool>,
}

impl GatedUpstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the gated upstream");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let arrived = Arc::new(AtomicUsize::new(0));
        let (release, released) = watch::channel(false);
        let counter = Arc::clone(&arrived);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = Arc::clone(&counter);
                let released = released.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_request| {
                        let counter = Arc::clone(&counter);
                        let mut released = released.clone();
                        async move {
                            counter.fetch_add(1, Ordering::SeqCst);
                            let _ = released.wait_for(|open| *open).await;
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"slow done"))))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, arrived, release }
    }
}

/// The parts of the configuration file a test changes.
#[derive(Clone, Default)]
struct Variant {
    /// Extra `[server]` keys.
    server: String,
    /// The `[session]` keys (the key or keys).
    session: String,
    /// Tables after `[session]`: `[authz]`, rules, `[[upstreams]]`.
    rest: String,
}

/// The gateway process with its provider, echo upstream and configuration file.
struct Deployment {
    provider: DevProvider,
    gateway: String,
    metrics: SocketAddr,
    echo: String,
    /// `None` only while starting.
    child: Option<tokio::process::Child>,
    dir: tempfile::TempDir,
}

impl Deployment {
    async fn start(variant: &Variant) -> Self {
        for _ in 0..5 {
            if let Some(deployment) = Self::try_start(variant).await {
                return deployment;
            }
        }
        panic!("the gateway did not start (its probed ports were taken each time)");
    }

    async fn try_start(variant: &Variant) -> Option<Self> {
        let probe = |_| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("probe a port");
            listener.local_addr().expect("probe address")
        };
        let (addr, metrics) = (probe(0), probe(1));
        let gateway = format!("http://{addr}");
        let provider_config = DevProviderConfig::demo(CLIENT_ID, format!("{gateway}/oauth2/callback"));
        let provider_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the provider");
        let provider = DevProvider::start(provider_listener, provider_config).await.expect("start the provider");
        let echo_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the echo upstream");
        let echo = format!("http://{}", echo_listener.local_addr().expect("echo address"));
        tokio::spawn(portcullis_devkit::echo::serve_echo(echo_listener, std::future::pending()));
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut deployment = Deployment { provider, gateway, metrics, echo, child: None, dir };
        deployment.write(variant);
        let stderr = std::fs::File::create(deployment.dir.path().join("stderr.log")).expect("a log file");
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
        for (name, _) in std::env::vars() {
            if name.starts_with("PORTCULLIS_") || name == "RUST_LOG" {
                command.env_remove(name);
            }
        }
        command
            .arg("--config")
            .arg(deployment.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn portcullis");
        let mut exited = false;
        let ready = eventually(Duration::from_secs(20), || {
            let gone = matches!(child.try_wait(), Ok(Some(_)));
            exited |= gone;
            async move { gone || is_ready(addr).await }
        })
        .await;
        if exited || !ready {
            let _ = child.kill().await;
            return None;
        }
        deployment.child = Some(child);
        Some(deployment)
    }

    fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("portcullis.toml")
    }

    /// Writes the configuration file (atomically, as deployment tools do: a new file renamed over the old).
    fn write(&self, variant: &Variant) {
        let listen = self.gateway.trim_start_matches("http://");
        let text = format!(
            "listen = \"{listen}\"\npublic_url = \"{}\"\nupstream = \"{}\"\n\
             [oidc]\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nhttp_timeout = \"5s\"\n\
             [metrics]\nenabled = true\nlisten = \"{}\"\n\
             [server]\nshutdown_grace = \"0s\"\ndrain_timeout = \"5s\"\n{}\n\
             [session]\n{}\n{}\n",
            self.gateway,
            self.echo,
            self.provider.issuer(),
            self.metrics,
            variant.server,
            variant.session,
            variant.rest,
        );
        let staged = self.dir.path().join("portcullis.toml.new");
        std::fs::write(&staged, text).expect("write the config");
        std::fs::rename(&staged, self.config_path()).expect("install the config");
    }

    fn sighup(&self) {
        let pid = self.child.as_ref().and_then(tokio::process::Child::id).expect("the gateway is running");
        let status = std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status().expect("kill");
        assert!(status.success());
    }

    /// `portcullis_config_reloads_total{result}` now.
    async fn reloads(&self, result: &str) -> u64 {
        let text = scrape(self.metrics).await;
        let prefix = format!("portcullis_config_reloads_total{{result=\"{result}\"}} ");
        text.lines().find_map(|line| line.strip_prefix(&prefix)).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
    }

    /// Waits (bounded) until `result` reloads number `count`.
    async fn await_reloads(&self, result: &str, count: u64) {
        let reached = eventually(RELOAD_LIMIT, || async move { self.reloads(result).await >= count }).await;
        assert!(reached, "no {result} reload #{count}; log: {}", self.log());
    }

    fn browser(&self) -> Browser {
        Browser::new(self.gateway.clone(), self.gateway.clone(), self.provider.issuer().to_owned(), COOKIE.to_owned())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }
}

fn key_ring(secret: &str) -> KeyRing {
    KeyRing::new(&[SecretBytes::new(STANDARD.decode(secret).expect("base64"))]).expect("a key ring")
}

/// Whether `GET /ready` at `addr` answers 200 (connection errors count as not ready).
async fn is_ready(addr: SocketAddr) -> bool {
    exchange(addr, "/ready").await.starts_with("HTTP/1.1 200")
}

async fn scrape(addr: SocketAddr) -> String {
    exchange(addr, "/metrics").await
}

/// One `GET path` on a fresh connection; the whole answer as text (empty on any failure).
async fn exchange(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await
    else {
        return String::new();
    };
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut answer = Vec::new();
    match tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await {
        Ok(Ok(_)) => String::from_utf8_lossy(&answer).into_owned(),
        _ => String::new(),
    }
}

fn one_key(secret: &str) -> String {
    format!("secret = \"{secret}\"")
}

/// `/private` for nobody alice is.
const PRIVATE_FOR_NOBODY: &str =
    "[[authz.rules]]\nname = \"private\"\npath_prefix = \"/private\"\nemails = [\"nobody@example.test\"]\n";

#[tokio::test]
async fn a_changed_rule_applies_after_sighup_and_a_broken_file_keeps_the_running_configuration() {
    let secret = random_session_secret();
    let mut variant = Variant { session: one_key(&secret), rest: PRIVATE_FOR_NOBODY.to_owned(), ..Variant::default() };
    let deployment = Deployment::start(&variant).await;
    let browser = deployment.browser();
    browser.login().await;
    assert_eq!(browser.api_get("/private/page").await.status, StatusCode::FORBIDDEN);
    assert_eq!(deployment.reloads("applied").await, 0);

    // The rule opened to every signed-in user, and a key that needs a restart changed too.
    variant.rest = "[[authz.rules]]\nname = \"private\"\npath_prefix = \"/private\"\n".to_owned();
    variant.server = "max_url_bytes = 4096".to_owned();
    deployment.write(&variant);
    deployment.sighup();
    deployment.await_reloads("applied", 1).await;
    assert_eq!(browser.api_get("/private/page").await.status, StatusCode::OK, "the new rule applies");
    let log = deployment.log();
    assert!(
        log.lines().any(|line| line.contains("WARN") && line.contains("server.max_url_bytes")),
        "the key needing a restart is named: {log}"
    );

    // A broken file: the error names the key, never the value; the running rules stay.
    variant.rest = "[authz]\ndefault = \"sometimes-secret-ish\"\n".to_owned();
    deployment.write(&variant);
    deployment.sighup();
    deployment.await_reloads("rejected", 1).await;
    assert_eq!(deployment.reloads("applied").await, 1);
    assert_eq!(browser.api_get("/private/page").await.status, StatusCode::OK, "the running configuration stays");
    let log = deployment.log();
    let rejected = log.lines().find(|line| line.contains("reload rejected")).unwrap_or_else(|| panic!("{log}"));
    assert!(rejected.contains("ERROR") && rejected.contains("authz.default"), "{rejected}");
    assert!(!log.contains("sometimes-secret-ish"), "a configured value reached the log: {log}");
    let metrics = scrape(deployment.metrics).await;
    assert!(metrics.contains("portcullis_config_last_reload_success_timestamp_seconds"), "{metrics}");
}

#[tokio::test]
async fn a_request_in_flight_finishes_under_the_rules_and_upstream_it_started_with() {
    let slow = GatedUpstream::start().await;
    let secret = random_session_secret();
    let slow_route = format!("[[upstreams]]\nname = \"slow\"\nurl = \"{}\"\npath_prefix = \"/slow\"\n", slow.url);
    let mut variant = Variant { session: one_key(&secret), rest: slow_route, ..Variant::default() };
    let deployment = Deployment::start(&variant).await;
    let browser = Arc::new(deployment.browser());
    browser.login().await;

    let in_flight = tokio::spawn({
        let browser = Arc::clone(&browser);
        async move { browser.api_get("/slow/report").await }
    });
    let arrived = eventually(EXCHANGE_TIMEOUT, || async { slow.arrived.load(Ordering::SeqCst) == 1 }).await;
    assert!(arrived, "the request reached the slow upstream");

    // The slow upstream removed, and its path denied to everyone.
    variant.rest = "[[authz.rules]]\nname = \"closed\"\npath_prefix = \"/slow\"\nallow = \"deny\"\n".to_owned();
    deployment.write(&variant);
    deployment.sighup();
    deployment.await_reloads("applied", 1).await;
    assert_eq!(browser.api_get("/slow/report").await.status, StatusCode::FORBIDDEN, "new requests: the new rule");
    assert_eq!(slow.arrived.load(Ordering::SeqCst), 1, "nothing new reached the removed upstream");

    slow.release.send(true).expect("release the upstream");
    let answered = tokio::time::timeout(EXCHANGE_TIMEOUT, in_flight).await.expect("in time").expect("the request task");
    assert_eq!(answered.status, StatusCode::OK, "the request in flight finished under its own rules");
    assert_eq!(answered.body, "slow done");
}

#[tokio::test]
async fn a_session_key_added_keeps_existing_sessions_and_seals_new_ones_with_it() {
    let (old, new) = (random_session_secret(), random_session_secret());
    let mut variant = Variant { session: one_key(&old), ..Variant::default() };
    let deployment = Deployment::start(&variant).await;
    let before = deployment.browser();
    before.login().await;
    let old_cookie = before.session_value();
    assert!(key_ring(&old).open(Purpose::Session, COOKIE, &old_cookie).is_ok());

    variant.session = format!("secrets = [\"{new}\", \"{old}\"]");
    deployment.write(&variant);
    deployment.sighup();
    deployment.await_reloads("applied", 1).await;

    // The session sealed with the old key still opens, on a new connection.
    let kept = deployment.browser();
    kept.set_cookie(COOKIE, &old_cookie);
    let reply = kept.api_get("/anything").await;
    assert_eq!(reply.status, StatusCode::OK, "the existing session stays valid: {}", reply.body);

    // A new login's cookie is sealed with the new first key.
    let after = deployment.browser();
    after.login().await;
    let new_cookie = after.session_value();
    assert!(key_ring(&new).open(Purpose::Session, COOKIE, &new_cookie).is_ok(), "sealed with the new key");
    assert!(key_ring(&old).open(Purpose::Session, COOKIE, &new_cookie).is_err(), "not with the old one");
}

#[tokio::test]
async fn the_file_watch_reloads_a_changed_file_without_a_signal() {
    let secret = random_session_secret();
    let watching = "watch_config = true\nwatch_config_interval = \"100ms\"".to_owned();
    let mut variant = Variant { server: watching, session: one_key(&secret), rest: PRIVATE_FOR_NOBODY.to_owned() };
    let deployment = Deployment::start(&variant).await;
    let browser = deployment.browser();
    browser.login().await;
    assert_eq!(browser.api_get("/private/page").await.status, StatusCode::FORBIDDEN);

    variant.rest = "[[authz.rules]]\nname = \"private\"\npath_prefix = \"/private\"\n".to_owned();
    deployment.write(&variant);
    deployment.await_reloads("applied", 1).await;
    assert_eq!(browser.api_get("/private/page").await.status, StatusCode::OK, "the watched change applies");
    let log = deployment.log();
    assert!(log.contains("configuration file changed"), "the watch, not a signal, reloaded: {log}");
}
