//! `/oauth2/auth` over real TCP: answers for sessions, rules evaluated on the
//! original request a trusted proxy names, spoofed forwarded headers from an
//! untrusted peer ignored, anything malformed denied — and a real nginx with
//! `auth_request` in front of an upstream, sign-in redirect dance included.

use bytes::Bytes;
use http::{Method, StatusCode};
use std::time::Duration;

use portcullis::config::RawConfig;
use portcullis::config::raw::RawRule;

use crate::support::front_proxies::FrontProxy;
use crate::support::nginx::{Nginx, free_port};
use crate::support::redis::RedisServer;
use crate::support::upstreams::admins_only_host_route;
use crate::support::{Browser, Reply, TestWorld, eventually};

fn rules(raw: &mut RawConfig) {
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

fn trusted(raw: &mut RawConfig) {
    rules(raw);
    raw.forward_auth.trusted_proxies = vec!["127.0.0.1/32".to_owned()];
    raw.forward_auth.pass_access_token = true;
}

async fn ask(browser: &Browser, headers: &[(&str, &str)]) -> Reply {
    browser.send(Method::GET, "/oauth2/auth", headers, Bytes::new()).await
}

#[tokio::test]
async fn answers_follow_the_rules_for_the_original_request() {
    let world = TestWorld::builder().tweak(trusted).start().await;
    let anonymous = world.browser();
    assert_eq!(ask(&anonymous, &[("x-forwarded-uri", "/app")]).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(ask(&anonymous, &[("x-forwarded-uri", "/public/x?y=1")]).await.status, StatusCode::OK);

    let alice = world.browser();
    alice.login().await;
    let session = world.open_session(&alice.session_value());
    let reply = ask(&alice, &[("x-forwarded-method", "POST"), ("x-forwarded-uri", "/admin/panel?x=1")]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.header("x-auth-request-user").unwrap(), session.sub);
    assert_eq!(reply.header("x-auth-request-email").unwrap(), "alice@example.test");
    assert_eq!(reply.header("x-auth-request-groups").unwrap(), "admins,staff");
    assert_eq!(reply.header("x-auth-request-preferred-username").unwrap(), "alice");
    assert_eq!(reply.header("x-auth-request-access-token").unwrap(), session.access_token);

    let bob = world.browser();
    bob.login_at("/", "bob", "bob").await;
    let reply = ask(&bob, &[("x-forwarded-uri", "/admin/panel")]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.header("x-auth-request-user").is_none());
    assert_eq!(ask(&bob, &[("x-forwarded-uri", "/app")]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn ingress_nginx_states_the_original_request_in_x_original_headers() {
    let world = TestWorld::builder()
        .tweak(|raw| {
            trusted(raw);
            admin_host_route(raw);
            raw.forward_auth.original_request = Some("x-original".to_owned());
        })
        .start()
        .await;
    let bob = world.browser();
    bob.login_at("/", "bob", "bob").await;
    let app = [("x-original-url", "https://app.example.test/app?x=1"), ("x-original-method", "POST")];
    assert_eq!(ask(&bob, &app).await.status, StatusCode::OK);
    // The host is the URL's: the admin host's rule applies.
    let admin = [("x-original-url", "https://admin.example.test/app"), ("x-original-method", "GET")];
    assert_eq!(ask(&bob, &admin).await.status, StatusCode::FORBIDDEN);
    let anonymous = world.browser();
    assert_eq!(
        ask(&anonymous, &[("x-original-url", "https://app.example.test/public/x")]).await.status,
        StatusCode::OK
    );
    // The X-Forwarded-* convention is not believed here, and next to X-Original-URL it is refused.
    for headers in [
        vec![("x-forwarded-uri", "/public/x")],
        vec![("x-original-url", "https://app.example.test/app"), ("x-forwarded-uri", "/public/x")],
        vec![("x-original-url", "https://app.example.test/app"), ("x-forwarded-method", "GET")],
        // A path without a host cannot choose among host routes.
        vec![("x-original-url", "/app")],
    ] {
        assert_eq!(ask(&bob, &headers).await.status, StatusCode::FORBIDDEN, "{headers:?}");
    }
}

/// A gateway trusting the test's proxy to state the original request Envoy's
/// way: in the path after `/oauth2/auth`.
async fn envoy_world() -> TestWorld {
    TestWorld::builder()
        .tweak(|raw| {
            trusted(raw);
            raw.forward_auth.original_request = Some("envoy".to_owned());
        })
        .start()
        .await
}

#[tokio::test]
async fn envoy_states_the_original_request_in_the_path() {
    let world = envoy_world().await;
    let alice = world.browser();
    alice.login().await;
    assert_eq!(alice.api_get("/oauth2/auth/admin/x").await.status, StatusCode::OK);
    let bob = world.browser();
    bob.login_at("/", "bob", "bob").await;
    assert_eq!(bob.api_get("/oauth2/auth/admin/x").await.status, StatusCode::FORBIDDEN);
    assert_eq!(bob.api_get("/oauth2/auth/app").await.status, StatusCode::OK);
    assert_eq!(world.browser().api_get("/oauth2/auth/public/x").await.status, StatusCode::OK);
    // Headers of the other conventions are refused, and so is a request without the original path.
    let refused = [("x-forwarded-uri", "/public/x")];
    let reply = bob.send(Method::GET, "/oauth2/auth/admin/x", &refused, Bytes::new()).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(bob.api_get("/oauth2/auth").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn malformed_or_ambiguous_originals_are_denied() {
    let world = TestWorld::builder().tweak(trusted).start().await;
    let alice = world.browser();
    alice.login().await;
    let cases: [&[(&str, &str)]; 6] = [
        &[("x-forwarded-uri", "no-slash")],
        &[("x-forwarded-uri", "/public/../admin/x")],
        &[("x-forwarded-uri", "/public/%2e%2e/admin/x")],
        &[("x-forwarded-uri", "/a"), ("x-forwarded-uri", "/b")],
        &[("x-forwarded-method", "GE T"), ("x-forwarded-uri", "/a")],
        &[("x-original-url", "gopher://x/a")],
    ];
    for headers in cases {
        let reply = ask(&alice, headers).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{headers:?}: {}", reply.body);
        assert!(reply.header("x-auth-request-user").is_none());
    }
    // Anonymous and malformed is a deny too, never a 2xx.
    let reply = ask(&world.browser(), &[("x-forwarded-uri", "/public/..%2f")]).await;
    assert!(!reply.status.is_success());
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_peer_are_ignored() {
    // No trusted proxies (the default): loopback is not trusted either.
    let world = TestWorld::builder().tweak(rules).start().await;
    let anonymous = world.browser();
    for headers in [[("x-forwarded-uri", "/public/x")], [("x-original-url", "http://app.example/public/x")]] {
        assert_eq!(ask(&anonymous, &headers).await.status, StatusCode::UNAUTHORIZED, "{headers:?}");
    }
    assert_eq!(anonymous.api_get("/oauth2/auth/public/x").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn browsers_can_be_redirected_to_sign_in() {
    let world = TestWorld::builder()
        .tweak(|raw| {
            trusted(raw);
            raw.forward_auth.redirect_browsers = true;
        })
        .start()
        .await;
    let browser = world.browser();
    let reply = browser
        .send(
            Method::GET,
            "/oauth2/auth",
            &[("x-forwarded-uri", "/app/page?x=1"), ("accept", "text/html")],
            Bytes::new(),
        )
        .await;
    assert_eq!(reply.location(), "/oauth2/start?rd=%2Fapp%2Fpage%3Fx%3D1");
    // With the application's host stated, the URL is absolute on it (Traefik would resolve a path
    // against the gateway's address), in the public URL's scheme.
    let on_host = [("x-forwarded-uri", "/app"), ("x-forwarded-host", "app.example.test:8443"), ("accept", "text/html")];
    let reply = browser.send(Method::GET, "/oauth2/auth", &on_host, Bytes::new()).await;
    assert_eq!(reply.location(), "http://app.example.test:8443/oauth2/start?rd=%2Fapp");
    assert_eq!(ask(&browser, &[("x-forwarded-uri", "/app")]).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_client_header_competing_with_the_trusted_one_is_refused() {
    // Behind ingress-nginx the proxy states X-Original-URL and X-Original-Method and passes
    // the client's own headers on: a client-added X-Forwarded-Uri or -Method must not win.
    let world = TestWorld::builder().tweak(trusted).start().await;
    let original_url = format!("{}/admin/x", world.public_url);
    let reply = ask(
        &world.browser(),
        &[("x-original-url", &original_url), ("x-original-method", "GET"), ("x-forwarded-uri", "/public/x")],
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "a client's X-Forwarded-Uri next to X-Original-URL: {}",
        reply.body
    );
    let bob = world.browser();
    bob.login_at("/", "bob", "bob").await;
    for headers in [
        [("x-forwarded-uri", "/app"), ("x-original-method", "DELETE")],
        [("x-forwarded-uri", "/app"), ("x-original-uri", "/public/x")],
    ] {
        let reply = ask(&bob, &headers).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{headers:?}: {}", reply.body);
        assert!(reply.header("x-auth-request-user").is_none());
    }
}

/// An `[[upstreams]]` entry for host `admin.example.test` that only admins may use.
fn admin_host_route(raw: &mut RawConfig) {
    let url = raw.upstream.clone().expect("the world's upstream");
    raw.upstreams = vec![admins_only_host_route("admin-host", &url, "admin.example.test")];
}

#[tokio::test]
async fn host_routes_follow_the_trusted_proxys_forwarded_host() {
    // Traefik and ingress-nginx send Host: <the auth service>; the application's host is in X-Forwarded-Host.
    let world = TestWorld::builder()
        .tweak(|raw| {
            trusted(raw);
            admin_host_route(raw);
        })
        .start()
        .await;
    let bob = world.browser();
    bob.login_at("/", "bob", "bob").await;
    let to_admin_host = [("x-forwarded-host", "admin.example.test"), ("x-forwarded-uri", "/app")];
    let reply = ask(&bob, &to_admin_host).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "the admin host's rule was not applied: {}", reply.body);
    let alice = world.browser();
    alice.login().await;
    assert_eq!(ask(&alice, &to_admin_host).await.status, StatusCode::OK);
    // A host that is not one authority (a list a proxy appended to, a user part) cannot choose a route.
    for host in ["admin.example.test, app.example.test", "app.example.test admin", "bob@admin.example.test", ""] {
        let reply = ask(&bob, &[("x-forwarded-host", host), ("x-forwarded-uri", "/app")]).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "X-Forwarded-Host {host:?}: {}", reply.body);
    }
    assert_eq!(
        ask(&bob, &[("x-forwarded-host", "app.example.test"), ("x-forwarded-uri", "/app")]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn host_routes_without_a_trusted_proxy_fail_closed() {
    // Without a trusted peer the application's host is unknown: no host rule can be applied, so nothing passes.
    let world = TestWorld::builder()
        .tweak(|raw| {
            rules(raw);
            admin_host_route(raw);
        })
        .start()
        .await;
    let bob = world.browser();
    bob.login_at("/", "bob", "bob").await;
    let reply = ask(&bob, &[]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert!(reply.header("x-auth-request-user").is_none());
}

#[tokio::test]
async fn the_access_token_goes_only_to_a_trusted_proxy() {
    let world = TestWorld::builder()
        .tweak(|raw| {
            rules(raw);
            raw.forward_auth.pass_access_token = true;
        })
        .start()
        .await;
    let alice = world.browser();
    alice.login().await;
    let reply = ask(&alice, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.header("x-auth-request-user").is_some());
    assert!(reply.header("x-auth-request-access-token").is_none(), "an untrusted peer received the access token");
}

#[tokio::test]
async fn a_store_outage_is_a_503_with_the_cookie_kept() {
    let mut redis = RedisServer::start().await;
    let url = redis.url();
    let world = TestWorld::builder()
        .tweak(move |raw| {
            trusted(raw);
            raw.session.store.url = Some(portcullis::secret::SecretString::new(url.clone()));
            raw.session.store.key_prefix = "itest:".to_owned();
        })
        .start()
        .await;
    let alice = world.browser();
    alice.login().await;
    assert_eq!(ask(&alice, &[("x-forwarded-uri", "/app")]).await.status, StatusCode::OK);

    redis.kill();
    let not_ready =
        eventually(Duration::from_secs(10), || async { world.ready().await.status == StatusCode::SERVICE_UNAVAILABLE })
            .await;
    assert!(not_ready, "/ready still says ready");
    // The proxy path's answer, for comparison: 503, Retry-After, the cookie left alone.
    assert_eq!(alice.api_get("/app").await.status, StatusCode::SERVICE_UNAVAILABLE);
    for reply in [ask(&alice, &[("x-forwarded-uri", "/app")]).await, alice.api_get("/oauth2/userinfo").await] {
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.body);
        assert_eq!(reply.header("retry-after").as_deref(), Some("5"));
        assert_eq!(reply.json()["error"], "session_store_unavailable");
        assert!(reply.set_cookies().is_empty(), "the session cookie is kept");
    }
}

/// Past the access token's lifetime (300 s in the development provider): the session must refresh.
const PAST_ACCESS_TOKEN_EXPIRY: i64 = 310;

#[tokio::test]
async fn a_provider_outage_is_a_503_as_on_the_proxy_path_not_a_login() {
    let world = TestWorld::builder().tweak(trusted).start().await;
    let alice = world.browser();
    alice.login().await;
    world.provider.faults().unavailable.set(true);
    world.clock.advance(PAST_ACCESS_TOKEN_EXPIRY);

    // The proxy path's answer, for comparison: 503, Retry-After, the cookie left alone.
    let proxied = alice.api_get("/app").await;
    assert_eq!(proxied.status, StatusCode::SERVICE_UNAVAILABLE, "{}", proxied.body);
    let retry_after = proxied.header("retry-after");
    assert!(retry_after.is_some());
    // A 401 here would send nginx, Traefik and Caddy to the sign-in page: a login loop during the outage.
    for reply in [ask(&alice, &[("x-forwarded-uri", "/app")]).await, alice.api_get("/oauth2/userinfo").await] {
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.body);
        assert_eq!(reply.header("retry-after"), retry_after);
        assert_eq!(reply.json()["error"], "idp_unavailable");
        assert!(reply.header("www-authenticate").is_none());
        assert!(reply.set_cookies().is_empty(), "the session cookie is kept");
    }

    // Once the provider is back, the same session passes again.
    world.provider.faults().unavailable.set(false);
    world.clock.advance(11);
    assert_eq!(ask(&alice, &[("x-forwarded-uri", "/app")]).await.status, StatusCode::OK);
}

/// The locations of deploy/examples/nginx.conf, pointed at this test's gateway and upstream.
fn example_locations(world: &TestWorld) -> String {
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/nginx.conf"))
        .expect("deploy/examples/nginx.conf");
    let start = example.find("# --- begin portcullis locations ---").expect("begin marker");
    let end = example.find("# --- end portcullis locations ---").expect("end marker");
    let upstream = world.upstream_url.trim_start_matches("http://");
    example[start..end].replace("127.0.0.1:4180", &world.gateway_addr.to_string()).replace("127.0.0.1:8080", upstream)
}

#[tokio::test]
async fn nginx_auth_request_end_to_end() {
    let port = free_port();
    let origin = format!("http://127.0.0.1:{port}");
    let world = TestWorld::builder().public_url(origin.clone()).tweak(trusted).start().await;
    let nginx = Nginx::start(port, &example_locations(&world)).await;
    let browser = Browser::new(
        nginx.origin.clone(),
        nginx.origin.clone(),
        world.provider.issuer().to_owned(),
        world.session_cookie_name(),
    );

    // No session: nginx turns the 401 into the sign-in redirect.
    let reply = browser.navigate("/app/page").await;
    let sign_in = reply.location();
    assert!(sign_in.ends_with("/oauth2/start?rd=/app/page"), "{sign_in}: {}", nginx.error_log());
    // Programs get the gateway's 401 through nginx... as the sign-in redirect too (nginx
    // cannot tell them apart); the public route needs nothing.
    let public = browser.api_get("/public/app.js").await;
    assert_eq!(public.status, StatusCode::OK, "{}", public.body);

    // The dance: start → provider → callback (all through nginx) → back to the page.
    let back = browser.login_at(&sign_in, "alice", "alice").await;
    assert!(back.ends_with("/app/page"), "{back}");
    let session = world.open_session(&browser.session_value());
    let reply = browser.api_get("/app/page").await;
    assert_eq!(reply.status, StatusCode::OK, "{}\n{}", reply.body, nginx.error_log());
    let echoed = reply.json();
    assert_eq!(echoed["headers"]["x-forwarded-user"][0], session.sub.as_str());
    assert_eq!(echoed["headers"]["x-forwarded-email"][0], "alice@example.test");
    assert_eq!(echoed["headers"]["x-forwarded-groups"][0], "admins,staff");
    assert_eq!(echoed["path"], "/app/page");
    assert_eq!(browser.navigate("/admin/x").await.status, StatusCode::OK);

    // Bob is signed in but not an admin: nginx relays the 403.
    let bob = Browser::new(
        nginx.origin.clone(),
        nginx.origin.clone(),
        world.provider.issuer().to_owned(),
        world.session_cookie_name(),
    );
    let sign_in = bob.navigate("/admin/x").await.location();
    bob.login_at(&sign_in, "bob", "bob").await;
    assert_eq!(bob.navigate("/admin/x").await.status, StatusCode::FORBIDDEN);
    assert_eq!(bob.navigate("/app/page").await.status, StatusCode::OK);
    // Spoofed identity headers from the client do not survive nginx + gateway.
    let reply = bob
        .send(Method::GET, "/app/page", &[("x-forwarded-user", "SPOOF"), ("accept", "application/json")], Bytes::new())
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!reply.body.contains("SPOOF"), "{}", reply.body);
}

/// Every identity header the gateway could set, in both families.
const IDENTITY_HEADERS: [&str; 10] = [
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-groups",
    "x-auth-request-preferred-username",
    "x-auth-request-access-token",
    "x-auth-request-cookie",
];

/// What a client forges, in mixed case.
const FORGED: [(&str, &str); 5] = [
    ("X-Forwarded-User", "mallory"),
    ("x-forwarded-email", "mallory@evil.test"),
    ("X-AUTH-REQUEST-USER", "mallory"),
    ("x-auth-request-groups", "admins"),
    ("accept", "application/json"),
];

/// The headers a recipe sets for the application: user, email, groups, preferred username.
type Trusted = [&'static str; 4];
const X_FORWARDED: Trusted =
    ["x-forwarded-user", "x-forwarded-email", "x-forwarded-groups", "x-forwarded-preferred-username"];
const X_AUTH_REQUEST: Trusted =
    ["x-auth-request-user", "x-auth-request-email", "x-auth-request-groups", "x-auth-request-preferred-username"];

/// Runs a recipe's promise against the proxy at `origin`: a client forging
/// identity headers and holding a gateway cookie (a stale one when anonymous)
/// gets none of them to the echo application — an anonymous client on a public
/// page arrives with no identity, signed-in alice with exactly hers in `trusted`.
/// `app_cookies_kept`: whether the application still receives its own cookies.
async fn forgeries_stay_out(
    world: &TestWorld,
    origin: &str,
    trusted: Trusted,
    app_cookies_kept: bool,
    log: &dyn Fn() -> String,
) {
    let cookie_name = world.session_cookie_name();
    let browser =
        || Browser::new(origin.to_owned(), origin.to_owned(), world.provider.issuer().to_owned(), cookie_name.clone());
    let arrived_clean = |reply: &Reply| {
        assert_eq!(reply.status, StatusCode::OK, "{}\n{}", reply.body, log());
        assert!(!reply.body.contains("mallory"), "a forged header reached the application: {}", reply.body);
        assert!(
            !reply.body.contains(&format!("{cookie_name}=")),
            "the gateway's cookie reached the application: {}",
            reply.body
        );
        let cookies = &reply.json()["headers"]["cookie"];
        if app_cookies_kept {
            assert_eq!(cookies, &serde_json::json!(["app=1"]), "{}", reply.body);
        } else {
            assert!(cookies.is_null(), "{}", reply.body);
        }
    };

    let anonymous = browser();
    anonymous.set_cookie(&cookie_name, "stale-session-value");
    anonymous.set_cookie("app", "1");
    let reply = anonymous.send(Method::GET, "/public/page", &FORGED, Bytes::new()).await;
    arrived_clean(&reply);
    let headers = &reply.json()["headers"];
    for name in IDENTITY_HEADERS {
        assert!(headers[name].is_null(), "an anonymous client arrived with {name}: {}", reply.body);
    }

    let alice = browser();
    alice.login_at("/oauth2/start?rd=/app/page", "alice", "alice").await;
    let session = world.open_session(&alice.session_value());
    alice.set_cookie("app", "1");
    let reply = alice.send(Method::GET, "/app/page", &FORGED, Bytes::new()).await;
    arrived_clean(&reply);
    let headers = &reply.json()["headers"];
    let [user, email, groups, username] = trusted;
    assert_eq!(headers[user], serde_json::json!([session.sub]), "{}", reply.body);
    assert_eq!(headers[email], serde_json::json!(["alice@example.test"]), "{}", reply.body);
    assert_eq!(headers[groups], serde_json::json!(["admins,staff"]), "{}", reply.body);
    assert_eq!(headers[username], serde_json::json!(["alice"]), "{}", reply.body);
    for name in IDENTITY_HEADERS.iter().filter(|name| !trusted.contains(name)) {
        assert!(headers[*name].is_null(), "{name} reached the application: {}", reply.body);
    }
}

/// A deploy/examples file as written.
fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/deploy/examples/{name}", env!("CARGO_MANIFEST_DIR"))).expect("the example file")
}

#[tokio::test]
async fn nginx_recipe_keeps_forged_identity_and_the_gateway_cookie_from_the_application() {
    let port = free_port();
    let world = TestWorld::builder().public_url(format!("http://127.0.0.1:{port}")).tweak(trusted).start().await;
    let nginx = Nginx::start(port, &example_locations(&world)).await;
    forgeries_stay_out(&world, &nginx.origin, X_FORWARDED, true, &|| nginx.error_log()).await;
}

#[tokio::test]
async fn caddy_recipe_keeps_forged_identity_and_the_gateway_cookie_from_the_application() {
    let port = free_port();
    let origin = format!("http://127.0.0.1:{port}");
    let world = TestWorld::builder()
        .public_url(origin.clone())
        .tweak(|raw| {
            trusted(raw);
            raw.forward_auth.redirect_browsers = true;
        })
        .start()
        .await;
    let upstream = world.upstream_url.trim_start_matches("http://");
    let site = example("Caddyfile")
        .replace("app.example.com {", &format!("{origin} {{"))
        .replace("127.0.0.1:4180", &world.gateway_addr.to_string())
        .replace("127.0.0.1:8080", upstream);
    let caddy = FrontProxy::caddy(port, &site).await;
    forgeries_stay_out(&world, &caddy.origin, X_FORWARDED, true, &|| caddy.log()).await;
}

#[tokio::test]
async fn traefik_recipe_keeps_forged_identity_and_the_gateway_cookie_from_the_application() {
    let port = free_port();
    let world = TestWorld::builder()
        .public_url(format!("http://127.0.0.1:{port}"))
        .tweak(|raw| {
            trusted(raw);
            raw.forward_auth.redirect_browsers = true;
        })
        .start()
        .await;
    let traefik = FrontProxy::traefik(port, &traefik_example(&world)).await;
    forgeries_stay_out(&world, &traefik.origin, X_AUTH_REQUEST, false, &|| traefik.log()).await;
}

/// deploy/examples/traefik.yml pointed at this test's gateway and upstream:
/// plain HTTP on loopback (the routers without TLS, on 127.0.0.1). Each
/// substitution must apply, so the test runs the example, not a drifted copy.
fn traefik_example(world: &TestWorld) -> String {
    let mut dynamic = example("traefik.yml");
    for (from, to) in [
        ("      tls: {}\n", String::new()),
        ("app.example.com", "127.0.0.1".to_owned()),
        ("http://portcullis:4180", format!("http://{}", world.gateway_addr)),
        ("http://app:8080", world.upstream_url.clone()),
    ] {
        assert!(dynamic.contains(from), "deploy/examples/traefik.yml no longer contains {from:?}");
        dynamic = dynamic.replace(from, &to);
    }
    dynamic
}

#[tokio::test]
async fn traefik_forward_auth_end_to_end_sign_in_and_sign_out() {
    let port = free_port();
    let world = TestWorld::builder()
        .public_url(format!("http://127.0.0.1:{port}"))
        .tweak(|raw| {
            trusted(raw);
            raw.forward_auth.redirect_browsers = true;
        })
        .start()
        .await;
    let traefik = FrontProxy::traefik(port, &traefik_example(&world)).await;
    let cookie_name = world.session_cookie_name();
    let browser = || {
        Browser::new(
            traefik.origin.clone(),
            traefik.origin.clone(),
            world.provider.issuer().to_owned(),
            cookie_name.clone(),
        )
    };
    let alice = browser();

    // No session: Traefik relays the gateway's 302 to sign in, the original URL kept; a program gets the 401.
    let reply = alice.navigate("/app/page?x=1").await;
    assert_eq!(reply.status, StatusCode::FOUND, "{}\n{}", reply.body, traefik.log());
    let sign_in = reply.location();
    // Absolute: Traefik resolves a relative Location against the gateway's own address, not the browser's.
    assert_eq!(sign_in, format!("{}/oauth2/start?rd=%2Fapp%2Fpage%3Fx%3D1", traefik.origin));
    assert_eq!(alice.api_get("/app/page").await.status, StatusCode::UNAUTHORIZED);

    // The dance: start → provider → callback (the gateway's steps through Traefik) → back to the page.
    let back = alice.login_at(&sign_in, "alice", "alice").await;
    assert_eq!(back, "/app/page?x=1");
    let session = world.open_session(&alice.session_value());
    let page = alice.navigate(&back).await;
    assert_eq!(page.status, StatusCode::OK, "{}\n{}", page.body, traefik.log());
    assert!(page.body.contains("<code id=\"path\">/app/page?x=1</code>"), "{}", page.body);
    for (name, value) in [
        ("x-auth-request-user", session.sub.as_str()),
        ("x-auth-request-email", "alice@example.test"),
        ("x-auth-request-groups", "admins,staff"),
        ("x-auth-request-preferred-username", "alice"),
    ] {
        assert!(page.body.contains(&format!("<tr><th>{name}</th><td>{value}</td></tr>")), "{name}: {}", page.body);
    }
    // Exactly those headers (copied by authResponseHeaders), and not the session cookie.
    let reply = alice.api_get("/app/page").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let headers = &reply.json()["headers"];
    assert_eq!(headers["x-auth-request-user"], serde_json::json!([session.sub]), "{}", reply.body);
    assert_eq!(headers["x-auth-request-groups"], serde_json::json!(["admins,staff"]), "{}", reply.body);
    assert!(headers["cookie"].is_null(), "{}", reply.body);
    assert!(headers["x-auth-request-access-token"].is_null(), "{}", reply.body);

    // Sign-out through Traefik: the cookie is deleted and the session ends on the gateway.
    let copied = alice.session_value();
    let reply = alice.navigate("/oauth2/sign_out").await;
    assert_eq!(reply.expect_redirect(), "/", "{}", traefik.log());
    assert!(reply.set_cookie(&cookie_name).is_some_and(|cookie| cookie.is_deletion()), "{:?}", reply.headers);
    assert!(alice.cookie(&cookie_name).is_none());
    // The next navigation is sent to sign in again, and so is a copy of the old cookie.
    let sign_in_again = format!("{}/oauth2/start?rd=%2Fapp%2Fpage", traefik.origin);
    assert_eq!(alice.navigate("/app/page").await.location(), sign_in_again);
    let thief = browser();
    thief.set_cookie(&cookie_name, &copied);
    let reply = thief.navigate("/app/page").await;
    assert_eq!(reply.status, StatusCode::FOUND, "a copied cookie outlived sign-out: {}", reply.body);
    assert_eq!(reply.location(), sign_in_again);
    assert_eq!(thief.api_get("/app/page").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn envoy_auth_requests_are_counted_as_forward_auth_not_proxy() {
    let world = envoy_world().await;
    let alice = world.browser();
    alice.login().await;
    let before = world.scrape_metrics().await;
    let proxied_before = count(&before, "proxy", "2xx");
    for _ in 0..3 {
        assert_eq!(alice.api_get("/oauth2/auth/app").await.status, StatusCode::OK);
    }
    let after = world.scrape_metrics().await;
    // Once counted as `proxy`: only the exact `/oauth2/auth` was `forward_auth`.
    assert_eq!(count(&after, "forward_auth", "2xx") - count(&before, "forward_auth", "2xx"), 3, "{after}");
    assert_eq!(count(&after, "proxy", "2xx"), proxied_before, "{after}");
}

/// `portcullis_requests_total{route, status}` in a Prometheus scrape; 0 when absent.
fn count(scrape: &str, route: &str, status: &str) -> u64 {
    let series = format!("portcullis_requests_total{{route=\"{route}\",status=\"{status}\"}} ");
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .map_or(0, |value| value.trim().parse().expect("a counter value"))
}

#[tokio::test]
async fn a_token_that_cannot_be_checked_is_a_503_as_on_the_proxy_path_not_a_login() {
    let world = TestWorld::builder()
        .confidential("introspection-secret", "client_secret_basic")
        .tweak(|raw| {
            trusted(raw);
            raw.bearer.enabled = true;
            raw.bearer.introspection = true;
        })
        .start()
        .await;
    let token = world.provider.mint_opaque_access_token("bob", Duration::from_secs(300)).unwrap();
    world.provider.faults().unavailable.set(true);
    let client = world.browser();
    // The proxy path's answer, for comparison.
    let proxied = client.api_get_with_bearer("/app", &token).await;
    assert_eq!(proxied.status, StatusCode::SERVICE_UNAVAILABLE, "{}", proxied.body);
    // Before issue 15 forward-auth answered 401 here: a sign-in redirect, a login loop during the outage.
    let authorization = format!("Bearer {token}");
    let reply = ask(&client, &[("x-forwarded-uri", "/app"), ("authorization", &authorization)]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.body);
    assert_eq!(reply.json()["error"], "idp_unavailable");
    assert_eq!(reply.header("retry-after"), proxied.header("retry-after"));
}
