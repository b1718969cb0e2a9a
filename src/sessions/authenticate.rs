//! Authenticating a request from its session cookie: the hot path. The
//! cookie a connection sent last is not opened again (see `recent`);
//! otherwise one AEAD open and a borrowed JSON view of the session. Then the
//! clock and sign-out checks and a cache lookup; no token parsing and no
//! provider call unless the access token is about to expire. The full session
//! data is parsed only to refresh, re-seal or build a cache entry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderMap, HeaderValue};

use super::recent::{OpenedSession, RecentSession};
use super::refresh::RefreshOutcome;
use super::shared::Backend;
use super::{ProviderSessions, Sessions};
use crate::authz::Principal;
use crate::authz::ProviderSet;
use crate::clock::UnixSeconds;
use crate::clock::seconds;
use crate::config::IdentitySelection;
use crate::proxy::IdentityHeaders;
use crate::session::cache::ActiveSession;
use crate::session::data::{SESSION_FORMAT, SessionData};
use crate::session::ended::NEVER_CHECKED;
use crate::session::seal::Purpose;
use crate::session::view::SessionView;

/// The idle clock in the cookie is advanced at most this often (re-sealing
/// on every request would cost more than it tells).
const IDLE_TOUCH_SECONDS: i64 = 60;

/// What the rest of authentication needs once the full session is parsed.
struct Renewal {
    /// Re-seal the cookie (older key, or the idle clock is due).
    reseal: bool,
    refresh_due: bool,
    /// How many cookie parts the browser holds (so stale ones are cleared).
    held_parts: usize,
    with_id_token: bool,
    now: UnixSeconds,
    provider: usize,
}

/// An authenticated user (the subject is `caller.principal.subject`).
#[derive(Debug)]
pub(crate) struct AuthenticatedSession {
    pub caller: Caller,
    /// A re-sealed session cookie (new tokens, newest key, idle clock) to send back.
    pub set_cookies: Vec<HeaderValue>,
    /// The request's `Cookie` headers held the session and nothing else
    /// (set on the common path only; `false` means "not known").
    pub cookies_only_session: bool,
    /// The index of the session's provider (one byte: at most 64 providers,
    /// and this rides in every request's future).
    pub provider: u8,
}

/// A caller the gateway vouches for: the cached identity, and the tokens an
/// upstream may receive, taken from the session (or the presented bearer
/// token) for this request. The cache itself holds no token.
pub(crate) struct Caller {
    pub active: Arc<ActiveSession>,
    /// What authorization rules and `/oauth2/userinfo` see.
    pub principal: Arc<Principal>,
    /// `Bearer <access token>`, marked sensitive.
    pub access_authorization: HeaderValue,
    /// The ID token, only when some upstream is configured to receive it.
    id_token: Option<String>,
}

impl Caller {
    /// A caller with `access_token`; `None` if the token cannot be a header value.
    pub(crate) fn new(
        active: Arc<ActiveSession>,
        principal: Arc<Principal>,
        access_token: &str,
        id_token: Option<String>,
    ) -> Option<Self> {
        let access_authorization = IdentityHeaders::bearer_value(access_token)?;
        Some(Self { active, principal, access_authorization, id_token })
    }

    /// A caller from a live session's data (taken apart, not copied); the ID
    /// token is kept only if `with_id_token`.
    pub(super) fn of_session(active: Arc<ActiveSession>, mut data: SessionData, with_id_token: bool) -> Option<Self> {
        let access_token = std::mem::take(&mut data.access_token);
        let id_token = if with_id_token { data.id_token.take() } else { None };
        Self::new(active, Arc::new(data.into_principal()), &access_token, id_token)
    }

    /// A caller from an opened session cookie (nothing copied but the ID token).
    fn of_opened(active: Arc<ActiveSession>, opened: &OpenedSession) -> Self {
        Self {
            active,
            principal: Arc::clone(&opened.principal),
            access_authorization: opened.access_authorization.clone(),
            id_token: opened.id_token.clone(),
        }
    }

