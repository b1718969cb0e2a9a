//! Sign-out: the session cookie (and any flow cookie) is deleted with the
//! attributes it was set with, the session ends on the gateway (a copied
//! cookie stops working), tokens are revoked at the provider, and a
//! cross-site request cannot sign anybody out.

use bytes::Bytes;
use http::{Method, StatusCode};

use crate::support::TestWorld;
use crate::support::browser::CROSS_SITE_NAVIGATION;

#[tokio::test]
async fn sign_out_deletes_the_cookies_ends_the_session_and_revokes_the_tokens() {
    let world = TestWorld::builder().https().start().await;
    let browser = world.browser();
    browser.login_at("/home", "alice", "alice").await;
    let copied = browser.session_value();
    // An explicit login start while signed in leaves a flow cookie behind.
    let pending = browser.start_login("/oauth2/start?rd=/later").await;
    assert!(browser.cookie(&pending.flow_cookie_name).is_some());
    let revoked_before = world.provider.revoked_tokens();

    let reply = browser.navigate("/oauth2/sign_out").await;
    assert_eq!(reply.expect_redirect(), "/");
    let cleared = reply.set_cookie("__Host-_portcullis").expect("the session cookie is deleted");
    assert!(cleared.is_deletion(), "{}", cleared.raw);
    assert!(cleared.value.is_empty());
    cleared.assert_locked_down(true);
    let flow = reply.set_cookie(&pending.flow_cookie_name).expect("the flow cookie is deleted");
    assert!(flow.is_deletion());
    flow.assert_locked_down(true);
    assert!(browser.cookie_names().is_empty(), "{:?}", browser.cookie_names());
    assert!(world.provider.revoked_tokens() > revoked_before, "the refresh and access tokens are revoked");

    let next = browser.navigate("/home").await.expect_redirect();
    assert!(next.starts_with(&format!("{}/authorize?", world.provider.issuer())), "{next}");
    assert_eq!(browser.api_get("/home").await.status, StatusCode::UNAUTHORIZED);

    // A copy of the cookie taken before sign-out no longer authenticates.
    let thief = world.browser();
    thief.set_cookie("__Host-_portcullis", &copied);
    assert_eq!(thief.api_get("/home").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_out_without_a_session_is_harmless() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    let reply = browser.navigate("/oauth2/sign_out?rd=%2Fbye").await;
    assert_eq!(reply.expect_redirect(), "/bye");
    assert!(reply.set_cookie("_portcullis").is_some_and(|cookie| cookie.is_deletion()));
}

#[tokio::test]
async fn a_cross_site_request_cannot_sign_the_user_out() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    browser.login_at("/home", "alice", "alice").await;

    // An <img> or link on another site, and a client that sends no Fetch Metadata at all.
    let cross_site = browser.send(Method::GET, "/oauth2/sign_out", &CROSS_SITE_NAVIGATION, Bytes::new()).await;
    let unmarked = browser.send(Method::GET, "/oauth2/sign_out", &[("accept", "text/html")], Bytes::new()).await;
    for reply in [&cross_site, &unmarked] {
        assert_eq!(reply.status, StatusCode::OK, "a confirmation page, not a sign-out");
        assert!(reply.body.contains("Sign out?") && reply.body.contains("method=\"post\""));
        assert!(reply.set_cookies().is_empty(), "nothing is cleared");
    }
    assert_eq!(browser.api_get("/home").await.status, StatusCode::OK, "still signed in");

    // A forged POST without the CSRF token, and one from a foreign Origin.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let forged = browser.send(Method::POST, "/oauth2/sign_out", &form, Bytes::from_static(b"csrf=forged")).await;
    assert_eq!(forged.status, StatusCode::OK, "a confirmation page again");
    let foreign = [("content-type", "application/x-www-form-urlencoded"), ("origin", "https://evil.example")];
    let foreign_post = browser.send(Method::POST, "/oauth2/sign_out", &foreign, Bytes::new()).await;
    assert_eq!(foreign_post.status, StatusCode::FORBIDDEN);
    assert_eq!(browser.api_get("/home").await.status, StatusCode::OK, "still signed in");

    // The confirmation page's own form signs out.
    let csrf = hidden_field(&cross_site.body, "csrf");
    let body = format!("csrf={csrf}&rd=%2Fbye");
    let confirmed = browser.send(Method::POST, "/oauth2/sign_out", &form, Bytes::from(body)).await;
    assert_eq!(confirmed.expect_redirect(), "/bye");
    assert_eq!(browser.api_get("/home").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_out_can_end_the_provider_session() {
    let world = TestWorld::builder().tweak(|raw| raw.oidc.end_session_on_sign_out = true).start().await;
    let browser = world.browser();
    browser.login_at("/home", "alice", "alice").await;
    let location = browser.navigate("/oauth2/sign_out").await.expect_redirect();
    assert!(location.starts_with(&format!("{}/logout?", world.provider.issuer())), "{location}");
    let params = crate::support::query_params(&location);
    assert!(params.get("id_token_hint").is_some_and(|hint| hint.split('.').count() == 3));
    let post_logout = params.get("post_logout_redirect_uri").expect("a post-logout redirect");
    assert!(post_logout.starts_with("http://127.0.0.1:") && post_logout.ends_with('/'), "{post_logout}");
    assert!(params.get("state").is_some_and(|state| state.len() >= 22));
}

#[tokio::test]
async fn sign_out_goes_ahead_when_revocation_fails() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    browser.login_at("/home", "alice", "alice").await;
    let copied = browser.session_value();
    world.provider.faults().unavailable.set(true);
    assert_eq!(browser.navigate("/oauth2/sign_out").await.expect_redirect(), "/");
    let thief = world.browser();
    thief.set_cookie("_portcullis", &copied);
    assert_eq!(thief.api_get("/home").await.status, StatusCode::UNAUTHORIZED);
}

fn hidden_field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).map(|at| at + marker.len()).expect("the hidden field");
    let rest = html.get(start..).expect("field text");
    rest.split('"').next().expect("a closing quote").to_owned()
}

