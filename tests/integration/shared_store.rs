//! The shared session store: two gateway replicas on one real `redis-server`
//! and one provider. A login on one works on the other; hundreds of concurrent
//! requests over both replicas refresh an expiring session exactly once (with
//! refresh-token rotation and reuse detection on); sign-out and back-channel
//! logout end sessions on both; a Redis outage gives 503 and not-ready, and
//! the gateway recovers by itself.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};

use crate::support::redis::RedisServer;
use crate::support::replicas::Replica;
use crate::support::{Browser, TestWorld, eventually};

async fn two_replicas(redis: &RedisServer) -> (TestWorld, Replica) {
    let url = redis.url();
    let world = TestWorld::builder()
        .tweak(move |raw| {
            raw.session.store.url = Some(portcullis::secret::SecretString::new(url.clone()));
            raw.session.store.key_prefix = "itest:".to_owned();
        })
        .start()
        .await;
    let replica = Replica::start(&world).await;
    (world, replica)
}

/// A browser on replica B holding the session cookie of `from`.
fn with_cookie_of(replica: &Replica, world: &TestWorld, from: &Browser) -> Browser {
    let browser = replica.browser();
    browser.set_cookie(&world.session_cookie_name(), &from.session_value());
    browser
}

/// Whether `/ready` on both replicas answers `status` within 10 s (the health check runs every second).
async fn both_ready_become(world: &TestWorld, replica: &Replica, status: StatusCode) -> bool {
    eventually(Duration::from_secs(10), || async {
        world.ready().await.status == status && replica.ready().await.status == status
    })
    .await
}

fn bearer(reply: &crate::support::Reply) -> String {
    reply.json()["headers"]["authorization"][0].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_login_on_one_replica_works_on_the_other_and_the_cookie_holds_no_tokens() {
    let redis = RedisServer::start().await;
    let (world, replica) = two_replicas(&redis).await;
    let on_a = world.browser();
    on_a.login().await;
    let reply_a = on_a.api_get("/private").await;
    assert_eq!(reply_a.status, StatusCode::OK, "{}", reply_a.body);

    let on_b = with_cookie_of(&replica, &world, &on_a);
    let reply_b = on_b.api_get("/private").await;
    assert_eq!(reply_b.status, StatusCode::OK, "{}", reply_b.body);
    assert_eq!(reply_b.json()["headers"]["x-forwarded-preferred-username"][0], "alice");
    assert_eq!(bearer(&reply_a), bearer(&reply_b), "both replicas forward the stored access token");

    // The cookie is a small handle: no access token in it, and it is not a cookie-mode session.
    let cookie = on_a.session_value();
    assert!(cookie.len() < 600, "the handle is {} bytes", cookie.len());
    let access_token = bearer(&reply_a).trim_start_matches("Bearer ").to_owned();
    assert!(!access_token.is_empty() && !cookie.contains(&access_token));
    assert!(
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world.open_session(&cookie))).is_err(),
        "a handle never opens as a session"
    );
}

#[tokio::test]
async fn concurrent_requests_over_both_replicas_refresh_once() {
    let redis = RedisServer::start().await;
    let (world, replica) = two_replicas(&redis).await;
    let on_a = world.browser();
    on_a.login().await;
    let old = bearer(&on_a.api_get("/private").await);
    let on_b = with_cookie_of(&replica, &world, &on_a);
    assert_eq!(on_b.api_get("/private").await.status, StatusCode::OK);
    assert_eq!(world.provider.token_requests("refresh_token"), 0);

    // 300 s access tokens, a 60 s margin: now every request wants a refresh.
    world.clock.advance(250);
    let cookie = on_a.session_value();
    let name = world.session_cookie_name();
    let gateways = [format!("http://{}", world.gateway_addr), format!("http://{}", replica.addr)];
    let mut requests = Vec::new();
    for index in 0..200 {
        let browser = Browser::new(
            gateways[index % 2].clone(),
            world.public_url.clone(),
            world.provider.issuer().to_owned(),
            name.clone(),
        );
        browser.set_cookie(&name, &cookie);
        requests.push(tokio::spawn(async move { browser.api_get("/private").await }));
    }
    let mut forwarded = std::collections::HashSet::new();
    for request in requests {
        let reply = request.await.expect("the request task");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        forwarded.insert(bearer(&reply));
    }
    assert_eq!(world.provider.token_requests("refresh_token"), 1, "exactly one refresh reached the provider");
    assert_eq!(forwarded.len(), 1, "every request carried the same new token: {forwarded:?}");
    assert!(!forwarded.contains(&old), "the old token was forwarded");

    // The rotated refresh token was stored: the next generation refreshes fine (no reuse detected).
    world.clock.advance(250);
    let reply = on_b.api_get("/private").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(world.provider.token_requests("refresh_token"), 2);
    assert_eq!(on_a.api_get("/private").await.status, StatusCode::OK);
}

