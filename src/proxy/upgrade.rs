//! Tunnelling of upgraded connections (WebSocket and other `Upgrade` protocols).
//!
//! After the upstream answers `101 Switching Protocols` (RFC 9110 §15.2.2) and
//! the gateway relays it, both sides stop speaking HTTP: the two upgraded
//! connections are joined byte-for-byte until either side closes. Tunnels
//! outlive the HTTP connection they came from, so they are tracked here: a
//! graceful shutdown waits for them and, at its deadline, closes them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::{Notify, watch};

/// The open tunnels of one gateway; cheap to clone.
#[derive(Clone, Debug)]
pub struct Tunnels {
    inner: Arc<TunnelsInner>,
}

#[derive(Debug)]
struct TunnelsInner {
    open: AtomicUsize,
    all_closed: Notify,
    close: watch::Sender<bool>,
}

impl Default for Tunnels {
    fn default() -> Self {
        Self::new()
    }
}

impl Tunnels {
    /// No tunnels yet.
    pub fn new() -> Self {
        let (close, _) = watch::channel(false);
        Self { inner: Arc::new(TunnelsInner { open: AtomicUsize::new(0), all_closed: Notify::new(), close }) }
    }

    /// How many tunnels are open now.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::SeqCst)
    }

    /// Completes once no tunnel is open.
    pub async fn all_closed(&self) {
        loop {
            // Register interest before checking, so a close in between is not missed.
            let notified = self.inner.all_closed.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Closes every open tunnel (the drain deadline has passed).
    pub fn close_all(&self) {
        self.inner.close.send_replace(true);
    }
}

/// Counts one tunnel while it lives.
struct Open(Tunnels);

impl Open {
    fn new(tunnels: &Tunnels) -> Self {
        tunnels.inner.open.fetch_add(1, Ordering::SeqCst);
        Self(tunnels.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if self.0.inner.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.inner.all_closed.notify_waiters();
        }
    }
}

/// Spawns a task that joins the client's and the upstream's upgraded connections.
///
/// The client side resolves once hyper has written the 101 to the client; the
/// task ends when either side closes or fails, or when `tunnels` are closed.
/// Failures are logged without data.
pub fn spawn_tunnel(client: OnUpgrade, upstream: OnUpgrade, tunnels: &Tunnels) {
    let open = Open::new(tunnels);
    let mut close = tunnels.inner.close.subscribe();
    tokio::spawn(async move {
        let _open = open;
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(upgrade_failed = %error, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match copied {
                Ok((to_upstream, to_client)) => {
                    tracing::debug!(to_upstream, to_client, "upgraded connection closed");
                }
                Err(error) => {
                    tracing::debug!(kind = ?error.kind(), "upgraded connection ended with an error");
                }
            },
            _ = close.wait_for(|closing| *closing) => {
                tracing::info!("upgraded connection closed at the end of the shutdown drain");
            }
        }
    });
}
