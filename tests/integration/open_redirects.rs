//! Open redirects: `rd` on login and sign-out, and the protected path itself,
//! can never send the browser off our origin, whatever the encoding.

use http::StatusCode;

use crate::support::{TestWorld, raw_exchange};

/// Targets an attacker would put in `rd`.
const HOSTILE: &[&str] = &[
    "//evil.example",
    "//evil.example/path",
    "/\\evil.example",
    "\\\\evil.example",
    "https://evil.example",
    "https://evil.example/",
    "http://evil.example:443/",
    "/%2F%2Fevil.example",
    "/%2f%2fevil.example",
    "%2F%2Fevil.example",
    "/%5Cevil.example",
    "/%252F%252Fevil.example",
    "///evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "/%0d%0aSet-Cookie:x=y",
    "/\r\nSet-Cookie:x=y",
    "/%09/evil.example",
    "evil.example",
    "https://127.0.0.1.evil.example/",
];

fn encoded(target: &str) -> String {
    form_urlencoded::byte_serialize(target.as_bytes()).collect()
}

/// A same-origin path: starts with one `/`, not `//` or `/\`.
fn assert_same_origin(location: &str, what: &str) {
    assert!(location.starts_with('/'), "{what} → {location}");
    assert!(!location.starts_with("//") && !location.starts_with("/\\"), "{what} → {location}");
}

#[tokio::test]
async fn login_rd_never_leaves_our_origin() {
    let world = TestWorld::start().await;
    for target in HOSTILE {
        let browser = world.browser();
        let pending = browser.start_login(&format!("/oauth2/start?rd={}", encoded(target))).await;
        let flow = world.open_flow(&pending.flow_cookie_name, &pending.flow_cookie_value);
        assert_eq!(flow.return_to, "/", "rd={target:?} was kept as {:?}", flow.return_to);
    }
    // End to end for a few: the final Location after a real login.
    for target in ["//evil.example", "https://evil.example", "/%0d%0aSet-Cookie:x=y"] {
        let browser = world.browser();
        let landed = browser.login_at(&format!("/oauth2/start?rd={}", encoded(target)), "alice", "alice").await;
        assert_eq!(landed, "/", "rd={target:?}");
        assert!(browser.cookie("x").is_none(), "no header injection");
    }
}

/// Dot segments that collapse into `//host` once the URL is resolved.
const DOT_SEGMENT_ESCAPES: &[&str] =
    &["/.//evil.example", "/..//evil.example", "/a/..//evil.example/x", "/%2e//evil.example"];

#[tokio::test]
async fn dot_segments_cannot_smuggle_a_protocol_relative_target() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    browser.login().await;
    for target in DOT_SEGMENT_ESCAPES {
        let pending = world.browser().start_login(&format!("/oauth2/start?rd={}", encoded(target))).await;
        let flow = world.open_flow(&pending.flow_cookie_name, &pending.flow_cookie_value);
        assert_same_origin(&flow.return_to, &format!("login rd={target:?}"));
        let location = browser.navigate(&format!("/oauth2/sign_out?rd={}", encoded(target))).await.expect_redirect();
        assert_same_origin(&location, &format!("sign-out rd={target:?}"));
    }
    // The protected path itself: a navigation to /.//evil.example/x must not return off-site.
    let request = format!(
        "GET /.//evil.example/x HTTP/1.1\r\nHost: {}\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
        world.gateway_addr
    );
    let reply = raw_exchange(world.gateway_addr, &request).await;
    if reply.status == StatusCode::FOUND {
        let set_cookies = reply.set_cookies();
        let flow = set_cookies.iter().find(|cookie| cookie.name.starts_with("_portcullis_flow_")).expect("a flow");
        assert_same_origin(&world.open_flow(&flow.name, &flow.value).return_to, "GET /.//evil.example/x");
    }
}

#[tokio::test]
async fn sign_out_rd_never_leaves_our_origin() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    browser.login().await;
    for target in HOSTILE {
        let reply = browser.navigate(&format!("/oauth2/sign_out?rd={}", encoded(target))).await;
        let location = reply.expect_redirect();
        assert_eq!(location, "/", "rd={target:?}");
        assert!(reply.set_cookies().iter().all(|cookie| cookie.name != "x"), "rd={target:?} injected a cookie");
    }
    let reply = browser.navigate("/oauth2/sign_out?rd=%2Fbye%3Fsee%3Dyou").await;
    assert_eq!(reply.expect_redirect(), "/bye?see=you", "a same-origin rd is honoured");
}

#[tokio::test]
async fn same_origin_absolute_rd_is_kept() {
    let world = TestWorld::start().await;
    let target = format!("{}/abs?k=v", world.public_url);
    let browser = world.browser();
    let landed = browser.login_at(&format!("/oauth2/start?rd={}", encoded(&target)), "alice", "alice").await;
    assert_eq!(landed, target);
}

#[tokio::test]
async fn protocol_relative_request_paths_do_not_produce_an_off_site_return() {
    let world = TestWorld::start().await;
    for path in
        ["//evil.example/x", "//evil.example", "/\\evil.example/x", "///evil.example/x", "/%2F%2Fevil.example/x"]
    {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/html\r\nSec-Fetch-Mode: navigate\r\nConnection: close\r\n\r\n",
            world.gateway_addr
        );
        let reply = raw_exchange(world.gateway_addr, &request).await;
        if reply.status == StatusCode::BAD_REQUEST {
            continue; // Refused as a malformed target: nothing to return to.
        }
        let location = reply.expect_redirect();
        assert!(location.starts_with(&format!("{}/authorize?", world.provider.issuer())), "{path}: {location}");
        let set_cookies = reply.set_cookies();
        let flow = set_cookies.iter().find(|cookie| cookie.name.starts_with("_portcullis_flow_")).expect("a flow");
        let opened = world.open_flow(&flow.name, &flow.value);
        assert_same_origin(&opened.return_to, path);
    }
}
