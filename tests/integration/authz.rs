//! Authorization rules over real TCP: per-route rules by group, email and
//! domain, first match, deny, the default, public routes, API paths, and the
//! path tricks that must not turn a protected route into a public one.

use bytes::Bytes;
use http::{Method, StatusCode};
use portcullis::config::RawConfig;
use portcullis::config::raw::RawRule;

use crate::support::upstreams::CountingUpstream;
use crate::support::{TestWorld, logs, raw_exchange};

fn rule(name: &str, prefix: &str, allow: &str) -> RawRule {
    RawRule {
        name: Some(name.to_owned()),
        path_prefix: Some(prefix.to_owned()),
        allow: Some(allow.to_owned()),
        ..RawRule::default()
    }
}

fn rules(raw: &mut RawConfig) {
    raw.authz.rules = vec![
        rule("public-assets", "/public/", "public"),
        RawRule { groups: vec!["admins".to_owned()], ..rule("admins-only", "/admin", "authenticated") },
        RawRule { emails: vec!["BOB@example.test".to_owned()], ..rule("bob-only", "/bob", "authenticated") },
        RawRule { email_domains: vec!["example.test".to_owned()], ..rule("domain", "/domain", "authenticated") },
        RawRule { email_domains: vec!["other.test".to_owned()], ..rule("other-domain", "/other", "authenticated") },
        RawRule {
            methods: vec!["DELETE".to_owned()],
            path_pattern: Some("/items/*".to_owned()),
            ..rule("no-deletes", "/unused", "deny")
        },
        rule("closed", "/closed", "deny"),
    ];
    for rule in &mut raw.authz.rules {
        if rule.path_pattern.is_some() {
            rule.path_prefix = None;
        }
    }
    raw.authz.api_path_prefixes = vec!["/api/".to_owned()];
}

#[tokio::test]
async fn rules_decide_who_passes_and_denials_are_403_and_logged() {
    let world = TestWorld::builder().tweak(rules).start().await;
    let alice = world.browser();
    alice.login_at("/", "alice", "alice").await;
    let bob = world.browser();
    bob.login_at("/", "bob", "bob").await;

    let expect = [
        ("/admin/panel", StatusCode::OK, StatusCode::FORBIDDEN),
        ("/admin", StatusCode::OK, StatusCode::FORBIDDEN),
        ("/administrator", StatusCode::OK, StatusCode::OK),
        ("/bob/page", StatusCode::FORBIDDEN, StatusCode::OK),
        ("/domain/x", StatusCode::OK, StatusCode::OK),
        ("/other/x", StatusCode::FORBIDDEN, StatusCode::FORBIDDEN),
        ("/closed", StatusCode::FORBIDDEN, StatusCode::FORBIDDEN),
        ("/anything-else", StatusCode::OK, StatusCode::OK),
    ];
    for (path, for_alice, for_bob) in expect {
        assert_eq!(alice.api_get(path).await.status, for_alice, "alice {path}");
        assert_eq!(bob.api_get(path).await.status, for_bob, "bob {path}");
    }
    // Method-scoped pattern rule.
    assert_eq!(alice.send(Method::DELETE, "/items/7", &[], Bytes::new()).await.status, StatusCode::FORBIDDEN);
    assert_eq!(alice.send(Method::GET, "/items/7", &[], Bytes::new()).await.status, StatusCode::OK);
    assert_eq!(alice.send(Method::DELETE, "/items/7/x", &[], Bytes::new()).await.status, StatusCode::OK);

    // A browser gets a page, a program JSON.
    let page = bob.navigate("/admin/panel").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.header("content-type").unwrap().starts_with("text/html"), "{:?}", page.headers);
    assert!(page.body.contains("not allowed"));
    let json = bob.api_get("/admin/panel").await;
    assert_eq!(json.json()["error"], "forbidden");
    let request_id = json.header("x-request-id").unwrap();
    let logged = logs::captured();
    let line = logged.lines().find(|line| line.contains(&request_id) && line.contains("decision")).unwrap();
    assert!(line.contains("deny") && line.contains("admins-only"), "{line}");
}

#[tokio::test]
async fn default_deny_and_groups_from_another_claim() {
    let world = TestWorld::builder()
        .tweak(|raw| {
            rules(raw);
            raw.authz.default = "deny".to_owned();
            raw.authz.groups_claim = "realm_access.roles".to_owned();
        })
        .start()
        .await;
    let alice = world.browser();
    alice.login_at("/x", "alice", "alice").await;
    assert_eq!(alice.api_get("/anything-else").await.status, StatusCode::FORBIDDEN);
    // alice is in `admins` only through the `groups` claim, which is not the configured one.
    assert_eq!(alice.api_get("/admin/panel").await.status, StatusCode::FORBIDDEN);
    assert_eq!(alice.api_get("/domain/x").await.status, StatusCode::OK);
}

#[tokio::test]
async fn global_allow_lists_gate_every_route() {
    let world = TestWorld::builder()
        .tweak(|raw| {
            raw.authz.allowed_emails = vec!["alice@example.test".to_owned()];
        })
        .start()
        .await;
    let alice = world.browser();
    alice.login().await;
    assert_eq!(alice.api_get("/x").await.status, StatusCode::OK);
    let bob = world.browser();
    bob.login_at("/", "bob", "bob").await;
    assert_eq!(bob.api_get("/x").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn api_paths_never_redirect() {
    let world = TestWorld::builder().tweak(rules).start().await;
    let browser = world.browser();
    let reply = browser.navigate("/api/data").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    assert!(reply.header("location").is_none());
    assert!(reply.header("www-authenticate").is_some());
    assert_eq!(browser.navigate("/app").await.status, StatusCode::FOUND);
}

#[tokio::test]
async fn public_routes_skip_authentication_only_for_their_own_normal_paths() {
    let upstream = CountingUpstream::start().await;
    let world = TestWorld::builder().upstream(upstream.url.clone()).tweak(rules).start().await;
    let get = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
            world.gateway_addr
        )
    };
    let reply = raw_exchange(world.gateway_addr, &get("/public/app.js?x=../../admin")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(upstream.requests(), 1);

    for trick in [
        "/public/../admin/panel",
        "/public/%2e%2e/admin/panel",
        "/public/%2E%2E/admin/panel",
        "/public/.%2e/admin/panel",
        "/public/..;/admin/panel",
        "/public%2f..%2fadmin/panel",
        "/public/..%2fadmin/panel",
        "/public/..%5cadmin/panel",
        "/public/./../admin",
    ] {
        let reply = raw_exchange(world.gateway_addr, &get(trick)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{trick}: {}", reply.body);
    }
    for not_public in ["//public/x", "/public;jsessionid=1/x", "/public", "/PUBLIC/x", "/admin/public/x"] {
        let reply = raw_exchange(world.gateway_addr, &get(not_public)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{not_public}: {}", reply.body);
    }
    assert_eq!(upstream.requests(), 1, "no trick reached the upstream");
}
