//! Single sign-on across subdomains (`session.cookie_domain`): over real TLS,
//! `a.`, `b.` and `auth.portcullis.localhost` all reach the one gateway on
//! 127.0.0.1 (the client connects there and names the host in SNI and `Host`),
//! and a browser-like cookie jar that applies `Domain`, `__Secure-` and
//! `__Host-` as browsers do. One login at the callback origin returns to the
//! app it started at and is accepted by the other app; tossed or re-named
//! cookies only start a new login; a start without https, or with a public
//! URL outside the domain, is refused naming the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use portcullis::config::raw::RawUpstream;
use portcullis::secret::SecretBytes;
use portcullis::session::seal::{KeyRing, Purpose};
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use url::Url;

use crate::support::browser::{NAVIGATION, PendingLogin};
use crate::support::http::{EXCHANGE_TIMEOUT, SetCookie};
use crate::support::pki::Pki;
use crate::support::{Reply, TestWorld, query_params};

const DOMAIN: &str = "portcullis.localhost";
const APP_A: &str = "a.portcullis.localhost";
const APP_B: &str = "b.portcullis.localhost";
const AUTH: &str = "auth.portcullis.localhost";
/// Inside the cookie domain, but neither an upstream's host nor an allowed redirect host.
const STRANGER: &str = "stranger.portcullis.localhost";
const SESSION: &str = "__Secure-_portcullis";
const FLOW_PREFIX: &str = "__Secure-_portcullis_flow_";

async fn echo() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = portcullis_devkit::echo::serve_echo(listener, std::future::pending()).await;
    });
    url
}

/// The gateway on TLS with a certificate for the three hosts, `auth.` as its
/// public URL (and so the callback origin), sharing cookies with
/// `portcullis.localhost`; `a.` and `b.` are `[[upstreams]]` chosen by host.
async fn sso_world(pki: &Pki) -> TestWorld {
    let (cert, key) = pki.write(&pki.server_for(&[APP_A, APP_B, AUTH, STRANGER]), "sso");
    let upstream = echo().await;
    let routed = upstream.clone();
    TestWorld::builder()
        .https()
        .public_host(AUTH)
        .upstream(upstream)
        .tweak(move |raw| {
            raw.tls.cert_file = Some(cert.clone());
            raw.tls.key_file = Some(key.clone());
            raw.session.cookie_domain = Some(DOMAIN.to_owned());
            raw.upstreams = [("app-a", APP_A), ("app-b", APP_B)]
                .map(|(name, host)| RawUpstream {
                    name: Some(name.to_owned()),
                    url: routed.clone(),
                    host: Some(host.to_owned()),
                    ..RawUpstream::default()
                })
                .to_vec();
        })
        .start()
        .await
}

/// A cookie as a browser keeps it.
#[derive(Debug, Clone)]
struct Kept {
    value: String,
    /// `false`: sent to subdomains of `domain` too.
    host_only: bool,
}

/// A browser's handling of cookies for the gateway's hosts (RFC 6265bis §5.6,
/// the prefixes included) and an HTTPS client that reaches every
/// `*.portcullis.localhost` at the gateway's loopback address.
struct SsoBrowser {
    gateway: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    /// (name, domain) to the cookie.
    jar: Mutex<BTreeMap<(String, String), Kept>>,
}

fn domain_matches(host: &str, domain: &str) -> bool {
    host == domain || host.strip_suffix(domain).is_some_and(|sub| sub.ends_with('.'))
}

impl SsoBrowser {
    fn new(world: &TestWorld, pki: &Pki) -> Self {
        Self {
            gateway: world.gateway_addr,
            tls: pki.client_config(&[&rustls::version::TLS13], &[b"http/1.1"]),
            jar: Mutex::new(BTreeMap::new()),
        }
    }

    fn jar(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Kept>> {
        self.jar.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `https://{host}:{port}{path}` on the gateway.
    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.gateway.port())
    }

