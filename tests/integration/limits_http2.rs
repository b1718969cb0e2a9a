//! HTTP/2 limits, read straight off the wire: the gateway's first SETTINGS
//! frame announces the configured concurrent-stream and header-list limits
//! (h2c with prior knowledge over a raw socket).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::TestWorld;
use crate::support::http::EXCHANGE_TIMEOUT;

const SETTINGS: u8 = 0x4;
const MAX_CONCURRENT_STREAMS: u16 = 0x3;
const MAX_HEADER_LIST_SIZE: u16 = 0x6;

/// Sends the client preface and an empty SETTINGS frame; returns the
/// server's first SETTINGS frame as `(id, value)` pairs.
async fn server_settings(addr: std::net::SocketAddr) -> Vec<(u16, u32)> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    stream.write_all(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0]).await.unwrap();
    let read = async {
        loop {
            let mut header = [0u8; 9];
            stream.read_exact(&mut header).await.unwrap();
            let length = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
            let mut payload = vec![0u8; length];
            stream.read_exact(&mut payload).await.unwrap();
            // The first non-ACK SETTINGS frame is the server's.
            if header[3] == SETTINGS && header[4] & 0x1 == 0 {
                return payload
                    .chunks_exact(6)
                    .map(|entry| {
                        (
                            u16::from_be_bytes([entry[0], entry[1]]),
                            u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]),
                        )
                    })
                    .collect::<Vec<_>>();
            }
        }
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, read).await.expect("SETTINGS in time")
}

#[tokio::test]
async fn the_configured_http2_limits_are_announced() {
    let world = TestWorld::builder()
        .tweak(|raw| {
            raw.server.max_concurrent_streams = 7;
            raw.server.max_header_bytes = 16 * 1024;
            raw.server.header_read_timeout = Duration::from_secs(5);
        })
        .start()
        .await;
    let settings = server_settings(world.gateway_addr).await;
    let value = |id: u16| settings.iter().find(|(setting, _)| *setting == id).map(|(_, value)| *value);
    assert_eq!(value(MAX_CONCURRENT_STREAMS), Some(7), "{settings:?}");
    assert_eq!(value(MAX_HEADER_LIST_SIZE), Some(16 * 1024), "{settings:?}");
}

/// An open h2c connection: its sender (dropping it would close the
/// connection from the client's side) and its task, which ends when the
/// connection closes.
type H2c = (hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>, tokio::task::JoinHandle<()>);

/// Opens an h2c connection (prior knowledge) and sends one `GET /ping`.
async fn h2c_after_one_request(addr: std::net::SocketAddr) -> H2c {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.expect("h2 handshake");
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = http::Request::get(format!("http://{addr}/ping")).body(Empty::<Bytes>::new()).unwrap();
    let exchange = async {
        let response = sender.send_request(request).await.expect("a response");
        let status = response.status();
        let _ = response.into_body().collect().await;
        status
    };
    assert_eq!(tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await.expect("in time"), http::StatusCode::OK);
    (sender, task)
}

/// Found by this test: an idle HTTP/2 connection was never closed (hyper's
/// keep-alive pings kept it alive), so idle h2c clients could hold every
/// connection slot.
#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let world =
        TestWorld::builder().tweak(|raw| raw.server.http2_idle_timeout = Duration::from_millis(300)).start().await;
    let (_sender, connection) = h2c_after_one_request(world.gateway_addr).await;
    tokio::time::timeout(EXCHANGE_TIMEOUT, connection).await.expect("the idle connection is closed").unwrap();
}

#[tokio::test]
async fn an_http2_connection_is_closed_at_its_maximum_age() {
    let world =
        TestWorld::builder().tweak(|raw| raw.server.max_connection_age = Duration::from_millis(500)).start().await;
    let (_sender, connection) = h2c_after_one_request(world.gateway_addr).await;
    // The idle timeout (a minute by default) cannot be what closes it first.
    tokio::time::timeout(EXCHANGE_TIMEOUT, connection).await.expect("the old connection is closed").unwrap();
}
