//! `/oauth2/userinfo`: the session's identity as JSON, never its tokens.

use http::StatusCode;

use crate::support::TestWorld;

#[tokio::test]
async fn userinfo_shows_claims_but_no_tokens() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    assert_eq!(browser.api_get("/oauth2/userinfo").await.status, StatusCode::UNAUTHORIZED);
    browser.login().await;
    let session = world.open_session(&browser.session_value());
    let reply = browser.api_get("/oauth2/userinfo").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let json = reply.json();
    assert_eq!(json["sub"], session.sub.as_str());
    assert_eq!(json["email"], "alice@example.test");
    assert_eq!(json["email_verified"], true);
    assert_eq!(json["preferred_username"], "alice");
    assert_eq!(json["groups"], serde_json::json!(["admins", "staff"]));
    assert!(!reply.body.contains(&session.access_token));
    assert!(!reply.body.contains("token"), "{}", reply.body);
}

#[tokio::test]
async fn an_invalid_session_cookie_is_cleared_as_on_the_proxy_path() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    browser.login().await;
    let name = browser.session_cookie_name().to_owned();
    browser.set_cookie(&name, "not-a-sealed-session");
    // The proxy path's answer, for comparison: 401 and the cookie cleared.
    let proxied = browser.api_get("/app").await;
    assert_eq!(proxied.status, StatusCode::UNAUTHORIZED);
    assert!(proxied.set_cookie(&name).is_some_and(|cookie| cookie.is_deletion()), "proxy path");
    browser.set_cookie(&name, "not-a-sealed-session");
    // Before issue 15 userinfo left the bad cookie in place.
    let reply = browser.api_get("/oauth2/userinfo").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.set_cookie(&name).is_some_and(|cookie| cookie.is_deletion()), "{:?}", reply.set_cookies());
}

#[tokio::test]
async fn a_bearer_token_identifies_the_caller_as_on_the_proxy_path() {
    let world = TestWorld::builder().tweak(|raw| raw.bearer.enabled = true).start().await;
    let browser = world.browser();
    browser.login_at("/", "bob", "bob").await;
    let token = world.open_session(&browser.session_value()).access_token;
    let client = world.browser();
    assert_eq!(client.api_get_with_bearer("/app", &token).await.status, StatusCode::OK);
    // Before issue 15 userinfo knew only sessions: 401.
    let reply = client.api_get_with_bearer("/oauth2/userinfo", &token).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let session = world.open_session(&browser.session_value());
    assert_eq!(reply.json()["sub"], session.sub.as_str());
    assert!(!reply.body.contains(&token), "the token itself is never answered");
}
