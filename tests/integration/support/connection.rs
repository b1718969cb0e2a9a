//! One keep-alive HTTP/1.1 connection to the gateway, for tests about what
//! a connection keeps between its requests.

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::http::EXCHANGE_TIMEOUT;
use super::{Reply, TestWorld};

/// One keep-alive HTTP/1.1 connection to the gateway: every request goes over it.
pub struct OneConnection {
    sender: http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl OneConnection {
    pub async fn open(world: &TestWorld) -> Self {
        Self::open_at(world.gateway_addr).await
    }

    /// A connection to the gateway listening at `addr`.
    pub async fn open_at(addr: std::net::SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect to the gateway");
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.expect("an HTTP/1.1 handshake");
        tokio::spawn(connection);
        Self { sender, host: addr.to_string() }
    }

    /// An API GET carrying exactly `cookie` (a `name=value` pair).
    pub async fn get(&mut self, path: &str, cookie: &str) -> Reply {
        let request = Request::get(path)
            .header(header::HOST, &self.host)
            .header(header::ACCEPT, "application/json")
            .header(header::COOKIE, cookie)
            .body(Full::new(Bytes::new()))
            .expect("a valid request");
        let exchange = async {
            self.sender.ready().await.expect("the connection stays open");
            let response = self.sender.send_request(request).await.expect("a response on the same connection");
            let (parts, body) = response.into_parts();
            let body = body.collect().await.expect("the response body").to_bytes();
            Reply { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() }
        };
        tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await.expect("the gateway answers")
    }
}

/// Opens a raw connection to `addr` and proves it served with a keep-alive
/// `GET /ping`; the connection stays open, holding its place in the limits.
pub async fn served_connection(addr: std::net::SocketAddr) -> TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.expect("connect to the gateway");
    stream.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("send");
    let mut buffer = [0u8; 512];
    let read = tokio::time::timeout(EXCHANGE_TIMEOUT, stream.read(&mut buffer))
        .await
        .expect("answered in time")
        .expect("read the answer");
    assert!(buffer.get(..read).is_some_and(|answer| answer.starts_with(b"HTTP/1.1 200")), "not served");
    stream
}
