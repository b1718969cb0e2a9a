//! Authenticating a request from its session cookie: the hot path. One AEAD
//! open, one cache lookup; no token parsing and no provider call.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue};

use super::Gateway;
use super::callback::active_session;
use crate::session::cache::ActiveSession;
use crate::session::cookies::single_cookie_value;
use crate::session::data::{SESSION_FORMAT, SessionData};
use crate::session::seal::Purpose;

/// An authenticated user.
#[derive(Debug)]
pub(super) struct AuthenticatedSession {
    pub subject: String,
    pub active: Arc<ActiveSession>,
}

/// The result of authentication.
#[derive(Debug, Default)]
pub(super) struct Authentication {
    pub session: Option<AuthenticatedSession>,
    /// A cookie was presented but is no good: clear it.
    pub clear_cookie: bool,
    /// The session cookie re-sealed (newest key), to send back.
    pub reissued_cookie: Option<HeaderValue>,
}

impl Gateway {
    pub(super) async fn authenticate(&self, headers: &HeaderMap) -> Authentication {
        let name = self.cookies.session_name();
        let Some(sealed) = single_cookie_value(headers, name) else {
            return Authentication::default();
        };
        let invalid = Authentication { clear_cookie: true, ..Authentication::default() };
        let Ok((json, sealed_with_old_key)) = self.keys.open(Purpose::Session, name, sealed) else {
            return invalid;
        };
        let Ok(data) = serde_json::from_slice::<SessionData>(&json) else {
            return invalid;
        };
        let now = self.clock.now();
        if data.v != SESSION_FORMAT || data.iss != self.config.oidc.issuer || data.expires_at <= now {
            return invalid;
        }
        if data.access_expires_at <= now {
            // Refreshing comes with the session lifecycle work; until then an
            // expired access token means signing in again.
            return invalid;
        }
        let active = match self.cache.get(&data.id, data.access_expires_at).await {
            Some(active) => active,
            None => {
                let Some(active) = active_session(&data) else { return invalid };
                let active = Arc::new(active);
                self.cache.insert(data.id.clone(), Arc::clone(&active)).await;
                active
            }
        };
        let reissued_cookie = if sealed_with_old_key { self.seal_session(&data) } else { None };
        Authentication {
            session: Some(AuthenticatedSession { subject: data.sub, active }),
            clear_cookie: false,
            reissued_cookie,
        }
    }
}
