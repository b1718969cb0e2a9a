//! Programs and scripts without a session get a 401 they can act on, never a
//! login redirect, and their requests never reach the upstream.

use bytes::Bytes;
use http::{Method, StatusCode};

use crate::support::TestWorld;
use crate::support::upstreams::CountingUpstream;

fn assert_api_401(reply: &crate::support::Reply, what: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {}", reply.body);
    assert!(reply.header("location").is_none(), "{what}: no redirect for programs");
    let challenge = reply.header("www-authenticate").unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"));
    assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
    assert_eq!(reply.header("content-type").as_deref(), Some("application/json"), "{what}");
    assert_eq!(reply.json()["error"], "unauthenticated", "{what}");
    assert!(reply.set_cookies().iter().all(|cookie| !cookie.name.contains("_flow_")), "{what}: no login started");
}

#[tokio::test]
async fn programs_and_scripts_get_401_not_a_redirect() {
    let upstream = CountingUpstream::start().await;
    let world = TestWorld::builder().upstream(upstream.url.clone()).start().await;
    let browser = world.browser();
    let cases: [(&str, Vec<(&str, &str)>); 5] = [
        ("no accept", vec![]),
        ("json", vec![("accept", "application/json")]),
        ("fetch (cors) accepting html", vec![("accept", "text/html"), ("sec-fetch-mode", "cors")]),
        ("fetch (no-cors)", vec![("accept", "text/html,*/*"), ("sec-fetch-mode", "no-cors")]),
        ("xhr", vec![("accept", "text/html"), ("x-requested-with", "XMLHttpRequest")]),
    ];
    for (what, headers) in &cases {
        let reply = browser.send(Method::GET, "/api/data", headers, Bytes::new()).await;
        assert_api_401(&reply, what);
    }
    assert_eq!(upstream.requests(), 0);
}

#[tokio::test]
async fn unauthenticated_bodies_never_reach_the_upstream() {
    let upstream = CountingUpstream::start().await;
    let world = TestWorld::builder().upstream(upstream.url.clone()).start().await;
    let browser = world.browser();
    for (method, accept) in [(Method::POST, "application/json"), (Method::POST, "text/html"), (Method::PUT, "*/*")] {
        let what = format!("{method} accepting {accept}");
        let reply = browser
            .send(
                method,
                "/api/items",
                &[("accept", accept), ("content-type", "application/json")],
                Bytes::from(vec![b'x'; 64 * 1024]),
            )
            .await;
        assert_api_401(&reply, &what);
    }
    assert_eq!(upstream.requests(), 0, "nothing was forwarded");
    assert_eq!(upstream.body_bytes(), 0);

    // The counter works: with a session the same POST arrives, body and all.
    browser.login().await;
    let reply = browser
        .send(Method::POST, "/api/items", &[("content-type", "application/json")], Bytes::from(vec![b'x'; 1000]))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(upstream.requests(), 1);
    assert_eq!(upstream.body_bytes(), 1000);
}