#[tokio::test]
async fn sign_out_on_one_replica_ends_the_session_on_the_other() {
    let redis = RedisServer::start().await;
    let (world, replica) = two_replicas(&redis).await;
    let on_a = world.browser();
    on_a.login().await;
    let copied = on_a.session_value();
    let thief = with_cookie_of(&replica, &world, &on_a);
    assert_eq!(thief.api_get("/private").await.status, StatusCode::OK, "B holds a local copy now");

    assert_eq!(on_a.navigate("/oauth2/sign_out").await.expect_redirect(), "/");
    // Pub/sub reaches B within milliseconds; the bound is the local copy's TTL (5 s).
    let ended = eventually(Duration::from_secs(2), || async {
        thief.set_cookie(&world.session_cookie_name(), &copied);
        thief.api_get("/private").await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(ended, "the copied cookie still works on replica B");
    // And on A itself, for a copy of the cookie.
    let copy = world.browser();
    copy.set_cookie(&world.session_cookie_name(), &copied);
    assert_eq!(copy.api_get("/private").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn backchannel_logout_on_one_replica_ends_sessions_on_both() {
    let redis = RedisServer::start().await;
    let (world, replica) = two_replicas(&redis).await;
    let first = world.browser();
    first.login().await;
    let second = replica.browser();
    second.login().await;
    let first_on_b = with_cookie_of(&replica, &world, &first);
    for browser in [&first, &second, &first_on_b] {
        assert_eq!(browser.api_get("/private").await.status, StatusCode::OK);
    }

    let token = world.provider.backchannel_logout_token("alice", None).expect("a logout token");
    let body = form_urlencoded::Serializer::new(String::new()).append_pair("logout_token", &token).finish();
    let reply = world
        .browser()
        .send(
            Method::POST,
            "/oauth2/backchannel_logout",
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from(body),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    for (what, browser) in
        [("A's session on A", &first), ("B's session on B", &second), ("A's session on B", &first_on_b)]
    {
        let ended = eventually(Duration::from_secs(2), || async {
            browser.api_get("/private").await.status == StatusCode::UNAUTHORIZED
        })
        .await;
        assert!(ended, "{what} survived the back-channel logout");
    }
}

#[tokio::test]
async fn a_store_outage_is_a_503_and_not_ready_and_heals_by_itself() {
    let mut redis = RedisServer::start().await;
    let (world, replica) = two_replicas(&redis).await;
    let browser = world.browser();
    browser.login().await;
    assert_eq!(world.ready().await.status, StatusCode::OK);

    redis.kill();
    assert!(both_ready_become(&world, &replica, StatusCode::SERVICE_UNAVAILABLE).await, "/ready still says ready");
    let api = browser.api_get("/private").await;
    assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE, "{}", api.body);
    assert_eq!(api.header("retry-after").as_deref(), Some("5"));
    assert_eq!(api.json()["error"], "session_store_unavailable");
    let page = browser.navigate("/private").await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.header("retry-after").is_some());
    assert!(page.set_cookies().is_empty(), "the session cookie is kept, not cleared");
    // Logins cannot create sessions either: a clear 503 at the callback, no cookie.
    let newcomer = world.browser();
    let pending = newcomer.start_login("/").await;
    let callback = newcomer.sign_in_at_provider(&pending, "alice", "alice").await;
    let finished = newcomer.finish_login(&callback).await;
    assert_eq!(finished.status, StatusCode::SERVICE_UNAVAILABLE, "{}", finished.body);
    assert!(finished.set_cookie(&world.session_cookie_name()).is_none());

    redis.restart().await;
    assert!(both_ready_become(&world, &replica, StatusCode::OK).await, "/ready did not recover");
    // The restarted Redis kept nothing (no persistence here): the old session is gone, and says so with a 401.
    assert_eq!(browser.api_get("/private").await.status, StatusCode::UNAUTHORIZED);
    let again = world.browser();
    again.login().await;
    assert_eq!(again.api_get("/private").await.status, StatusCode::OK);
    assert_eq!(with_cookie_of(&replica, &world, &again).api_get("/private").await.status, StatusCode::OK);
}

#[tokio::test]
async fn backchannel_logout_by_sid_ends_only_that_provider_session_everywhere() {
    let redis = RedisServer::start().await;
    let (world, replica) = two_replicas(&redis).await;
    let ended = world.browser();
    ended.login().await;
    let kept = replica.browser();
    kept.login().await;
    let handle = world.open_handle(&ended.session_value());
    let sid = handle.sid.clone().expect("the provider sends a sid");
    assert_ne!(world.open_handle(&kept.session_value()).sid.as_deref(), Some(sid.as_str()));
    let ended_on_b = with_cookie_of(&replica, &world, &ended);
    let copied = ended.session_value();
    assert_eq!(ended_on_b.api_get("/private").await.status, StatusCode::OK);

    // Delivered to replica B this time.
    let token = world.provider.backchannel_logout_token("alice", Some(&sid)).expect("a logout token");
    let body = form_urlencoded::Serializer::new(String::new()).append_pair("logout_token", &token).finish();
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let reply =
        replica.browser().send(Method::POST, "/oauth2/backchannel_logout", &form, Bytes::from(body.clone())).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // The same token again, on the other replica: a replay.
    let replay = world.browser().send(Method::POST, "/oauth2/backchannel_logout", &form, Bytes::from(body)).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "a replayed logout token is refused on every replica");

    let gone = eventually(Duration::from_secs(2), || async {
        ended.set_cookie(&world.session_cookie_name(), &copied);
        ended.api_get("/private").await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(gone, "the logged-out provider session still works on replica A");
    ended_on_b.set_cookie(&world.session_cookie_name(), &copied);
    assert_eq!(ended_on_b.api_get("/private").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        kept.api_get("/private").await.status,
        StatusCode::OK,
        "another provider session of alice is unaffected"
    );
}

/// Issue 14 item 11: a refresh under way when the user signs out wrote its new
/// tokens back and so recreated the deleted session record; a replica that
/// missed the broadcast (here, one started afterwards) then let a copy of the
/// handle in again. Revocation at the provider fails here, as it may.
#[tokio::test]
async fn a_refresh_racing_a_sign_out_does_not_bring_the_session_back() {
    let redis = RedisServer::start().await;
    let (world, _replica) = two_replicas(&redis).await;
    let name = world.session_cookie_name();
    let user = world.browser();
    user.login().await;
    let copied = user.session_value();
    assert_eq!(user.api_get("/private").await.status, StatusCode::OK);

    world.clock.advance(250);
    let gate = &world.provider.faults().token_gate;
    gate.close();
    let other_tab = world.browser();
    other_tab.set_cookie(&name, &copied);
    let racing = tokio::spawn(async move { other_tab.api_get("/private").await });
    tokio::time::timeout(Duration::from_secs(30), gate.until_waiting(1))
        .await
        .expect("the refresh reached the provider and is held there");

    world.provider.faults().unavailable.set(true);
    assert_eq!(user.navigate("/oauth2/sign_out").await.expect_redirect(), "/");
    world.provider.faults().unavailable.set(false);
    gate.open();
    let raced = racing.await.expect("the racing request");
    assert_eq!(world.provider.token_requests("refresh_token"), 1);
    assert_eq!(raced.status, StatusCode::UNAUTHORIZED, "the racing request was served: {}", raced.body);

    let late = crate::support::replicas::Replica::start(&world).await;
    let thief = late.browser();
    thief.set_cookie(&name, &copied);
    assert_eq!(thief.api_get("/private").await.status, StatusCode::UNAUTHORIZED, "the session came back");
}
