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
