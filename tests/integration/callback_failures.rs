//! Every way the end of a login can be forged or go wrong: the gateway must
//! refuse with a clear page and never set a session cookie.

use http::StatusCode;

use crate::support::{Browser, Reply, TestWorld, query_params, with_param};

/// The refusal is an HTML page with the request id, and no session was made.
fn assert_refused_without_session(reply: &Reply, browser: &Browser, status: StatusCode) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert!(reply.header("content-type").is_some_and(|value| value.starts_with("text/html")));
    let request_id = reply.header("x-request-id").expect("a request id");
    assert!(reply.body.contains(&request_id), "the page shows the request id {request_id}: {}", reply.body);
    assert_eq!(reply.header("cache-control").as_deref(), Some("no-store"));
    let session = browser.session_cookie_name();
    assert!(
        reply.set_cookies().iter().all(|cookie| cookie.name != session || cookie.is_deletion()),
        "no session cookie may be set: {:?}",
        reply.set_cookies()
    );
    assert!(browser.cookie(session).is_none());
}

#[tokio::test]
async fn callback_without_state_is_refused() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    let pending = browser.start_login("/").await;
    let callback = browser.sign_in_at_provider(&pending, "alice", "alice").await;
    let without_state: String = {
        let params = query_params(&callback);
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter().filter(|(name, _)| name.as_str() != "state"))
            .finish();
        format!("/oauth2/callback?{query}")
    };
    let reply = browser.finish_login(&without_state).await;
    assert_refused_without_session(&reply, &browser, StatusCode::BAD_REQUEST);
    assert_eq!(world.provider.token_requests("authorization_code"), 0, "the code is never exchanged");

    let bare = browser.finish_login("/oauth2/callback").await;
    assert_refused_without_session(&bare, &browser, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn callback_with_an_unknown_state_is_refused() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    let pending = browser.start_login("/").await;
    let callback = browser.sign_in_at_provider(&pending, "alice", "alice").await;

    let forged = with_param(&callback, "state", "AAAAAAAAAAAAAAAAAAAAAA");
    let reply = browser.finish_login(&forged).await;
    assert_refused_without_session(&reply, &browser, StatusCode::BAD_REQUEST);

    // The real state, but this browser never started the login (no flow cookie).
    let stranger = world.browser();
    let reply = stranger.finish_login(&callback).await;
    assert_refused_without_session(&reply, &stranger, StatusCode::BAD_REQUEST);
    assert_eq!(world.provider.token_requests("authorization_code"), 0);
}

#[tokio::test]
async fn flow_cookie_sealed_for_another_state_is_refused() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    let first = browser.start_login("/one").await;
    let second = browser.start_login("/two").await;
    let callback = browser.sign_in_at_provider(&first, "alice", "alice").await;
    // Present the second flow's sealed value under the first flow's name.
    browser.remove_cookie(&second.flow_cookie_name);
    browser.set_cookie(&first.flow_cookie_name, &second.flow_cookie_value);
    let reply = browser.finish_login(&callback).await;
    assert_refused_without_session(&reply, &browser, StatusCode::BAD_REQUEST);
    assert_eq!(world.provider.token_requests("authorization_code"), 0);
}

#[tokio::test]
async fn replayed_callback_fails_and_creates_no_session() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    let pending = browser.start_login("/").await;
    let callback = browser.sign_in_at_provider(&pending, "alice", "alice").await;
    assert_eq!(browser.finish_login(&callback).await.expect_redirect(), "/");

    // The same browser again: its flow cookie was deleted by the first use.
    let again = world.browser();
    let reply = again.finish_login(&callback).await;
    assert_refused_without_session(&reply, &again, StatusCode::BAD_REQUEST);

    // An attacker who captured both the callback URL and the flow cookie: the
    // code is single use at the provider, so the exchange fails.
    let attacker = world.browser();
    attacker.set_cookie(&pending.flow_cookie_name, &pending.flow_cookie_value);
    let reply = attacker.finish_login(&callback).await;
    assert_refused_without_session(&reply, &attacker, StatusCode::BAD_GATEWAY);
    assert_eq!(world.provider.token_requests("authorization_code"), 2);
}

