//! Several upstreams: chosen by path prefix and by host, each with its own
//! rules, extra headers and choice of token (access, ID, none).

use std::collections::BTreeMap;

use http::StatusCode;
use portcullis::config::raw::{RawRule, RawUpstream};
use tokio::net::TcpListener;

use crate::support::{TestWorld, raw_exchange};

async fn second_echo() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = portcullis_devkit::echo::serve_echo(listener, std::future::pending()).await;
    });
    url
}

#[tokio::test]
async fn upstreams_by_path_and_host_with_their_own_rules_headers_and_tokens() {
    let api = second_echo().await;
    let world = TestWorld::builder()
        .tweak(move |raw| {
            raw.upstreams = vec![
                RawUpstream {
                    name: Some("api".to_owned()),
                    url: api.clone(),
                    path_prefix: Some("/api/".to_owned()),
                    token: Some("id".to_owned()),
                    set_headers: BTreeMap::from([("x-via".to_owned(), "api".to_owned())]),
                    rules: vec![RawRule {
                        name: Some("api-admin".to_owned()),
                        path_prefix: Some("/api/admin".to_owned()),
                        groups: vec!["admins".to_owned()],
                        ..RawRule::default()
                    }],
                    ..RawUpstream::default()
                },
                RawUpstream {
                    name: Some("other-host".to_owned()),
                    url: api.clone(),
                    host: Some("Other.Example".to_owned()),
                    token: Some("none".to_owned()),
                    ..RawUpstream::default()
                },
            ];
        })
        .start()
        .await;
    let alice = world.browser();
    alice.login().await;
    let session = world.open_session(&alice.session_value());
    let bob = world.browser();
    bob.login_at("/", "bob", "bob").await;

    let reply = alice.api_get("/api/items").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let echoed = reply.json();
    assert_eq!(echoed["headers"]["x-via"][0], "api");
    assert_eq!(echoed["headers"]["authorization"][0], format!("Bearer {}", session.id_token.clone().unwrap()));

    assert_eq!(alice.api_get("/api/admin/x").await.status, StatusCode::OK);
    assert_eq!(bob.api_get("/api/admin/x").await.status, StatusCode::FORBIDDEN);
    assert_eq!(bob.api_get("/api/items").await.status, StatusCode::OK);

    let echoed = alice.api_get("/elsewhere").await.json();
    assert!(echoed["headers"].get("x-via").is_none());
    assert_eq!(echoed["headers"]["authorization"][0], format!("Bearer {}", session.access_token));

    // By host, with no token at all — and the client's own Authorization does not get through.
    let request = format!(
        "GET /page HTTP/1.1\r\nHost: other.example:8443\r\nAccept: application/json\r\nAuthorization: Bearer SPOOF\r\nCookie: {}={}\r\nConnection: close\r\n\r\n",
        world.session_cookie_name(),
        alice.session_value()
    );
    let reply = raw_exchange(world.gateway_addr, &request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let echoed = reply.json();
    assert!(echoed["headers"].get("authorization").is_none(), "{echoed}");
    assert_eq!(echoed["headers"]["x-forwarded-user"][0], session.sub.as_str());
}

#[tokio::test]
async fn an_upstream_gets_only_the_identity_headers_it_is_configured_for() {
    let reports = second_echo().await;
    let world = TestWorld::builder()
        .tweak(move |raw| {
            raw.upstreams = vec![RawUpstream {
                name: Some("reports".to_owned()),
                url: reports.clone(),
                path_prefix: Some("/reports/".to_owned()),
                identity_headers: Some(vec!["email".to_owned()]),
                ..RawUpstream::default()
            }];
        })
        .start()
        .await;
    let alice = world.browser();
    alice.login().await;
    let session = world.open_session(&alice.session_value());
    let spoof = [("accept", "application/json"), ("x-forwarded-user", "mallory"), ("x-forwarded-groups", "admins")];
    let reply = alice.send(http::Method::GET, "/reports/q3", &spoof, bytes::Bytes::new()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let headers = &reply.json()["headers"];
    assert_eq!(headers["x-forwarded-email"][0], "alice@example.test");
    assert_eq!(headers["authorization"][0], format!("Bearer {}", session.access_token));
    for absent in ["x-forwarded-user", "x-forwarded-groups", "x-forwarded-preferred-username"] {
        assert!(headers.get(absent).is_none(), "{absent} reached the upstream: {headers}");
    }
    // The default upstream still gets everything.
    let everything = alice.api_get("/elsewhere").await.json();
    assert!(everything["headers"].get("x-forwarded-user").is_some());
}

/// Validated with the rest of the configuration (so `check-config` finds it), before any gateway is built.
#[test]
fn an_unknown_identity_header_name_is_a_configuration_error_naming_the_key() {
    let mut raw = portcullis::config::RawConfig {
        public_url: Some("https://app.example.com".to_owned()),
        upstream: Some("http://127.0.0.1:9".to_owned()),
        ..portcullis::config::RawConfig::default()
    };
    raw.oidc.issuer = Some("https://login.example.com".to_owned());
    raw.oidc.client_id = Some("portcullis".to_owned());
    raw.session.secret = Some(portcullis::secret::SecretString::new(crate::support::random_session_secret()));
    raw.upstreams = vec![RawUpstream {
        url: "http://127.0.0.1:9".to_owned(),
        path_prefix: Some("/x/".to_owned()),
        identity_headers: Some(vec!["password".to_owned()]),
        ..RawUpstream::default()
    }];
    let error = portcullis::config::Config::from_raw(raw).err().map(|error| error.to_string()).unwrap_or_default();
    assert!(error.starts_with("upstreams[0].identity_headers:"), "{error}");
}

#[tokio::test]
async fn operator_set_headers_survive_a_connection_nomination_and_replace_the_clients() {
    let api = second_echo().await;
    let world = TestWorld::builder()
        .tweak(move |raw| {
            raw.upstreams = vec![RawUpstream {
                name: Some("tenant".to_owned()),
                url: api.clone(),
                path_prefix: Some("/t/".to_owned()),
                set_headers: BTreeMap::from([("x-tenant".to_owned(), "blue".to_owned())]),
                ..RawUpstream::default()
            }];
        })
        .start()
        .await;
    let browser = world.browser();
    browser.login().await;
    // A client nominating the operator's header in Connection, and sending its own value.
    let request = format!(
        "GET /t/page HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nX-Tenant: red\r\nCookie: {}={}\r\nConnection: close, x-tenant\r\n\r\n",
        world.gateway_addr,
        world.session_cookie_name(),
        browser.session_value()
    );
    let reply = raw_exchange(world.gateway_addr, &request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let echoed = reply.json();
    assert_eq!(echoed["headers"]["x-tenant"], serde_json::json!(["blue"]), "{echoed}");
}
