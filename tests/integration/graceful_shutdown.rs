//! Graceful shutdown: readiness turns false at once, new connections are still
//! accepted during the grace period and refused after it, and a slow streaming
//! response that is in flight completes in full before the gateway exits.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpStream;

use crate::support::http::EXCHANGE_TIMEOUT;
use crate::support::{TestWorld, eventually};

#[tokio::test]
async fn readiness_turns_false_at_once_and_connections_are_accepted_during_the_grace_period() {
    let mut world = TestWorld::builder()
        .tweak(|raw| {
            raw.server.shutdown_grace = Duration::from_secs(60);
            raw.server.drain_timeout = Duration::from_secs(1);
        })
        .start()
        .await;
    assert_eq!(world.ready().await.status, StatusCode::OK);
    world.begin_shutdown();
    let not_ready =
        eventually(EXCHANGE_TIMEOUT, || async { world.ready().await.status == StatusCode::SERVICE_UNAVAILABLE }).await;
    assert!(not_ready, "/ready turns 503 once shutdown begins");
    // Still accepting (and serving) while load balancers notice.
    let ping = world.browser().api_get("/ping").await;
    assert_eq!(ping.status, StatusCode::OK);
    assert!(!world.gateway_finished(Duration::from_millis(200)).await, "still serving during the grace period");
}

#[tokio::test]
async fn an_in_flight_streaming_response_completes_and_new_connections_are_refused() {
    const TOTAL: usize = 24 * 1024 * 1024;
    let mut world = TestWorld::builder()
        .tweak(|raw| {
            raw.server.shutdown_grace = Duration::from_millis(100);
            raw.server.drain_timeout = Duration::from_secs(60);
        })
        .start()
        .await;
    let browser = world.browser();
    browser.login().await;
    let cookie = format!("{}={}", world.session_cookie_name(), browser.session_value());

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{}/stream?bytes={TOTAL}", world.gateway_addr))
        .header("cookie", cookie)
        .header("accept", "application/octet-stream")
        .body(Empty::new())
        .unwrap();
    let response = tokio::time::timeout(EXCHANGE_TIMEOUT, client.request(request)).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    // Read one frame, then stop reading: backpressure keeps the rest in flight.
    let first = tokio::time::timeout(EXCHANGE_TIMEOUT, body.frame()).await.unwrap().unwrap().unwrap();
    let mut received = first.into_data().map_or(0, |data| data.len());
    assert!(received < TOTAL);

    world.begin_shutdown();
    let addr = world.gateway_addr;
    let refused = eventually(EXCHANGE_TIMEOUT, || async move { TcpStream::connect(addr).await.is_err() }).await;
    assert!(refused, "new connections are refused once the grace period is over");

    let rest = async {
        while let Some(frame) = body.frame().await {
            received += frame.expect("the stream continues").into_data().map_or(0, |data| data.len());
        }
    };
    tokio::time::timeout(Duration::from_secs(60), rest).await.expect("the stream finished");
    assert_eq!(received, TOTAL, "the in-flight response completed in full");
    drop(client);
    assert!(world.gateway_finished(EXCHANGE_TIMEOUT).await, "the gateway exits once drained");
}

#[tokio::test]
async fn the_drain_timeout_bounds_how_long_a_stuck_response_can_hold_the_exit() {
    let mut world = TestWorld::builder()
        .tweak(|raw| {
            raw.server.shutdown_grace = Duration::from_millis(50);
            raw.server.drain_timeout = Duration::from_millis(300);
        })
        .start()
        .await;
    let browser = world.browser();
    browser.login().await;
    // A connection that sent half a request head and never finishes it.
    let mut stuck = TcpStream::connect(world.gateway_addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stuck, b"GET /never HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    world.begin_shutdown();
    assert!(world.gateway_finished(EXCHANGE_TIMEOUT).await, "the gateway exits despite the stuck connection");
}
