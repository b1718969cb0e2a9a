//! Envoy `ext_authz` over gRPC, end to end: a tonic client built from the
//! published Envoy protos (`envoy-types`) and, independently, Python's
//! `grpcio` ask `envoy.service.auth.v3.Authorization/Check` on the gateway's
//! own listener, over real TCP (and TLS), next to the development provider
//! and the echo upstream. Allowed checks carry the identity headers and
//! remove forged ones and the gateway's cookies; a browser without a session
//! is sent to sign in with its flow cookie, and the login completed through
//! the provider makes the next check pass; API calls get a 401 JSON, rules a
//! 403; path tricks are decided exactly as on the HTTP path; peers outside
//! `trusted_peers` are refused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HeaderValueOption, HttpResponse};
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use http::StatusCode;
use portcullis::config::RawConfig;
use portcullis::config::raw::RawRule;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::support::browser::{NAVIGATION, PendingLogin};
use crate::support::http::{EXCHANGE_TIMEOUT, SetCookie};
use crate::support::pki::Pki;
use crate::support::{Browser, TestWorld, query_params};

/// `google.rpc.Code`s.
const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;
const UNAUTHENTICATED: i32 = 16;

/// The gateway's ext_authz listener on an ephemeral port.
struct ExtAuthz {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), portcullis::ServeError>>>,
}

impl ExtAuthz {
    async fn serve(world: &TestWorld) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the ext_authz listener");
        let addr = listener.local_addr().expect("the ext_authz address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(portcullis::serve_ext_authz(world.gateway(), listener, async move {
            let _ = stopped.await;
        }));
        Self { addr, stop: Some(stop), task: Some(task) }
    }

    async fn client(&self) -> AuthorizationClient<Channel> {
        let connect = AuthorizationClient::connect(format!("http://{}", self.addr));
        tokio::time::timeout(EXCHANGE_TIMEOUT, connect).await.expect("connect in time").expect("a gRPC channel")
    }
}

impl Drop for ExtAuthz {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// `[ext_authz]` on (the listener itself is bound by the test), plus rules:
/// `/admin/` for admins (alice, not bob), `/public/` for anyone, the rest for
/// any signed-in user.
fn ext_authz(raw: &mut RawConfig) {
    raw.ext_authz.grpc_listen = Some("127.0.0.1:0".to_owned());
    raw.authz.rules = vec![
        RawRule {
            name: Some("public".to_owned()),
            path_prefix: Some("/public/".to_owned()),
            allow: Some("public".to_owned()),
            ..RawRule::default()
        },
        RawRule {
            name: Some("admins".to_owned()),
            path_prefix: Some("/admin/".to_owned()),
            groups: vec!["admins".to_owned()],
            ..RawRule::default()
        },
    ];
}

/// A `CheckRequest` as Envoy sends it: the downstream client's address, the
/// method, scheme, host and path, the headers with Envoy's pseudo-headers.
fn check(method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let mut map: HashMap<String, String> =
        headers.iter().map(|(name, value)| (name.to_lowercase(), (*value).to_owned())).collect();
    map.insert(":authority".to_owned(), host.to_owned());
    map.insert(":method".to_owned(), method.to_owned());
    map.insert(":path".to_owned(), path.to_owned());
    map.insert(":scheme".to_owned(), "http".to_owned());
    let client = SocketAddress {
        address: "203.0.113.9".to_owned(),
        port_specifier: Some(PortSpecifier::PortValue(50_000)),
        ..SocketAddress::default()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address { address: Some(AddressKind::SocketAddress(client)) }),
                ..Peer::default()
            }),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: method.to_owned(),
                    scheme: "http".to_owned(),
                    host: host.to_owned(),
                    path: path.to_owned(),
                    headers: map,
                    protocol: "HTTP/1.1".to_owned(),
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    }
}

/// The `cookie` header the browser would send to the application (its whole jar).
fn cookies_of(browser: &Browser) -> String {
    let names = browser.cookie_names();
    let pairs: Vec<String> =
        names.iter().map(|name| format!("{name}={}", browser.cookie(name).unwrap_or_default())).collect();
    pairs.join("; ")
}

async fn ask(client: &mut AuthorizationClient<Channel>, request: CheckRequest) -> CheckResponse {
    tokio::time::timeout(EXCHANGE_TIMEOUT, client.check(request))
        .await
        .expect("an answer in time")
        .expect("a CheckResponse")
        .into_inner()
}

