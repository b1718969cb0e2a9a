//! Slow and numerous clients: a client trickling its request head is cut off
//! by the header-read timeout, and the connection cap refuses connections
//! beyond it until one is released. Short configured timeouts, raw sockets,
//! bounded loops; the assertions are about what happened, not how long it took.

use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::connection::served_connection;
use crate::support::http::EXCHANGE_TIMEOUT;
use crate::support::{TestWorld, eventually, raw_exchange};

/// Sends `head` one byte every `pace` until the server closes the connection
/// (or answers); returns how many bytes went out before that.
async fn trickle(stream: &mut TcpStream, head: &[u8], pace: Duration) -> usize {
    let (mut reader, mut writer) = stream.split();
    let mut sent = 0;
    let mut ticks = tokio::time::interval(pace);
    let mut buffer = [0u8; 1024];
    for byte in head {
        tokio::select! {
            _ = ticks.tick() => {
                if writer.write_all(std::slice::from_ref(byte)).await.is_err() {
                    return sent;
                }
                sent += 1;
            }
            read = reader.read(&mut buffer) => {
                // EOF, a reset or an answer (408/400): the server has cut us off.
                let _ = read;
                return sent;
            }
        }
    }
    sent
}

#[tokio::test]
async fn a_client_trickling_its_head_is_cut_off() {
    let world =
        TestWorld::builder().tweak(|raw| raw.server.header_read_timeout = Duration::from_millis(500)).start().await;
    let mut head = b"GET /slowloris HTTP/1.1\r\nHost: x\r\n".to_vec();
    head.extend(b"X-Padding: ".iter().chain([b'a'; 400].iter()));
    head.extend(b"\r\n\r\n");
    let mut stream = TcpStream::connect(world.gateway_addr).await.unwrap();
    // One byte every 50 ms would take over 20 s for the whole head.
    let sent = tokio::time::timeout(Duration::from_secs(60), trickle(&mut stream, &head, Duration::from_millis(50)))
        .await
        .expect("the trickle ends");
    assert!(sent < head.len(), "the gateway let a trickling client send its whole head ({sent} bytes)");
    // A prompt client is served as usual.
    let reply = raw_exchange(world.gateway_addr, "GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(reply.status, StatusCode::OK);
}

/// Found by this test: hyper-util sniffs the HTTP version from the first
/// bytes before hyper's header-read timeout starts, so a client that connected
/// and sent nothing held a connection slot forever.
#[tokio::test]
async fn a_silent_connection_is_closed() {
    let world =
        TestWorld::builder().tweak(|raw| raw.server.header_read_timeout = Duration::from_millis(300)).start().await;
    let mut silent = TcpStream::connect(world.gateway_addr).await.unwrap();
    let mut buffer = [0u8; 64];
    let closed = tokio::time::timeout(EXCHANGE_TIMEOUT, silent.read(&mut buffer)).await;
    assert!(closed.is_ok(), "a silent connection is closed by the gateway");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let world =
        TestWorld::builder().tweak(|raw| raw.server.header_read_timeout = Duration::from_millis(300)).start().await;
    let mut stream = TcpStream::connect(world.gateway_addr).await.unwrap();
    stream.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    // Reads the answer, then waits for the close that the idle timeout brings.
    let closed = tokio::time::timeout(EXCHANGE_TIMEOUT, stream.read_to_end(&mut answer)).await;
    assert!(closed.is_ok(), "an idle keep-alive connection is closed by the gateway");
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
}

#[tokio::test]
async fn the_connection_cap_refuses_extra_connections_until_one_is_released() {
    let world = TestWorld::builder().tweak(|raw| raw.server.max_connections = 2).start().await;
    let addr = world.gateway_addr;
    // Two idle connections hold both permits (each proven accepted by a request).
    let mut held = vec![served_connection(addr).await, served_connection(addr).await];
    // A third is accepted by the kernel but closed at once by the gateway.
    assert_closed_unserved(addr).await;
    drop(held.pop());
    assert!(is_served_again(addr).await, "a released permit admits a new connection");
}

/// A new connection is accepted by the kernel but closed by the gateway without an answer.
async fn assert_closed_unserved(addr: std::net::SocketAddr) {
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let _ = extra.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, extra.read_to_end(&mut answer)).await.expect("closed in time");
    assert!(answer.is_empty(), "the extra connection was served: {}", String::from_utf8_lossy(&answer));
}

/// Whether a new connection is served again within the exchange timeout
/// (the gateway notices a released connection asynchronously).
async fn is_served_again(addr: std::net::SocketAddr) -> bool {
    eventually(EXCHANGE_TIMEOUT, || async move {
        let Ok(mut stream) = TcpStream::connect(addr).await else { return false };
        let _ = stream.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, stream.read_to_end(&mut answer)).await;
        answer.starts_with(b"HTTP/1.1 200")
    })
    .await
}

#[tokio::test]
async fn the_per_ip_cap_refuses_a_clients_extra_connections_until_one_is_released() {
    let world = TestWorld::builder().tweak(|raw| raw.server.max_connections_per_ip = 2).start().await;
    let addr = world.gateway_addr;
    let mut held = vec![served_connection(addr).await, served_connection(addr).await];
    // The same client's third is closed at once, though the total limit is far.
    assert_closed_unserved(addr).await;
    drop(held.pop());
    assert!(is_served_again(addr).await, "a released connection admits a new one from the same client");
}
