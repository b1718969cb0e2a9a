//! The login that should work: every hop asserted, the identity the upstream
//! receives, the authorize request's parameters, and cookie attributes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, StatusCode};
use sha2::{Digest, Sha256};

use crate::support::{CLIENT_ID, TestWorld};

fn is_base64url(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The echo upstream's view of one request: header name to values.
fn echoed_headers(body: &serde_json::Value) -> &serde_json::Map<String, serde_json::Value> {
    body["headers"].as_object().expect("the echo lists headers")
}

fn single(body: &serde_json::Value, name: &str) -> String {
    let values = echoed_headers(body).get(name).unwrap_or_else(|| panic!("upstream did not get {name}: {body}"));
    let values = values.as_array().expect("a list of values");
    assert_eq!(values.len(), 1, "{name} sent once: {values:?}");
    values[0].as_str().expect("text").to_owned()
}

#[tokio::test]
async fn login_returns_to_the_protected_path_and_query_and_upstream_sees_the_identity() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    let landed = browser.login_at("/app/page?x=1&y=a%2Fb", "alice", "alice").await;
    assert_eq!(landed, "/app/page?x=1&y=a%2Fb");

    let session = world.open_session(&browser.session_value());
    browser.set_cookie("theme", "dark");
    let reply = browser.api_get(&landed).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let echoed = reply.json();
    assert_eq!(echoed["path"], "/app/page?x=1&y=a%2Fb");
    assert_eq!(single(&echoed, "authorization"), format!("Bearer {}", session.access_token));
    assert!(single(&echoed, "x-forwarded-user").starts_with("dev-"), "the provider's sub");
    assert_eq!(single(&echoed, "x-forwarded-user"), session.sub);
    assert_eq!(single(&echoed, "x-forwarded-email"), "alice@example.test");
    assert_eq!(single(&echoed, "x-forwarded-preferred-username"), "alice");
    assert_eq!(single(&echoed, "x-forwarded-groups"), "admins,staff");
    assert_eq!(single(&echoed, "x-forwarded-for"), "127.0.0.1");
    assert_eq!(single(&echoed, "x-forwarded-proto"), "http");
    assert_eq!(single(&echoed, "x-forwarded-host"), world.gateway_addr.to_string());
    // The gateway's own cookies stay at the gateway; the application's go through.
    assert_eq!(single(&echoed, "cookie"), "theme=dark");
    assert!(!echoed.to_string().contains(&browser.session_value()), "the session cookie value never reaches upstream");
}

#[tokio::test]
async fn a_request_with_only_the_session_cookie_reaches_upstream_without_a_cookie_header() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    let landed = browser.login_at("/only-session", "alice", "alice").await;
    // Twice: the connection's first request opens the cookie, the second reuses it.
    for attempt in 0..2 {
        let reply = browser.api_get(&landed).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let echoed = reply.json();
        assert!(echoed_headers(&echoed).get("cookie").is_none(), "attempt {attempt}: {echoed}");
        assert!(echoed_headers(&echoed).get("authorization").is_some(), "attempt {attempt}: authenticated");
    }
}

#[tokio::test]
async fn login_returns_to_a_query_with_an_encoded_space() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    assert_eq!(browser.login_at("/search?q=two%20words", "alice", "alice").await, "/search?q=two%20words");
}

#[tokio::test]
async fn authorize_redirect_carries_every_oidc_and_pkce_parameter() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    let pending = browser.start_login("/anything").await;
    let params = &pending.params;
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["client_id"], CLIENT_ID);
    assert_eq!(params["redirect_uri"], format!("{}/oauth2/callback", world.public_url));
    assert_eq!(params["scope"], "openid profile email");
    assert_eq!(params["code_challenge_method"], "S256");
    for name in ["state", "nonce"] {
        assert!(params[name].len() >= 22 && is_base64url(&params[name]), "{name} = {:?}", params[name]);
    }
    assert_ne!(params["state"], params["nonce"]);
    let challenge = &params["code_challenge"];
    assert_eq!(challenge.len(), 43);
    assert!(is_base64url(challenge));

    // The challenge is S256 of the verifier the gateway sealed into the flow cookie.
    let flow = world.open_flow(&pending.flow_cookie_name, &pending.flow_cookie_value);
    assert_eq!(&URL_SAFE_NO_PAD.encode(Sha256::digest(flow.code_verifier.as_bytes())), challenge);
    assert_eq!(flow.state, params["state"]);
    assert_eq!(flow.return_to, "/anything");

    // A second login gets fresh values.
    let again = world.browser().start_login("/anything").await;
    for name in ["state", "nonce", "code_challenge"] {
        assert_ne!(again.params[name], params[name], "{name} must be fresh per login");
    }
}

