//! The ID token rules of OpenID Connect Core §3.1.3.7 and RFC 7519/7515, held
//! to the letter for every JWT the gateway accepts besides the login's ID
//! token: refreshed ID tokens, back-channel logout tokens and bearer access
//! tokens. Each is refused for an unknown `crit` header member, a future
//! `nbf`, an empty `sub` and an audience the client does not trust.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Method, StatusCode};
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};

use crate::support::{Browser, CLIENT_ID, Reply, TestWorld};

/// A time no test clock reaches (year 2096).
const FAR_FUTURE: i64 = 4_000_000_000;
/// Seconds after login at which the access token is due for refresh but not expired.
const INTO_REFRESH_WINDOW: i64 = 250;

/// Each defect as a change to otherwise good claims, or to the JOSE header.
fn defects() -> Vec<(&'static str, Value, Option<&'static str>)> {
    vec![
        ("an unknown critical header", json!({}), Some("urn:example:unknown")),
        ("nbf in the future", json!({"nbf": FAR_FUTURE}), None),
        ("empty sub", json!({"sub": ""}), None),
        ("an audience the client does not trust", json!({"aud": [CLIENT_ID, "https://untrusted.example"]}), None),
    ]
}

fn with(claims: &Value, changes: &Value) -> Value {
    let mut claims = claims.clone();
    for (name, value) in changes.as_object().expect("an object") {
        claims[name] = value.clone();
    }
    claims
}

fn header(typ: &str, critical: Option<&str>) -> Header {
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some(typ.to_owned());
    if let Some(extension) = critical {
        header.crit = Some(vec![extension.to_owned()]);
        header.extras.insert(extension, true);
    }
    header
}

fn payload(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

/// A refreshed ID token that breaks a rule is refused: none of its claims (here
/// an `admins` group slipped in beside the defect) reach rules or headers. The
/// provider has already rotated the refresh token by then, so the session
/// keeps its new access token and its login identity (issue 14 item 6), and
/// ends only when the token names another user (an empty `sub` does).
#[tokio::test]
async fn refreshed_id_tokens_are_held_to_the_same_rules() {
    for (defect, changes, critical) in defects() {
        let world = TestWorld::start().await;
        let browser = world.browser();
        browser.login_at("/", "bob", "bob").await;
        let before: Value = serde_json::from_str(&browser.api_get("/data").await.body).expect("echo JSON");
        let faults = world.provider.faults();
        faults.id_token_claims.set(Some(with(&changes, &json!({"groups": ["admins"]}))));
        faults.id_token_critical.set(critical);
        world.clock.advance(INTO_REFRESH_WINDOW);
        let reply = browser.api_get("/data").await;
        assert_eq!(world.provider.token_requests("refresh_token"), 1, "{defect}");
        if defect == "empty sub" {
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{defect}: {}", reply.body);
            continue;
        }
        assert_eq!(reply.status, StatusCode::OK, "{defect}: {}", reply.body);
        let echoed: Value = serde_json::from_str(&reply.body).expect("echo JSON");
        let groups = echoed["headers"]["x-forwarded-groups"].to_string();
        assert!(!groups.contains("admins"), "{defect}: the refused token's groups were adopted: {groups}");
        assert_eq!(echoed["headers"]["x-forwarded-user"], before["headers"]["x-forwarded-user"], "{defect}");
        // The new access token is kept: no second refresh.
        assert_eq!(browser.api_get("/data").await.status, StatusCode::OK, "{defect}");
        assert_eq!(world.provider.token_requests("refresh_token"), 1, "{defect}");
    }
}

async fn post_logout_token(browser: &Browser, token: &str) -> Reply {
    browser
        .send(
            Method::POST,
            "/oauth2/backchannel_logout",
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from(format!("logout_token={token}")),
        )
        .await
}

#[tokio::test]
async fn logout_tokens_are_held_to_the_same_rules() {
    let world = TestWorld::start().await;
    let alice = world.browser();
    alice.login_at("/", "alice", "alice").await;
    let genuine = world.provider.backchannel_logout_token("alice", None).expect("a logout token");
    let claims = payload(&genuine);
    for (defect, changes, critical) in defects() {
        let mut forged = with(&claims, &changes);
        forged["jti"] = json!(format!("jti-{defect}"));
        let token = world.provider.sign_with_current_key(header("logout+jwt", critical), &forged).expect("signed");
        let reply = post_logout_token(&world.browser(), &token).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{defect}: {}", reply.body);
        assert_eq!(alice.api_get("/x").await.status, StatusCode::OK, "{defect} ended the session");
    }
    // The genuine token, signed the same way, is accepted: the refusals were the defects'.
    let resigned = world.provider.sign_with_current_key(header("logout+jwt", None), &claims).expect("signed");
    assert_eq!(post_logout_token(&world.browser(), &resigned).await.status, StatusCode::OK);
    assert_eq!(alice.api_get("/x").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bearer_access_tokens_are_held_to_the_same_rules() {
    let world = TestWorld::builder().tweak(|raw| raw.bearer.enabled = true).start().await;
    let genuine = world.provider.mint_access_token("bob", Duration::from_secs(300)).expect("a token");
    let claims = payload(&genuine);
    for (defect, changes, critical) in defects() {
        let token =
            world.provider.sign_with_current_key(header("at+jwt", critical), &with(&claims, &changes)).expect("signed");
        let reply = world.browser().api_get_with_bearer("/api/data", &token).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{defect}: {}", reply.body);
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(challenge.contains("error=\"invalid_token\""), "{defect}: {challenge}");
    }
    let resigned = world.provider.sign_with_current_key(header("at+jwt", None), &claims).expect("signed");
    let reply = world.browser().api_get_with_bearer("/api/data", &resigned).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn an_audience_the_operator_trusts_is_accepted_besides_the_client() {
    const TRUSTED: &str = "https://trusted.example";
    let world = TestWorld::builder()
        .tweak(|raw| {
            raw.oidc.trusted_audiences = vec![TRUSTED.to_owned()];
            raw.bearer.enabled = true;
        })
        .before_gateway_start(|faults| faults.id_token_claims.set(Some(json!({"aud": [CLIENT_ID, TRUSTED]}))))
        .start()
        .await;
    let browser = world.browser();
    assert_eq!(browser.login_at("/", "alice", "alice").await, "/");
    let id_token = world.open_session(&browser.session_value()).id_token.expect("an ID token");
    assert_eq!(payload(&id_token)["aud"], json!([CLIENT_ID, TRUSTED]));

    let access_token = world.provider.mint_access_token("bob", Duration::from_secs(300)).expect("a token");
    let claims = with(&payload(&access_token), &json!({"aud": [CLIENT_ID, TRUSTED]}));
    let token = world.provider.sign_with_current_key(header("at+jwt", None), &claims).expect("signed");
    let reply = world.browser().api_get_with_bearer("/api/data", &token).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}
