//! A connection keeps the session cookie it last opened, so its next requests
//! with the same cookie are not opened again. These check that this is all it
//! skips: each request on one TCP connection still gets its own cookie's
//! identity, a cookie one byte off is refused, and expiry, sign-out and the
//! provider's back-channel logout still end a session the connection had opened.

use bytes::Bytes;
use http::{Method, StatusCode};

use crate::support::connection::OneConnection;
use crate::support::{Reply, TestWorld};

/// The user and bearer token the echo upstream received.
fn forwarded_identity(reply: &Reply) -> (String, String) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let echoed: serde_json::Value = serde_json::from_str(&reply.body).expect("echo JSON");
    let single = |name: &str| echoed["headers"][name][0].as_str().unwrap_or_default().to_owned();
    (single("x-forwarded-user"), single("authorization"))
}

/// `portcullis_session_cookies_total{how="<how>"}` from the gateway's metrics.
fn session_cookies(world: &TestWorld, how: &str) -> u64 {
    let prefix = format!("portcullis_session_cookies_total{{how=\"{how}\"}} ");
    world
        .metrics()
        .lines()
        .find_map(|line| line.strip_prefix(&prefix).map(|count| count.trim().parse().expect("a count")))
        .unwrap_or(0)
}

/// A signed-in user's `name=value` cookie pair and the identity it should forward.
async fn signed_in(world: &TestWorld, user: &str) -> (String, (String, String)) {
    let browser = world.browser();
    browser.login_at("/", user, user).await;
    let value = browser.session_value();
    let session = world.open_session(&value);
    let pair = format!("{}={value}", world.session_cookie_name());
    (pair, (session.sub, format!("Bearer {}", session.access_token)))
}

#[tokio::test]
async fn a_connection_opens_its_session_cookie_once() {
    let world = TestWorld::start().await;
    let (alice, expected) = signed_in(&world, "alice").await;
    let mut connection = OneConnection::open(&world).await;
    let (opened, reused) = (session_cookies(&world, "opened"), session_cookies(&world, "reused"));

    for path in ["/one", "/two", "/three"] {
        assert_eq!(forwarded_identity(&connection.get(path, &alice).await), expected);
    }
    assert_eq!(session_cookies(&world, "opened"), opened + 1, "opened on the first request");
    assert_eq!(session_cookies(&world, "reused"), reused + 2, "and reused on the next two");

    // Another connection opens it for itself.
    let mut other = OneConnection::open(&world).await;
    assert_eq!(forwarded_identity(&other.get("/four", &alice).await), expected);
    assert_eq!(session_cookies(&world, "opened"), opened + 2);
}

#[tokio::test]
async fn one_connection_carrying_two_users_forwards_each_users_own_identity() {
    // As behind a load balancer that sends several users' requests over one connection.
    let world = TestWorld::start().await;
    let (alice, alice_identity) = signed_in(&world, "alice").await;
    let (bob, bob_identity) = signed_in(&world, "bob").await;
    assert_ne!(alice_identity, bob_identity);
    let mut connection = OneConnection::open(&world).await;

    for round in 0..3 {
        let seen = forwarded_identity(&connection.get(&format!("/a{round}"), &alice).await);
        assert_eq!(seen, alice_identity, "round {round}");
        let seen = forwarded_identity(&connection.get(&format!("/b{round}"), &bob).await);
        assert_eq!(seen, bob_identity, "round {round}");
    }
    // The same cookie twice in a row is reused, and still the same user.
    assert_eq!(forwarded_identity(&connection.get("/b-again", &bob).await), bob_identity);
    assert!(session_cookies(&world, "reused") >= 1);
}

