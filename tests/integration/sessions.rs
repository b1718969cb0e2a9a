//! Session cookies that are not what the gateway sealed (tampered, truncated,
//! garbage, expired, a flow cookie in disguise) get a login redirect or a 401,
//! never a 500 and never the upstream; restarts keep sessions only with the
//! same secret.

use std::time::Duration;

use base64::Engine;
use http::StatusCode;
use portcullis::secret::SecretBytes;
use portcullis::session::seal::{KeyRing, Purpose};

use crate::support::upstreams::RecordingUpstream;
use crate::support::{Browser, TestWorld, random_session_secret};

/// With `value` as its session cookie, a browser navigation is sent to login
/// (and told to delete the cookie) and an API call gets 401.
async fn assert_rejected(world: &TestWorld, value: &str, what: &str) {
    let issuer = world.provider.issuer();
    let browser = world.browser();
    browser.set_cookie(&world.session_cookie_name(), value);
    let reply = browser.navigate("/private").await;
    let location = reply.expect_redirect();
    assert!(location.starts_with(&format!("{issuer}/authorize?")), "{what}: {location}");
    if !value.is_empty() {
        let cleared = reply.set_cookie(&world.session_cookie_name()).unwrap_or_else(|| panic!("{what}: not cleared"));
        assert!(cleared.is_deletion(), "{what}: {}", cleared.raw);
    }

    let program = world.browser();
    program.set_cookie(&world.session_cookie_name(), value);
    let reply = program.api_get("/private").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {}", reply.body);
    assert_eq!(reply.json()["error"], "unauthenticated", "{what}");
}

async fn logged_in(world: &TestWorld) -> Browser {
    let browser = world.browser();
    browser.login().await;
    assert_eq!(browser.api_get("/private").await.status, StatusCode::OK);
    browser
}

fn flip_char(text: &str, index: usize) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    chars[index] = if chars[index] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test]
async fn forged_session_cookies_are_refused_without_errors() {
    let world = TestWorld::start().await;
    let browser = logged_in(&world).await;
    let good = browser.session_value();
    let cases = [
        ("one flipped character", flip_char(&good, good.len() / 2)),
        ("flipped first character", flip_char(&good, 0)),
        ("truncated", good[..good.len() / 2].to_owned()),
        ("one character short", good[..good.len() - 1].to_owned()),
        ("garbage", "not-a-sealed-cookie".to_owned()),
        ("non-base64", "%%%%!!!!".to_owned()),
        ("empty", String::new()),
        ("huge", "A".repeat(20_000)),
    ];
    for (what, value) in &cases {
        assert_rejected(&world, value, what).await;
    }
    // The untouched cookie still works: the refusals were about the tampering.
    assert_eq!(browser.api_get("/private").await.status, StatusCode::OK);
}

#[tokio::test]
async fn flow_cookie_presented_as_the_session_is_refused() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    let pending = browser.start_login("/").await;
    assert_rejected(&world, &pending.flow_cookie_value, "flow cookie as session").await;
}

#[tokio::test]
async fn session_is_refused_after_its_lifetime() {
    // A lifetime shorter than the access token's (300 s), so only the session's own end can refuse it.
    let world = TestWorld::builder().tweak(|raw| raw.session.lifetime = Duration::from_secs(120)).start().await;
    let browser = logged_in(&world).await;
    let old = browser.session_value();
    world.clock.advance(119);
    assert_eq!(browser.api_get("/private").await.status, StatusCode::OK, "still inside the lifetime");
    world.clock.advance(2);
    assert_rejected(&world, &old, "session past its lifetime").await;
}

#[tokio::test]
async fn an_expired_access_token_is_never_forwarded() {
    let world = TestWorld::start().await;
    let browser = logged_in(&world).await;
    let token = world.open_session(&browser.session_value()).access_token;
    world.clock.advance(301);
    let reply = browser.api_get("/private").await;
    // Today the user signs in again (401); once refresh exists, a 200 must carry a new token.
    match reply.status {
        StatusCode::UNAUTHORIZED => {}
        StatusCode::OK => {
            let forwarded = reply.json()["headers"]["authorization"][0].as_str().unwrap_or_default().to_owned();
            assert_ne!(forwarded, format!("Bearer {token}"), "the expired access token was forwarded");
        }
        other => panic!("unexpected {other}: {}", reply.body),
    }
}

