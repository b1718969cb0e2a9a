//! Store mode (`[session.store]`): sessions live in Redis, the cookie holds a
//! sealed handle. Authentication with a short-lived local copy, refresh
//! serialised across replicas by a lease, and the background tasks that keep
//! every replica's view of ended sessions current (pub/sub) and `/ready` true
//! to the store's health.
//!
//! Consistency rule: a replica trusts its local copy of a session for at most
//! `session.store.local_cache_ttl` (default 5 s); sign-outs and back-channel
//! logouts reach it at once through pub/sub, and a lost message (the
//! subscription dropped) is bounded by that TTL, since a miss always asks Redis.

use std::sync::{Arc, Weak};
use std::time::Duration;

use http::HeaderMap;
use moka::future::Cache;

use super::authenticate::{AuthenticatedSession, Authentication, Caller};
use super::refresh::{RefreshOutcome, flight_key};
use super::{ProviderSessions, Sessions};
use crate::clock::UnixSeconds;
use crate::clock::seconds;
use crate::session::cache::ActiveSession;
use crate::session::data::{SESSION_FORMAT, SessionData, SessionHandle};
use crate::session::seal::Purpose;
use crate::session::store::{SessionStore, StoreEvent};

/// A losing replica polls the store this often for the winner's new tokens.
const LEASE_POLL: Duration = Duration::from_millis(50);

/// A session as read from the store, with its prepared headers.
#[derive(Debug)]
pub(super) struct LocalSession {
    data: SessionData,
    active: Arc<ActiveSession>,
    fetched_at: UnixSeconds,
}

/// Where sessions live: in the cookie itself, or in the shared store with a
/// sealed handle in the cookie (`[session.store]`).
#[derive(Debug)]
pub(super) enum Backend {
    Cookie,
    Store(Shared),
}

impl Backend {
    /// Whether sessions can be checked: always in cookie mode, while the store answers in store mode.
    pub(super) fn is_healthy(&self) -> bool {
        match self {
            Self::Cookie => true,
            Self::Store(shared) => shared.store.is_healthy(),
        }
    }

    /// What the session cookie is sealed for: the session, or its handle.
    pub(super) fn cookie_purpose(&self) -> Purpose {
        match self {
            Self::Cookie => Purpose::Session,
            Self::Store(_) => Purpose::Handle,
        }
    }
}

/// The store and this replica's short-lived copies of stored sessions.
#[derive(Debug)]
pub(super) struct Shared {
    pub store: Arc<SessionStore>,
    local: Cache<String, Arc<LocalSession>>,
    local_ttl: i64,
}

impl Shared {
    pub(super) fn new(store: SessionStore, local_ttl: Duration, max_entries: u64) -> Self {
        Self {
            store: Arc::new(store),
            local: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(local_ttl.max(Duration::from_secs(1)))
                .build(),
            local_ttl: seconds(local_ttl),
        }
    }
}

fn local(data: SessionData, now: UnixSeconds) -> Option<Arc<LocalSession>> {
    let active = Arc::new(ActiveSession::from_session(&data)?);
    Some(Arc::new(LocalSession { data, active, fetched_at: now }))
}

