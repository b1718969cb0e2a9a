//! What reaches the upstream is what the gateway vouches for: an email the
//! provider has not verified is not forwarded as `X-Forwarded-Email` nor
//! answered as `X-Auth-Request-Email`, and a client's own `Authorization`
//! does not reach a public route unless the operator opts in.

use bytes::Bytes;
use http::{Method, StatusCode};
use portcullis::config::RawConfig;
use portcullis::config::raw::RawRule;
use serde_json::json;

use crate::support::{TestWorld, raw_exchange};

fn public_route(raw: &mut RawConfig) {
    raw.authz.rules = vec![RawRule {
        name: Some("public".to_owned()),
        path_prefix: Some("/public/".to_owned()),
        allow: Some("public".to_owned()),
        ..RawRule::default()
    }];
    raw.forward_auth.trusted_proxies = vec!["127.0.0.1/32".to_owned()];
}

#[tokio::test]
async fn an_unverified_email_is_neither_forwarded_nor_answered() {
    let world = TestWorld::builder()
        .tweak(public_route)
        .before_gateway_start(|faults| faults.id_token_claims.set(Some(json!({"email_verified": false}))))
        .start()
        .await;
    let browser = world.browser();
    browser.login_at("/", "bob", "bob").await;
    let session = world.open_session(&browser.session_value());
    assert_eq!(session.email_verified, Some(false), "the provider said unverified");

    let reply = browser.api_get("/app").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let echoed = reply.json();
    assert_eq!(echoed["headers"]["x-forwarded-user"][0], session.sub.as_str());
    assert!(echoed["headers"].get("x-forwarded-email").is_none(), "{echoed}");

    let answer = browser.send(Method::GET, "/oauth2/auth", &[("x-forwarded-uri", "/app")], Bytes::new()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.header("x-auth-request-user").as_deref(), Some(session.sub.as_str()));
    assert_eq!(answer.header("x-auth-request-email"), None);
}

#[tokio::test]
async fn a_verified_email_is_still_forwarded() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    browser.login_at("/", "bob", "bob").await;
    let echoed = browser.api_get("/app").await.json();
    assert_eq!(echoed["headers"]["x-forwarded-email"][0], "bob@example.test", "{echoed}");
}

fn public_request(world: &TestWorld) -> String {
    format!(
        "GET /public/page HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nAuthorization: Bearer CLIENT-TOKEN\r\nConnection: close\r\n\r\n",
        world.gateway_addr
    )
}

#[tokio::test]
async fn a_clients_authorization_does_not_reach_a_public_route_by_default() {
    let world = TestWorld::builder().tweak(public_route).start().await;
    let reply = raw_exchange(world.gateway_addr, &public_request(&world)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let echoed = reply.json();
    assert!(echoed["headers"].get("authorization").is_none(), "{echoed}");
}

#[tokio::test]
async fn a_clients_authorization_reaches_a_public_route_when_the_operator_opts_in() {
    let world = TestWorld::builder()
        .tweak(|raw| {
            public_route(raw);
            raw.authz.forward_client_authorization_on_public = true;
        })
        .start()
        .await;
    let reply = raw_exchange(world.gateway_addr, &public_request(&world)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.json()["headers"]["authorization"][0], "Bearer CLIENT-TOKEN");
    // Protected routes never take the client's: it is no session, so no way in.
    let protected = raw_exchange(world.gateway_addr, &public_request(&world).replace("/public/page", "/app")).await;
    assert_eq!(protected.status, StatusCode::UNAUTHORIZED, "{}", protected.body);
}
