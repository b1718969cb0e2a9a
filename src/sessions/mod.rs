//! The sessions service: everything about a user's session — the key ring,
//! the cookie spec, the token cache, the ended-session records, the refresh
//! flights and where sessions live (the cookie, or the shared store) — behind
//! one small API: authenticate a request, create a session, end one, seal the
//! login flow. The gateway asks; it never reaches into this state.

mod authenticate;
mod logout_tokens;
mod recent;
mod refresh;
mod shared;
mod tunnel;

use std::fmt::Display;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue};

use crate::authz::ProviderSet;
use crate::clock::{Clock, UnixSeconds};
use crate::config::{Config, OidcConfig, SessionConfig};
use crate::oidc::provider::Provider;
use crate::oidc::token;
use crate::proxy::{TunnelSession, Tunnels};
use crate::session::cache::{ActiveSession, SessionCache};
use crate::session::cookies::{CookieJarSpec, flow_cookie_names, single_cookie_value};
use crate::session::data::SessionData;
use crate::session::ended::EndedSessions;
use crate::session::flow::{FLOW_FORMAT, LoginFlow};
use crate::session::seal::{KeyRing, Purpose};
use crate::session::store::{SessionStore, StoreEvent};
use crate::telemetry::metrics::Metrics;

pub(crate) use self::authenticate::{Authentication, Caller};
pub(crate) use self::logout_tokens::LogoutClaim;
pub(crate) use self::recent::RecentSession;
use self::shared::Backend;

/// Building the sessions service failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionsError {
    #[error("session keys: {0}")]
    Keys(#[from] crate::session::seal::KeyError),
    #[error("{0}")]
    Store(#[from] crate::session::store::StoreError),
}

/// The shared session store could not be asked: the answer is a 503, never a
/// half-done sign-in or sign-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoreUnavailable;

/// Why a new session was not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CreateError {
    StoreUnavailable,
    /// Sealed, it is larger than the cookie parts allow.
    TooLarge,
    /// The session names a provider this gateway does not have (a bug: the
    /// callback only creates sessions for the flow's configured provider).
    UnknownProvider,
}

/// One provider's sessions: their cookie (so a browser holds one session per
/// provider, side by side), the provider (refresh, revocation) and its client settings.
#[derive(Debug)]
pub(crate) struct ProviderSessions {
    cookies: CookieJarSpec,
    provider: Arc<Provider>,
    oidc: OidcConfig,
    /// The ID-token claim its groups are read from (its own, or `authz.groups_claim`).
    groups_claim: String,
}

impl ProviderSessions {
    /// The groups (or roles) in the verified payload of an ID token of this
    /// provider: what rules see and the groups header carries.
    fn groups_in(&self, verified_claims: &serde_json::Value) -> Vec<String> {
        crate::authz::claims::strings_at(verified_claims, &self.groups_claim)
    }
}

/// The sessions of one gateway and what they need: the providers (refresh,
/// revocation), the settings, the metric handles and the tunnels a session's
/// end closes.
#[derive(Debug)]
pub(crate) struct Sessions {
    clock: Clock,
    /// By provider index (`Config::providers`).
    providers: Vec<ProviderSessions>,
    session: SessionConfig,
    /// Whether some upstream receives the ID token (so sessions keep it ready).
    sends_id_token: bool,
    keys: KeyRing,
    /// The cookie names of the gateway as a whole: the flow cookies, and what is ours.
    cookies: CookieJarSpec,
    cache: SessionCache,
    ended: EndedSessions,
    refreshes: refresh::RefreshFlights,
    /// Where sessions live: the cookie, or the shared store (`[session.store]`).
    backend: Backend,
    /// Cookie mode: the back-channel logout tokens used here (store mode claims them in the store).
    used_logout_tokens: logout_tokens::UsedLogoutTokens,
    metrics: Arc<Metrics>,
    tunnels: Tunnels,
}