/// What a `CheckResponse` says, flattened for assertions.
#[derive(Debug)]
struct Answer {
    code: i32,
    /// The HTTP status it stands for: 200 for OK, else the denied response's.
    status: StatusCode,
    /// OK: headers set upstream; denied: the response's headers. Lowercase names, in order.
    headers: Vec<(String, String, i32)>,
    headers_to_remove: Vec<String>,
    response_headers_to_add: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn of(response: CheckResponse) -> Self {
        let code = response.status.map_or(OK, |status| status.code);
        let pairs = |options: Vec<HeaderValueOption>| {
            options
                .into_iter()
                .map(|option| {
                    let header = option.header.expect("a header");
                    (header.key.to_lowercase(), header.value, option.append_action)
                })
                .collect::<Vec<_>>()
        };
        match response.http_response.expect("an http_response") {
            HttpResponse::OkResponse(ok) => Self {
                code,
                status: StatusCode::OK,
                headers: pairs(ok.headers),
                headers_to_remove: ok.headers_to_remove,
                response_headers_to_add: pairs(ok.response_headers_to_add)
                    .into_iter()
                    .map(|(name, value, _)| (name, value))
                    .collect(),
                body: String::new(),
            },
            HttpResponse::DeniedResponse(denied) => Self {
                code,
                status: StatusCode::from_u16(u16::try_from(denied.status.expect("a status").code).unwrap()).unwrap(),
                headers: pairs(denied.headers),
                headers_to_remove: Vec::new(),
                response_headers_to_add: Vec::new(),
                body: denied.body,
            },
            HttpResponse::ErrorResponse(_) => panic!("the gateway never answers ErrorResponse"),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, ..)| key == name).map(|(_, value, _)| value.as_str())
    }

    fn set_cookies(&self) -> Vec<SetCookie> {
        self.headers
            .iter()
            .filter(|(key, ..)| key == "set-cookie")
            .map(|(_, value, _)| SetCookie::parse(value))
            .collect()
    }
}

#[tokio::test]
async fn allowed_checks_carry_the_identity_and_remove_forged_headers_and_gateway_cookies() {
    let world = TestWorld::builder().tweak(ext_authz).start().await;
    let listener = ExtAuthz::serve(&world).await;
    let mut client = listener.client().await;
    let alice = world.browser();
    alice.login().await;
    let session = world.open_session(&alice.session_value());
    let host = world.gateway_addr.to_string();
    let cookie = format!("theme=dark; {}", cookies_of(&alice));
    let forged = [
        ("accept", "application/json"),
        ("cookie", cookie.as_str()),
        ("x-forwarded-user", "root"),
        ("x_forwarded_email", "root@example.test"),
        ("X-Auth-Request-User", "root"),
        ("remote-user", "root"),
        ("x-real-ip", "10.9.9.9"),
        ("x-http-method-override", "DELETE"),
        ("x-forwarded-for", "198.51.100.7"),
        ("authorization", "Bearer forged"),
    ];
    let answer = Answer::of(ask(&mut client, check("POST", &host, "/admin/panel?x=1", &forged)).await);
    assert_eq!(answer.code, OK, "{answer:?}");
    assert_eq!(answer.header("x-forwarded-user"), Some(session.sub.as_str()));
    assert_eq!(answer.header("x-forwarded-email"), Some("alice@example.test"));
    assert_eq!(answer.header("x-forwarded-groups"), Some("admins,staff"));
    assert_eq!(answer.header("x-forwarded-preferred-username"), Some("alice"));
    assert!(answer.headers.iter().all(|(_, _, action)| *action == 2), "every header overwrites: {answer:?}");
    // Without ext_authz.pass_access_token no token goes upstream, and the client's own is removed.
    assert_eq!(answer.header("authorization"), None);
    // The application's cookies only: the gateway's session cookie is taken out.
    assert_eq!(answer.header("cookie"), Some("theme=dark"));
    let mut removed = answer.headers_to_remove.clone();
    removed.sort();
    assert_eq!(
        removed,
        [
            "authorization",
            "remote-user",
            "x-auth-request-user",
            "x-http-method-override",
            "x-real-ip",
            "x_forwarded_email"
        ],
        "x-forwarded-user is overwritten, and x-forwarded-for is Envoy's own"
    );
    assert!(answer.response_headers_to_add.is_empty(), "a fresh session needs no renewal");

    // A public path: no identity, forged headers still removed; only gateway cookies: the cookie header goes.
    let session_only = cookies_of(&alice);
    let public = [("cookie", session_only.as_str()), ("x-forwarded-user", "root")];
    let answer = Answer::of(ask(&mut client, check("GET", &host, "/public/page", &public)).await);
    assert_eq!(answer.code, OK, "{answer:?}");
    assert!(answer.headers.is_empty(), "{answer:?}");
    let mut removed = answer.headers_to_remove.clone();
    removed.sort();
    assert_eq!(removed, ["cookie", "x-forwarded-user"]);
    assert!(world.metrics().contains("ext_authz"), "checks are counted under their own route");
}

