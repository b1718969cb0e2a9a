//! Open redirects: a corpus of several hundred hostile return targets, built
//! from the published bypass classes (slashes and backslashes, encoded and raw
//! whitespace and control characters, dot segments, `@` and userinfo,
//! look-alike and suffix hosts, schemes, CRLF), run against every endpoint that
//! redirects: `/oauth2/start?rd=`, `/oauth2/sign_out?rd=` and the protected
//! path itself. Wherever the browser would go must be our own origin, judged
//! the way a browser parses URLs (WHATWG, via the `url` crate).

use http::StatusCode;
use url::Url;

use crate::support::browser::NAVIGATION;
use crate::support::{Reply, TestWorld, raw_exchange};

/// The hostile targets, generated from the classes; `ours` is `host:port` of the gateway.
fn corpus(ours: &str) -> Vec<String> {
    let hosts = [
        "evil.example".to_owned(),
        "evil.example:443".to_owned(),
        format!("{ours}.evil.example"),
        format!("{}evil.example", ours.replace(':', "")),
        format!("evil.example#{ours}"),
        format!("evil.example?{ours}"),
        format!("{ours}@evil.example"),
        format!("evil.example\\@{ours}"),
        "evil%2Eexample".to_owned(),
        "evil\u{3002}example".to_owned(),
        "\u{24d4}vil.example".to_owned(),
        "0x7f000001.evil.example".to_owned(),
        "[::ffff:203.0.113.9]".to_owned(),
        "2130706433".to_owned(),
    ];
    let prefixes = [
        "//",
        "///",
        "////",
        "\\\\",
        "/\\",
        "\\/",
        "/\\/",
        "/%2F",
        "%2F%2F",
        "/%2f/",
        "/%5C",
        "%5C%5C",
        "/%5c%5c",
        "/%252F%252F",
        "%252F%252F",
        "https://",
        "http://",
        "HTTPS://",
        "hTtPs://",
        "https:",
        "https:/",
        "https:\\\\",
        "https:/\\",
        "//\t",
        "/\t/",
        "\t//",
        " //",
        "/%09/",
        "/%0A/",
        "/%0D/",
        "/%00/",
        "%20//",
        "/%20/",
        "/./",
        "/../",
        "/.//",
        "/..//",
        "/%2E//",
        "/%2e%2e//",
        "/a/..//",
        "/.%2F/",
        "ftp://",
        "//@",
        "http:@",
        "https://user:pass@",
        "\u{ff0f}\u{ff0f}",
        "/\u{2215}",
        "\u{3000}//",
    ];
    let suffixes = ["", "/", "/path?x=1", "%2F..", "\\"];
    let mut targets = Vec::new();
    for prefix in prefixes {
        for host in &hosts {
            targets.push(format!("{prefix}{host}"));
        }
    }
    for prefix in ["//", "/\\", "https://", "/%2F"] {
        for suffix in suffixes {
            targets.push(format!("{prefix}evil.example{suffix}"));
        }
    }
    for scheme in [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "java\tscript:alert(1)",
        "java%09script:alert(1)",
        " javascript:alert(1)",
        "\u{0001}javascript:alert(1)",
        "javascript://%0Aalert(1)",
        "javascript:/evil.example/%0Aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "blob:https://evil.example/x",
        "ws://evil.example",
        "mailto:a@evil.example",
    ] {
        targets.push(scheme.to_owned());
    }
    for crlf in [
        "/\r\nSet-Cookie: x=y",
        "/%0d%0aSet-Cookie:%20x=y",
        "/%0D%0ALocation:%20https://evil.example",
        "/%E5%98%8A%E5%98%8DSet-Cookie:x=y",
        "/\nLocation: //evil.example",
        "/\rLocation: //evil.example",
        "/%0aLocation:%20//evil.example",
        "/%250d%250aSet-Cookie:x=y",
    ] {
        targets.push(crlf.to_owned());
    }
    for userinfo in [
        format!("https://{ours}@evil.example/"),
        format!("http://{ours}@evil.example/"),
        format!("//{ours}@evil.example/"),
        format!("https://{ours}%40evil.example/"),
        format!("https://evil.example@{ours}/"),
        format!("https://{ours}:@evil.example/"),
        format!("http://{ours}.evil.example/"),
        format!("http://{ours}%2F@evil.example/"),
        format!("http://{ours}\\@evil.example/"),
        format!("http://evil.example/http://{ours}/"),
    ] {
        targets.push(userinfo);
    }
    targets.sort();
    targets.dedup();
    targets
}

