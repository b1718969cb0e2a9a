//! Upgraded connections (WebSockets) stay bounded: a tunnel counts against
//! `server.max_connections` until it closes, is closed when idle and when its
//! session is signed out, and only allow-listed `Upgrade` protocols (never
//! `h2c`) are tunnelled. Real WebSocket client, real upstreams on loopback.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::connection::served_connection;
use crate::support::http::EXCHANGE_TIMEOUT;
use crate::support::upstreams::{RecordingUpstream, websocket_echo};
use crate::support::{TestWorld, eventually, raw_exchange};
use crate::upstream::websocket_with_cookie;

type Socket = WebSocketStream<TcpStream>;

fn session_cookie(world: &TestWorld, browser: &crate::support::Browser) -> String {
    format!("{}={}", world.session_cookie_name(), browser.session_value())
}

async fn echo_once(socket: &mut Socket, text: &str) {
    socket.send(Message::text(text)).await.expect("send");
    let echoed = tokio::time::timeout(EXCHANGE_TIMEOUT, socket.next()).await.expect("in time").expect("a message");
    assert_eq!(echoed.expect("not an error"), Message::text(text));
}

/// Waits (bounded) for the gateway to end the tunnel: the stream ends, fails,
/// or delivers a close frame; never another text message.
async fn ended_by_the_gateway(socket: &mut Socket) -> bool {
    let ending = async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                Some(Ok(Message::Text(_) | Message::Binary(_))) => return false,
                Some(Ok(_)) => {}
            }
        }
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, ending).await.unwrap_or(false)
}

/// Whether a fresh connection gets `GET /ping` answered (or is closed unanswered).
async fn served(addr: std::net::SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr).await else { return false };
    let _ = stream.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, stream.read_to_end(&mut answer)).await;
    answer.starts_with(b"HTTP/1.1 200")
}

/// Waits (bounded) until the gateway serves no HTTP connection (tunnels are not HTTP connections).
async fn no_http_connection_open(world: &TestWorld) -> bool {
    eventually(EXCHANGE_TIMEOUT, || async { world.metrics().contains("portcullis_open_connections 0\n") }).await
}

/// Found by this test: a tunnel dropped its connection permit when its HTTP
/// connection ended, so WebSockets were not counted against the limit.
#[tokio::test]
async fn a_websocket_counts_against_the_connection_limit_until_it_closes() {
    let world =
        TestWorld::builder().upstream(websocket_echo().await).tweak(|raw| raw.server.max_connections = 2).start().await;
    let addr = world.gateway_addr;
    let cookie = {
        let browser = world.browser();
        browser.login().await;
        session_cookie(&world, &browser)
        // The browser and its kept-alive connections go here.
    };
    assert!(no_http_connection_open(&world).await, "the browser's connections are closed");
    let mut socket = websocket_with_cookie(&world, Some(cookie)).await.expect("upgraded");
    echo_once(&mut socket, "holding a permit").await;
    // The upgrade's HTTP connection is over: only the tunnel remains.
    assert!(no_http_connection_open(&world).await, "the upgraded HTTP connection has ended");

    let held = served_connection(addr).await;
    assert!(!served(addr).await, "a third connection was served while a WebSocket and a connection held both permits");
    echo_once(&mut socket, "still open").await;

    socket.close(None).await.expect("close");
    drop(socket);
    assert!(eventually(EXCHANGE_TIMEOUT, || served(addr)).await, "the closed WebSocket's permit is released");
    drop(held);
}

#[tokio::test]
async fn an_idle_websocket_is_closed() {
    let world = TestWorld::builder()
        .upstream(websocket_echo().await)
        .tweak(|raw| raw.proxy.upgrade_idle_timeout = Duration::from_millis(300))
        .start()
        .await;
    let browser = world.browser();
    browser.login().await;
    let mut socket = websocket_with_cookie(&world, Some(session_cookie(&world, &browser))).await.expect("upgraded");
    echo_once(&mut socket, "then silence").await;
    assert!(ended_by_the_gateway(&mut socket).await, "the idle WebSocket was not closed");
}

