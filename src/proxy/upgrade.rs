//! Tunnelling of upgraded connections (WebSocket and other `Upgrade` protocols).
//!
//! After the upstream answers `101 Switching Protocols` (RFC 9110 §15.2.2) and
//! the gateway relays it, both sides stop speaking HTTP: the two upgraded
//! connections are joined byte-for-byte until either side closes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Spawns a task that joins the client's and the upstream's upgraded connections.
///
/// The client side resolves once hyper has written the 101 to the client; the
/// task ends when either side closes or fails. Failures are logged without data.
pub fn spawn_tunnel(client: OnUpgrade, upstream: OnUpgrade) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(upgrade_failed = %error, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((to_upstream, to_client)) => {
                tracing::debug!(to_upstream, to_client, "upgraded connection closed");
            }
            Err(error) => {
                tracing::debug!(kind = ?error.kind(), "upgraded connection ended with an error");
            }
        }
    });
}
