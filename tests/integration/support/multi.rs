//! A gateway with several providers on loopback: two development providers
//! with different issuers and different users (`staff`: alice, bob;
//! `partners`: carol, and an `alice` whose `sub` equals staff's alice), and
//! optionally the npm `oauth2-mock-server` as a third (`mock`), all in one
//! `[[oidc.providers]]` list behind one echo upstream.
//!
//! Routes: `/staff-app` accepts only staff, `/partners-app` only partners
//! (both `[[upstreams]]` to the same echo server), everything else all
//! providers; `/api` is an API prefix (401, never a login redirect).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Method, StatusCode};
use portcullis::clock::Clock;
use portcullis::config::raw::{RawProvider, RawUpstream};
use portcullis::config::{Config, RawConfig};
use portcullis::secret::{SecretBytes, SecretString};
use portcullis::session::data::{SessionData, SessionHandle};
use portcullis::session::flow::LoginFlow;
use portcullis::session::seal::{KeyRing, Purpose};
use portcullis_devkit::devidp::{DevProvider, DevProviderConfig, DevUser, Faults, TimeSource};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::browser::{Browser, hidden_fields, query_params};
use super::http::Reply;
use super::logs;
use super::world::{CLIENT_ID, random_session_secret};

/// The client id the gateway uses at the npm mock provider.
pub const MOCK_CLIENT_ID: &str = "portcullis-e2e";
/// Only staff sessions reach it.
pub const STAFF_APP: &str = "/staff-app";
/// Only partners sessions reach it.
pub const PARTNERS_APP: &str = "/partners-app";

type Tweak = Arc<dyn Fn(&mut RawConfig) + Send + Sync>;
type ProviderSetup = Box<dyn FnOnce(&Faults)>;

/// A running `oauth2-mock-server` (tests/e2e/mock-idp.mjs); killed on drop,
/// and it exits by itself when its stdin closes.
pub struct MockProvider {
    pub issuer: String,
    _child: Child,
}

impl MockProvider {
    pub async fn start() -> MockProvider {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let script = root.join("tests/e2e/mock-idp.mjs");
        assert!(
            root.join("tests/e2e/node_modules/oauth2-mock-server").is_dir(),
            "oauth2-mock-server is not installed in tests/e2e/node_modules: run `tests/run-all.sh --deps-only`"
        );
        let mut child = Command::new("node")
            .arg(&script)
            .args(["--client-id", MOCK_CLIENT_ID])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start node {}: {error}", script.display()));
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let issuer = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("read the mock's stdout") {
                if let Some(issuer) = line.strip_prefix("MOCK_IDP_ISSUER=") {
                    return issuer.trim().to_owned();
                }
            }
            panic!("the mock provider exited before printing its issuer");
        })
        .await
        .expect("the mock provider printed its issuer within 30 s");
        MockProvider { issuer, _child: child }
    }
}

/// Options for a [`MultiWorld`].
#[must_use]
pub struct MultiBuilder {
    mock: Option<String>,
    tweak: Option<Tweak>,
    staff_setup: Vec<ProviderSetup>,
    partners_setup: Vec<ProviderSetup>,
    staff_down: bool,
    partners_access_ttl: Option<Duration>,
    client_secret: Option<String>,
}

impl MultiBuilder {
    /// Adds the npm mock provider (at `issuer`) as provider `mock`.
    pub fn with_mock(mut self, issuer: &str) -> Self {
        self.mock = Some(issuer.to_owned());
        self
    }

    /// Adjusts the gateway's raw configuration.
    pub fn tweak(mut self, tweak: impl Fn(&mut RawConfig) + Send + Sync + 'static) -> Self {
        self.tweak = Some(Arc::new(tweak));
        self
    }

    /// Changes staff's faults before the gateway first contacts it.
    pub fn staff_faults(mut self, setup: impl FnOnce(&Faults) + 'static) -> Self {
        self.staff_setup.push(Box::new(setup));
        self
    }

