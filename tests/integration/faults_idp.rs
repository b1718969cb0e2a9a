//! Identity-provider faults beyond a clean outage: hanging, answering garbage,
//! answering 10 MB, at start and during operation, and rotating its signing
//! key. The gateway stays bounded (oidc.http_timeout, the response size cap),
//! keeps existing sessions working, says "try again" to new logins, and
//! recovers by itself.

use std::time::Duration;

use http::StatusCode;
use portcullis_devkit::devidp::Misbehaviour;

use crate::support::http::EXCHANGE_TIMEOUT;
use crate::support::{TestWorld, eventually};

const ALL: [Misbehaviour; 3] = [Misbehaviour::Hang, Misbehaviour::Garbage, Misbehaviour::Huge];

fn short_timeouts(raw: &mut portcullis::config::RawConfig) {
    raw.oidc.http_timeout = Duration::from_millis(500);
}

#[tokio::test]
async fn a_misbehaving_provider_at_start_gives_a_not_ready_gateway_that_recovers() {
    for misbehaviour in ALL {
        // Starting at all proves the first provider call is bounded.
        let world = tokio::time::timeout(
            EXCHANGE_TIMEOUT,
            TestWorld::builder()
                .tweak(short_timeouts)
                .before_gateway_start(move |faults| faults.back_channel.set(Some(misbehaviour)))
                .start(),
        )
        .await
        .unwrap_or_else(|_| panic!("{misbehaviour:?}: the gateway did not start in time"));
        assert_eq!(world.ready().await.status, StatusCode::SERVICE_UNAVAILABLE, "{misbehaviour:?}");
        let browser = world.browser();
        let reply = browser.navigate("/wanted").await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{misbehaviour:?}: {}", reply.body);
        assert!(reply.header("retry-after").is_some(), "{misbehaviour:?}: retry advice");
        assert!(reply.body.to_ascii_lowercase().contains("try again"), "{misbehaviour:?}: {}", reply.body);

        world.provider.faults().back_channel.set(None);
        let recovered =
            eventually(Duration::from_secs(20), || async { world.ready().await.status == StatusCode::OK }).await;
        assert!(recovered, "{misbehaviour:?}: ready once the provider behaves");
        assert_eq!(browser.login_at("/wanted", "alice", "alice").await, "/wanted", "{misbehaviour:?}");
    }
}

#[tokio::test]
async fn a_misbehaving_provider_during_operation_keeps_sessions_and_bounds_logins() {
    let world = TestWorld::builder().tweak(short_timeouts).start().await;
    let browser = world.browser();
    browser.login().await;
    for misbehaviour in ALL {
        let newcomer = world.browser();
        let pending = newcomer.start_login("/").await;
        let callback = newcomer.sign_in_at_provider(&pending, "bob", "bob").await;
        world.provider.faults().back_channel.set(Some(misbehaviour));

        let reply = browser.api_get("/during").await;
        assert_eq!(reply.status, StatusCode::OK, "{misbehaviour:?}: an existing session keeps working");

        // The code exchange hangs, or returns garbage or 10 MB: a bounded, clear failure.
        let reply = newcomer.finish_login(&callback).await;
        assert!(
            matches!(
                reply.status,
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
            ),
            "{misbehaviour:?}: {} {}",
            reply.status,
            reply.body
        );
        assert!(newcomer.cookie(&world.session_cookie_name()).is_none(), "{misbehaviour:?}: no session");
        world.provider.faults().back_channel.set(None);
    }
    assert_eq!(world.browser().login_at("/after", "alice", "alice").await, "/after", "logins work again");
}

#[tokio::test]
async fn a_rotated_signing_key_is_picked_up() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    browser.login().await;
    let old_kid = world.provider.current_kid();
    world.provider.rotate_signing_key();
    assert_ne!(world.provider.current_kid(), old_kid);
    let newcomer = world.browser();
    assert_eq!(newcomer.login_at("/fresh", "bob", "bob").await, "/fresh", "an ID token under the new kid verifies");
    assert_eq!(newcomer.api_get("/fresh").await.status, StatusCode::OK);
    assert_eq!(browser.api_get("/old").await.status, StatusCode::OK, "existing sessions are unaffected");
}