    /// The identity headers to send with `authorization` (or no token).
    pub(crate) fn identity_with(
        &self,
        selection: IdentitySelection,
        authorization: Option<HeaderValue>,
    ) -> IdentityHeaders {
        if selection == IdentitySelection::ALL {
            self.active.identity.with_authorization(authorization)
        } else {
            self.active.identity.select(selection).with_authorization(authorization)
        }
    }

    /// The identity headers with the access token, as most upstreams and forward-auth get them.
    pub(crate) fn identity_with_access_token(&self) -> IdentityHeaders {
        self.active.identity.with_authorization(Some(self.access_authorization.clone()))
    }

    /// `Bearer <ID token>`, for upstreams configured with `token = "id"`.
    pub(crate) fn id_token_authorization(&self) -> Option<HeaderValue> {
        self.id_token.as_deref().and_then(IdentityHeaders::bearer_value)
    }
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller").field("active", &self.active).finish_non_exhaustive()
    }
}

/// The result of authentication: one case per answer the gateway gives.
#[derive(Debug)]
pub(crate) enum Authentication {
    /// No session cookie.
    Anonymous,
    /// A valid session.
    Session(AuthenticatedSession),
    /// A session cookie was presented but is no good (unopenable, ended,
    /// expired): it is cleared. No invalid cookie is kept; an unreachable
    /// store or provider has its own case.
    Invalid,
    /// The access token has expired and the provider cannot refresh it now (the cookie is kept).
    ProviderUnavailable,
    /// Store mode only: the shared session store cannot be asked (the cookie is kept).
    StoreUnavailable,
}

impl Authentication {
    fn authenticated(caller: Caller, set_cookies: Vec<HeaderValue>, provider: usize) -> Self {
        let provider = provider_byte(provider);
        Self::Session(AuthenticatedSession { caller, set_cookies, cookies_only_session: false, provider })
    }

    /// How much this answer is worth when several providers' cookies are
    /// tried: a session wins, then answers that keep the cookie (the user
    /// is not sent to log in while a provider or the store is away).
    fn rank(&self) -> u8 {
        match self {
            Self::Anonymous => 0,
            Self::Invalid => 1,
            Self::ProviderUnavailable => 2,
            Self::StoreUnavailable => 3,
            Self::Session(_) => 4,
        }
    }
}