#[tokio::test]
async fn signing_out_closes_the_sessions_websocket() {
    let world = TestWorld::builder().upstream(websocket_echo().await).start().await;
    let browser = world.browser();
    browser.login().await;
    let mut socket = websocket_with_cookie(&world, Some(session_cookie(&world, &browser))).await.expect("upgraded");
    echo_once(&mut socket, "before signing out").await;

    let reply = browser.navigate("/oauth2/sign_out").await;
    assert_eq!(reply.status, StatusCode::FOUND, "{}", reply.body);
    assert!(ended_by_the_gateway(&mut socket).await, "the WebSocket outlived its session");
}

#[tokio::test]
async fn signing_out_leaves_another_sessions_websocket_open() {
    let world = TestWorld::builder().upstream(websocket_echo().await).start().await;
    let (alice, other) = (world.browser(), world.browser());
    alice.login().await;
    other.login().await;
    let mut socket = websocket_with_cookie(&world, Some(session_cookie(&world, &other))).await.expect("upgraded");

    let reply = alice.navigate("/oauth2/sign_out").await;
    assert_eq!(reply.status, StatusCode::FOUND, "{}", reply.body);
    echo_once(&mut socket, "another session's sign-out is not mine").await;
}

/// Sends an upgrade request for `protocol` to `/up`; returns the status and
/// the headers the upstream saw.
async fn upgrade_to(protocol: &str) -> (StatusCode, http::HeaderMap) {
    let upstream = RecordingUpstream::start().await;
    let world = TestWorld::builder().upstream(upstream.url.clone()).start().await;
    let browser = world.browser();
    browser.login().await;
    let request = format!(
        "GET /up HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\nAccept: application/json\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: {protocol}\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
        world.gateway_addr,
        session_cookie(&world, &browser)
    );
    let reply = raw_exchange(world.gateway_addr, &request).await;
    let seen = upstream.seen();
    let recorded = seen.iter().find(|recorded| recorded.path == "/up").expect("forwarded");
    (reply.status, recorded.headers.clone())
}

#[tokio::test]
async fn h2c_and_unlisted_upgrades_are_not_tunnelled() {
    for protocol in ["h2c", "x-custom-tunnel", "websocket, h2c"] {
        let (status, seen) = upgrade_to(protocol).await;
        assert_eq!(status, StatusCode::OK, "{protocol}: forwarded as a plain request");
        assert!(seen.get(http::header::UPGRADE).is_none(), "{protocol}: the upstream was asked to upgrade: {seen:?}");
        assert!(seen.get("http2-settings").is_none(), "{protocol}: {seen:?}");
    }
}

#[tokio::test]
async fn a_back_channel_logout_closes_the_users_websocket() {
    let world = TestWorld::builder().upstream(websocket_echo().await).start().await;
    let browser = world.browser();
    browser.login_at("/", "alice", "alice").await;
    let mut socket = websocket_with_cookie(&world, Some(session_cookie(&world, &browser))).await.expect("upgraded");
    echo_once(&mut socket, "before the provider logs alice out").await;

    let token = world.provider.backchannel_logout_token("alice", None).expect("a logout token");
    let reply = world
        .browser()
        .send(
            http::Method::POST,
            "/oauth2/backchannel_logout",
            &[("content-type", "application/x-www-form-urlencoded")],
            bytes::Bytes::from(format!("logout_token={token}")),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(ended_by_the_gateway(&mut socket).await, "the WebSocket outlived the provider's logout");
}

#[tokio::test]
async fn a_websocket_is_closed_at_its_maximum_lifetime() {
    let world = TestWorld::builder()
        .upstream(websocket_echo().await)
        .tweak(|raw| raw.proxy.upgrade_max_lifetime = Duration::from_millis(500))
        .start()
        .await;
    let browser = world.browser();
    browser.login().await;
    let mut socket = websocket_with_cookie(&world, Some(session_cookie(&world, &browser))).await.expect("upgraded");
    echo_once(&mut socket, "while young").await;
    // The idle timeout (ten minutes by default) cannot be what closes it.
    assert!(ended_by_the_gateway(&mut socket).await, "the WebSocket outlived its maximum lifetime");
}