impl Sessions {
    /// The sessions service for `config`; the provider is not contacted here.
    pub(crate) fn new(
        config: &Config,
        clock: Clock,
        providers: &[Arc<Provider>],
        metrics: Arc<Metrics>,
        tunnels: Tunnels,
        sends_id_token: bool,
    ) -> Result<Self, SessionsError> {
        let session = &config.session;
        let backend = match &session.store {
            Some(store) => Backend::Store(shared::Shared::new(
                SessionStore::new(store, session.lifetime)?,
                store.local_cache_ttl,
                session.cache_max_entries,
            )),
            None => Backend::Cookie,
        };
        Ok(Self {
            keys: KeyRing::new(&session.keys)?,
            cookies: CookieJarSpec::configured(
                &session.cookie_name,
                config.is_https(),
                session.cookie_domain.as_deref(),
            ),
            cache: SessionCache::new(session.cache_max_entries, session.cache_max_bytes),
            ended: EndedSessions::new(session.lifetime, session.ended_max_entries, metrics.ended_sessions_overflows()),
            refreshes: refresh::flights(session.cache_max_entries),
            backend,
            used_logout_tokens: logout_tokens::UsedLogoutTokens::new(
                session.ended_max_entries,
                metrics.used_logout_tokens_overflows(),
            ),
            clock,
            providers: config
                .providers
                .iter()
                .zip(providers)
                .map(|(oidc, provider)| ProviderSessions {
                    cookies: CookieJarSpec::configured(
                        &session_cookie_name(&session.cookie_name, &oidc.id),
                        config.is_https(),
                        session.cookie_domain.as_deref(),
                    ),
                    provider: Arc::clone(provider),
                    oidc: oidc.clone(),
                    groups_claim: oidc.groups_claim.clone().unwrap_or_else(|| config.authz.groups_claim().to_owned()),
                })
                .collect(),
            session: session.clone(),
            sends_id_token,
            metrics,
            tunnels,
        })
    }

