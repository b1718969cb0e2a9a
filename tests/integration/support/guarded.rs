//! A deployment for attack tests: a logged-in browser in front of a
//! [`CountingUpstream`], so every case can assert that nothing reached the
//! upstream, and raw-socket helpers that send exact bytes with the session.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::browser::Browser;
use super::http::{EXCHANGE_TIMEOUT, Reply, parse_raw_response};
use super::upstreams::CountingUpstream;
use super::world::{TestWorld, WorldBuilder};

/// A world whose upstream only counts, with alice logged in.
pub struct Guarded {
    pub world: TestWorld,
    pub upstream: CountingUpstream,
    pub browser: Browser,
}

impl Guarded {
    /// Starts a default world in front of a counting upstream and logs alice in.
    pub async fn start() -> Self {
        Self::start_with(|builder| builder).await
    }

    /// As [`Guarded::start`], with the world builder adjusted first.
    pub async fn start_with(adjust: impl FnOnce(WorldBuilder) -> WorldBuilder) -> Self {
        let upstream = CountingUpstream::start().await;
        let world = adjust(TestWorld::builder().upstream(upstream.url.clone())).start().await;
        let browser = world.browser();
        browser.login().await;
        assert_eq!(upstream.requests(), 0, "logging in does not reach the upstream");
        Self { world, upstream, browser }
    }

    /// `name=value` of the live session cookie.
    pub fn session_pair(&self) -> String {
        format!("{}={}", self.world.session_cookie_name(), self.browser.session_value())
    }

    /// The `Host` line value.
    pub fn host(&self) -> String {
        self.world.gateway_addr.to_string()
    }

    /// Sends exact request bytes on a fresh connection; returns the first
    /// response, or `None` if the gateway closed without answering.
    pub async fn raw(&self, request: &[u8]) -> Option<Reply> {
        raw_first_response(self.world.gateway_addr, request).await
    }

    /// Fails the test if any request reached the upstream.
    pub fn assert_upstream_untouched(&self, what: &str) {
        assert_eq!(self.upstream.requests(), 0, "{what} reached the upstream");
    }
}

/// Sends `request` and reads until the server closes or [`EXCHANGE_TIMEOUT`];
/// parses the first response head (with whatever body followed).
pub async fn raw_first_response(addr: std::net::SocketAddr, request: &[u8]) -> Option<Reply> {
    let bytes = raw_bytes(addr, request, EXCHANGE_TIMEOUT).await;
    if bytes.windows(4).any(|window| window == b"\r\n\r\n") { Some(parse_raw_response(&bytes)) } else { None }
}

/// Sends `request` and collects everything the server sends until it closes
/// (or `limit` passes, whichever is first).
pub async fn raw_bytes(addr: std::net::SocketAddr, request: &[u8], limit: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect to the gateway");
    // The server may answer and close before the whole request is written.
    let _ = stream.write_all(request).await;
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(limit, async {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => bytes.extend_from_slice(&buffer[..read]),
            }
        }
    })
    .await;
    bytes
}