    /// Changes partners' faults before the gateway first contacts it.
    pub fn partners_faults(mut self, setup: impl FnOnce(&Faults) + 'static) -> Self {
        self.partners_setup.push(Box::new(setup));
        self
    }

    /// Staff's provider is stopped before the gateway starts (its port closed).
    pub fn staff_down(mut self) -> Self {
        self.staff_down = true;
        self
    }

    /// Both development providers register the gateway as a confidential
    /// client with `secret` (`client_secret_basic`): introspection needs one.
    pub fn confidential(mut self, secret: &str) -> Self {
        self.client_secret = Some(secret.to_owned());
        self
    }

    /// Partners issues access tokens living this long.
    pub fn partners_access_ttl(mut self, ttl: Duration) -> Self {
        self.partners_access_ttl = Some(ttl);
        self
    }

    pub async fn start(self) -> MultiWorld {
        logs::install();
        let clock = Clock::system();
        let gateway_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the gateway");
        let gateway_addr = gateway_listener.local_addr().expect("gateway address");
        let public_url = format!("http://{gateway_addr}");

        let staff_users = vec![dev_user("alice", &["admins", "staff"]), dev_user("bob", &["staff"])];
        // Partners' alice has the same `sub` as staff's (the devidp derives it from the username).
        let partners_users = vec![dev_user("carol", &["partners"]), dev_user("alice", &["partners"])];
        let secret = self.client_secret.clone();
        let staff = start_dev_provider(&clock, &public_url, staff_users, None, secret.clone()).await;
        let partners = start_dev_provider(&clock, &public_url, partners_users, self.partners_access_ttl, secret).await;
        for setup in self.staff_setup {
            setup(staff.faults());
        }
        for setup in self.partners_setup {
            setup(partners.faults());
        }
        let staff_issuer = staff.issuer().to_owned();
        let staff = if self.staff_down {
            staff.shutdown();
            None
        } else {
            Some(staff)
        };

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the echo upstream");
        let upstream_url = format!("http://{}", listener.local_addr().expect("echo address"));
        let (stop_echo, stopped) = oneshot::channel::<()>();
        let echo = tokio::spawn(async move {
            let _ = portcullis_devkit::echo::serve_echo(listener, async move {
                let _ = stopped.await;
            })
            .await;
        });

        let mut raw = RawConfig {
            listen: gateway_addr.to_string(),
            public_url: Some(public_url.clone()),
            upstream: Some(upstream_url.clone()),
            ..RawConfig::default()
        };
        raw.oidc.http_timeout = Duration::from_secs(5);
        raw.oidc.providers.push(raw_provider("staff", &staff_issuer, CLIENT_ID));
        raw.oidc.providers.push(raw_provider("partners", partners.issuer(), CLIENT_ID));
        if let Some(secret) = &self.client_secret {
            for provider in &mut raw.oidc.providers {
                provider.client_secret = Some(SecretString::new(secret.clone()));
            }
        }
        if let Some(mock) = &self.mock {
            raw.oidc.providers.push(raw_provider("mock", mock, MOCK_CLIENT_ID));
        }
        let session_secret = random_session_secret();
        raw.session.secret = Some(SecretString::new(session_secret.clone()));
        raw.proxy.connect_timeout = Duration::from_secs(2);
        raw.proxy.response_timeout = Duration::from_secs(10);
        raw.authz.api_path_prefixes = vec!["/api".to_owned()];
        for (path, provider) in [(STAFF_APP, "staff"), (PARTNERS_APP, "partners")] {
            raw.upstreams.push(RawUpstream {
                name: Some(provider.to_owned()),
                url: upstream_url.clone(),
                path_prefix: Some(path.to_owned()),
                providers: Some(vec![provider.to_owned()]),
                ..RawUpstream::default()
            });
        }
        if let Some(tweak) = &self.tweak {
            tweak(&mut raw);
        }
        let config = Config::from_raw(raw).expect("a valid multi-provider configuration");
        let gateway = portcullis::start(config, clock.clone()).await.expect("the gateway starts");
        let gateway_task =
            tokio::spawn(portcullis::run(Arc::clone(&gateway), gateway_listener, std::future::pending()));
        MultiWorld {
            staff,
            partners,
            clock,
            gateway_addr,
            public_url,
            session_secret,
            gateway_task,
            echo: Some((stop_echo, echo)),
        }
    }
}