#[tokio::test]
async fn the_access_token_goes_upstream_only_when_configured() {
    let world = TestWorld::builder()
        .tweak(|raw| {
            ext_authz(raw);
            raw.ext_authz.pass_access_token = true;
        })
        .start()
        .await;
    let listener = ExtAuthz::serve(&world).await;
    let mut client = listener.client().await;
    let alice = world.browser();
    alice.login().await;
    let session = world.open_session(&alice.session_value());
    let cookie = cookies_of(&alice);
    let request =
        check("GET", &world.gateway_addr.to_string(), "/", &[("cookie", &cookie), ("authorization", "Bearer forged")]);
    let answer = Answer::of(ask(&mut client, request).await);
    assert_eq!(answer.code, OK, "{answer:?}");
    assert_eq!(answer.header("authorization"), Some(format!("Bearer {}", session.access_token).as_str()));
    assert!(!answer.headers_to_remove.contains(&"authorization".to_owned()), "replaced, not removed");
}

#[tokio::test]
async fn a_refreshed_session_sends_its_new_cookie_to_the_browser() {
    let world = TestWorld::builder().tweak(ext_authz).start().await;
    let listener = ExtAuthz::serve(&world).await;
    let mut client = listener.client().await;
    let alice = world.browser();
    alice.login().await;
    let before = world.open_session(&alice.session_value());
    // Past the access token's lifetime (300 s at the development provider): the check refreshes it.
    world.clock.advance(400);
    let cookie = cookies_of(&alice);
    let request =
        check("GET", &world.gateway_addr.to_string(), "/app", &[("accept", "application/json"), ("cookie", &cookie)]);
    let answer = Answer::of(ask(&mut client, request).await);
    assert_eq!(answer.code, OK, "{answer:?}");
    let renewed: Vec<SetCookie> = answer
        .response_headers_to_add
        .iter()
        .filter(|(name, _)| name == "set-cookie")
        .map(|(_, value)| SetCookie::parse(value))
        .collect();
    let session =
        renewed.iter().find(|cookie| cookie.name == alice.session_cookie_name()).expect("the renewed session cookie");
    let after = world.open_session(&session.value);
    assert_eq!(after.sub, before.sub);
    assert_ne!(after.access_token, before.access_token, "a new access token");
}

#[tokio::test]
async fn a_browser_without_a_session_signs_in_through_the_denied_response_and_then_passes() {
    let world = TestWorld::builder().tweak(ext_authz).start().await;
    let listener = ExtAuthz::serve(&world).await;
    let mut client = listener.client().await;
    let host = world.gateway_addr.to_string();
    let answer = Answer::of(ask(&mut client, check("GET", &host, "/app/page?x=1", &NAVIGATION)).await);
    assert_eq!(answer.status, StatusCode::FOUND, "{answer:?}");
    assert_eq!(answer.code, PERMISSION_DENIED);
    let location = answer.header("location").expect("a Location").to_owned();
    assert!(location.starts_with(&format!("{}/authorize?", world.provider.issuer())), "{location}");
    let params = query_params(&location);
    let browser = world.browser();
    let flow_cookie_name = format!("{}{}", browser.flow_cookie_prefix(), params["state"]);
    let flows = answer.set_cookies();
    let flow = flows.iter().find(|cookie| cookie.name == flow_cookie_name).expect("the flow cookie");
    assert!(flow.has("HttpOnly"));
    assert!(answer.headers.iter().any(|(name, _, action)| name == "set-cookie" && *action == 0), "Set-Cookie appends");

    // The browser follows Envoy's answer: the flow cookie into its jar, the provider's form, the callback.
    browser.set_cookie(&flow.name, &flow.value);
    let pending = PendingLogin {
        authorize_url: location,
        params: params.clone(),
        flow_cookie_name,
        flow_cookie_value: flow.value.clone(),
    };
    let callback = browser.sign_in_at_provider(&pending, "alice", "alice").await;
    let finished = browser.finish_login(&callback).await;
    assert_eq!(finished.expect_redirect(), "/app/page?x=1", "back where the check started");
    let cookie = cookies_of(&browser);
    let mut headers = NAVIGATION.to_vec();
    headers.push(("cookie", &cookie));
    let answer = Answer::of(ask(&mut client, check("GET", &host, "/app/page?x=1", &headers)).await);
    assert_eq!(answer.code, OK, "{answer:?}");
    assert_eq!(answer.header("x-forwarded-email"), Some("alice@example.test"));
}