impl Sessions {
    /// Authenticates the request whose headers are `headers`, arriving on
    /// the connection whose last session cookie is `recent`, by the session
    /// cookie of one of the `accepted` providers.
    pub(crate) async fn authenticate(
        &self,
        headers: &HeaderMap,
        recent: &RecentSession,
        accepted: ProviderSet,
    ) -> Authentication {
        let Some(provider) = accepted.single(self.providers.len()) else {
            // Several providers: on the heap, so the one-provider path's future stays small.
            return Box::pin(self.authenticate_any(headers, recent, accepted)).await;
        };
        let Some(jar) = self.providers.get(provider) else { return Authentication::Anonymous };
        if let Backend::Store(shared) = &self.backend {
            return match Box::pin(self.authenticate_stored(shared, jar, headers)).await {
                Authentication::Session(mut session) => {
                    session.provider = provider_byte(provider);
                    Authentication::Session(session)
                }
                other => other,
            };
        }
        // The plaintext, when this request opened the cookie: a refresh, a
        // re-seal or a cache miss parses the full session from it.
        let mut json = None;
        let mut sealed_with_old_key = false;
        // The cookie (its parts are about 150 bytes) is not kept across the
        // awaits below, which would enlarge every request's future: the rare
        // branches that need it again read it again.
        let (opened, held_parts, cookies_only_session) = {
            let Some(cookie) = jar.cookies.read_session(headers) else {
                return Authentication::Anonymous;
            };
            // Opened under this provider's cookie name, or not reused: the
            // seal binds a cookie to its name, and so must the connection's memory.
            let reused = recent.get(&cookie).filter(|opened| opened.provider == provider);
            self.metrics.session_cookie(reused.is_some());
            let opened = match reused {
                Some(opened) => opened,
                None => {
                    let Ok((plaintext, old_key)) =
                        self.keys.open(Purpose::Session, jar.cookies.session_name(), cookie.sealed())
                    else {
                        return Authentication::Invalid;
                    };
                    let Some(opened) = self.read_opened(&plaintext, provider) else {
                        return Authentication::Invalid;
                    };
                    let opened = Arc::new(opened);
                    // A cookie sealed with an older key is re-sealed now; the client's next one is new.
                    if !old_key {
                        recent.remember(&cookie, Arc::clone(&opened));
                    }
                    json = Some(plaintext);
                    sealed_with_old_key = old_key;
                    opened
                }
            };
            (opened, cookie.part_count(), cookie.holds_only_session())
        };
        let now = self.clock.now();
        let ended = opened.expires_at <= now
            || self.idle_expired(opened.last_seen_at, now)
            || (!self.still_not_ended(&opened) && self.has_ended(&opened, &jar.oidc.issuer));
        if ended {
            recent.forget();
            return Authentication::Invalid;
        }

        let refresh_due = opened.refresh_at <= now;
        let refreshing = refresh_due && opened.has_refresh_token;
        let mut reseal = sealed_with_old_key || (refreshing && self.idle_touch_due(opened.last_seen_at, now));
        // Looked up here only when it decides the idle touch; the fast path below reuses it.
        let mut cached = None;
        if !reseal && !refreshing && self.idle_touch_due(opened.last_seen_at, now) {
            // Counted as a lookup below, on the path that uses it (a miss re-seals and looks up again).
            cached = self.cache.get(&opened.id, opened.access_expires_at).await;
            reseal = self.idle_touch_claimed(cached.as_deref(), now);
        }
        if reseal || refreshing {
            let Some(data) = self.session_data(json, jar, headers) else {
                return Authentication::Invalid;
            };
            let renewal =
                Renewal { reseal, refresh_due, held_parts, with_id_token: self.sends_id_token, now, provider };
            // Rare (a refresh or a re-seal): on the heap, so the common path's future stays small.
            return Box::pin(self.authenticate_data(data, renewal)).await;
        }
        if opened.access_expires_at <= now {
            // Expired and nothing to refresh it with: sign in again.
            recent.forget();
            return Authentication::Invalid;
        }
        let active = match cached {
            Some(active) => {
                self.metrics.cache_lookup(true);
                Some(active)
            }
            None => match self.cached(&opened.id, opened.access_expires_at).await {
                Some(active) => Some(active),
                // Only a miss parses the full session: the entry needs its groups.
                None => match self.session_data(json, jar, headers) {
                    Some(data) => Box::pin(self.build_and_cache(&data)).await,
                    None => None,
                },
            },
        };
        match active {
            Some(active) => Authentication::Session(AuthenticatedSession {
                caller: Caller::of_opened(active, &opened),
                set_cookies: Vec::new(),
                cookies_only_session,
                provider: provider_byte(provider),
            }),
            None => Authentication::Invalid,
        }
    }

    /// The first session among the `accepted` providers' cookies, in
    /// configuration order; without one, the best other answer.
    async fn authenticate_any(
        &self,
        headers: &HeaderMap,
        recent: &RecentSession,
        accepted: ProviderSet,
    ) -> Authentication {
        let mut best = Authentication::Anonymous;
        for provider in accepted.indices(self.providers.len()) {
            let answer = self.authenticate(headers, recent, ProviderSet::only(provider)).await;
            if matches!(answer, Authentication::Session(_)) {
                return answer;
            }
            if answer.rank() > best.rank() {
                best = answer;
            }
        }
        best
    }

