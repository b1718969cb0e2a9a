//! The in-memory token cache (moka): per session id, the headers to inject,
//! prepared once, so an authenticated request does no token parsing and no
//! provider call. The cookie stays the durable truth; a miss rebuilds from it.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use crate::clock::UnixSeconds;
use crate::proxy::IdentityHeaders;

/// A live session as the hot path needs it.
#[derive(Debug)]
pub struct ActiveSession {
    pub identity: IdentityHeaders,
    /// What authorization rules and `/oauth2/userinfo` see.
    pub principal: crate::authz::Principal,
    /// `Bearer <ID token>`, for upstreams configured with `token = "id"`.
    pub id_token_authorization: Option<http::HeaderValue>,
    pub access_expires_at: UnixSeconds,
}

impl ActiveSession {
    /// The cache entry for a session: headers and principal prepared once, so
    /// the hot path only clones them. The ID token's header is prepared only
    /// `with_id_token` (some upstream receives it): it can be kilobytes per session.
    /// `None` if a value cannot be a header.
    pub fn from_session(data: &crate::session::data::SessionData, with_id_token: bool) -> Option<Self> {
        let identity = IdentityHeaders::new(
            &data.sub,
            data.email.as_deref(),
            data.preferred_username.as_deref(),
            &data.groups,
            Some(&data.access_token),
        )
        .ok()?;
        Some(Self {
            identity,
            principal: crate::authz::Principal::of_session(data),
            id_token_authorization: if with_id_token {
                data.id_token.as_deref().and_then(IdentityHeaders::bearer_value)
            } else {
                None
            },
            access_expires_at: data.access_expires_at,
        })
    }
}

/// Sessions by id, bounded in entries, each kept at most until its access token expires.
#[derive(Clone, Debug)]
pub struct SessionCache {
    entries: Cache<String, Arc<ActiveSession>>,
}

struct UntilTokenExpiry;

impl moka::Expiry<String, Arc<ActiveSession>> for UntilTokenExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<ActiveSession>,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        let now = crate::clock::Clock::system().now();
        Some(Duration::from_secs(u64::try_from(value.access_expires_at.saturating_sub(now)).unwrap_or(0).max(1)))
    }
}

impl SessionCache {
    /// A cache of at most `max_entries` sessions.
    pub fn new(max_entries: u64) -> Self {
        Self { entries: Cache::builder().max_capacity(max_entries).expire_after(UntilTokenExpiry).build() }
    }

    /// The cached session, if it is at least as fresh as the cookie says.
    pub async fn get(&self, id: &str, access_expires_at: UnixSeconds) -> Option<Arc<ActiveSession>> {
        self.entries.get(id).await.filter(|entry| entry.access_expires_at >= access_expires_at)
    }

    /// Caches a session.
    pub async fn insert(&self, id: String, session: Arc<ActiveSession>) {
        self.entries.insert(id, session).await;
    }

    /// Forgets a session (sign-out).
    pub async fn remove(&self, id: &str) {
        self.entries.invalidate(id).await;
    }

    /// Sessions currently cached (approximate).
    pub fn len(&self) -> u64 {
        self.entries.entry_count()
    }

    /// Whether no session is cached (approximate).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
