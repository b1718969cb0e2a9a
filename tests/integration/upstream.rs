//! The upstream side: a dead upstream gives a clear 502 page, and WebSockets
//! are tunnelled for authenticated users only.

use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::TestWorld;
use crate::support::upstreams::{closed_port_url, websocket_echo};

#[tokio::test]
async fn dead_upstream_gives_a_502_page() {
    let world = TestWorld::builder().upstream(closed_port_url().await).start().await;
    let browser = world.browser();
    browser.login_at("/app", "alice", "alice").await;
    let reply = browser.navigate("/app").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.body);
    assert!(reply.header("content-type").is_some_and(|value| value.starts_with("text/html")));
    assert!(reply.body.contains("unavailable"), "{}", reply.body);
    let request_id = reply.header("x-request-id").expect("a request id");
    assert!(reply.body.contains(&request_id));
    assert!(browser.cookie(&world.session_cookie_name()).is_some(), "the session survives an upstream failure");
}

pub(crate) async fn websocket_with_cookie(
    world: &TestWorld,
    cookie: Option<String>,
) -> Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{}/socket", world.gateway_addr).into_client_request().expect("a ws request");
    if let Some(cookie) = cookie {
        request.headers_mut().insert("cookie", cookie.parse().expect("a cookie header"));
    }
    let stream = tokio::net::TcpStream::connect(world.gateway_addr).await.expect("connect");
    let handshake = tokio_tungstenite::client_async(request, stream);
    let (socket, _) =
        tokio::time::timeout(crate::support::http::EXCHANGE_TIMEOUT, handshake).await.expect("in time")?;
    Ok(socket)
}

#[tokio::test]
async fn websocket_is_tunnelled_for_an_authenticated_user() {
    let world = TestWorld::builder().upstream(websocket_echo().await).start().await;
    let browser = world.browser();
    browser.login().await;
    let cookie = format!("{}={}", world.session_cookie_name(), browser.session_value());
    let mut socket = websocket_with_cookie(&world, Some(cookie)).await.expect("the upgrade succeeds");
    for text in ["hello through the gateway", "second message"] {
        socket.send(Message::text(text)).await.expect("send");
        let echoed = tokio::time::timeout(crate::support::http::EXCHANGE_TIMEOUT, socket.next())
            .await
            .expect("an answer in time")
            .expect("a message")
            .expect("not an error");
        assert_eq!(echoed, Message::text(text));
    }
    socket.close(None).await.expect("close");
}

#[tokio::test]
async fn websocket_without_a_session_is_refused() {
    let world = TestWorld::builder().upstream(websocket_echo().await).start().await;
    let error = websocket_with_cookie(&world, None).await.expect_err("no upgrade without a session");
    match error {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}