impl Sessions {
    /// Authentication in store mode; `Authentication::StoreUnavailable` when Redis cannot be asked.
    pub(super) async fn authenticate_stored(
        &self,
        shared: &Shared,
        jar: &ProviderSessions,
        headers: &HeaderMap,
    ) -> Authentication {
        let Some(cookie) = jar.cookies.read_session(headers) else {
            return Authentication::Anonymous;
        };
        let Ok((json, sealed_with_old_key)) =
            self.keys.open(Purpose::Handle, jar.cookies.session_name(), cookie.sealed())
        else {
            return Authentication::Invalid;
        };
        let Ok(mut handle) = serde_json::from_slice::<SessionHandle>(&json) else {
            return Authentication::Invalid;
        };
        let now = self.clock.now();
        let idle_expired = self.idle_expired(handle.last_seen_at, now);
        if handle.v != SESSION_FORMAT || handle.expires_at <= now || idle_expired {
            return Authentication::Invalid;
        }
        if !shared.store.is_healthy() {
            return Authentication::StoreUnavailable;
        }
        let issuer = jar.oidc.issuer.as_str();
        if self.ended.has_ended(&handle.id, issuer, &handle.sub, handle.sid.as_deref(), handle.created_at) {
            return Authentication::Invalid;
        }
        let mut session = match self.stored_session(shared, jar, &handle, now).await {
            Ok(Some(session)) => session,
            Ok(None) => return Authentication::Invalid,
            Err(()) => return Authentication::StoreUnavailable,
        };

        match self.renewed(&session.data, self.refresh_due(&session.data, now), now).await {
            Err(refused) => return refused,
            Ok(Some((refreshed, _))) => {
                let Some(fresh) = local(refreshed, now) else {
                    return Authentication::Invalid;
                };
                shared.local.insert(fresh.data.id.clone(), Arc::clone(&fresh)).await;
                session = fresh;
            }
            Ok(None) => {}
        }

        let mut set_cookies = Vec::new();
        if sealed_with_old_key || self.idle_touch_due(handle.last_seen_at, now) {
            handle.last_seen_at = now;
            set_cookies = self.seal_handle(jar, &handle, cookie.part_count()).unwrap_or_default();
        }
        let id_token = if self.sends_id_token { session.data.id_token.clone() } else { None };
        let principal = session.data.principal();
        let Some(caller) =
            Caller::new(Arc::clone(&session.active), Arc::new(principal), &session.data.access_token, id_token)
        else {
            return Authentication::Invalid;
        };
        // The caller sets the provider's index.
        Authentication::Session(AuthenticatedSession { caller, set_cookies, cookies_only_session: false, provider: 0 })
    }

    /// The session behind a handle: the local copy while fresh, else the store's
    /// record unless a logout applies. `Ok(None)`: the session is gone; `Err`: the store is down.
    async fn stored_session(
        &self,
        shared: &Shared,
        jar: &ProviderSessions,
        handle: &SessionHandle,
        now: UnixSeconds,
    ) -> Result<Option<Arc<LocalSession>>, ()> {
        if let Some(cached) = shared.local.get(&handle.id).await
            && cached.fetched_at.saturating_add(shared.local_ttl) > now
            && cached.data.provider == jar.oidc.id
        {
            self.metrics.cache_lookup(true);
            return Ok(Some(cached));
        }
        self.metrics.cache_lookup(false);
        let lookup = shared
            .store
            .lookup(&self.keys, &handle.id, &jar.oidc.issuer, &handle.sub, handle.sid.as_deref())
            .await
            .map_err(|error| tracing::warn!(%error, "session store lookup failed"))?;
        let logged_out = lookup.subject_ended_at.is_some_and(|at| handle.created_at <= at)
            || lookup.provider_session_ended_at.is_some_and(|at| handle.created_at <= at);
        let Some(data) =
            lookup.data.filter(|data| !logged_out && data.sub == handle.sub && data.provider == jar.oidc.id)
        else {
            return Ok(None);
        };
        let Some(fresh) = local(data, now) else { return Ok(None) };
        shared.local.insert(handle.id.clone(), Arc::clone(&fresh)).await;
        Ok(Some(fresh))
    }

    /// One refresh of `data` across all replicas: the lease winner asks the
    /// provider and stores the new tokens; the others wait for that generation.
    pub(super) async fn refresh_leased(&self, shared: &Shared, data: &SessionData) -> RefreshOutcome {
        let store = &shared.store;
        let timeout = self.sessions_of(&data.provider).map_or(Duration::from_secs(10), |jar| jar.oidc.http_timeout);
        let lease = timeout.saturating_add(Duration::from_secs(5));
        let deadline = tokio::time::Instant::now() + lease;
        let generation = flight_key(data);
        loop {
            let owner = match store.try_lease(&data.id, lease).await {
                Ok(owner) => owner,
                Err(_) => return RefreshOutcome::StoreUnavailable,
            };
            let current = match store.lookup(&self.keys, &data.id, &data.iss, &data.sub, data.sid.as_deref()).await {
                Ok(lookup) => lookup.data,
                Err(_) => return RefreshOutcome::StoreUnavailable,
            };
            let newer = |current: &SessionData| flight_key(current) != generation;
            if let Some(owner) = owner {
                let outcome = match current {
                    None => RefreshOutcome::Ended,
                    Some(current) if newer(&current) => refreshed_elsewhere(current),
                    Some(current) => self.refresh_and_store(shared, &current).await,
                };
                let _ = store.release_lease(&data.id, &owner).await;
                return outcome;
            }
            match current {
                None => return RefreshOutcome::Ended,
                Some(current) if newer(&current) => {
                    return refreshed_elsewhere(current);
                }
                Some(_) => {}
            }
            // Another replica holds the lease: wait for its result, or for the lease to go.
            if tokio::time::Instant::now() >= deadline {
                return RefreshOutcome::Unavailable {
                    retry_at: self.clock.now().saturating_add(super::refresh::BACKOFF_SECONDS),
                };
            }
            tokio::time::sleep(LEASE_POLL).await;
            if !matches!(store.lease_held(&data.id).await, Ok(true)) {
                // Released (or expired): re-read once more and take it if nobody refreshed.
                continue;
            }
        }
    }

