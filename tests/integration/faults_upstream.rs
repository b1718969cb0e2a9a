//! Upstream faults: refusing, closing before answering, answering garbage,
//! hanging (504 after proxy.response_timeout) and resetting mid-stream. The
//! client gets a clear 502/504 (or a cut-off body once streaming started), its
//! connection stays usable, and the gateway releases the upstream connection.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::support::http::EXCHANGE_TIMEOUT;
use crate::support::upstreams::{FaultyUpstream, UpstreamFault, closed_port_url};
use crate::support::{TestWorld, eventually, raw_exchange};

async fn world_in_front_of(url: String) -> (TestWorld, String) {
    let world = TestWorld::builder()
        .upstream(url)
        .tweak(|raw| raw.proxy.response_timeout = Duration::from_millis(500))
        .start()
        .await;
    let browser = world.browser();
    browser.login().await;
    let cookie = format!("{}={}", world.session_cookie_name(), browser.session_value());
    (world, cookie)
}

/// Two requests on one keep-alive connection; returns both statuses.
async fn two_on_one_connection(world: &TestWorld, cookie: &str) -> (StatusCode, StatusCode) {
    let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1).build_http::<Empty<Bytes>>();
    let mut statuses = Vec::new();
    for path in ["/first", "/ping"] {
        let request = Request::get(format!("http://{}{path}", world.gateway_addr))
            .header("cookie", cookie)
            .header("accept", "application/json")
            .body(Empty::new())
            .unwrap();
        let response = tokio::time::timeout(EXCHANGE_TIMEOUT, client.request(request)).await.unwrap().unwrap();
        statuses.push(response.status());
        let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, response.into_body().collect()).await.unwrap();
    }
    (statuses[0], statuses[1])
}

#[tokio::test]
async fn refused_closed_and_garbage_upstreams_give_502() {
    let closed = closed_port_url().await;
    let early_close = FaultyUpstream::start(UpstreamFault::CloseBeforeAnswer).await;
    let garbage = FaultyUpstream::start(UpstreamFault::Garbage).await;
    for (what, url) in [("refused", closed), ("closed", early_close.url.clone()), ("garbage", garbage.url.clone())] {
        let (world, cookie) = world_in_front_of(url).await;
        let (first, then) = two_on_one_connection(&world, &cookie).await;
        assert_eq!(first, StatusCode::BAD_GATEWAY, "{what}");
        assert_eq!(then, StatusCode::OK, "{what}: the client connection stays usable");
    }
}

#[tokio::test]
async fn a_hanging_upstream_gives_504_and_its_connection_is_released() {
    let hanging = FaultyUpstream::start(UpstreamFault::Hang).await;
    let (world, cookie) = world_in_front_of(hanging.url.clone()).await;
    let (first, then) = two_on_one_connection(&world, &cookie).await;
    assert_eq!(first, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(then, StatusCode::OK, "the client connection stays usable");
    let released = eventually(EXCHANGE_TIMEOUT, || async { hanging.released() == hanging.accepted() }).await;
    assert!(
        released,
        "the gateway closed its connection to the hanging upstream ({} of {})",
        hanging.released(),
        hanging.accepted()
    );
}

#[tokio::test]
async fn a_reset_mid_stream_cuts_the_client_response_off_without_harm() {
    let resetting = FaultyUpstream::start(UpstreamFault::ResetMidStream).await;
    let (world, cookie) = world_in_front_of(resetting.url.clone()).await;
    let request = format!(
        "GET /download HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n",
        world.gateway_addr
    );
    let bytes = crate::support::guarded::raw_bytes(world.gateway_addr, request.as_bytes(), EXCHANGE_TIMEOUT).await;
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 200"), "{}", &text[..text.len().min(200)]);
    assert!(bytes.len() < 1024 * 1024, "the body was cut off, not padded or completed");
    // The gateway is fine afterwards.
    let reply = raw_exchange(world.gateway_addr, "GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(reply.status, StatusCode::OK);
}
