//! Graceful shutdown: readiness turns false at once, new connections are still
//! accepted during the grace period and refused after it, a slow streaming
//! response that is in flight completes in full before the gateway exits, and
//! the drain deadline cuts what would never end.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpStream;

use crate::support::http::EXCHANGE_TIMEOUT;
use crate::support::upstreams::{FaultyUpstream, UpstreamFault};
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
    let (client, mut body, first) = signed_in_response(&world, Method::POST, &format!("/stream?bytes={TOTAL}")).await;
    // One frame read, then no more: backpressure keeps the rest in flight.
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
    let upstream = FaultyUpstream::start(UpstreamFault::StallBody).await;
    let mut world = TestWorld::builder()
        .upstream(upstream.url.clone())
        .tweak(|raw| {
            raw.server.shutdown_grace = Duration::from_millis(50);
            raw.server.drain_timeout = Duration::from_millis(300);
        })
        .start()
        .await;
    // A whole, authenticated request whose response the upstream never finishes.
    let (_client, mut body, first) = signed_in_response(&world, Method::GET, "/stuck").await;
    assert!(first.is_data(), "the response is in flight");

    world.begin_shutdown();
    // Only the drain deadline can end it: the upstream holds the rest forever.
    let cut = async { while let Some(Ok(_)) = body.frame().await {} };
    tokio::time::timeout(EXCHANGE_TIMEOUT, cut).await.expect("the drain deadline cuts the stuck response");
    assert!(world.gateway_finished(EXCHANGE_TIMEOUT).await, "the gateway exits despite the stuck response");
    let released = eventually(EXCHANGE_TIMEOUT, || async { upstream.released() == 1 }).await;
    assert!(released, "the upstream connection is closed too");
}

/// Signs a user in and sends `method path` with their session; the client (keep
/// it: dropping it closes the connection), the 200 response's body and its
/// first frame.
async fn signed_in_response(
    world: &TestWorld,
    method: Method,
    path: &str,
) -> (Client<HttpConnector, Empty<Bytes>>, Incoming, Frame<Bytes>) {
    let browser = world.browser();
    browser.login().await;
    let cookie = format!("{}={}", world.session_cookie_name(), browser.session_value());
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", world.gateway_addr))
        .header("cookie", cookie)
        .header("accept", "application/octet-stream")
        .body(Empty::new())
        .unwrap();
    let response = tokio::time::timeout(EXCHANGE_TIMEOUT, client.request(request)).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = tokio::time::timeout(EXCHANGE_TIMEOUT, body.frame()).await.unwrap().unwrap().unwrap();
    (client, body, first)
}

async fn open_websocket(world: &TestWorld) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let browser = world.browser();
    browser.login().await;
    let cookie = format!("{}={}", world.session_cookie_name(), browser.session_value());
    crate::upstream::websocket_with_cookie(world, Some(cookie)).await.expect("the upgrade succeeds")
}

async fn echo_once(socket: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, text: &str) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    socket.send(Message::text(text)).await.expect("send");
    let echoed = tokio::time::timeout(EXCHANGE_TIMEOUT, socket.next()).await.expect("in time").expect("a message");
    assert_eq!(echoed.expect("not an error"), Message::text(text));
}

#[tokio::test]
async fn an_open_websocket_keeps_working_through_the_drain_and_the_gateway_waits_for_it() {
    let mut world = TestWorld::builder()
        .upstream(crate::support::upstreams::websocket_echo().await)
        .tweak(|raw| {
            raw.server.shutdown_grace = Duration::from_millis(50);
            raw.server.drain_timeout = Duration::from_secs(60);
        })
        .start()
        .await;
    let mut socket = open_websocket(&world).await;
    world.begin_shutdown();
    assert!(!world.gateway_finished(Duration::from_millis(300)).await, "the gateway waits for the open WebSocket");
    echo_once(&mut socket, "still tunnelled while draining").await;
    // Finish the closing handshake, then hang up.
    socket.close(None).await.expect("close");
    let closing = async {
        use futures_util::StreamExt;
        while socket.next().await.is_some() {}
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, closing).await.expect("the close handshake completes");
    drop(socket);
    assert!(world.gateway_finished(EXCHANGE_TIMEOUT).await, "the gateway exits once the WebSocket is closed");
}

#[tokio::test]
async fn the_drain_deadline_closes_a_websocket_that_never_ends() {
    use futures_util::StreamExt;
    let mut world = TestWorld::builder()
        .upstream(crate::support::upstreams::websocket_echo().await)
        .tweak(|raw| {
            raw.server.shutdown_grace = Duration::from_millis(50);
            raw.server.drain_timeout = Duration::from_millis(300);
        })
        .start()
        .await;
    let mut socket = open_websocket(&world).await;
    echo_once(&mut socket, "before shutdown").await;
    world.begin_shutdown();
    assert!(world.gateway_finished(EXCHANGE_TIMEOUT).await, "the drain deadline bounds the shutdown");
    let after = tokio::time::timeout(EXCHANGE_TIMEOUT, socket.next()).await.expect("the socket ends in time");
    assert!(!matches!(after, Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_)))), "{after:?}");
}
