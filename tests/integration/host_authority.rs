//! Host routing reads the request's real authority: HTTP/2's `:authority`
//! (what browsers send over TLS, with no `Host`), else `Host`, one trailing
//! dot removed; the two differing is refused, and so is a host the gateway
//! does not serve when `[[upstreams]]` entries are chosen by host.

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::support::browser::Browser;
use crate::support::http::EXCHANGE_TIMEOUT;
use crate::support::upstreams::{RecordingUpstream, admins_only_host_route};
use crate::support::{TestWorld, raw_exchange};

/// The default upstream (echo) for the public URL's host, and `admin.example`
/// served by `admin` with its own rule: group `admins` only (alice, not bob).
async fn world_with_admin_host(admin: &RecordingUpstream) -> TestWorld {
    let admin_url = admin.url.clone();
    TestWorld::builder()
        .tweak(move |raw| {
            raw.upstreams = vec![admins_only_host_route("admin", &admin_url, "Admin.Example")];
        })
        .start()
        .await
}

async fn signed_in(world: &TestWorld, user: &str) -> Browser {
    let browser = world.browser();
    browser.login_at("/x", user, user).await;
    browser
}

fn cookie(world: &TestWorld, browser: &Browser) -> String {
    format!("{}={}", world.session_cookie_name(), browser.session_value())
}

/// One HTTP/2 (h2c, prior knowledge) GET of `uri`, whose authority travels
/// as `:authority`; `headers` are added as they are (no `Host` unless given).
async fn h2_get(world: &TestWorld, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let stream = TcpStream::connect(world.gateway_addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.expect("h2c");
    tokio::spawn(connection);
    let mut request = http::Request::get(uri).header("accept", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::<Bytes>::new()).unwrap();
    let exchange = async {
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await.expect("the h2 exchange finished in time")
}

fn http1_get(target: &str, host: &str, cookie: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    )
}

#[tokio::test]
async fn an_http2_authority_without_host_routes_to_its_upstream_and_rules() {
    let admin = RecordingUpstream::start().await;
    let world = world_with_admin_host(&admin).await;
    let bob = signed_in(&world, "bob").await;
    let alice = signed_in(&world, "alice").await;

    for uri in ["http://admin.example/panel", "http://ADMIN.example.:8443/panel"] {
        let (status, body) = h2_get(&world, uri, &[("cookie", &cookie(&world, &bob))]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "bob {uri}: {body}");
        let (status, body) = h2_get(&world, uri, &[("cookie", &cookie(&world, &alice))]).await;
        assert_eq!(status, StatusCode::OK, "alice {uri}: {body}");
    }
    let seen = admin.seen();
    let hosts: Vec<_> = seen.iter().map(|seen| (seen.path.as_str(), seen.headers["host"].to_str().unwrap())).collect();
    assert_eq!(hosts, [("/panel", "admin.example"), ("/panel", "ADMIN.example:8443")]);
    let forwarded_hosts: Vec<_> = seen.iter().map(|seen| seen.headers["x-forwarded-host"].to_str().unwrap()).collect();
    assert_eq!(forwarded_hosts, ["admin.example", "ADMIN.example:8443"]);
}

#[tokio::test]
async fn a_trailing_dot_in_host_routes_the_same() {
    let admin = RecordingUpstream::start().await;
    let world = world_with_admin_host(&admin).await;
    let bob = signed_in(&world, "bob").await;
    let alice = signed_in(&world, "alice").await;

    let reply = raw_exchange(world.gateway_addr, &http1_get("/panel", "admin.example.", &cookie(&world, &bob))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    let reply =
        raw_exchange(world.gateway_addr, &http1_get("/panel", "admin.example.:80", &cookie(&world, &alice))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let seen = admin.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["host"], "admin.example:80");
    assert_eq!(seen[0].headers["x-forwarded-host"], "admin.example:80");
}

#[tokio::test]
async fn an_authority_and_a_host_that_differ_are_refused() {
    let admin = RecordingUpstream::start().await;
    let world = world_with_admin_host(&admin).await;
    let bob = signed_in(&world, "bob").await;
    let bob_cookie = cookie(&world, &bob);
    let gateway_host = world.gateway_addr.to_string();

    let (status, body) =
        h2_get(&world, "http://admin.example/panel", &[("cookie", &bob_cookie), ("host", &gateway_host)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) =
        h2_get(&world, &format!("http://{gateway_host}/panel"), &[("cookie", &bob_cookie), ("host", "admin.example")])
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // HTTP/1.1 absolute form carries an authority too.
    let request = http1_get("http://admin.example/panel", &gateway_host, &bob_cookie);
    let reply = raw_exchange(world.gateway_addr, &request).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    // The same authority twice is fine.
    let (status, body) =
        h2_get(&world, "http://admin.example/panel", &[("cookie", &bob_cookie), ("host", "admin.example")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(admin.seen().is_empty());
}

#[tokio::test]
async fn hosts_the_gateway_does_not_serve_are_misdirected() {
    let admin = RecordingUpstream::start().await;
    let world = world_with_admin_host(&admin).await;
    let alice = signed_in(&world, "alice").await;
    let alice_cookie = cookie(&world, &alice);

    for host in ["unknown.example", "admin.example.evil", "127.0.0.2"] {
        let reply = raw_exchange(world.gateway_addr, &http1_get("/x", host, &alice_cookie)).await;
        assert_eq!(reply.status, StatusCode::MISDIRECTED_REQUEST, "{host}: {}", reply.body);
    }
    let (status, body) = h2_get(&world, "http://unknown.example/x", &[("cookie", &alice_cookie)]).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{body}");
    let reply = raw_exchange(world.gateway_addr, "GET /x HTTP/1.0\r\nAccept: application/json\r\n\r\n").await;
    assert_eq!(reply.status, StatusCode::MISDIRECTED_REQUEST, "no host: {}", reply.body);
    // The public URL's host, any port, reaches the default upstream.
    let reply = raw_exchange(world.gateway_addr, &http1_get("/x", "127.0.0.1:1", &alice_cookie)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(admin.seen().is_empty());
}

#[tokio::test]
async fn without_hosts_in_upstreams_any_host_is_served() {
    let world = TestWorld::start().await;
    let alice = signed_in(&world, "alice").await;
    let reply = raw_exchange(world.gateway_addr, &http1_get("/x", "anything.example", &cookie(&world, &alice))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.json()["headers"]["host"][0], "anything.example");
}