#[tokio::test]
async fn restart_with_the_same_secret_keeps_the_session() {
    let mut world = TestWorld::start().await;
    let browser = logged_in(&world).await;
    world.restart_gateway(None).await;
    let reply = browser.api_get("/private").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.json()["headers"]["x-forwarded-preferred-username"][0], "alice");
}

#[tokio::test]
async fn restart_with_another_secret_ends_the_session() {
    let mut world = TestWorld::start().await;
    let browser = logged_in(&world).await;
    let old = browser.session_value();
    world.restart_gateway(Some(random_session_secret())).await;
    assert_rejected(&world, &old, "cookie sealed with the old secret").await;
}

#[tokio::test]
async fn duplicate_session_cookies_are_ambiguous_and_refused() {
    // Cookie tossing: a sibling site plants a second cookie with our name, and
    // it may well be a real session (the attacker's own). Neither copy may
    // pick the session, in either order: both are valid sessions of different
    // users here, so using the first or the last would reach the upstream.
    let upstream = RecordingUpstream::start().await;
    let world = TestWorld::builder().upstream(upstream.url.clone()).start().await;
    let name = world.session_cookie_name();
    let (alice, bob) = (world.browser(), world.browser());
    alice.login_at("/", "alice", "alice").await;
    bob.login_at("/", "bob", "bob").await;
    let (alice, bob) = (alice.session_value(), bob.session_value());
    let api_get = |cookie: String| {
        let program = world.browser();
        async move {
            let headers = [("accept", "application/json"), ("cookie", cookie.as_str())];
            program.send(http::Method::GET, "/private", &headers, Default::default()).await
        }
    };

    for (user, value) in [("alice", &alice), ("bob", &bob)] {
        let reply = api_get(format!("{name}={value}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{user}'s cookie alone: {}", reply.body);
    }
    for (first, last) in [(&alice, &bob), (&bob, &alice)] {
        let reply = api_get(format!("{name}={first}; {name}={last}")).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
        assert_eq!(reply.json()["error"], "unauthenticated");
    }
    let users: Vec<_> =
        upstream.seen().iter().map(|seen| seen.headers["x-forwarded-preferred-username"].clone()).collect();
    assert_eq!(users, ["alice", "bob"], "only the two single-cookie requests reached the upstream");
}

#[tokio::test]
async fn claims_and_tokens_with_json_escapes_are_read_as_sealed() {
    // The hot path reads a borrowed view of the session JSON: strings with
    // escapes (quotes, backslashes, non-ASCII, `\u` as another writer may put
    // them) must come out as the full parse reads them.
    let world = TestWorld::start().await;
    let browser = logged_in(&world).await;
    let mut data = world.open_session(&browser.session_value());
    data.name = Some("Zo\u{eb} \"Z\" O'Neil \\ \u{1f600}".to_owned());
    data.preferred_username = Some("zo\u{eb}".to_owned());
    data.roles = vec!["a\"b".to_owned(), "caf\u{e9}".to_owned()];
    data.access_token = format!("{}\\\"x", data.access_token);
    let json = serde_json::to_string(&data).unwrap().replace("caf\u{e9}", "caf\\u00e9");
    let secret = base64::engine::general_purpose::STANDARD.decode(world.session_secret()).unwrap();
    let keys = KeyRing::new(&[SecretBytes::new(secret)]).unwrap();
    let sealed = keys.seal(Purpose::Session, &world.session_cookie_name(), json.as_bytes()).unwrap();
    browser.set_cookie(&world.session_cookie_name(), &sealed);

    let reply = browser.api_get("/oauth2/userinfo").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let info = reply.json();
    assert_eq!(info["name"], "Zo\u{eb} \"Z\" O'Neil \\ \u{1f600}");
    assert_eq!(info["preferred_username"], "zo\u{eb}");
    assert_eq!(info["groups"], serde_json::json!(["a\"b", "caf\u{e9}"]));

    let reply = browser.api_get("/private").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let seen: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(seen["headers"]["authorization"][0], format!("Bearer {}", data.access_token).as_str());
}
