//! The identity provider being down: the gateway still starts, says it is not
//! ready, answers logins with a 503 page instead of hanging, keeps existing
//! sessions working, and recovers by itself. A provider that cannot do PKCE
//! S256 stops the gateway from starting at all.

use std::time::Duration;

use http::StatusCode;

use crate::support::{TestWorld, eventually};

#[tokio::test]
async fn gateway_starts_not_ready_during_an_outage_and_recovers() {
    let world = TestWorld::builder().before_gateway_start(|faults| faults.unavailable.set(true)).start().await;
    let ready = world.ready().await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{}", ready.body);
    assert_eq!(world.browser().api_get("/ping").await.status, StatusCode::OK, "alive though not ready");

    let browser = world.browser();
    let reply = browser.navigate("/wanted").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.body);
    assert!(reply.header("content-type").is_some_and(|value| value.starts_with("text/html")));
    assert!(reply.header("retry-after").is_some());
    assert!(reply.header("location").is_none());
    assert!(reply.set_cookies().is_empty(), "no flow cookie for a login that cannot start");

    world.provider.faults().unavailable.set(false);
    // The background retry starts after 1 s and doubles; allow a few rounds.
    let recovered =
        eventually(Duration::from_secs(10), || async { world.ready().await.status == StatusCode::OK }).await;
    assert!(recovered, "the gateway became ready once the provider was back");
    assert_eq!(browser.login_at("/wanted", "alice", "alice").await, "/wanted");
}

#[tokio::test]
async fn existing_sessions_keep_working_during_an_outage() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    browser.login().await;
    world.provider.faults().unavailable.set(true);
    let reply = browser.api_get("/during-outage").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.json()["headers"]["x-forwarded-preferred-username"][0], "alice");

    // A new login during the outage fails cleanly at the token endpoint.
    let newcomer = world.browser();
    let pending = newcomer.start_login("/").await;
    world.provider.faults().unavailable.set(false);
    let callback = newcomer.sign_in_at_provider(&pending, "bob", "bob").await;
    world.provider.faults().unavailable.set(true);
    let reply = newcomer.finish_login(&callback).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.body);
    assert!(newcomer.cookie(&world.session_cookie_name()).is_none());
}

#[tokio::test]
async fn provider_without_s256_stops_the_gateway_from_starting() {
    let result = TestWorld::builder().before_gateway_start(|faults| faults.omit_s256.set(true)).try_start().await;
    let Err(error) = result else { panic!("the gateway must not start without PKCE S256") };
    assert!(matches!(error, portcullis::StartError::Provider { .. }), "{error}");
    assert!(error.to_string().contains("S256"), "{error}");
}