/// Signs `username` in with a new browser and out again; returns the session cookie it had.
async fn sign_in_and_out(world: &TestWorld, username: &str) -> String {
    let browser = world.browser();
    browser.login_at("/home", username, username).await;
    let cookie = browser.session_value();
    assert_eq!(browser.navigate("/oauth2/sign_out").await.expect_redirect(), "/");
    cookie
}

/// Issue 14 item 4: the records of sign-outs are never read, so a cache that
/// admits entries by how often they are read refused new ones once full and a
/// copied cookie kept working. An attacker fills the table with their own
/// sign-outs around the victim's.
#[tokio::test]
async fn sign_outs_that_fill_the_records_never_revive_a_signed_out_cookie() {
    // The session cache's bound, which also bounded the sign-out records, is small here.
    let world = TestWorld::builder().tweak(|raw| raw.session.cache_max_entries = 16).start().await;
    for _ in 0..40 {
        sign_in_and_out(&world, "bob").await;
    }
    let copied = sign_in_and_out(&world, "alice").await;
    for _ in 0..40 {
        sign_in_and_out(&world, "bob").await;
    }
    let thief = world.browser();
    thief.set_cookie("_portcullis", &copied);
    assert_eq!(thief.api_get("/home").await.status, StatusCode::UNAUTHORIZED, "the signed-out copy still works");
    assert!(world.metrics().contains("portcullis_ended_sessions_overflows_total 0"), "{}", world.metrics());
}

/// Issue 14 item 4: should the records ever reach their bound
/// (`session.ended_max_entries`), no record is dropped silently: every session
/// created until then ends (fail closed), and the metric and the log say so.
#[tokio::test]
async fn reaching_the_bound_of_the_records_ends_every_session_and_says_so() {
    let world = TestWorld::builder().tweak(|raw| raw.session.ended_max_entries = 4).start().await;
    let bystander = world.browser();
    bystander.login_at("/home", "alice", "alice").await;
    let mut copies = Vec::new();
    for _ in 0..4 {
        copies.push(sign_in_and_out(&world, "bob").await);
    }
    assert_eq!(bystander.api_get("/home").await.status, StatusCode::OK, "within the bound nothing else ends");
    assert!(world.metrics().contains("portcullis_ended_sessions_overflows_total 0"));

    copies.push(sign_in_and_out(&world, "bob").await);
    assert!(world.metrics().contains("portcullis_ended_sessions_overflows_total 1"), "{}", world.metrics());
    assert!(crate::support::logs::captured().contains("ended_sessions_full"), "an error is logged");
    assert_eq!(bystander.api_get("/home").await.status, StatusCode::UNAUTHORIZED, "failed closed");
    for copied in &copies {
        let thief = world.browser();
        thief.set_cookie("_portcullis", copied);
        assert_eq!(thief.api_get("/home").await.status, StatusCode::UNAUTHORIZED, "a signed-out copy works again");
    }
    // Sessions created afterwards are not affected (the records have one-second granularity).
    world.clock.advance(1);
    let again = world.browser();
    again.login_at("/home", "alice", "alice").await;
    assert_eq!(again.api_get("/home").await.status, StatusCode::OK);
}

/// The confirmation page served on an application host the gateway routes
/// (`[[upstreams]] host`) posts from that host's origin: that is not a cross-site request.
#[tokio::test]
async fn the_confirmation_posted_from_an_application_host_the_gateway_serves_signs_out() {
    let world = TestWorld::builder()
        .tweak(|raw| {
            raw.upstreams = vec![portcullis::config::raw::RawUpstream {
                name: Some("wiki".to_owned()),
                url: raw.upstream.clone().unwrap_or_default(),
                host: Some("wiki.localhost".to_owned()),
                ..Default::default()
            }];
        })
        .start()
        .await;
    let browser = world.browser();
    browser.login_at("/home", "alice", "alice").await;
    let page = browser.send(Method::GET, "/oauth2/sign_out", &CROSS_SITE_NAVIGATION, Bytes::new()).await;
    let csrf = hidden_field(&page.body, "csrf");
    let port = world.gateway_addr.port();

    // Another port of that host is another origin, and so is a host the gateway does not serve.
    for foreign in [format!("http://wiki.localhost:{}", port.wrapping_add(1)), format!("http://other.localhost:{port}")]
    {
        let headers = [("content-type", "application/x-www-form-urlencoded"), ("origin", foreign.as_str())];
        let body = Bytes::from(format!("csrf={csrf}"));
        let refused = browser.send(Method::POST, "/oauth2/sign_out", &headers, body).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{foreign}");
    }
    assert_eq!(browser.api_get("/home").await.status, StatusCode::OK, "still signed in");

    let origin = format!("http://wiki.localhost:{port}");
    let headers = [("content-type", "application/x-www-form-urlencoded"), ("origin", origin.as_str())];
    let confirmed = browser.send(Method::POST, "/oauth2/sign_out", &headers, Bytes::from(format!("csrf={csrf}"))).await;
    assert_eq!(confirmed.expect_redirect(), "/");
    assert_eq!(browser.api_get("/home").await.status, StatusCode::UNAUTHORIZED);
}
