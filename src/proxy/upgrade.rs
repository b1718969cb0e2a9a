//! Tunnelling of upgraded connections (WebSocket, or another allow-listed
//! `Upgrade` protocol).
//!
//! After the upstream answers `101 Switching Protocols` (RFC 9110 §15.2.2) and
//! the gateway relays it, both sides stop speaking HTTP: the two upgraded
//! connections are joined byte-for-byte until either side closes. Tunnels
//! outlive the HTTP connection they came from, so they are tracked here: each
//! keeps its client connection's slot (it still counts against the connection
//! limits), is closed when idle or too old, and when the session that opened
//! it ends; a graceful shutdown waits for them and, at its deadline, closes them.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderMap;
use http::header::HeaderValue;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::clock::UnixSeconds;
use crate::config::TunnelSettings;

/// The session a tunnel was opened with: ending it closes the tunnel.
#[derive(Clone, Debug)]
pub struct TunnelSession {
    pub id: String,
    /// The session's provider, which scopes `subject` and `sid`.
    pub issuer: String,
    pub subject: String,
    /// The provider's session id, if it sent one.
    pub sid: Option<String>,
    pub created_at: UnixSeconds,
    /// How long the session has left; the tunnel lives no longer.
    pub expires_in: Duration,
}

/// Keeps the client connection's place in the connection limits while held;
/// a tunnel holds it until it closes.
pub type ConnectionSlot = Arc<dyn std::any::Any + Send + Sync>;

/// The open tunnels of one gateway; cheap to clone.
#[derive(Clone, Debug)]
pub struct Tunnels {
    inner: Arc<TunnelsInner>,
}

#[derive(Debug)]
struct TunnelsInner {
    settings: TunnelSettings,
    open: AtomicUsize,
    all_closed: Notify,
    close: watch::Sender<bool>,
    next_id: AtomicU64,
    /// The open tunnels opened with a session, each with the signal that closes it.
    with_session: Mutex<HashMap<u64, (TunnelSession, Arc<Notify>)>>,
}

impl Default for Tunnels {
    fn default() -> Self {
        Self::new(TunnelSettings::default())
    }
}

impl Tunnels {
    /// No tunnels yet.
    pub fn new(settings: TunnelSettings) -> Self {
        let (close, _) = watch::channel(false);
        Self {
            inner: Arc::new(TunnelsInner {
                settings,
                open: AtomicUsize::new(0),
                all_closed: Notify::new(),
                close,
                next_id: AtomicU64::new(0),
                with_session: Mutex::new(HashMap::new()),
            }),
        }
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

    /// Closes the tunnels whose session `has_ended` (call it after recording a
    /// sign-out or a logout, asking the ended-session records).
    pub async fn close_ended(&self, has_ended: impl Fn(&TunnelSession) -> bool) {
        let with_session: Vec<(TunnelSession, Arc<Notify>)> = match self.inner.with_session.lock() {
            Ok(with_session) => with_session.values().cloned().collect(),
            Err(_) => return,
        };
        for (session, close) in with_session {
            if has_ended(&session) {
                close.notify_one();
            }
        }
    }

    /// The `Upgrade` value to forward if `headers` ask for an upgrade to an
    /// allow-listed protocol: exactly one protocol (`name` or `name/version`).
    /// Any other upgrade is not one: its headers are removed as hop-by-hop.
    pub(super) fn allowed_upgrade(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let protocol = super::headers::upgrade_protocol(headers)?;
        let text = protocol.to_str().ok()?.trim();
        let name = text.split_once('/').map_or(text, |(name, _version)| name);
        let allowed = !text.contains(',')
            && self.inner.settings.protocols.iter().any(|allowed| allowed.eq_ignore_ascii_case(name));
        allowed.then_some(protocol)
    }
}

/// Counts one tunnel while it lives, and registers it under its session.
struct Open {
    tunnels: Tunnels,
    id: u64,
    closed: Arc<Notify>,
}

impl Open {
    fn new(tunnels: &Tunnels, session: Option<TunnelSession>) -> Self {
        let inner = &tunnels.inner;
        inner.open.fetch_add(1, Ordering::SeqCst);
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let closed = Arc::new(Notify::new());
        if let Some(session) = session
            && let Ok(mut with_session) = inner.with_session.lock()
        {
            with_session.insert(id, (session, Arc::clone(&closed)));
        }
        Self { tunnels: tunnels.clone(), id, closed }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let inner = &self.tunnels.inner;
        if let Ok(mut with_session) = inner.with_session.lock() {
            with_session.remove(&self.id);
        }
        if inner.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            inner.all_closed.notify_waiters();
        }
    }
}

