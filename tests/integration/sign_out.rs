//! Sign-out: the session cookie (and any flow cookie) is deleted with the
//! attributes it was set with, and the next navigation goes to login.

use http::StatusCode;

use crate::support::TestWorld;

#[tokio::test]
async fn sign_out_deletes_the_cookies_and_the_next_navigation_logs_in_again() {
    let world = TestWorld::builder().https().start().await;
    let browser = world.browser();
    browser.login_at("/home", "alice", "alice").await;
    let copied = browser.session_value();
    // An explicit login start while signed in leaves a flow cookie behind.
    let pending = browser.start_login("/oauth2/start?rd=/later").await;
    assert!(browser.cookie(&pending.flow_cookie_name).is_some());

    let reply = browser.navigate("/oauth2/sign_out").await;
    assert_eq!(reply.expect_redirect(), "/");
    let cleared = reply.set_cookie("__Host-_portcullis").expect("the session cookie is deleted");
    assert!(cleared.is_deletion(), "{}", cleared.raw);
    assert!(cleared.value.is_empty());
    cleared.assert_locked_down(true);
    let flow = reply.set_cookie(&pending.flow_cookie_name).expect("the flow cookie is deleted");
    assert!(flow.is_deletion());
    flow.assert_locked_down(true);
    assert!(browser.cookie_names().is_empty(), "{:?}", browser.cookie_names());

    let next = browser.navigate("/home").await.expect_redirect();
    assert!(next.starts_with(&format!("{}/authorize?", world.provider.issuer())), "{next}");
    assert_eq!(browser.api_get("/home").await.status, StatusCode::UNAUTHORIZED);

    // A copy of the cookie taken before sign-out: today only the cache entry is
    // dropped, so the copy still authenticates (observed: 200) until it expires.
    // Not asserted either way; server-side revocation is future work.
    let thief = world.browser();
    thief.set_cookie("__Host-_portcullis", &copied);
    let _copy_still_works = thief.api_get("/home").await.status == StatusCode::OK;
}

#[tokio::test]
async fn sign_out_without_a_session_is_harmless() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    let reply = browser.navigate("/oauth2/sign_out?rd=%2Fbye").await;
    assert_eq!(reply.expect_redirect(), "/bye");
    assert!(reply.set_cookie("_portcullis").is_some_and(|cookie| cookie.is_deletion()));
}