#[tokio::test]
async fn api_calls_get_a_401_json_and_rules_a_403() {
    let world = TestWorld::builder().tweak(ext_authz).start().await;
    let listener = ExtAuthz::serve(&world).await;
    let mut client = listener.client().await;
    let host = world.gateway_addr.to_string();
    let answer =
        Answer::of(ask(&mut client, check("GET", &host, "/api/items", &[("accept", "application/json")])).await);
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert_eq!(answer.code, UNAUTHENTICATED);
    assert_eq!(answer.header("www-authenticate"), Some("Bearer realm=\"portcullis\""));
    assert!(answer.header("content-type").is_some_and(|value| value.starts_with("application/json")));
    let body: serde_json::Value = serde_json::from_str(&answer.body).expect("a JSON body");
    assert_eq!(body["error"], "unauthenticated", "{body}");
    assert!(answer.header("x-request-id").is_some());

    let bob = world.browser();
    bob.login_at("/", "bob", "bob").await;
    let cookie = cookies_of(&bob);
    let request = check("GET", &host, "/admin/panel", &[("accept", "application/json"), ("cookie", &cookie)]);
    let answer = Answer::of(ask(&mut client, request).await);
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{answer:?}");
    assert_eq!(answer.code, PERMISSION_DENIED);
    let body: serde_json::Value = serde_json::from_str(&answer.body).expect("a JSON body");
    assert_eq!(body["error"], "forbidden", "{body}");
}

#[tokio::test]
async fn path_tricks_are_decided_exactly_as_on_the_http_path() {
    let world = TestWorld::builder().tweak(ext_authz).start().await;
    let listener = ExtAuthz::serve(&world).await;
    let mut client = listener.client().await;
    let host = world.gateway_addr.to_string();
    let anonymous = world.browser();
    let bob = world.browser();
    bob.login_at("/", "bob", "bob").await;
    let alice = world.browser();
    alice.login().await;
    let tricks = [
        "/admin/panel",
        "/%61dmin/panel",
        "/adm%69n/panel",
        "//admin/panel",
        "/public/../admin/panel",
        "/public/%2e%2e/admin/panel",
        "/public/..%2Fadmin/panel",
        "/public/./page",
        "/public/page",
        "/a/%",
    ];
    for browser in [&anonymous, &bob, &alice] {
        let cookie = cookies_of(browser);
        for path in tricks {
            let over_http = browser.api_get(path).await.status;
            let mut headers = vec![("accept", "application/json")];
            if !cookie.is_empty() {
                headers.push(("cookie", &cookie));
            }
            let answer = Answer::of(ask(&mut client, check("GET", &host, path, &headers)).await);
            assert_eq!(answer.status, over_http, "{path} ({cookie:.20}): {answer:?}");
        }
    }
    // And what that came to: bob never reaches /admin however it is spelled.
    let cookie = cookies_of(&bob);
    for path in ["/%61dmin/panel", "//admin/panel", "/public/../admin/panel"] {
        let answer = Answer::of(ask(&mut client, check("GET", &host, path, &[("cookie", &cookie)])).await);
        assert_ne!(answer.code, OK, "{path}: {answer:?}");
    }
}

