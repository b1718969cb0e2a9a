//! The session cookie a client connection last authenticated with, kept
//! opened for that connection's next requests.
//!
//! A client sends the same session cookie with every request on a keep-alive
//! connection (over HTTP/2 a browser sends all its requests on one). Opening
//! it (base64, AES-GCM, JSON) was about a quarter of the gateway's CPU per
//! proxied request. A cookie byte for byte equal to one already opened has the
//! same authenticated contents, so only what does not come from the cookie is
//! checked again on every request: the clock (expiry, idle timeout), sign-out
//! and back-channel logout (the records are asked again whenever their
//! generation has moved since the session was last found not ended), and the
//! token cache.
//!
//! One slot per connection: memory is bounded by the connections (about the
//! cookie's size each) and released with them. The comparison is constant
//! time, because one connection can carry several users' requests (behind a
//! load balancer), and a session sealed with an older key is never kept (its
//! request re-seals it).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use http::HeaderValue;

use crate::authz::Principal;
use crate::clock::UnixSeconds;
use crate::session::cookies::SessionCookie;

/// What authentication reads from an opened session cookie: everything the
/// checks and the forwarded request need, none of it derived from anything
/// but the cookie's authenticated contents.
pub(super) struct OpenedSession {
    /// The index of the provider whose cookie it was opened from.
    pub provider: usize,
    /// The session id: the token-cache key and the unit of revocation.
    pub id: String,
    /// The provider's session id, for back-channel logout.
    pub sid: Option<String>,
    pub created_at: UnixSeconds,
    pub last_seen_at: UnixSeconds,
    pub expires_at: UnixSeconds,
    pub access_expires_at: UnixSeconds,
    /// When the access token is due for refresh (see `Sessions::refresh_at`).
    pub refresh_at: UnixSeconds,
    pub has_refresh_token: bool,
    pub principal: Arc<Principal>,
    /// `Bearer <access token>`, marked sensitive.
    pub access_authorization: HeaderValue,
    /// Copied only when some upstream receives it.
    pub id_token: Option<String>,
    /// The ended-sessions generation at which this session was last found
    /// not ended (or `NEVER_CHECKED`); while it is current the check is skipped.
    pub not_ended_at: AtomicU64,
}

impl std::fmt::Debug for OpenedSession {
    // Never the tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedSession")
            .field("sub", &self.principal.subject)
            .field("expires_at", &self.expires_at)
            .field("access_expires_at", &self.access_expires_at)
            .finish_non_exhaustive()
    }
}

/// An opened session and the cookie parts it was opened from.
struct Remembered {
    parts: Box<[Box<[u8]>]>,
    opened: Arc<OpenedSession>,
}

impl Remembered {
    /// Whether `cookie` is, byte for byte, the one this was opened from; in
    /// time independent of where the bytes differ.
    fn is_opened_from(&self, cookie: &SessionCookie<'_>) -> bool {
        let presented = cookie.parts();
        // Lengths are not secret: they follow from the session's size.
        presented.len() == self.parts.len()
            && presented.iter().zip(self.parts.iter()).fold(true, |same, (presented, kept)| {
                let equal = aws_lc_rs::constant_time::verify_slices_are_equal(presented, kept).is_ok();
                same & equal
            })
    }
}

/// The session cookie a connection last authenticated with, opened; shared
/// by the connection's requests.
#[derive(Default)]
pub(crate) struct RecentSession {
    slot: Mutex<Option<Arc<Remembered>>>,
}

impl RecentSession {
    /// An empty slot, for a new connection.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The opened session if `cookie` is the one last remembered here.
    pub(super) fn get(&self, cookie: &SessionCookie<'_>) -> Option<Arc<OpenedSession>> {
        // Compared outside the lock: an HTTP/2 connection's streams share it.
        let remembered = self.slot.lock().ok()?.clone()?;
        remembered.is_opened_from(cookie).then(|| Arc::clone(&remembered.opened))
    }

    /// Remembers `opened` as what `cookie` opens to, in place of anything before.
    pub(super) fn remember(&self, cookie: &SessionCookie<'_>, opened: Arc<OpenedSession>) {
        let parts = cookie.parts().iter().map(|part| Box::<[u8]>::from(*part)).collect();
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(Arc::new(Remembered { parts, opened }));
        }
    }

    /// Forgets the remembered session (it failed a check, or was signed out).
    pub(super) fn forget(&self) {
        if let Ok(mut slot) = self.slot.lock() {
            *slot = None;
        }
    }
}

impl std::fmt::Debug for RecentSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let holds = self.slot.lock().is_ok_and(|slot| slot.is_some());
        f.debug_struct("RecentSession").field("holds_session", &holds).finish()
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, header};

    use super::*;
    use crate::session::cookies::CookieJarSpec;

    fn opened(id: &str) -> Arc<OpenedSession> {
        Arc::new(OpenedSession {
            provider: 0,
            id: id.to_owned(),
            sid: None,
            created_at: 0,
            last_seen_at: 0,
            expires_at: 100,
            access_expires_at: 50,
            refresh_at: 40,
            has_refresh_token: false,
            principal: Arc::new(Principal {
                subject: id.to_owned(),
                email: None,
                email_verified: false,
                name: None,
                preferred_username: None,
                groups: Vec::new(),
            }),
            access_authorization: HeaderValue::from_static("Bearer t"),
            not_ended_at: AtomicU64::new(crate::session::ended::NEVER_CHECKED),
            id_token: None,
        })
    }

    fn headers(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::try_from(cookie).unwrap());
        headers
    }

    #[test]
    fn only_the_same_parts_byte_for_byte_get_the_remembered_session() {
        let spec = CookieJarSpec::new("_p", false);
        let recent = RecentSession::new();
        let sent = headers("a=1; _p=abcdef; _p_1=ghij");
        let cookie = spec.read_session(&sent).unwrap();
        assert!(recent.get(&cookie).is_none(), "nothing remembered yet");
        recent.remember(&cookie, opened("s1"));
        assert_eq!(recent.get(&cookie).unwrap().id, "s1");
        // The same parts in another header layout are the same cookie.
        let same = headers("_p_1=ghij; _p=abcdef");
        assert_eq!(recent.get(&spec.read_session(&same).unwrap()).unwrap().id, "s1");

        for other in [
            "_p=abcdeF; _p_1=ghij",
            "_p=abcdef; _p_1=ghiJ",
            "_p=abcdef",
            "_p=abcdefg; _p_1=hij",
            "_p=abcdef; _p_1=ghij; _p_2=k",
        ] {
            let other_headers = headers(other);
            assert!(recent.get(&spec.read_session(&other_headers).unwrap()).is_none(), "{other}");
        }

        recent.remember(&spec.read_session(&headers("_p=xyz")).unwrap(), opened("s2"));
        assert!(recent.get(&cookie).is_none(), "one slot: the newer session replaced it");
        recent.forget();
        assert!(recent.get(&spec.read_session(&headers("_p=xyz")).unwrap()).is_none());
    }
}