    async fn refresh_and_store(&self, shared: &Shared, current: &SessionData) -> RefreshOutcome {
        let outcome = self.refresh_once(current).await;
        match &outcome {
            RefreshOutcome::Refreshed { data, .. } => {
                match shared.store.replace(&self.keys, data, self.clock.now()).await {
                    Ok(true) => {}
                    Ok(false) => {
                        // Signed out (or logged out) while the provider answered: it stays so.
                        tracing::info!(target: "portcullis::auth", event = "refresh_discarded", reason = "session_ended", user = %current.sub);
                        return RefreshOutcome::Ended;
                    }
                    Err(error) => {
                        // The provider may have rotated the refresh token; without the store
                        // the new one cannot be kept, so this generation is lost.
                        tracing::error!(%error, user = %current.sub, "refreshed tokens could not be stored");
                        return RefreshOutcome::StoreUnavailable;
                    }
                }
            }
            RefreshOutcome::Ended => {
                let event = StoreEvent::Session { id: current.id.clone() };
                let _ = shared.store.record_logout(&event).await;
                let _ = shared.store.publish(&event).await;
            }
            RefreshOutcome::Unavailable { .. } | RefreshOutcome::StoreUnavailable => {}
        }
        outcome
    }

    /// Stores a new session and returns the handle cookie's `Set-Cookie`s;
    /// `Err` when the store is down (nothing is set, the login must be retried).
    pub(super) async fn store_new_session(
        &self,
        shared: &Shared,
        data: &SessionData,
        held_parts: usize,
    ) -> Result<Option<Vec<http::HeaderValue>>, ()> {
        shared
            .store
            .save(&self.keys, data, self.clock.now())
            .await
            .map_err(|error| tracing::warn!(%error, "cannot store a new session"))?;
        if let Some(fresh) = local(data.clone(), self.clock.now()) {
            shared.local.insert(data.id.clone(), fresh).await;
        }
        let Some(jar) = self.sessions_of(&data.provider) else { return Ok(None) };
        Ok(self.seal_handle(jar, &SessionHandle::of(data), held_parts))
    }

    fn seal_handle(
        &self,
        jar: &ProviderSessions,
        handle: &SessionHandle,
        held_parts: usize,
    ) -> Option<Vec<http::HeaderValue>> {
        let json = serde_json::to_vec(handle).ok()?;
        let sealed = self.keys.seal(Purpose::Handle, jar.cookies.session_name(), &json).ok()?;
        jar.cookies.set_session(&sealed, self.session.lifetime, held_parts)
    }

    /// The full session behind the request's handle cookie (for sign-out).
    /// `Err` when the store is down.
    pub(super) async fn stored_session_for_sign_out(
        &self,
        shared: &Shared,
        jar: &ProviderSessions,
        headers: &HeaderMap,
    ) -> Result<Option<SessionData>, ()> {
        let Some(cookie) = jar.cookies.read_session(headers) else { return Ok(None) };
        let Ok((json, _)) = self.keys.open(Purpose::Handle, jar.cookies.session_name(), cookie.sealed()) else {
            return Ok(None);
        };
        let Ok(handle) = serde_json::from_slice::<SessionHandle>(&json) else { return Ok(None) };
        let lookup = shared
            .store
            .lookup(&self.keys, &handle.id, &jar.oidc.issuer, &handle.sub, handle.sid.as_deref())
            .await
            .map_err(|error| tracing::warn!(%error, "session store lookup failed"))?;
        Ok(lookup.data.filter(|data| data.sub == handle.sub && data.provider == jar.oidc.id))
    }