#[tokio::test]
async fn a_peer_outside_trusted_peers_is_refused() {
    let world = TestWorld::builder()
        .tweak(|raw| {
            ext_authz(raw);
            raw.ext_authz.trusted_peers = vec!["10.0.0.0/8".to_owned()];
        })
        .start()
        .await;
    let listener = ExtAuthz::serve(&world).await;
    let mut client = listener.client().await;
    let request = check("GET", &world.gateway_addr.to_string(), "/public/page", &[]);
    let refused = tokio::time::timeout(EXCHANGE_TIMEOUT, client.check(request)).await.expect("an answer in time");
    let status = refused.expect_err("no CheckResponse for an untrusted peer");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
}

#[tokio::test]
async fn malformed_check_requests_are_denied() {
    let world = TestWorld::builder().tweak(ext_authz).start().await;
    let listener = ExtAuthz::serve(&world).await;
    let mut client = listener.client().await;
    let host = world.gateway_addr.to_string();
    let answer = Answer::of(ask(&mut client, CheckRequest::default()).await);
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{answer:?}");
    let mut no_scheme = check("GET", &host, "/public/page", &[]);
    if let Some(http) = no_scheme.attributes.as_mut().and_then(|a| a.request.as_mut()).and_then(|r| r.http.as_mut()) {
        http.scheme = "gopher".to_owned();
    }
    assert_eq!(Answer::of(ask(&mut client, no_scheme).await).status, StatusCode::FORBIDDEN);
    for host in ["a.example, b.example", "user@a.example"] {
        let answer = Answer::of(ask(&mut client, check("GET", host, "/public/page", &[])).await);
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{host}");
    }
}

#[tokio::test]
async fn the_listener_serves_tls_with_its_own_certificate() {
    let pki = Pki::new();
    let (cert, key) = pki.write(&pki.server(), "ext-authz");
    let world = TestWorld::builder()
        .tweak(move |raw| {
            ext_authz(raw);
            raw.ext_authz.cert_file = Some(cert.clone());
            raw.ext_authz.key_file = Some(key.clone());
        })
        .start()
        .await;
    let listener = ExtAuthz::serve(&world).await;
    let tls = pki.client_config(&[&rustls::version::TLS13], &[b"h2"]);
    let addr = listener.addr;
    let connector = tower::service_fn(move |_: http::Uri| {
        let tls = Arc::clone(&tls);
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
            let stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await?;
            assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "gRPC over h2");
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(connector)
        .await
        .expect("a TLS channel");
    let mut client = AuthorizationClient::new(channel);
    let host = world.gateway_addr.to_string();
    let answer = Answer::of(ask(&mut client, check("GET", &host, "/public/page", &[])).await);
    assert_eq!(answer.code, OK, "{answer:?}");
    let answer = Answer::of(ask(&mut client, check("GET", &host, "/app", &[("accept", "application/json")])).await);
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");

    // Plaintext gRPC to the TLS listener gets nowhere.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("an endpoint");
    let plain = tokio::time::timeout(EXCHANGE_TIMEOUT, async {
        let channel = plain.connect().await?;
        AuthorizationClient::new(channel).check(check("GET", &host, "/public/page", &[])).await.map_err(Into::into)
    })
    .await
    .expect("an answer in time");
    let refused: Result<_, Box<dyn std::error::Error + Send + Sync>> = plain;
    assert!(refused.is_err());
}

/// The `proto` directory of the envoy-types crate this build uses (its
/// published Envoy protos): the version Cargo.lock names, unpacked by cargo
/// under `$CARGO_HOME/registry/src` when it was built.
fn envoy_protos() -> std::path::PathBuf {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).expect("Cargo.lock");
    let version = lock
        .split("[[package]]")
        .find(|package| package.contains("name = \"envoy-types\""))
        .and_then(|package| package.lines().find_map(|line| line.strip_prefix("version = \"")))
        .and_then(|version| version.strip_suffix('"'))
        .expect("envoy-types in Cargo.lock");
    let cargo_home = std::env::var_os("CARGO_HOME").map_or_else(
        || std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cargo"),
        std::path::PathBuf::from,
    );
    let sources = std::fs::read_dir(cargo_home.join("registry/src")).expect("cargo's unpacked sources");
    sources
        .filter_map(Result::ok)
        .map(|registry| registry.path().join(format!("envoy-types-{version}/proto")))
        .find(|proto| proto.is_dir())
        .expect("the envoy-types sources cargo unpacked to build it")
}