/// Who a tunnel belongs to.
pub struct TunnelOwner {
    /// The session that opened it, if any (none on public routes and for bearer tokens).
    pub session: Option<TunnelSession>,
    /// The client connection's place in the connection limits.
    pub slot: Option<ConnectionSlot>,
}

/// Spawns a task that joins the client's and the upstream's upgraded connections.
///
/// The client side resolves once hyper has written the 101 to the client; the
/// task ends when either side closes or fails, when no byte has passed for the
/// idle timeout, at the maximum lifetime or the session's expiry, when the
/// session ends, or when `tunnels` are closed. Failures are logged without data.
pub fn spawn_tunnel(client: OnUpgrade, upstream: OnUpgrade, tunnels: &Tunnels, owner: TunnelOwner) {
    let settings = &tunnels.inner.settings;
    let idle_timeout = settings.idle_timeout;
    let lifetime =
        owner.session.as_ref().map_or(settings.max_lifetime, |session| session.expires_in.min(settings.max_lifetime));
    let open = Open::new(tunnels, owner.session);
    let slot = owner.slot;
    let mut close = tunnels.inner.close.subscribe();
    tokio::spawn(async move {
        let _slot = slot;
        let lifetime_over = tokio::time::sleep(lifetime);
        let mut lifetime_over = std::pin::pin!(lifetime_over);
        let joined = tokio::select! {
            joined = async { tokio::try_join!(client, upstream) } => joined,
            () = &mut lifetime_over => return,
        };
        let (client, upstream) = match joined {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(upgrade_failed = %error, "upgrade did not complete");
                return;
            }
        };
        let activity = Activity::new();
        let mut client = Watched { io: TokioIo::new(client), activity: &activity };
        let mut upstream = Watched { io: TokioIo::new(upstream), activity: &activity };
        let reason = tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                match copied {
                    Ok((to_upstream, to_client)) => {
                        tracing::debug!(to_upstream, to_client, "upgraded connection closed");
                    }
                    Err(error) => {
                        tracing::debug!(kind = ?error.kind(), "upgraded connection ended with an error");
                    }
                }
                return;
            }
            _ = close.wait_for(|closing| *closing) => "shutdown_drain",
            () = open.closed.notified() => "session_ended",
            () = activity.idle_for(idle_timeout) => "idle",
            () = &mut lifetime_over => "lifetime",
        };
        tracing::info!(reason, "upgraded connection closed by the gateway");
    });
}

/// When a tunnel last carried a byte.
struct Activity {
    started: Instant,
    /// Milliseconds from `started` to the last read that returned data.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self { started: Instant::now(), last_ms: AtomicU64::new(0) }
    }

    fn touch(&self) {
        let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(elapsed, Ordering::Relaxed);
    }

    /// Completes once no byte has passed for `limit`.
    async fn idle_for(&self, limit: Duration) {
        // Each round sleeps until the deadline the last activity set; the
        // deadline only moves forward, and a round without activity ends it.
        loop {
            let last = self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let Some(deadline) = last.checked_add(limit) else { return std::future::pending().await };
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// One side of a tunnel, recording when it delivers data.
struct Watched<'a, T> {
    io: T,
    activity: &'a Activity,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<'_, T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<'_, T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn upgrade(connection: &str, protocol: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONNECTION, HeaderValue::from_str(connection).unwrap());
        headers.insert(http::header::UPGRADE, HeaderValue::from_str(protocol).unwrap());
        headers
    }

    #[test]
    fn only_one_allow_listed_protocol_is_an_upgrade() {
        let tunnels = Tunnels::default();
        for allowed in ["websocket", "WebSocket", "websocket/13"] {
            let headers = upgrade("keep-alive, Upgrade", allowed);
            assert_eq!(tunnels.allowed_upgrade(&headers).unwrap(), allowed, "{allowed}");
        }
        for refused in ["h2c", "websocketx", "websocket, h2c", "h2c, websocket", "", "web socket"] {
            assert!(tunnels.allowed_upgrade(&upgrade("upgrade", refused)).is_none(), "{refused:?}");
        }
        // Without `Connection: upgrade` it is no upgrade request at all.
        assert!(tunnels.allowed_upgrade(&upgrade("keep-alive", "websocket")).is_none());
    }
}