    /// What a browser would send to `host`.
    fn cookie_header(&self, host: &str) -> Option<String> {
        let pairs: Vec<String> = self
            .jar()
            .iter()
            .filter(|((_, domain), kept)| if kept.host_only { host == domain } else { domain_matches(host, domain) })
            .map(|((name, _), kept)| format!("{name}={}", kept.value))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    /// Stores a `Set-Cookie` received from `host` over https, or ignores it as a browser would.
    fn store(&self, host: &str, cookie: &SetCookie) {
        let domain = cookie.attribute("domain").map(|domain| domain.trim_start_matches('.').to_ascii_lowercase());
        if domain.as_deref().is_some_and(|domain| !domain_matches(host, domain)) {
            panic!("{host} set a cookie for a domain it is not in: {}", cookie.raw);
        }
        let secure_ok = cookie.has("secure");
        if cookie.name.starts_with("__Secure-") {
            assert!(secure_ok, "a browser ignores a __Secure- cookie without Secure: {}", cookie.raw);
        }
        if cookie.name.starts_with("__Host-") {
            assert!(
                secure_ok && domain.is_none() && cookie.attribute("path") == Some("/"),
                "a browser ignores this __Host- cookie: {}",
                cookie.raw
            );
        }
        let host_only = domain.is_none();
        let key = (cookie.name.clone(), domain.unwrap_or_else(|| host.to_owned()));
        let mut jar = self.jar();
        if cookie.is_deletion() {
            jar.remove(&key);
        } else {
            jar.insert(key, Kept { value: cookie.value.clone(), host_only });
        }
    }

    /// A cookie another subdomain (or a script there) set for the whole domain.
    fn toss(&self, name: &str, value: &str) {
        self.jar().insert((name.to_owned(), DOMAIN.to_owned()), Kept { value: value.to_owned(), host_only: false });
    }

    /// The value of the shared cookie `name`, if the jar has it.
    fn shared_cookie(&self, name: &str) -> Option<String> {
        self.jar().get(&(name.to_owned(), DOMAIN.to_owned())).map(|kept| kept.value.clone())
    }

    /// One exchange with the gateway as `https://{host}`, with the jar's cookies; the jar takes its Set-Cookies.
    async fn get(&self, host: &str, path: &str) -> Reply {
        let exchange = async {
            let tcp = TcpStream::connect(self.gateway).await.expect("connect to the gateway");
            let name = ServerName::try_from(host.to_owned()).expect("a server name");
            let tls = TlsConnector::from(Arc::clone(&self.tls)).connect(name, tcp).await.expect("a TLS handshake");
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.expect("an HTTP/1.1 connection");
            tokio::spawn(connection);
            let mut request = Request::builder()
                .method(Method::GET)
                .uri(path)
                .header(header::HOST, format!("{host}:{}", self.gateway.port()));
            for (name, value) in NAVIGATION {
                request = request.header(name, value);
            }
            if let Some(cookies) = self.cookie_header(host) {
                request = request.header(header::COOKIE, cookies);
            }
            let response =
                sender.send_request(request.body(Full::new(Bytes::new())).unwrap()).await.expect("a response");
            let (parts, body) = response.into_parts();
            let body = body.collect().await.expect("the body").to_bytes();
            Reply { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() }
        };
        let reply = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await.expect("the exchange finished in time");
        for cookie in reply.set_cookies() {
            self.store(host, &cookie);
        }
        reply
    }

    /// Follows an absolute `Location` on one of the gateway's hosts.
    async fn follow(&self, location: &str) -> Reply {
        let url = Url::parse(location).unwrap_or_else(|_| panic!("an absolute Location, not {location}"));
        assert_eq!(url.port(), Some(self.gateway.port()), "{location}");
        let target = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        self.get(url.host_str().expect("a host"), &target).await
    }
}

/// Starts a login at `https://{host}{path}`: the redirect to the provider and its shared flow cookie.
async fn start_login(browser: &SsoBrowser, world: &TestWorld, host: &str, path: &str) -> PendingLogin {
    let reply = browser.get(host, path).await;
    let location = reply.expect_redirect();
    assert!(location.starts_with(&format!("{}/authorize?", world.provider.issuer())), "{location}");
    let params = query_params(&location);
    let callback = format!("https://{AUTH}:{}/oauth2/callback", world.gateway_addr.port());
    assert_eq!(params["redirect_uri"], callback, "every login ends at the one callback origin");
    let flow_cookie_name = format!("{FLOW_PREFIX}{}", params["state"]);
    let flow = reply.set_cookie(&flow_cookie_name).expect("a flow cookie");
    assert_eq!(flow.attribute("domain"), Some(DOMAIN), "the flow cookie reaches the callback host: {}", flow.raw);
    assert!(flow.has("secure") && flow.has("httponly") && flow.attribute("path") == Some("/"), "{}", flow.raw);
    PendingLogin { authorize_url: location, params, flow_cookie_name, flow_cookie_value: flow.value }
}

/// The whole login started at `https://{host}{path}`; returns the callback's answer.
async fn login(browser: &SsoBrowser, world: &TestWorld, host: &str, path: &str) -> Reply {
    let pending = start_login(browser, world, host, path).await;
    let callback = world.browser().sign_in_at_provider(&pending, "alice", "alice").await;
    let reply = browser.follow(&callback).await;
    assert!(
        reply
            .set_cookie(&pending.flow_cookie_name)
            .is_some_and(|flow| flow.is_deletion() && flow.attribute("domain") == Some(DOMAIN)),
        "the flow cookie is deleted where it lives"
    );
    reply
}

fn key_ring(world: &TestWorld) -> KeyRing {
    KeyRing::new(&[SecretBytes::new(STANDARD.decode(world.session_secret()).unwrap())]).unwrap()
}

/// The subject of the browser's shared session.
fn subject(world: &TestWorld, browser: &SsoBrowser) -> String {
    let sealed = browser.shared_cookie(SESSION).expect("a shared session in the jar");
    let (json, _) = key_ring(world).open(Purpose::Session, SESSION, &sealed).expect("it opens under its own name");
    let session: portcullis::session::data::SessionData = serde_json::from_slice(&json).unwrap();
    assert!(session.sub.starts_with("dev-"), "the provider's sub");
    session.sub
}

/// The user the echo upstream was sent as, from its page (navigations get HTML);
/// fails the test if any gateway cookie reached it.
fn echoed_user(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.contains("Echo upstream"), "{}", reply.body);
    assert!(!reply.body.contains("_portcullis"), "a gateway cookie reached the upstream: {}", reply.body);
    reply
        .body
        .split("<th>x-forwarded-user</th><td>")
        .nth(1)
        .and_then(|rest| rest.split("</td>").next())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn one_login_at_the_callback_origin_returns_to_the_app_and_serves_both_apps() {
    let pki = Pki::new();
    let world = sso_world(&pki).await;
    let browser = SsoBrowser::new(&world, &pki);

    let signed_in = login(&browser, &world, APP_A, "/page?tab=2").await;
    let location = signed_in.expect_redirect();
    assert_eq!(location, browser.url(APP_A, "/page?tab=2"), "back to the app the login started at");
    let session = signed_in.set_cookie(SESSION).expect("the shared session cookie");
    assert!(!session.is_deletion());
    assert_eq!(session.attribute("domain"), Some(DOMAIN), "{}", session.raw);
    for attribute in ["secure", "httponly"] {
        assert!(session.has(attribute), "{} lacks {attribute}", session.raw);
    }
    assert_eq!(session.attribute("path"), Some("/"));
    assert!(signed_in.set_cookies().iter().all(|cookie| !cookie.name.starts_with("__Host-")), "no host-only cookie");

    // The app the login started at, and the other one, with the one cookie.
    let alice = subject(&world, &browser);
    assert_eq!(echoed_user(&browser.follow(&location).await), alice);
    assert_eq!(echoed_user(&browser.get(APP_B, "/other").await), alice, "one login, two apps");
    let jar_names: Vec<String> = browser.jar().keys().map(|(name, _)| name.clone()).collect();
    assert_eq!(jar_names, [SESSION], "only the shared session is left in the jar");

    // Signing out on b ends it for a too: the deletion carries the Domain.
    let signed_out = browser.get(APP_B, "/oauth2/sign_out").await;
    let deletion = signed_out.set_cookie(SESSION).expect("the session cookie is deleted");
    assert!(deletion.is_deletion() && deletion.attribute("domain") == Some(DOMAIN), "{}", deletion.raw);
    assert!(browser.shared_cookie(SESSION).is_none());
    let again = browser.get(APP_A, "/page").await;
    assert!(again.expect_redirect().starts_with(&format!("{}/authorize?", world.provider.issuer())));
}

#[tokio::test]
async fn the_way_back_names_only_hosts_redirects_may_target() {
    let pki = Pki::new();
    let world = sso_world(&pki).await;
    let browser = SsoBrowser::new(&world, &pki);
    let return_to =
        |pending: &PendingLogin| world.open_flow(&pending.flow_cookie_name, &pending.flow_cookie_value).return_to;

    let cases = [
        // An app's own host (an upstream's): back there.
        (APP_B, "/oauth2/start?rd=/docs%3Fx%3D1".to_owned(), browser.url(APP_B, "/docs?x=1")),
        (APP_A, "/oauth2/start".to_owned(), browser.url(APP_A, "/")),
        // An explicit target on another allowed host stays as asked.
        (APP_A, format!("/oauth2/start?rd={}", browser.url(APP_B, "/x")), browser.url(APP_B, "/x")),
        // The callback origin itself.
        (AUTH, "/oauth2/start?rd=/account".to_owned(), browser.url(AUTH, "/account")),
        // A host in the cookie domain that redirects may not target: `/` on the callback origin.
        (STRANGER, "/oauth2/start?rd=/x".to_owned(), "/".to_owned()),
        (APP_A, "/oauth2/start?rd=https://evil.example/".to_owned(), "/".to_owned()),
        (APP_A, "/oauth2/start?rd=//evil.example/".to_owned(), "/".to_owned()),
        (APP_A, "/oauth2/start?rd=/%2F%2Fevil.example".to_owned(), "/".to_owned()),
    ];
    for (host, path, expected) in cases {
        let pending = start_login(&browser, &world, host, &path).await;
        assert_eq!(return_to(&pending), expected, "{host}{path}");
    }

    // Followed to the end: a login started on the stranger host lands on `/` at the callback origin.
    let fresh = SsoBrowser::new(&world, &pki);
    let signed_in = login(&fresh, &world, STRANGER, "/oauth2/start?rd=/x").await;
    assert_eq!(signed_in.expect_redirect(), "/");
}

#[tokio::test]
async fn tossed_and_renamed_cookies_only_start_a_new_login() {
    let pki = Pki::new();
    let world = sso_world(&pki).await;
    let issuer_authorize = format!("{}/authorize?", world.provider.issuer());

    // Garbage planted for the whole domain by another subdomain.
    let browser = SsoBrowser::new(&world, &pki);
    browser.toss(SESSION, "garbage-from-a-sibling");
    let reply = browser.get(APP_B, "/x").await;
    assert!(reply.expect_redirect().starts_with(&issuer_authorize), "a failed open is a new login");
    let cleared = reply.set_cookie(SESSION).expect("the unusable cookie is cleared");
    assert!(cleared.is_deletion() && cleared.attribute("domain") == Some(DOMAIN), "{}", cleared.raw);

    // A real session, sealed under the host-only name (or as a flow), presented as the shared session.
    let signed_in = SsoBrowser::new(&world, &pki);
    login(&signed_in, &world, APP_A, "/").await;
    let sealed = signed_in.shared_cookie(SESSION).expect("a session");
    let keys = key_ring(&world);
    let (json, _) = keys.open(Purpose::Session, SESSION, &sealed).expect("the session opens under its own name");
    let flow_name = format!("{FLOW_PREFIX}abc");
    for forged in [
        keys.seal(Purpose::Session, "__Host-_portcullis", &json).unwrap(),
        keys.seal(Purpose::Flow, &flow_name, &json).unwrap(),
        keys.seal(Purpose::Session, "_portcullis", &json).unwrap(),
    ] {
        let browser = SsoBrowser::new(&world, &pki);
        browser.toss(SESSION, &forged);
        let reply = browser.get(APP_B, "/x").await;
        assert!(reply.expect_redirect().starts_with(&issuer_authorize), "a re-named cookie is no session");
    }
    // A second value under the session's name, set by b for itself: ambiguous, so b logs in again; a is unaffected.
    let tossed_on_b = ("__Secure-_portcullis".to_owned(), APP_B.to_owned());
    signed_in.jar().insert(tossed_on_b.clone(), Kept { value: "tossed-by-b".to_owned(), host_only: true });
    let reply = signed_in.get(APP_B, "/x").await;
    assert!(reply.expect_redirect().starts_with(&issuer_authorize), "two values for one name are no session");
    assert_eq!(echoed_user(&signed_in.get(APP_A, "/x").await), subject(&world, &signed_in));
    signed_in.jar().remove(&tossed_on_b);
    // The genuine one still works, and a host-only leftover next to it is stripped, not forwarded.
    signed_in.jar().insert(
        ("__Host-_portcullis".to_owned(), APP_B.to_owned()),
        Kept { value: "left-from-host-only-mode".to_owned(), host_only: true },
    );
    assert_eq!(echoed_user(&signed_in.get(APP_B, "/x").await), subject(&world, &signed_in));
}

/// `portcullis` refuses to start, naming the key, for each of `configs` (TOML after the common part).
#[tokio::test]
async fn a_cookie_domain_without_https_or_outside_the_public_host_refuses_to_start() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let cases = [
        ("http://app.example.com", "example.com", "only over https"),
        ("https://app.example.org", "example.com", "outside example.com"),
        ("https://app.example.com", ".example.com", "lowercase domain name"),
    ];
    for (public_url, domain, problem) in cases {
        let path = dir.path().join("portcullis.toml");
        let text = format!(
            "listen = \"127.0.0.1:0\"\npublic_url = \"{public_url}\"\nupstream = \"http://127.0.0.1:9\"\n\
             [oidc]\nissuer = \"https://login.example.com\"\nclient_id = \"portcullis\"\n\
             [session]\ncookie_domain = \"{domain}\"\n"
        );
        std::fs::write(&path, text).expect("write the config");
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("PORTCULLIS_")) {
            command.env_remove(name);
        }
        command
            .arg("--config")
            .arg(&path)
            .env("PORTCULLIS_SESSION__SECRET", crate::support::random_session_secret())
            .kill_on_drop(true);
        let output = tokio::time::timeout(EXCHANGE_TIMEOUT, command.output())
            .await
            .unwrap_or_else(|_| panic!("{public_url} with {domain}: the gateway started instead of refusing"))
            .expect("run portcullis");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("session.cookie_domain") && stderr.contains(problem), "{stderr}");
    }
}