    /// Starts the shared store's background work (health checks, logout
    /// broadcasts) for the `owner` of these sessions, reached through
    /// `sessions`; does nothing without `[session.store]`.
    pub(crate) async fn start_background<T: Send + Sync + 'static>(owner: &Arc<T>, sessions: fn(&T) -> &Self) {
        shared::start_background(owner, sessions).await;
    }

    /// Whether sessions can be served: always in cookie mode, while the store answers in store mode.
    pub(crate) fn is_healthy(&self) -> bool {
        self.backend.is_healthy()
    }

    /// The session cache's entry count and weighted size, for the metrics.
    pub(crate) fn cache_figures(&self) -> (u64, u64) {
        (self.cache.len(), self.cache.weighted_bytes())
    }

    /// Applies the session cache's pending maintenance now, so its figures are exact.
    pub(crate) async fn settle(&self) {
        self.cache.settle().await;
    }

    /// Whether a cookie of this name is one of the gateway's (never sent upstream).
    pub(crate) fn is_ours(&self, name: &str) -> bool {
        self.cookies.is_ours(name)
    }

    /// Removes the upstream's `Set-Cookie`s for the gateway's cookie names.
    pub(crate) fn drop_upstream_set_cookies(&self, headers: &mut HeaderMap) {
        self.cookies.drop_upstream_set_cookies(headers);
    }

    /// The `Set-Cookie`s that clear the session cookies (all their parts) of
    /// the `accepted` providers the request holds.
    pub(crate) fn clear_session_cookie(&self, request: &HeaderMap, accepted: ProviderSet) -> Vec<HeaderValue> {
        let jars = self.accepted(accepted);
        jars.flat_map(|jar| jar.cookies.clear_session(request)).collect()
    }

    /// The `accepted` providers' sessions.
    fn accepted(&self, accepted: ProviderSet) -> impl Iterator<Item = &ProviderSessions> {
        self.providers.iter().enumerate().filter(move |(index, _)| accepted.contains(*index)).map(|(_, jar)| jar)
    }

    /// The sessions of the provider `data` was created at; `None` for an unknown id.
    fn sessions_of(&self, provider_id: &str) -> Option<&ProviderSessions> {
        self.providers.iter().find(|sessions| sessions.oidc.id == provider_id)
    }

    /// The `Set-Cookie`s that clear every gateway cookie the request holds.
    pub(crate) fn clear_all_cookies(&self, request: &HeaderMap) -> Vec<HeaderValue> {
        self.cookies.clear_all(request)
    }

    /// The `Set-Cookie` that clears the cookie `name`.
    pub(crate) fn clear_cookie(&self, name: &str) -> Option<HeaderValue> {
        self.cookies.clear(name)
    }

    /// The name of the flow cookie of the login with this `state`.
    pub(crate) fn flow_name(&self, state: &str) -> String {
        self.cookies.flow_name(state)
    }

    /// The names of the flow cookies the request holds, oldest first.
    pub(crate) fn flow_cookie_names<'a>(&'a self, headers: &'a HeaderMap) -> impl Iterator<Item = &'a str> + 'a {
        flow_cookie_names(headers, &self.cookies)
    }

    /// The `Set-Cookie` carrying `flow`, sealed, for as long as a login may take.
    pub(crate) fn seal_flow(&self, flow: &LoginFlow) -> Option<HeaderValue> {
        let name = self.cookies.flow_name(&flow.state);
        let json = serde_json::to_vec(flow).ok()?;
        let sealed = self.keys.seal(Purpose::Flow, &name, &json).ok()?;
        self.cookies.set(&name, &sealed, self.session.login_timeout)
    }

    /// The login flow sealed in the request's cookie `flow_name`, if it opens
    /// and is of this gateway's format (its state and expiry are the caller's to check).
    pub(crate) fn open_flow(&self, headers: &HeaderMap, flow_name: &str) -> Option<LoginFlow> {
        single_cookie_value(headers, flow_name)
            .and_then(|sealed| self.keys.open(Purpose::Flow, flow_name, sealed).ok())
            .and_then(|(json, _)| serde_json::from_slice::<LoginFlow>(&json).ok())
            .filter(|flow| flow.v == FLOW_FORMAT)
    }

    /// Replaces the key ring with `secrets` (a configuration reload): sessions
    /// sealed with a key still configured stay valid (re-sealed with the first
    /// key at their next request); new ones are sealed with the first. Nothing
    /// changes on an error.
    pub fn replace_keys(&self, secrets: &[crate::secret::SecretBytes]) -> Result<(), SessionsError> {
        self.keys.replace(secrets).map_err(SessionsError::Keys)
    }

    /// A tag binding `message` to the key ring, for `label`'s use.
    pub(crate) fn mac(&self, label: &str, message: &str) -> String {
        self.keys.mac(label, message)
    }

    /// Whether `tag` is [`Self::mac`] of `message` for `label`.
    pub(crate) fn verify_mac(&self, label: &str, message: &str, tag: &str) -> bool {
        self.keys.verify_mac(label, message, tag)
    }

    /// The groups (or roles) in the verified payload of an ID token of the provider at
    /// `provider` (index), from the claim that provider's `groups_claim` (or
    /// `authz.groups_claim`) names.
    pub(crate) fn groups_in(&self, provider: usize, verified_claims: &serde_json::Value) -> Vec<String> {
        self.providers.get(provider).map(|sessions| sessions.groups_in(verified_claims)).unwrap_or_default()
    }

    /// Seals (cookie mode) or stores (store mode) a new session and caches
    /// it; the `Set-Cookie`s that carry it (replacing any session cookie in
    /// `request_headers`).
    pub(crate) async fn create(
        &self,
        data: &SessionData,
        request_headers: &HeaderMap,
    ) -> Result<Vec<HeaderValue>, CreateError> {
        let jar = self.sessions_of(&data.provider).ok_or(CreateError::UnknownProvider)?;
        let held_parts = jar.cookies.read_session(request_headers).map_or(0, |cookie| cookie.part_count());
        let sealed = match &self.backend {
            Backend::Cookie => self.seal_session(data, held_parts),
            Backend::Store(shared) => {
                self.store_new_session(shared, data, held_parts).await.map_err(|()| CreateError::StoreUnavailable)?
            }
        };
        let set_cookies = sealed.ok_or(CreateError::TooLarge)?;
        if let Some(active) = ActiveSession::from_session(data) {
            self.cache.insert(data.id.clone(), Arc::new(active)).await;
        }
        Ok(set_cookies)
    }

    /// The `Set-Cookie` headers for a session (split into parts when large),
    /// or `None` if it cannot be sealed or is larger than the part limit.
    fn seal_session(&self, data: &SessionData, held_parts: usize) -> Option<Vec<HeaderValue>> {
        let jar = self.sessions_of(&data.provider)?;
        let json = serde_json::to_vec(data).ok()?;
        let sealed = self.keys.seal(Purpose::Session, jar.cookies.session_name(), &json).ok()?;
        jar.cookies.set_session(&sealed, self.session.lifetime, held_parts)
    }

    /// The sessions the request's cookies hold at the `accepted` providers,
    /// for signing them out (cookies that do not open are left out).
    pub(crate) async fn held(
        &self,
        headers: &HeaderMap,
        accepted: ProviderSet,
    ) -> Result<Vec<SessionData>, StoreUnavailable> {
        let mut held = Vec::new();
        for jar in self.accepted(accepted) {
            let data = match &self.backend {
                Backend::Cookie => self.sealed_session(jar, headers),
                Backend::Store(shared) => {
                    self.stored_session_for_sign_out(shared, jar, headers).await.map_err(|()| StoreUnavailable)?
                }
            };
            held.extend(data);
        }
        Ok(held)
    }

    fn sealed_session(&self, jar: &ProviderSessions, headers: &HeaderMap) -> Option<SessionData> {
        let cookie = jar.cookies.read_session(headers)?;
        let (json, _) = self.keys.open(Purpose::Session, jar.cookies.session_name(), cookie.sealed()).ok()?;
        serde_json::from_slice::<SessionData>(&json).ok().filter(|data| data.provider == jar.oidc.id)
    }

    /// Ends `data`'s session everywhere (the store's replicas included), closes
    /// its tunnels and revokes its tokens at the provider. `Err` when the store
    /// cannot record it: then nothing is ended.
    pub(crate) async fn end(&self, data: &SessionData, request_id: &impl Display) -> Result<(), StoreUnavailable> {
        if let Backend::Store(shared) = &self.backend {
            let event = StoreEvent::Session { id: data.id.clone() };
            self.announce(shared, event).await.map_err(|()| StoreUnavailable)?;
        }
        self.ended.end_session(&data.id, data.expires_at, self.clock.now());
        self.close_ended_tunnels().await;
        self.cache.remove(&data.id).await;
        self.revoke_tokens(data, request_id).await;
        Ok(())
    }

    /// RFC 7009: revoke the refresh token (which ends its grant) and the access
    /// token. Failures are logged; the local sign-out happens regardless.
    async fn revoke_tokens(&self, data: &SessionData, request_id: &impl Display) {
        let Some(jar) = self.sessions_of(&data.provider) else { return };
        let Some(provider) = jar.provider.current() else { return };
        let Some(endpoint) = provider.metadata.revocation_endpoint.as_deref() else { return };
        let tokens =
            [(data.refresh_token.as_deref(), "refresh_token"), (Some(data.access_token.as_str()), "access_token")];
        for (value, hint) in tokens {
            let Some(value) = value else { continue };
            let started = std::time::Instant::now();
            let result = token::revoke(jar.provider.client(), endpoint, &jar.oidc, value, hint).await;
            self.metrics.idp_call("revoke", &jar.oidc.id, started.elapsed().as_secs_f64());
            if let Err(error) = result {
                tracing::warn!(target: "portcullis::auth", request_id = %request_id, event = "revocation_failed", token_type = hint, %error);
            }
        }
    }

    /// Claims a back-channel logout token's `jti` (until `until`), so that a
    /// replay is refused: in the store in store mode, else on this replica.
    pub(crate) async fn claim_logout_token(
        &self,
        jti: &str,
        until: UnixSeconds,
        now: UnixSeconds,
    ) -> Result<LogoutClaim, StoreUnavailable> {
        match &self.backend {
            Backend::Store(shared) => match shared.store.claim_once(jti, logout_tokens::JTI_MEMORY).await {
                Ok(true) => Ok(LogoutClaim::First),
                Ok(false) => Ok(LogoutClaim::Replayed),
                Err(_) => Err(StoreUnavailable),
            },
            Backend::Cookie => Ok(self.used_logout_tokens.claim(jti, until, now)),
        }
    }

    /// Ends the sessions a provider's back-channel logout names (`event` is a
    /// subject or a provider session) on every replica, and closes their tunnels.
    pub(crate) async fn end_by_logout(&self, event: StoreEvent) -> Result<(), StoreUnavailable> {
        match (&self.backend, event) {
            (Backend::Store(shared), event) => {
                self.announce(shared, event).await.map_err(|()| StoreUnavailable)?;
            }
            (Backend::Cookie, StoreEvent::ProviderSession { iss, sid, at }) => {
                self.ended.end_provider_session(&iss, &sid, at, self.clock.now());
            }
            (Backend::Cookie, StoreEvent::Subject { iss, sub, at }) => {
                self.ended.end_subject(&iss, &sub, at, self.clock.now());
            }
            (Backend::Cookie, StoreEvent::Session { .. }) => {}
        }
        self.close_ended_tunnels().await;
        Ok(())
    }

    /// Closes the tunnels whose session the ended-session records now say is over.
    async fn close_ended_tunnels(&self) {
        let has_ended = |tunnel: &TunnelSession| {
            self.ended.has_ended(&tunnel.id, &tunnel.issuer, &tunnel.subject, tunnel.sid.as_deref(), tunnel.created_at)
        };
        self.tunnels.close_ended(has_ended).await;
    }
}

/// The session cookie's name for a provider: the configured name for
/// `default` (so a single `[oidc]` keeps its cookies), `{name}_{id}` for the
/// others. Ids start with a letter, so they never read as a part number.
fn session_cookie_name(configured: &str, provider_id: &str) -> String {
    if provider_id == crate::config::DEFAULT_PROVIDER_ID {
        configured.to_owned()
    } else {
        format!("{configured}_{provider_id}")
    }
}