/// Fails unless `location`, resolved like a browser would against `public`,
/// stays on our origin, and carries no character that could split a header.
fn assert_same_origin(public: &Url, location: &str, what: &str) {
    assert!(!location.chars().any(char::is_control), "{what} → {location:?} carries a control character");
    let resolved = public.join(location).unwrap_or_else(|error| panic!("{what} → {location:?} ({error})"));
    assert_eq!(resolved.origin(), public.origin(), "{what} → {location:?} leaves our origin ({resolved})");
    assert!(resolved.username().is_empty() && resolved.password().is_none(), "{what} → {location:?} has userinfo");
}

fn encoded(target: &str) -> String {
    form_urlencoded::byte_serialize(target.as_bytes()).collect()
}

/// Where a redirect from the gateway ends up: the Location itself, or for a
/// login the `return_to` in the flow cookie.
fn landing(world: &TestWorld, reply: &Reply) -> Option<String> {
    if reply.status != StatusCode::FOUND {
        return None;
    }
    let location = reply.location();
    if location.starts_with(&format!("{}/authorize?", world.provider.issuer())) {
        let state = crate::support::query_params(&location).remove("state").expect("a state");
        let cookies = reply.set_cookies();
        let flow =
            cookies.iter().find(|cookie| cookie.name.ends_with(&format!("_flow_{state}"))).expect("a flow cookie");
        return Some(world.open_flow(&flow.name, &flow.value).return_to);
    }
    Some(location)
}

#[tokio::test]
async fn the_corpus_is_large_and_varied() {
    let corpus = corpus("127.0.0.1:4180");
    assert!(corpus.len() >= 300, "only {} variants", corpus.len());
}

#[tokio::test]
async fn login_rd_never_leaves_our_origin() {
    let world = TestWorld::start().await;
    let public = Url::parse(&world.public_url).unwrap();
    let browser = world.browser();
    for target in corpus(&world.gateway_addr.to_string()) {
        let reply = browser.navigate(&format!("/oauth2/start?rd={}", encoded(&target))).await;
        assert!(!reply.status.is_server_error(), "rd={target:?}: {}", reply.status);
        let landed = landing(&world, &reply).unwrap_or_else(|| panic!("rd={target:?}: no redirect ({})", reply.status));
        assert_same_origin(&public, &landed, &format!("login rd={target:?}"));
        assert!(reply.set_cookies().iter().all(|cookie| cookie.name != "x"), "rd={target:?} injected a cookie");
    }
}

#[tokio::test]
async fn sign_out_rd_never_leaves_our_origin() {
    let world = TestWorld::start().await;
    let public = Url::parse(&world.public_url).unwrap();
    let browser = world.browser();
    browser.login().await;
    for target in corpus(&world.gateway_addr.to_string()) {
        let reply = browser.navigate(&format!("/oauth2/sign_out?rd={}", encoded(&target))).await;
        assert!(!reply.status.is_server_error(), "rd={target:?}: {}", reply.status);
        if reply.status == StatusCode::FOUND {
            assert_same_origin(&public, &reply.location(), &format!("sign-out rd={target:?}"));
        }
        assert!(reply.set_cookies().iter().all(|cookie| cookie.name != "x"), "rd={target:?} injected a cookie");
    }
    // Same-origin navigation sign-out does redirect, so the loop above was not vacuous.
    let reply = browser.send(http::Method::GET, "/oauth2/sign_out?rd=%2Fbye", &NAVIGATION, bytes::Bytes::new()).await;
    assert_eq!(reply.expect_redirect(), "/bye");
}

/// The target as a request path: percent-encodes what cannot go raw in a
/// request line (controls, space, non-ASCII), keeps everything else.
fn as_request_path(target: &str) -> String {
    let mut path = String::from("/");
    for byte in target.trim_start_matches('/').bytes() {
        if byte.is_ascii_graphic() {
            path.push(char::from(byte));
        } else {
            path.push_str(&format!("%{byte:02X}"));
        }
    }
    if target.starts_with('/') { format!("/{path}") } else { path }
}

#[tokio::test]
async fn protected_path_navigation_never_returns_off_site() {
    let world = TestWorld::start().await;
    let public = Url::parse(&world.public_url).unwrap();
    let mut answered = 0;
    for target in corpus(&world.gateway_addr.to_string()) {
        let path = as_request_path(&target);
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/html\r\nSec-Fetch-Mode: navigate\r\nConnection: close\r\n\r\n",
            world.gateway_addr
        );
        let reply = raw_exchange(world.gateway_addr, &request).await;
        assert!(!reply.status.is_server_error(), "GET {path}: {}", reply.status);
        if let Some(landed) = landing(&world, &reply) {
            answered += 1;
            assert_same_origin(&public, &landed, &format!("GET {path}"));
        }
    }
    assert!(answered > 100, "most paths start a login ({answered})");
}