#[tokio::test]
async fn cookies_are_http_only_lax_and_path_root_and_not_secure_over_http() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    let reply = browser.navigate("/").await;
    let flows: Vec<_> =
        reply.set_cookies().into_iter().filter(|cookie| cookie.name.starts_with("_portcullis_flow_")).collect();
    assert_eq!(flows.len(), 1, "{:?}", reply.set_cookies());
    flows[0].assert_locked_down(false);
    assert_eq!(flows[0].attribute("max-age"), Some("600"), "the flow lives as long as login_timeout");

    let pending = browser.start_login("/").await;
    let callback = browser.sign_in_at_provider(&pending, "alice", "alice").await;
    let done = browser.finish_login(&callback).await;
    let session = done.set_cookie("_portcullis").expect("a session cookie");
    session.assert_locked_down(false);
    assert_eq!(session.attribute("max-age"), Some("43200"), "the session cookie lives as long as session.lifetime");
}

#[tokio::test]
async fn cookies_are_host_prefixed_and_secure_when_the_public_url_is_https() {
    let world = TestWorld::builder().https().start().await;
    let browser = world.browser();
    let pending = browser.start_login("/secure").await;
    assert!(pending.flow_cookie_name.starts_with("__Host-_portcullis_flow_"));
    let callback = browser.sign_in_at_provider(&pending, "alice", "alice").await;
    assert!(callback.starts_with(&format!("https://{}/oauth2/callback?", world.gateway_addr)));
    let done = browser.finish_login(&callback).await;
    assert_eq!(done.expect_redirect(), "/secure");
    let session = done.set_cookie("__Host-_portcullis").expect("a __Host- session cookie");
    session.assert_locked_down(true);
    assert!(done.set_cookie("_portcullis").is_none(), "no unprefixed cookie over https");
    let flow_cleared = done.set_cookie(&pending.flow_cookie_name).expect("the flow cookie is cleared");
    assert!(flow_cleared.is_deletion());
    flow_cleared.assert_locked_down(true);

    let reply = browser.api_get("/secure").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(single(&reply.json(), "x-forwarded-proto"), "http", "the socket itself is plain HTTP");
}

#[tokio::test]
async fn two_tabs_can_log_in_at_the_same_time() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    let first = browser.start_login("/tab/one").await;
    let second = browser.start_login("/tab/two").await;
    assert_ne!(first.state(), second.state());
    let first_callback = browser.sign_in_at_provider(&first, "alice", "alice").await;
    let second_callback = browser.sign_in_at_provider(&second, "bob", "bob").await;

    // The later tab finishes first; the earlier one still completes.
    let second_done = browser.finish_login(&second_callback).await;
    assert_eq!(second_done.expect_redirect(), "/tab/two");
    let first_done = browser.finish_login(&first_callback).await;
    assert_eq!(first_done.expect_redirect(), "/tab/one");
    assert!(first_done.set_cookie("_portcullis").is_some());
    assert!(browser.cookie_names().iter().all(|name| !name.contains("_flow_")), "both flow cookies are used up");

    let reply = browser.api_get("/tab/one").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(single(&reply.json(), "x-forwarded-preferred-username"), "alice", "the last login wins");
}

#[tokio::test]
async fn head_navigation_is_sent_to_login_too() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    let reply = browser.send(Method::HEAD, "/report", &crate::support::browser::NAVIGATION, Default::default()).await;
    let location = reply.expect_redirect();
    assert!(location.starts_with(&format!("{}/authorize?", world.provider.issuer())), "{location}");
}

#[tokio::test]
async fn explicit_start_returns_to_rd() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    let landed = browser.login_at("/oauth2/start?rd=%2Fx%3Fy%3D1", "alice", "alice").await;
    assert_eq!(landed, "/x?y=1");
    assert_eq!(browser.api_get("/x").await.status, StatusCode::OK);
}

#[tokio::test]
async fn confidential_client_logs_in_with_basic_and_with_post() {
    for method in ["client_secret_basic", "client_secret_post"] {
        let world = TestWorld::builder().confidential("itest client secret +/=", method).start().await;
        let browser = world.browser();
        assert_eq!(browser.login_at("/conf", "bob", "bob").await, "/conf", "{method}");
        assert_eq!(world.provider.token_requests("authorization_code"), 1, "{method}");
        let reply = browser.api_get("/conf").await;
        assert_eq!(reply.status, StatusCode::OK, "{method}");
        assert_eq!(single(&reply.json(), "x-forwarded-email"), "bob@example.test");
    }
}

#[tokio::test]
async fn many_abandoned_logins_keep_at_most_four_flow_cookies() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    let mut last = None;
    for tab in 0..7 {
        last = Some(browser.start_login(&format!("/tab/{tab}")).await);
        let flows = browser.cookie_names().into_iter().filter(|name| name.contains("_flow_")).count();
        assert!(flows <= 4, "after {} logins the browser holds {flows} flow cookies", tab + 1);
    }
    let last = last.expect("seven logins started");
    assert!(browser.cookie(&last.flow_cookie_name).is_some(), "the newest flow is kept");
    let callback = browser.sign_in_at_provider(&last, "alice", "alice").await;
    assert_eq!(browser.finish_login(&callback).await.expect_redirect(), "/tab/6");
}