    /// Records an ended session or logout in the store and tells every replica.
    pub(super) async fn announce(&self, shared: &Shared, event: StoreEvent) -> Result<(), ()> {
        shared.store.record_logout(&event).await.map_err(|error| tracing::warn!(%error, "cannot record a logout"))?;
        if let Err(error) = shared.store.publish(&event).await {
            // Recorded, so other replicas see it within local_cache_ttl anyway.
            tracing::warn!(%error, "cannot broadcast a logout");
        }
        self.apply_event(shared, event).await;
        Ok(())
    }

    /// Applies a logout to this replica's memory.
    async fn apply_event(&self, shared: &Shared, event: StoreEvent) {
        let now = self.clock.now();
        match event {
            StoreEvent::Session { id } => {
                // The event does not say when the session would have expired: at the latest a lifetime from now.
                self.ended.end_session(&id, now.saturating_add(seconds(self.session.lifetime)), now);
                shared.local.invalidate(&id).await;
                self.cache.remove(&id).await;
            }
            StoreEvent::Subject { iss, sub, at } => self.ended.end_subject(&iss, &sub, at, now),
            StoreEvent::ProviderSession { iss, sid, at } => self.ended.end_provider_session(&iss, &sid, at, now),
        }
        self.close_ended_tunnels().await;
    }
}

fn refreshed_elsewhere(current: SessionData) -> RefreshOutcome {
    match ActiveSession::from_session(&current) {
        Some(active) => RefreshOutcome::Refreshed { data: Box::new(current), active: Arc::new(active) },
        None => RefreshOutcome::Ended,
    }
}

/// Starts the store's background work for the `owner` of the sessions: a
/// first connection, a health check every second (for `/ready`), and the
/// pub/sub follower. Both tasks end when the owner is dropped. (The tasks hold
/// the owner weakly, so that `Sessions` can stay a plain field of it.)
pub(super) async fn start_background<T: Send + Sync + 'static>(owner: &Arc<T>, sessions: fn(&T) -> &Sessions) {
    let Backend::Store(shared) = &sessions(owner).backend else { return };
    if let Err(error) = shared.store.check().await {
        tracing::warn!(%error, "session store not reachable yet; starting not-ready");
    }
    let weak = Arc::downgrade(owner);
    tokio::spawn(health_loop(weak.clone(), sessions));
    tokio::spawn(follow_events(weak, sessions));
}

/// The health check's period while the store answers, and while it does not:
/// requests get a 503 without asking the store until a check succeeds, so the
/// shorter period bounds how long that lasts after the store (or, with
/// Sentinel, a new primary) is back.
const HEALTHY_CHECK: Duration = Duration::from_secs(1);
const UNHEALTHY_CHECK: Duration = Duration::from_millis(100);

async fn health_loop<T>(owner: Weak<T>, sessions: fn(&T) -> &Sessions) {
    let mut healthy = true;
    loop {
        tokio::time::sleep(if healthy { HEALTHY_CHECK } else { UNHEALTHY_CHECK }).await;
        let Some(owner) = owner.upgrade() else { return };
        if let Backend::Store(shared) = &sessions(&owner).backend {
            let was = shared.store.is_healthy();
            healthy = shared.store.check().await.is_ok();
            if was != healthy {
                tracing::warn!(healthy, "session store health changed");
            }
        }
    }
}

async fn follow_events<T>(owner: Weak<T>, sessions: fn(&T) -> &Sessions) {
    use futures_util::StreamExt;
    loop {
        let subscribed = {
            let Some(strong) = owner.upgrade() else { return };
            let Backend::Store(shared) = &sessions(&strong).backend else { return };
            shared.store.subscribe().await
        };
        match subscribed {
            Ok(events) => {
                // Events may have been missed while unsubscribed: forget local copies.
                if let Some(strong) = owner.upgrade()
                    && let Backend::Store(shared) = &sessions(&strong).backend
                {
                    shared.local.invalidate_all();
                }
                let mut events = std::pin::pin!(events);
                while let Some(event) = events.next().await {
                    let Some(strong) = owner.upgrade() else { return };
                    let sessions = sessions(&strong);
                    if let Backend::Store(shared) = &sessions.backend {
                        sessions.apply_event(shared, event).await;
                    }
                }
                tracing::warn!("session store subscription lost; resubscribing");
            }
            Err(error) => tracing::debug!(%error, "cannot subscribe to the session store"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
