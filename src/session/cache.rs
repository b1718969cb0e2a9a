//! The in-memory session cache (moka): per session id, the identity headers,
//! validated and prepared once, so forwarding only clones them. No token and
//! no claim is cached: the session itself (the cookie, or the store's copy)
//! supplies the tokens and the principal on every request, so a cached session
//! costs a few hundred bytes, not the kilobytes of its tokens. The cache is
//! bounded by entries and by bytes; a miss rebuilds from the session.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use moka::future::Cache;

use crate::clock::UnixSeconds;
use crate::proxy::IdentityHeaders;

/// What an entry costs beyond its key and header bytes: moka's bookkeeping,
/// the `Arc`, the structs and allocator overhead. Measured: 100,000 sessions
/// grew the gateway's RSS by ~816 bytes each, ~100 of them key and values
/// (docs/benchmarks.md), so the weight tracks resident memory.
const ENTRY_OVERHEAD_BYTES: usize = 700;

/// A live session as the hot path needs it.
#[derive(Debug)]
pub struct ActiveSession {
    /// Identity headers without `Authorization` (the token comes from the session on each request).
    pub identity: IdentityHeaders,
    pub access_expires_at: UnixSeconds,
    /// When this gateway last sent the session's cookie with its idle clock advanced.
    idle_touch_sent_at: AtomicI64,
}

impl ActiveSession {
    /// An entry with prepared `identity`, valid until `access_expires_at`.
    pub fn new(identity: IdentityHeaders, access_expires_at: UnixSeconds) -> Self {
        Self { identity, access_expires_at, idle_touch_sent_at: AtomicI64::new(UnixSeconds::MIN) }
    }

    /// Whether this request should carry the idle-clock touch: true at most
    /// once per `interval` per session. A client that keeps sending the old
    /// cookie (in-flight requests, or one that ignores `Set-Cookie`) then does
    /// not get the session re-sealed on every request; a lost touch is sent
    /// again after `interval`.
    pub fn claim_idle_touch(&self, now: UnixSeconds, interval: i64) -> bool {
        let sent_at = self.idle_touch_sent_at.load(Ordering::Relaxed);
        now.saturating_sub(sent_at) >= interval
            && self.idle_touch_sent_at.compare_exchange(sent_at, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// The cache entry for a session: headers prepared once, so the hot path
    /// only clones them. `None` if a value cannot be a header.
    pub fn from_session(data: &crate::session::data::SessionData) -> Option<Self> {
        let identity = IdentityHeaders::new(
            &data.sub,
            data.email.as_deref().filter(|_| data.email_verified == Some(true)),
            data.preferred_username.as_deref(),
            &data.roles,
            None,
        )
        .ok()?;
        Some(Self::new(identity, data.access_expires_at))
    }

    /// Approximate bytes this entry holds under `key` (what the byte cap counts).
    pub fn weight(&self, key: &str) -> usize {
        ENTRY_OVERHEAD_BYTES + key.len() + self.identity.value_bytes()
    }
}

/// Sessions by id, bounded in entries and bytes, each kept at most until its access token expires.
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
    /// A cache of at most `max_entries` sessions and about `max_bytes` bytes.
    ///
    /// moka bounds one total weight; each entry weighs its bytes but at least
    /// `max_bytes / max_entries`, so both bounds hold.
    pub fn new(max_entries: u64, max_bytes: u64) -> Self {
        let floor = u32::try_from(max_bytes / max_entries.max(1)).unwrap_or(u32::MAX).max(1);
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(move |key: &String, value: &Arc<ActiveSession>| {
                u32::try_from(value.weight(key)).unwrap_or(u32::MAX).max(floor)
            })
            .expire_after(UntilTokenExpiry)
            .build();
        Self { entries }
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

    /// The cached entries' total weight in bytes (approximate).
    pub fn weighted_bytes(&self) -> u64 {
        self.entries.weighted_size()
    }

    /// Applies pending evictions now, so `len` and `weighted_bytes` are exact (tests, benchmarks).
    pub async fn settle(&self) {
        self.entries.run_pending_tasks().await;
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::session::data::{SESSION_FORMAT, SessionData};

    fn session(id: &str, groups: usize) -> SessionData {
        SessionData {
            v: SESSION_FORMAT,
            id: id.to_owned(),
            provider: "default".to_owned(),
            iss: "https://idp.example.test".into(),
            sub: format!("user-{id}"),
            email: Some("user@example.test".into()),
            email_verified: Some(true),
            name: None,
            preferred_username: Some("user".into()),
            roles: (0..groups).map(|index| format!("group-{index}")).collect(),
            sid: None,
            created_at: 0,
            last_seen_at: 0,
            expires_at: i64::MAX,
            access_token: "a".repeat(2000),
            access_expires_at: crate::clock::Clock::system().now() + 3600,
            access_issued_at: 0,
            refresh_token: Some("r".repeat(500)),
            id_token: Some("i".repeat(3000)),
        }
    }

    #[test]
    fn an_entry_weighs_its_identity_not_its_tokens() {
        let data = session("s1", 3);
        let active = ActiveSession::from_session(&data).unwrap();
        let weight = active.weight(&data.id);
        assert!(weight < 1000, "a session with 5.5 KB of tokens weighs {weight} bytes");
        assert!(!active.identity.has_token(), "no token in the cached identity");
        let more_groups = ActiveSession::from_session(&session("s1", 30)).unwrap().weight(&data.id);
        assert!(more_groups > weight + 27 * 7, "groups are counted: {more_groups} vs {weight}");
    }

    #[tokio::test]
    async fn the_byte_cap_bounds_the_cache() {
        let one = ActiveSession::from_session(&session("s0", 3)).unwrap().weight("s0") as u64;
        let cache = SessionCache::new(1_000_000, one * 10);
        for index in 0..100 {
            let data = session(&format!("s{index}"), 3);
            cache.insert(data.id.clone(), Arc::new(ActiveSession::from_session(&data).unwrap())).await;
        }
        cache.settle().await;
        assert!(cache.len() <= 11, "{} entries under a cap of about 10", cache.len());
        assert!(cache.weighted_bytes() <= one * 11, "{} bytes", cache.weighted_bytes());
    }

    #[tokio::test]
    async fn the_entry_cap_bounds_the_cache() {
        let cache = SessionCache::new(5, 1 << 30);
        for index in 0..50 {
            let data = session(&format!("s{index}"), 0);
            cache.insert(data.id.clone(), Arc::new(ActiveSession::from_session(&data).unwrap())).await;
        }
        cache.settle().await;
        assert!(cache.len() <= 5, "{} entries under a cap of 5", cache.len());
    }

    #[test]
    fn one_idle_touch_per_interval_even_when_claimed_from_many_threads() {
        let active = Arc::new(ActiveSession::from_session(&session("touch", 1)).unwrap());
        let claimed_at = |now: UnixSeconds| {
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let active = Arc::clone(&active);
                    std::thread::spawn(move || active.claim_idle_touch(now, 60))
                })
                .collect();
            threads.into_iter().map(|thread| usize::from(thread.join().unwrap())).sum::<usize>()
        };
        assert_eq!(claimed_at(1_000), 1, "the first request claims it, once");
        assert_eq!(claimed_at(1_059), 0, "not again within the interval");
        assert_eq!(claimed_at(1_060), 1, "again once the interval has passed");
    }
}
