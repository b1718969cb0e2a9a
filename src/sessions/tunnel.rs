//! The session an upgraded connection (WebSocket) is opened with, so that
//! signing out, a back-channel logout or the session's expiry closes it.

use std::time::Duration;

use http::HeaderMap;

use super::Sessions;
use super::shared::Backend;
use crate::proxy::TunnelSession;
use crate::session::data::{SessionData, SessionHandle};

impl Sessions {
    /// The session of the request's session cookie (already authenticated),
    /// opened again: only upgrade requests ask, so other requests copy nothing.
    pub(crate) fn tunnel_session(&self, headers: &HeaderMap, provider: usize) -> Option<TunnelSession> {
        let jar = self.providers.get(provider)?;
        let cookie = jar.cookies.read_session(headers)?;
        let purpose = self.backend.cookie_purpose();
        let (json, _) = self.keys.open(purpose, jar.cookies.session_name(), cookie.sealed()).ok()?;
        let (id, subject, sid, created_at, expires_at) = match &self.backend {
            Backend::Store(_) => {
                let handle: SessionHandle = serde_json::from_slice(&json).ok()?;
                (handle.id, handle.sub, handle.sid, handle.created_at, handle.expires_at)
            }
            Backend::Cookie => {
                let data: SessionData = serde_json::from_slice(&json).ok()?;
                (data.id, data.sub, data.sid, data.created_at, data.expires_at)
            }
        };
        let left = u64::try_from(expires_at.saturating_sub(self.clock.now())).unwrap_or(0);
        let issuer = jar.oidc.issuer.clone();
        Some(TunnelSession { id, issuer, subject, sid, created_at, expires_in: Duration::from_secs(left) })
    }
}