/// Runs the grpcio client (`tests/ext_authz/grpcio_check.py`) against `addr`
/// with `checks` (proto3 JSON); returns its answers, one per check.
async fn grpcio_checks(addr: SocketAddr, checks: &[serde_json::Value]) -> Vec<serde_json::Value> {
    use tokio::io::AsyncWriteExt as _;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ext_authz/grpcio_check.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .arg(envoy_protos())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 (tests/run-all.sh --deps-only installs grpcio and grpcio-tools)");
    let spec = serde_json::json!({ "target": addr.to_string(), "checks": checks });
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(spec.to_string().as_bytes()).await.expect("write the spec");
    drop(stdin);
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the grpcio client finishes")
        .expect("the grpcio client's output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "grpcio client failed (tests/run-all.sh --deps-only installs grpcio and grpcio-tools): {stderr}"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// A check as proto3 JSON, as a second client writes it.
fn check_json(method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> serde_json::Value {
    let headers: serde_json::Map<String, serde_json::Value> =
        headers.iter().map(|(name, value)| ((*name).to_owned(), (*value).into())).collect();
    serde_json::json!({
        "attributes": {
            "source": { "address": { "socket_address": { "address": "203.0.113.9", "port_value": 50000 } } },
            "request": { "http": { "method": method, "scheme": "http", "host": host, "path": path, "headers": headers } }
        }
    })
}

fn denied_header<'a>(answer: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    answer["response"]["denied_response"]["headers"]
        .as_array()?
        .iter()
        .find(|option| option["header"]["key"] == name)
        .and_then(|option| option["header"]["value"].as_str())
}

#[tokio::test]
async fn python_grpcio_gets_the_same_answers() {
    let world = TestWorld::builder().tweak(ext_authz).start().await;
    let listener = ExtAuthz::serve(&world).await;
    let alice = world.browser();
    alice.login().await;
    let session = world.open_session(&alice.session_value());
    let cookie = format!("theme=dark; {}", cookies_of(&alice));
    let host = world.gateway_addr.to_string();
    let answers = grpcio_checks(
        listener.addr,
        &[
            check_json(
                "GET",
                &host,
                "/app",
                &[("cookie", &cookie), ("x-forwarded-user", "root"), ("x_forwarded_email", "x")],
            ),
            check_json("GET", &host, "/app?x=1", &NAVIGATION),
            check_json("GET", &host, "/app", &[("accept", "application/json")]),
            check_json("GET", &host, "/%61dmin/panel", &[("accept", "application/json")]),
        ],
    )
    .await;
    assert_eq!(answers.len(), 4, "{answers:?}");

    let allowed = &answers[0];
    assert!(allowed["response"]["status"]["code"].as_i64().unwrap_or(0) == 0, "{allowed}");
    let ok = &allowed["response"]["ok_response"];
    let set: HashMap<&str, &str> = ok["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|option| (option["header"]["key"].as_str().unwrap(), option["header"]["value"].as_str().unwrap()))
        .collect();
    assert_eq!(set["x-forwarded-user"], session.sub);
    assert_eq!(set["cookie"], "theme=dark");
    assert_eq!(ok["headers_to_remove"], serde_json::json!(["x_forwarded_email"]), "{ok}");

    let browser = &answers[1];
    assert_eq!(browser["response"]["denied_response"]["status"]["code"], "Found", "{browser}");
    let location = denied_header(browser, "location").expect("a Location");
    assert!(location.starts_with(&format!("{}/authorize?", world.provider.issuer())), "{location}");
    assert!(denied_header(browser, "set-cookie").is_some_and(|cookie| cookie.contains("_flow_")), "{browser}");

    for api in &answers[2..] {
        assert_eq!(api["response"]["status"]["code"], UNAUTHENTICATED, "{api}");
        assert_eq!(api["response"]["denied_response"]["status"]["code"], "Unauthorized", "{api}");
        assert_eq!(denied_header(api, "www-authenticate"), Some("Bearer realm=\"portcullis\""));
    }

    // The same peer check: an untrusted listener refuses grpcio as well.
    let untrusted = TestWorld::builder()
        .tweak(|raw| {
            ext_authz(raw);
            raw.ext_authz.trusted_peers = vec!["192.0.2.0/24".to_owned()];
        })
        .start()
        .await;
    let refusing = ExtAuthz::serve(&untrusted).await;
    let answers = grpcio_checks(refusing.addr, &[check_json("GET", &host, "/public/page", &[])]).await;
    assert_eq!(answers, [serde_json::json!({ "error": "PERMISSION_DENIED" })]);
}