#[tokio::test]
async fn provider_access_denied_shows_an_escaped_403_and_no_session() {
    let world = TestWorld::start().await;
    for error in ["access_denied", "<script>alert(1)</script>"] {
        world.provider.faults().authorize_error.set(Some(error));
        let browser = world.browser();
        let pending = browser.start_login("/").await;
        // The provider refuses at once and sends the browser back with error=...
        let back = browser.navigate(&pending.authorize_url).await.expect_redirect();
        assert_eq!(query_params(&back)["error"], error);
        let reply = browser.finish_login(&back).await;
        assert_refused_without_session(&reply, &browser, StatusCode::FORBIDDEN);
        assert!(!reply.body.contains("<script>"), "{}", reply.body);
        if error == "access_denied" {
            assert!(reply.body.contains("cancelled or access was denied"), "{}", reply.body);
        }
    }
    assert_eq!(world.provider.token_requests("authorization_code"), 0);
}

#[tokio::test]
async fn callback_from_another_issuer_is_refused() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    let pending = browser.start_login("/").await;
    let callback = browser.sign_in_at_provider(&pending, "alice", "alice").await;
    assert_eq!(query_params(&callback)["iss"], world.provider.issuer());
    let reply = browser.finish_login(&with_param(&callback, "iss", "https://evil.example")).await;
    assert_refused_without_session(&reply, &browser, StatusCode::BAD_REQUEST);
    assert_eq!(
        world.provider.token_requests("authorization_code"),
        0,
        "mix-up: the code never goes to the token endpoint"
    );
}