    /// What the hot path needs from an opened session cookie's `json`, read
    /// through the borrowed view; `None` if it is not a session of this
    /// gateway's format and issuer, or its access token cannot be sent.
    fn read_opened(&self, json: &[u8], provider: usize) -> Option<OpenedSession> {
        let view = SessionView::parse(json).ok()?;
        let oidc = &self.providers.get(provider)?.oidc;
        let provider_id = view.provider.as_ref().map_or(crate::config::DEFAULT_PROVIDER_ID, |id| &id.0);
        if view.v != SESSION_FORMAT || view.iss != oidc.issuer || provider_id != oidc.id {
            return None;
        }
        // Checked (and copied) only when some upstream receives it.
        let id_token = if self.sends_id_token { view.id_token().ok()? } else { None };
        let id = view.id.clone().into_owned();
        let sid = view.sid().map(str::to_owned);
        let (created_at, last_seen_at, expires_at, access_expires_at) =
            (view.created_at, view.last_seen_at, view.expires_at, view.access_expires_at);
        let refresh_at = self.refresh_at(view.access_issued_at, access_expires_at);
        let has_refresh_token = view.has_refresh_token();
        let (principal, access_token) = view.into_principal();
        Some(OpenedSession {
            provider,
            id,
            sid,
            created_at,
            last_seen_at,
            expires_at,
            access_expires_at,
            refresh_at,
            has_refresh_token,
            principal: Arc::new(principal),
            access_authorization: IdentityHeaders::bearer_value(&access_token)?,
            id_token,
            not_ended_at: AtomicU64::new(NEVER_CHECKED),
        })
    }

    /// Whether a connection's opened session was found not ended and no
    /// session has ended since: then the records need not be asked again.
    fn still_not_ended(&self, opened: &OpenedSession) -> bool {
        opened.not_ended_at.load(Ordering::Relaxed) == self.ended.generation()
    }

    /// Whether `opened` was signed out or logged out by the provider; when
    /// not, remembers the generation of the records it was found not ended in.
    fn has_ended(&self, opened: &OpenedSession, issuer: &str) -> bool {
        // Read before asking: a record added meanwhile changes it, and the next request asks again.
        let generation = self.ended.generation();
        let (subject, sid) = (&opened.principal.subject, opened.sid.as_deref());
        let ended = self.ended.has_ended(&opened.id, issuer, subject, sid, opened.created_at);
        if !ended {
            opened.not_ended_at.store(generation, Ordering::Relaxed);
        }
        ended
    }

    /// The full session of the request's cookie: parsed from `json` when this
    /// request opened it, else read and opened again (a cookie this connection
    /// sent before).
    fn session_data(&self, json: Option<Vec<u8>>, jar: &ProviderSessions, headers: &HeaderMap) -> Option<SessionData> {
        let json = match json {
            Some(json) => json,
            None => {
                let cookie = jar.cookies.read_session(headers)?;
                self.keys.open(Purpose::Session, jar.cookies.session_name(), cookie.sealed()).ok()?.0
            }
        };
        serde_json::from_slice::<SessionData>(&json).ok().filter(|data| data.provider == jar.oidc.id)
    }

    /// The rest of [`Self::authenticate`] for a session that passed the checks
    /// and must be refreshed or re-sealed.
    async fn authenticate_data(&self, mut data: SessionData, renewal: Renewal) -> Authentication {
        let Renewal { mut reseal, refresh_due, held_parts, with_id_token, now, provider } = renewal;
        let active = match self.renewed(&data, refresh_due, now).await {
            Err(refused) => return refused,
            Ok(Some((refreshed, active))) => {
                data = refreshed;
                reseal = true;
                active
            }
            Ok(None) => match self.cached_or_built(&data).await {
                Some(active) => active,
                None => return Authentication::Invalid,
            },
        };

        let mut set_cookies = Vec::new();
        if reseal {
            data.last_seen_at = now;
            set_cookies = self.seal_session(&data, held_parts).unwrap_or_default();
        }
        match Caller::of_session(active, data, with_id_token) {
            Some(caller) => Authentication::authenticated(caller, set_cookies, provider),
            None => Authentication::Invalid,
        }
    }

