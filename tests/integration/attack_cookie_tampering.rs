//! Cookie tampering: every single-byte change and every truncation of a real
//! session cookie and of a real flow cookie is refused (no session, never a
//! 5xx) and nothing reaches the upstream; duplicate session cookies and
//! `__Host-` prefix case tricks do not authenticate.

use bytes::Bytes;
use http::{Method, StatusCode};

use crate::support::{Guarded, TestWorld};

/// Every variant of `value` with one character replaced by another cookie-safe
/// one, and every proper prefix (truncation).
fn mutations(value: &str) -> Vec<String> {
    let mut variants = Vec::with_capacity(value.len() * 2);
    for (index, original) in value.char_indices() {
        let replacement = match original {
            'A' => 'B',
            '0' => '1',
            '-' => '_',
            '_' => '-',
            '.' => 'A',
            _ => 'A',
        };
        let mut changed = value.to_owned();
        changed.replace_range(index..index + original.len_utf8(), &replacement.to_string());
        variants.push(changed);
    }
    for length in 0..value.len() {
        variants.push(value[..length].to_owned());
    }
    variants
}

async fn api_get_with_cookie(guarded: &Guarded, cookie: &str) -> crate::support::Reply {
    let stranger = guarded.world.browser();
    stranger.send(Method::GET, "/tampered", &[("accept", "application/json"), ("cookie", cookie)], Bytes::new()).await
}

#[tokio::test]
async fn every_flip_and_truncation_of_a_session_cookie_is_refused() {
    let guarded = Guarded::start().await;
    let name = guarded.world.session_cookie_name();
    let value = guarded.browser.session_value();
    let variants = mutations(&value);
    assert!(variants.len() > 200, "a real sealed cookie is long ({} variants)", variants.len());
    for variant in variants {
        let reply = api_get_with_cookie(&guarded, &format!("{name}={variant}")).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{name}={variant}: {}", reply.body);
    }
    guarded.assert_upstream_untouched("a tampered session cookie");
    // The untouched cookie does work, so the refusals above were about the tampering.
    let reply = api_get_with_cookie(&guarded, &guarded.session_pair()).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn every_flip_and_truncation_of_a_flow_cookie_is_refused() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    let pending = browser.start_login("/after").await;
    let callback = browser.sign_in_at_provider(&pending, "alice", "alice").await;
    browser.remove_cookie(&pending.flow_cookie_name);
    for variant in mutations(&pending.flow_cookie_value) {
        let attacker = world.browser();
        attacker.set_cookie(&pending.flow_cookie_name, &variant);
        let reply = attacker.finish_login(&callback).await;
        assert!(!reply.status.is_server_error(), "flow={variant}: {} {}", reply.status, reply.body);
        assert!(
            attacker.cookie(&world.session_cookie_name()).is_none(),
            "a tampered flow cookie made a session: {variant}"
        );
    }
    // The genuine flow cookie still completes the login.
    browser.set_cookie(&pending.flow_cookie_name, &pending.flow_cookie_value);
    let reply = browser.finish_login(&callback).await;
    assert_eq!(reply.expect_redirect(), "/after");
    assert!(browser.cookie(&world.session_cookie_name()).is_some());
}

#[tokio::test]
async fn duplicate_session_cookies_are_ambiguous_and_refused() {
    let guarded = Guarded::start().await;
    let name = guarded.world.session_cookie_name();
    let alice = guarded.browser.session_value();
    let bob_browser = guarded.world.browser();
    bob_browser.login_at("/", "bob", "bob").await;
    let bob = bob_browser.session_value();
    for cookie in [
        format!("{name}={alice}; {name}={bob}"),
        format!("{name}={bob}; {name}={alice}"),
        format!("{name}={alice}; {name}=garbage"),
        format!("{name}=garbage; {name}={alice}"),
    ] {
        let reply = api_get_with_cookie(&guarded, &cookie).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    }
    guarded.assert_upstream_untouched("duplicate session cookies");
    // The same value twice is not ambiguous: it is the one session.
    let reply = api_get_with_cookie(&guarded, &format!("{name}={alice}; {name}={alice}")).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn host_prefix_case_variants_are_not_the_session_cookie() {
    let guarded = Guarded::start_with(|builder| builder.https()).await;
    let real = guarded.world.session_cookie_name();
    assert_eq!(real, "__Host-_portcullis");
    let value = guarded.browser.session_value();
    for name in [
        "__host-_portcullis",
        "__HOST-_portcullis",
        "__Host-_PORTCULLIS",
        "_portcullis",
        "__Secure-_portcullis",
        "__Host-_portcullis_1",
        "__Host-_portcullis_flow_x",
    ] {
        let reply = api_get_with_cookie(&guarded, &format!("{name}={value}")).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{name}: {}", reply.body);
    }
    guarded.assert_upstream_untouched("a __Host- case trick");
    assert_eq!(api_get_with_cookie(&guarded, &guarded.session_pair()).await.status, StatusCode::OK);
}