#[tokio::test]
async fn callback_without_iss_is_refused_when_the_provider_promises_it() {
    let world = TestWorld::start().await;
    world.provider.faults().omit_iss_parameter.set(true);
    let browser = world.browser();
    let pending = browser.start_login("/").await;
    let callback = browser.sign_in_at_provider(&pending, "alice", "alice").await;
    assert!(!query_params(&callback).contains_key("iss"));
    let reply = browser.finish_login(&callback).await;
    assert_refused_without_session(&reply, &browser, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn token_endpoint_error_shows_a_page_with_the_request_id_and_no_session() {
    let world = TestWorld::start().await;
    world.provider.faults().token_endpoint_error.set(Some("invalid_grant"));
    let browser = world.browser();
    let pending = browser.start_login("/").await;
    let callback = browser.sign_in_at_provider(&pending, "alice", "alice").await;
    let reply = browser.finish_login(&callback).await;
    assert_refused_without_session(&reply, &browser, StatusCode::BAD_GATEWAY);
    assert!(reply.body.contains("did not accept this sign-in"), "{}", reply.body);
    assert_eq!(world.provider.token_requests("authorization_code"), 1);
}

#[tokio::test]
async fn every_id_token_defect_is_refused() {
    let world = TestWorld::start().await;
    let faults = world.provider.faults();
    let cases = [
        ("bad signature", &faults.id_token_bad_signature),
        ("wrong nonce", &faults.id_token_wrong_nonce),
        ("wrong audience", &faults.id_token_wrong_audience),
        ("wrong issuer", &faults.id_token_wrong_issuer),
        ("expired", &faults.id_token_expired),
        ("alg none", &faults.id_token_alg_none),
    ];
    for (defect, flag) in cases {
        flag.set(true);
        let browser = world.browser();
        let pending = browser.start_login("/").await;
        let callback = browser.sign_in_at_provider(&pending, "alice", "alice").await;
        let reply = browser.finish_login(&callback).await;
        flag.set(false);
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{defect}: {}", reply.body);
        assert_refused_without_session(&reply, &browser, StatusCode::BAD_GATEWAY);
        assert!(reply.body.contains("could not be verified"), "{defect}: {}", reply.body);
    }
    // With every fault off again, the same world logs in: the refusals were the defects.
    assert_eq!(world.browser().login().await, "/");
}

#[tokio::test]
async fn callback_with_a_repeated_state_is_refused() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    let pending = browser.start_login("/").await;
    let callback = browser.sign_in_at_provider(&pending, "alice", "alice").await;
    let doubled = format!("{callback}&state={}", pending.state());
    let reply = browser.finish_login(&doubled).await;
    assert_refused_without_session(&reply, &browser, StatusCode::BAD_REQUEST);
    assert_eq!(world.provider.token_requests("authorization_code"), 0);
}

#[tokio::test]
async fn flow_older_than_the_login_timeout_is_refused() {
    let world =
        TestWorld::builder().tweak(|raw| raw.session.login_timeout = std::time::Duration::from_secs(60)).start().await;
    let browser = world.browser();
    let pending = browser.start_login("/").await;
    let callback = browser.sign_in_at_provider(&pending, "alice", "alice").await;
    // The clock is the system's plus an offset, in whole seconds: 58, not 59,
    // so a real second ticking over during the test cannot reach the timeout.
    world.clock.advance(58);
    let early = world.browser();
    early.set_cookie(&pending.flow_cookie_name, &pending.flow_cookie_value);
    // Still inside the timeout: the flow is accepted (the provider refuses nothing either).
    assert_eq!(early.finish_login(&callback).await.expect_redirect(), "/");
    world.clock.advance(3);
    let reply = browser.finish_login(&callback).await;
    assert_refused_without_session(&reply, &browser, StatusCode::BAD_REQUEST);
    assert!(reply.body.contains("expired"), "{}", reply.body);
    assert_eq!(world.provider.token_requests("authorization_code"), 1, "only the timely callback was exchanged");
}

#[tokio::test]
async fn session_cookie_presented_as_the_flow_cookie_is_refused() {
    let world = TestWorld::start().await;
    let victim = world.browser();
    victim.login().await;
    let browser = world.browser();
    let pending = browser.start_login("/").await;
    let callback = browser.sign_in_at_provider(&pending, "alice", "alice").await;
    browser.set_cookie(&pending.flow_cookie_name, &victim.session_value());
    let reply = browser.finish_login(&callback).await;
    assert_refused_without_session(&reply, &browser, StatusCode::BAD_REQUEST);
    assert_eq!(world.provider.token_requests("authorization_code"), 1, "only the victim's own login was exchanged");
}

/// How many failed code exchanges per client address (and window) the gateway makes, as documented.
const FAILED_CALLBACKS_PER_CLIENT: u64 = 10;

#[tokio::test]
async fn forged_callbacks_cannot_make_one_token_request_each() {
    let world = TestWorld::start().await;
    let forged_callback = |state: &str| {
        let url = with_param(&format!("{}/oauth2/callback?code=forged", world.public_url), "state", state);
        with_param(&url, "iss", world.provider.issuer())
    };
    // Each attempt has a genuine flow cookie and state (free to get), and a made-up code.
    for attempt in 0..FAILED_CALLBACKS_PER_CLIENT {
        let browser = world.browser();
        let pending = browser.start_login("/").await;
        let reply = browser.finish_login(&forged_callback(pending.state())).await;
        assert_refused_without_session(&reply, &browser, StatusCode::BAD_GATEWAY);
        assert_eq!(world.provider.token_requests("authorization_code"), attempt + 1);
    }
    let browser = world.browser();
    let pending = browser.start_login("/").await;
    let reply = browser.finish_login(&forged_callback(pending.state())).await;
    assert_refused_without_session(&reply, &browser, StatusCode::TOO_MANY_REQUESTS);
    assert!(reply.header("retry-after").is_some());
    assert_eq!(world.provider.token_requests("authorization_code"), FAILED_CALLBACKS_PER_CLIENT);
}