    /// What renewing `data`'s tokens comes to for this request, alike in cookie
    /// and store mode: `Ok(Some)` new tokens, `Ok(None)` the current ones (not
    /// `due`, or still valid while the provider is down), `Err` the answer instead.
    pub(super) async fn renewed(
        &self,
        data: &SessionData,
        due: bool,
        now: UnixSeconds,
    ) -> Result<Option<(SessionData, Arc<ActiveSession>)>, Authentication> {
        if due && data.refresh_token.is_some() {
            // Boxed: the provider call's future is large and this branch is rare.
            return match Box::pin(self.refresh(data)).await.as_ref() {
                RefreshOutcome::Refreshed { data: refreshed, active } => {
                    Ok(Some((SessionData::clone(refreshed), Arc::clone(active))))
                }
                RefreshOutcome::Ended => Err(Authentication::Invalid),
                RefreshOutcome::StoreUnavailable => Err(Authentication::StoreUnavailable),
                RefreshOutcome::Unavailable { .. } if data.access_expires_at > now => Ok(None),
                RefreshOutcome::Unavailable { .. } => Err(Authentication::ProviderUnavailable),
            };
        }
        if data.access_expires_at <= now {
            // Expired and nothing to refresh it with: sign in again.
            return Err(Authentication::Invalid);
        }
        Ok(None)
    }

    /// Whether a session last used at `last_seen_at` has passed the idle timeout.
    pub(super) fn idle_expired(&self, last_seen_at: UnixSeconds, now: UnixSeconds) -> bool {
        self.session.idle_timeout.is_some_and(|idle| last_seen_at.saturating_add(seconds(idle)) <= now)
    }

    /// Whether the cookie's idle clock should be advanced on this response.
    /// Without an idle timeout nothing reads it, so the cookie is not re-sealed for it.
    pub(super) fn idle_touch_due(&self, last_seen_at: UnixSeconds, now: UnixSeconds) -> bool {
        self.idle_touch_interval().is_some_and(|interval| now.saturating_sub(last_seen_at) >= interval)
    }

    /// How often the idle clock is advanced: every minute, or a quarter of a
    /// shorter idle timeout, so an active user's cookie never comes near it
    /// even when a touch is lost.
    fn idle_touch_interval(&self) -> Option<i64> {
        let idle = seconds(self.session.idle_timeout?);
        Some(IDLE_TOUCH_SECONDS.min(idle / 4).max(1))
    }

    /// Whether this request carries the session's idle touch: at most one per
    /// touch interval per cached session, so a client that keeps sending the
    /// old cookie is not re-sealed on every request. Without a cache entry
    /// (first request here) it does.
    fn idle_touch_claimed(&self, cached: Option<&ActiveSession>, now: UnixSeconds) -> bool {
        let Some(interval) = self.idle_touch_interval() else { return false };
        cached.is_none_or(|active| active.claim_idle_touch(now, interval))
    }

    async fn cached_or_built(&self, data: &SessionData) -> Option<Arc<ActiveSession>> {
        match self.cached(&data.id, data.access_expires_at).await {
            Some(active) => Some(active),
            None => self.build_and_cache(data).await,
        }
    }

    async fn cached(&self, id: &str, access_expires_at: UnixSeconds) -> Option<Arc<ActiveSession>> {
        let active = self.cache.get(id, access_expires_at).await;
        self.metrics.cache_lookup(active.is_some());
        active
    }

    async fn build_and_cache(&self, data: &SessionData) -> Option<Arc<ActiveSession>> {
        let active = Arc::new(ActiveSession::from_session(data)?);
        self.cache.insert(data.id.clone(), Arc::clone(&active)).await;
        Some(active)
    }
}

/// A provider index as one byte (there are at most `MAX_PROVIDERS`, 64).
fn provider_byte(index: usize) -> u8 {
    u8::try_from(index).unwrap_or(u8::MAX)
}