#[tokio::test]
async fn a_cookie_one_byte_off_the_opened_one_is_refused_on_the_same_connection() {
    let world = TestWorld::start().await;
    let (alice, expected) = signed_in(&world, "alice").await;
    let mut connection = OneConnection::open(&world).await;
    assert_eq!(forwarded_identity(&connection.get("/before", &alice).await), expected);

    let value_start = alice.find('=').expect("a name=value pair") + 1;
    for position in [value_start, (value_start + alice.len()) / 2, alice.len() - 1] {
        let mut tampered = alice.clone().into_bytes();
        tampered[position] = if tampered[position] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("still ASCII");
        let reply = connection.get("/tampered", &tampered).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "changed at {position}: {}", reply.body);
        // The next request with the real cookie still works on this connection.
        assert_eq!(forwarded_identity(&connection.get("/after", &alice).await), expected);
    }
    // One extra byte, or one fewer, is no match either.
    for changed in [format!("{alice}A"), alice[..alice.len() - 1].to_owned()] {
        assert_eq!(connection.get("/resized", &changed).await.status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn a_session_signed_out_elsewhere_ends_on_a_connection_that_had_opened_it() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    browser.login_at("/", "alice", "alice").await;
    let alice = format!("{}={}", world.session_cookie_name(), browser.session_value());
    let mut connection = OneConnection::open(&world).await;
    assert_eq!(connection.get("/before", &alice).await.status, StatusCode::OK);
    assert_eq!(connection.get("/again", &alice).await.status, StatusCode::OK);

    // The browser signs out over its own connection.
    assert_eq!(browser.navigate("/oauth2/sign_out").await.expect_redirect(), "/");
    assert_eq!(connection.get("/after", &alice).await.status, StatusCode::UNAUTHORIZED);
}

/// The provider's back-channel logout of `subject` (and only `sid`, when given).
async fn logged_out_by_provider(world: &TestWorld, subject: &str, sid: Option<&str>) {
    let token = world.provider.backchannel_logout_token(subject, sid).expect("a logout token");
    let body = Bytes::from(format!("logout_token={token}"));
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let reply = world.browser().send(Method::POST, "/oauth2/backchannel_logout", &form, body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn a_back_channel_logout_ends_sessions_connections_had_opened_and_no_other() {
    let world = TestWorld::start().await;
    let (alice, alice_identity) = signed_in(&world, "alice").await;
    let (bob, bob_identity) = signed_in(&world, "bob").await;
    let bob_sid = world.open_session(&bob[bob.find('=').expect("name=value") + 1..]).sid.expect("a sid");
    let mut alices = OneConnection::open(&world).await;
    let mut bobs = OneConnection::open(&world).await;
    // Opened, then reused: the ended check of a reused cookie is what is under test.
    for path in ["/one", "/two"] {
        assert_eq!(forwarded_identity(&alices.get(path, &alice).await), alice_identity);
        assert_eq!(forwarded_identity(&bobs.get(path, &bob).await), bob_identity);
    }

    logged_out_by_provider(&world, "bob", Some(&bob_sid)).await;
    assert_eq!(bobs.get("/after-sid", &bob).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(forwarded_identity(&alices.get("/after-sid", &alice).await), alice_identity, "not Bob's logout");
    assert_eq!(forwarded_identity(&alices.get("/again", &alice).await), alice_identity);

    logged_out_by_provider(&world, "alice", None).await;
    assert_eq!(alices.get("/after-subject", &alice).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_idle_timeout_still_ends_a_session_a_connection_had_opened() {
    let world =
        TestWorld::builder().tweak(|raw| raw.session.idle_timeout = std::time::Duration::from_secs(600)).start().await;
    let (alice, _) = signed_in(&world, "alice").await;
    let mut connection = OneConnection::open(&world).await;
    assert_eq!(connection.get("/start", &alice).await.status, StatusCode::OK);
    assert_eq!(connection.get("/again", &alice).await.status, StatusCode::OK);

    world.clock.advance(660);
    assert_eq!(connection.get("/idle", &alice).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_absolute_lifetime_still_ends_a_session_a_connection_had_opened() {
    let world = TestWorld::builder()
        .tweak(|raw| {
            raw.session.lifetime = std::time::Duration::from_secs(900);
            raw.session.idle_timeout = std::time::Duration::ZERO;
        })
        .start()
        .await;
    let (alice, _) = signed_in(&world, "alice").await;
    let mut connection = OneConnection::open(&world).await;
    assert_eq!(connection.get("/start", &alice).await.status, StatusCode::OK);
    assert_eq!(connection.get("/again", &alice).await.status, StatusCode::OK);

    world.clock.advance(910);
    assert_eq!(connection.get("/late", &alice).await.status, StatusCode::UNAUTHORIZED);
}