fn dev_user(name: &str, groups: &[&str]) -> DevUser {
    DevUser {
        username: name.to_owned(),
        password: name.to_owned(),
        email: format!("{name}@example.test"),
        name: name.to_owned(),
        groups: groups.iter().map(|group| (*group).to_owned()).collect(),
        email_verified: true,
    }
}

async fn start_dev_provider(
    clock: &Clock,
    public_url: &str,
    users: Vec<DevUser>,
    access_ttl: Option<Duration>,
    client_secret: Option<String>,
) -> DevProvider {
    let mut config = DevProviderConfig::demo(CLIENT_ID, format!("{public_url}/oauth2/callback"));
    let provider_clock = clock.clone();
    config.clock = TimeSource::from_fn(move || provider_clock.now());
    config.post_logout_redirect_uris = vec![format!("{public_url}/")];
    config.users = users;
    config.client_secret = client_secret;
    if let Some(ttl) = access_ttl {
        config.access_token_ttl = ttl;
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a provider");
    DevProvider::start(listener, config).await.expect("start a provider")
}

/// `[[oidc.providers]]` entry with only id, issuer and client id set.
pub fn raw_provider(id: &str, issuer: &str, client_id: &str) -> RawProvider {
    serde_json::from_value(serde_json::json!({ "id": id, "issuer": issuer, "client_id": client_id }))
        .expect("a raw provider")
}

/// Two development providers (and perhaps the npm mock) behind one gateway.
pub struct MultiWorld {
    /// `None` when started with [`MultiBuilder::staff_down`].
    pub staff: Option<DevProvider>,
    pub partners: DevProvider,
    pub clock: Clock,
    pub gateway_addr: SocketAddr,
    pub public_url: String,
    session_secret: String,
    gateway_task: JoinHandle<Result<(), portcullis::ServeError>>,
    echo: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl MultiWorld {
    pub fn builder() -> MultiBuilder {
        MultiBuilder {
            mock: None,
            tweak: None,
            staff_setup: Vec::new(),
            partners_setup: Vec::new(),
            staff_down: false,
            partners_access_ttl: None,
            client_secret: None,
        }
    }

    /// The staff provider (fails the test if it was stopped).
    pub fn staff(&self) -> &DevProvider {
        self.staff.as_ref().expect("staff's provider is running")
    }

    /// A browser with an empty jar (its own login helpers assume one
    /// provider: use [`login_at`] and friends instead).
    pub fn browser(&self) -> Browser {
        Browser::new(
            format!("http://{}", self.gateway_addr),
            self.public_url.clone(),
            self.partners.issuer().to_owned(),
            session_cookie("partners"),
        )
    }

    fn key_ring(&self) -> KeyRing {
        let bytes = STANDARD.decode(&self.session_secret).expect("base64 secret");
        KeyRing::new(&[SecretBytes::new(bytes)]).expect("a key ring")
    }

    /// Opens `provider`'s session cookie value with the gateway's key.
    pub fn open_session(&self, provider: &str, value: &str) -> SessionData {
        let (json, _) =
            self.key_ring().open(Purpose::Session, &session_cookie(provider), value).expect("a sealed session");
        serde_json::from_slice(&json).expect("session JSON")
    }

    /// The `sub` and `sid` of `provider`'s session cookie value: a sealed
    /// session, or (store mode) a sealed handle.
    pub fn sub_and_sid(&self, provider: &str, value: &str) -> (String, Option<String>) {
        let name = session_cookie(provider);
        if let Ok((json, _)) = self.key_ring().open(Purpose::Session, &name, value) {
            let data: SessionData = serde_json::from_slice(&json).expect("session JSON");
            return (data.sub, data.sid);
        }
        let (json, _) = self.key_ring().open(Purpose::Handle, &name, value).expect("a sealed session or handle");
        let handle: SessionHandle = serde_json::from_slice(&json).expect("handle JSON");
        (handle.sub, handle.sid)
    }

    /// Opens a flow cookie value.
    pub fn open_flow(&self, name: &str, value: &str) -> LoginFlow {
        let (json, _) = self.key_ring().open(Purpose::Flow, name, value).expect("a sealed flow");
        serde_json::from_slice(&json).expect("flow JSON")
    }

    /// `GET /ready`.
    pub async fn ready(&self) -> Reply {
        self.browser().api_get("/ready").await
    }
}

impl Drop for MultiWorld {
    fn drop(&mut self) {
        self.gateway_task.abort();
        if let Some((stop, task)) = self.echo.take() {
            let _ = stop.send(());
            task.abort();
        }
    }
}

/// The session cookie of `provider` (plain http public URL: no prefix).
pub fn session_cookie(provider: &str) -> String {
    format!("_portcullis_{provider}")
}

/// A login started at the gateway and sent to a provider, not finished.
pub struct Started {
    pub authorize_url: String,
    pub state: String,
    pub flow_cookie: String,
    /// The provider's issuer (the authorize URL's origin).
    pub issuer: String,
}

/// `/oauth2/start?provider=ID&rd=RD`: the gateway sends the browser to that provider.
pub async fn start_at(browser: &Browser, provider: &str, rd: &str) -> Started {
    let target = format!("/oauth2/start?provider={provider}&rd={}", urlencode(rd));
    let reply = browser.navigate(&target).await;
    let authorize_url = reply.expect_redirect();
    let (issuer, _) =
        authorize_url.split_once("/authorize?").unwrap_or_else(|| panic!("not an authorize URL: {authorize_url}"));
    let state = query_params(&authorize_url).get("state").cloned().expect("a state");
    let flow_cookie = format!("_portcullis_flow_{state}");
    assert!(reply.set_cookie(&flow_cookie).is_some(), "a flow cookie named after the state: {:?}", reply.headers);
    Started { issuer: issuer.to_owned(), authorize_url, state, flow_cookie }
}

/// Signs in at a development provider's form for `started`; returns the callback URL it redirects to.
pub async fn sign_in(browser: &Browser, started: &Started, username: &str) -> String {
    let page = browser.navigate(&started.authorize_url).await;
    assert_eq!(page.status, StatusCode::OK, "the provider's login form: {}", page.body);
    let mut form = hidden_fields(&page.body);
    form.push(("username".to_owned(), username.to_owned()));
    form.push(("password".to_owned(), username.to_owned()));
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&form).finish();
    let reply = browser
        .send(
            Method::POST,
            &format!("{}/authorize", started.issuer),
            &[("content-type", "application/x-www-form-urlencoded"), ("accept", "text/html")],
            Bytes::from(body),
        )
        .await;
    let callback = reply.expect_redirect();
    assert!(callback.contains("/oauth2/callback?"), "{callback}");
    callback
}

/// The whole login at `provider` (a development provider) as `username`,
/// returning to `rd`; checks the provider's session cookie was set.
pub async fn login_at(browser: &Browser, provider: &str, username: &str, rd: &str) {
    let started = start_at(browser, provider, rd).await;
    let callback = sign_in(browser, &started, username).await;
    let reply = browser.navigate(&callback).await;
    assert_eq!(reply.expect_redirect(), rd, "{}", reply.body);
    let cookie = reply.set_cookie(&session_cookie(provider)).expect("the provider's session cookie");
    assert!(!cookie.is_deletion());
}

/// The echo upstream's view of a request, as JSON.
pub fn echoed(reply: &Reply) -> serde_json::Value {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    serde_json::from_str(&reply.body).expect("echo JSON")
}

/// One header the upstream saw.
pub fn seen_header(reply: &Reply, name: &str) -> String {
    echoed(reply)["headers"][name][0].as_str().unwrap_or_default().to_owned()
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
