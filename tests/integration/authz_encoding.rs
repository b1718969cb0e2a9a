//! Rules see the path the upstream will see: percent-escapes of unreserved
//! characters are decoded before matching, the upstream receives exactly the
//! normal form that was authorised, and case-insensitive matching is an
//! opt-in per rule set.

use http::StatusCode;
use portcullis::config::RawConfig;
use portcullis::config::raw::{RawRule, RawUpstream};

use crate::support::upstreams::RecordingUpstream;
use crate::support::{TestWorld, raw_exchange};

fn rule(prefix: &str, allow: &str) -> RawRule {
    RawRule { path_prefix: Some(prefix.to_owned()), allow: Some(allow.to_owned()), ..RawRule::default() }
}

/// `/admin` for the group `admins` (alice, not bob), everything else public.
fn admin_and_public(raw: &mut RawConfig) {
    raw.authz.rules = vec![
        RawRule {
            name: Some("admins-only".to_owned()),
            groups: vec!["admins".to_owned()],
            ..rule("/admin", "authenticated")
        },
        RawRule { name: Some("public".to_owned()), ..rule("/", "public") },
    ];
}

#[tokio::test]
async fn encoded_letters_do_not_slip_past_a_rule() {
    let upstream = RecordingUpstream::start().await;
    let world = TestWorld::builder().upstream(upstream.url.clone()).tweak(admin_and_public).start().await;
    let anonymous = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
            world.gateway_addr
        )
    };
    for trick in ["/%61dmin/panel", "/adm%69n/x", "/%61%64%6D%69%6E"] {
        let reply = raw_exchange(world.gateway_addr, &anonymous(trick)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "anonymous {trick}: {}", reply.body);
    }
    // An escape elsewhere makes a path non-canonical, so not public either.
    let reply = raw_exchange(world.gateway_addr, &anonymous("/%7Ehome")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    let reply = raw_exchange(world.gateway_addr, &anonymous("/home")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let forwarded: Vec<String> = upstream.seen().into_iter().map(|seen| seen.target).collect();
    assert_eq!(forwarded, ["/home"], "no trick reached the upstream");

    let bob = world.browser();
    bob.login_at("/admin", "bob", "bob").await;
    for trick in ["/%61dmin/x", "/adm%69n/x", "/adm%69n"] {
        assert_eq!(bob.api_get(trick).await.status, StatusCode::FORBIDDEN, "bob {trick}");
    }
    // Refused spellings stay refused.
    for refused in ["/%2561dmin%2F", "/a/%", "/a/%zz", "/a/%2e%2e/admin"] {
        assert_eq!(bob.api_get(refused).await.status, StatusCode::BAD_REQUEST, "bob {refused}");
    }
}

#[tokio::test]
async fn the_upstream_receives_the_normal_form_that_was_authorised() {
    let upstream = RecordingUpstream::start().await;
    let world = TestWorld::builder().upstream(upstream.url.clone()).tweak(admin_and_public).start().await;
    let alice = world.browser();
    alice.login_at("/admin", "alice", "alice").await;
    let sent = [
        ("/adm%69n/x?q=%61&r=%2F", "/admin/x?q=%61&r=%2F"),
        ("/%7Ealice/caf%c3%a9", "/~alice/caf%C3%A9"),
        ("//admin//x;jsessionid=1/", "/admin/x/"),
        ("/%2561dmin", "/%2561dmin"),
        ("/a/%252F/b", "/a/%252F/b"),
        ("/plain/path?x=1", "/plain/path?x=1"),
    ];
    for (path, _) in sent {
        assert_eq!(alice.api_get(path).await.status, StatusCode::OK, "alice {path}");
    }
    let forwarded: Vec<String> = upstream.seen().into_iter().map(|seen| seen.target).collect();
    let expected: Vec<&str> = sent.iter().map(|(_, normal)| *normal).collect();
    assert_eq!(forwarded, expected);
}

#[tokio::test]
async fn rules_match_case_sensitively_unless_told_otherwise() {
    let world = TestWorld::builder().tweak(admin_and_public).start().await;
    let bob = world.browser();
    bob.login_at("/admin", "bob", "bob").await;
    assert_eq!(bob.api_get("/ADMIN/x").await.status, StatusCode::OK, "off by default");

    let world = TestWorld::builder()
        .tweak(|raw| {
            admin_and_public(raw);
            raw.authz.case_insensitive = true;
        })
        .start()
        .await;
    let bob = world.browser();
    bob.login_at("/admin", "bob", "bob").await;
    let alice = world.browser();
    alice.login_at("/admin", "alice", "alice").await;
    for path in ["/ADMIN/x", "/Admin", "/aDm%49n/x"] {
        assert_eq!(bob.api_get(path).await.status, StatusCode::FORBIDDEN, "bob {path}");
        assert_eq!(alice.api_get(path).await.status, StatusCode::OK, "alice {path}");
    }
    assert_eq!(bob.api_get("/Administrator").await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_upstream_can_route_case_insensitively_on_its_own() {
    let app = RecordingUpstream::start().await;
    let app_url = app.url.clone();
    let world = TestWorld::builder()
        .tweak(move |raw| {
            raw.authz.rules = vec![rule("/app/secret", "deny")];
            raw.upstreams = vec![RawUpstream {
                name: Some("app".to_owned()),
                url: app_url.clone(),
                path_prefix: Some("/app/".to_owned()),
                case_insensitive: Some(true),
                rules: vec![RawRule { groups: vec!["admins".to_owned()], ..rule("/app/admin", "authenticated") }],
                ..RawUpstream::default()
            }];
        })
        .start()
        .await;
    let bob = world.browser();
    bob.login_at("/admin", "bob", "bob").await;
    // The entry's own rule and the global one both match its requests ignoring case.
    assert_eq!(bob.api_get("/APP/Admin/x").await.status, StatusCode::FORBIDDEN);
    assert_eq!(bob.api_get("/App/SECRET").await.status, StatusCode::FORBIDDEN);
    assert_eq!(bob.api_get("/APP/other").await.status, StatusCode::OK);
    let forwarded: Vec<String> = app.seen().into_iter().map(|seen| seen.path).collect();
    assert_eq!(forwarded, ["/APP/other"]);
}
