//! Refreshing access tokens: one token-endpoint call per session however many
//! requests need it at once. Outcomes are kept briefly per (session, access
//! token replaced): requests still carrying the old cookie get the new tokens
//! instead of replaying a rotated refresh token, and failures back off.
//!
//! Every refresh replaces the access token, so the key of the next refresh
//! differs from this one's: a remembered outcome is only ever served to
//! requests carrying the token it replaced, and one whose own token is due by
//! now is refreshed in turn (from its newer refresh token), never served.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use sha2::{Digest, Sha256};

use super::Sessions;
use super::shared::Backend;
use crate::clock::UnixSeconds;
use crate::clock::seconds;
use crate::oidc::id_token::{self, Expectations};
use crate::oidc::token;
use crate::secret::SecretString;
use crate::session::cache::ActiveSession;
use crate::session::data::SessionData;

/// How long a success or an ended session is remembered for late requests with the old cookie.
const SETTLED_FOR: Duration = Duration::from_secs(120);
/// How long a session waits after a failed refresh before trying again.
pub(super) const BACKOFF_SECONDS: i64 = 10;
/// Failed outcomes are dropped after this (memory bound; the retry time decides).
const FAILURE_KEPT_FOR: Duration = Duration::from_secs(60);
/// A token is refreshed at most `session.refresh_margin` before it expires and
/// in the last 1/this of its lifetime at the earliest: a token that lives
/// shorter than the margin is refreshed once per lifetime, not on every request.
const LIFETIME_SHARE_OF_MARGIN: i64 = 4;
/// How many remembered outcomes one request follows, each due by now, before
/// it gives up (a provider issuing tokens that are due at once).
const MAX_FOLLOWED_OUTCOMES: usize = 2;

/// The result of one refresh attempt for one token generation.
#[derive(Debug)]
pub(super) enum RefreshOutcome {
    /// New tokens: the session to seal into the cookie and to serve with.
    Refreshed { data: Box<SessionData>, active: Arc<ActiveSession> },
    /// The provider refused the refresh token: the session is over.
    Ended,
    /// The provider could not be asked; try again from `retry_at` (gateway clock).
    Unavailable { retry_at: UnixSeconds },
    /// Store mode: the shared store could not be asked (nothing was refreshed, or the result was lost).
    StoreUnavailable,
}

/// What a refresh replaces: the session id and a digest of its access token
/// and that token's expiry, which change with every refresh.
pub(super) type FlightKey = (String, [u8; 32]);

/// The key of the refresh that replaces `data`'s access token.
pub(super) fn flight_key(data: &SessionData) -> FlightKey {
    let digest = Sha256::new()
        .chain_update(data.access_token.as_bytes())
        .chain_update(data.access_expires_at.to_be_bytes())
        .finalize();
    (data.id.clone(), digest.into())
}

/// Single-flight refreshes keyed by [`FlightKey`].
pub(super) type RefreshFlights = Cache<FlightKey, Arc<RefreshOutcome>>;

struct OutcomeExpiry;

impl moka::Expiry<FlightKey, Arc<RefreshOutcome>> for OutcomeExpiry {
    fn expire_after_create(
        &self,
        _key: &FlightKey,
        value: &Arc<RefreshOutcome>,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(match value.as_ref() {
            RefreshOutcome::Unavailable { .. } => FAILURE_KEPT_FOR,
            // Retried as soon as the store answers again.
            RefreshOutcome::StoreUnavailable => Duration::from_secs(1),
            RefreshOutcome::Refreshed { .. } | RefreshOutcome::Ended => SETTLED_FOR,
        })
    }
}

/// The flight table, bounded like the session cache.
pub(super) fn flights(max_entries: u64) -> RefreshFlights {
    Cache::builder().max_capacity(max_entries).expire_after(OutcomeExpiry).build()
}

impl Sessions {
    /// When an access token issued at `issued_at` (`0`: not known) and
    /// expiring at `expires_at` is due for refresh.
    pub(super) fn refresh_at(&self, issued_at: UnixSeconds, expires_at: UnixSeconds) -> UnixSeconds {
        let mut margin = seconds(self.session.refresh_margin);
        if issued_at > 0 {
            margin = margin.min(expires_at.saturating_sub(issued_at).max(0) / LIFETIME_SHARE_OF_MARGIN);
        }
        expires_at.saturating_sub(margin)
    }

    /// Whether `data`'s access token is due for refresh at `now`.
    pub(super) fn refresh_due(&self, data: &SessionData, now: UnixSeconds) -> bool {
        self.refresh_at(data.access_issued_at, data.access_expires_at) <= now
    }

    /// Refreshes `data`'s tokens, joining a refresh already under way for it
    /// (across replicas in store mode). Never returns tokens that have expired.
    pub(super) async fn refresh(&self, data: &SessionData) -> Arc<RefreshOutcome> {
        let mut outcome = self.refresh_flight(data).await;
        for _ in 0..MAX_FOLLOWED_OUTCOMES {
            // An outcome remembered for a late request can be due itself: its
            // tokens (the newest refresh token) are refreshed in turn.
            let next = match outcome.as_ref() {
                RefreshOutcome::Refreshed { data: refreshed, .. } if self.refresh_due(refreshed, self.clock.now()) => {
                    SessionData::clone(refreshed)
                }
                _ => break,
            };
            outcome = self.refresh_flight(&next).await;
        }
        match outcome.as_ref() {
            RefreshOutcome::Refreshed { data: refreshed, .. } if refreshed.access_expires_at <= self.clock.now() => {
                tracing::warn!(target: "portcullis::auth", event = "refresh_failed", reason = "token_expired", user = %data.sub);
                Arc::new(self.refresh_unavailable())
            }
            _ => outcome,
        }
    }

    /// The one refresh of `data`'s access token: joined while under way, remembered after.
    async fn refresh_flight(&self, data: &SessionData) -> Arc<RefreshOutcome> {
        let key = flight_key(data);
        // Backoff runs on the gateway's clock: once it has passed, the failure is forgotten and one request tries again.
        if let Some(previous) = self.refreshes.get(&key).await
            && let RefreshOutcome::Unavailable { retry_at } = previous.as_ref()
            && *retry_at <= self.clock.now()
        {
            self.refreshes.invalidate(&key).await;
        }
        self.refreshes
            .get_with(key, async {
                Arc::new(match &self.backend {
                    Backend::Store(shared) => self.refresh_leased(shared, data).await,
                    Backend::Cookie => self.refresh_once(data).await,
                })
            })
            .await
    }

    pub(super) async fn refresh_once(&self, data: &SessionData) -> RefreshOutcome {
        let Some(refresh_token) = data.refresh_token.as_deref() else { return RefreshOutcome::Ended };
        // A session of a provider no longer configured cannot be refreshed: it ends.
        let Some(jar) = self.sessions_of(&data.provider) else { return RefreshOutcome::Ended };
        let Some(provider) = jar.provider.current() else { return self.refresh_unavailable() };
        let oidc = &jar.oidc;
        let refresh_token = SecretString::new(refresh_token);
        let started = std::time::Instant::now();
        let result =
            token::refresh(jar.provider.client(), &provider.metadata.token_endpoint, oidc, &refresh_token).await;
        self.metrics.idp_call("refresh", &oidc.id, started.elapsed().as_secs_f64());
        let tokens = match result {
            Ok(tokens) => tokens,
            Err(error) if error.is_invalid_grant() => {
                self.metrics.refresh("rejected");
                tracing::info!(target: "portcullis::auth", event = "refresh_rejected", reason = "invalid_grant", user = %data.sub);
                return RefreshOutcome::Ended;
            }
            Err(error) => {
                tracing::warn!(target: "portcullis::auth", event = "refresh_failed", %error, user = %data.sub);
                self.metrics.refresh("unavailable");
                return self.refresh_unavailable();
            }
        };

        let now = self.clock.now();
        let mut refreshed = data.clone();
        if let Some(raw) = tokens.id_token.as_ref() {
            let expectations = Expectations {
                issuer: &oidc.issuer,
                client_id: &oidc.client_id,
                trusted_audiences: &oidc.trusted_audiences,
                nonce: None,
                algorithms: &oidc.id_token_algorithms,
                now,
                skew_seconds: seconds(oidc.clock_skew),
            };
            match id_token::validate(raw.expose(), &provider.jwks, &expectations).await {
                // OIDC Core §12.2: a refreshed ID token must be about the same user.
                Ok(claims) if claims.sub == data.sub && claims.iss == data.iss => {
                    refreshed.email = claims.email.or(refreshed.email);
                    refreshed.email_verified = claims.email_verified.or(refreshed.email_verified);
                    refreshed.name = claims.name.or(refreshed.name);
                    refreshed.preferred_username = claims.preferred_username.or(refreshed.preferred_username);
                    refreshed.roles = jar.groups_in(&claims.payload);
                    refreshed.id_token = Some(raw.expose().to_owned());
                }
                Ok(_) => {
                    tracing::warn!(target: "portcullis::auth", event = "refresh_rejected", reason = "subject_changed", user = %data.sub);
                    return RefreshOutcome::Ended;
                }
                // Not the session's fault (the provider rotating its keys, say). The
                // tokens came from the token endpoint itself and are kept: a rotated
                // refresh token cannot be used twice. Its claims are not trusted: the
                // session keeps the ones it has until an ID token verifies again.
                Err(error) => {
                    if names_another_user(raw.expose(), data) {
                        tracing::warn!(target: "portcullis::auth", event = "refresh_rejected", reason = "subject_changed", user = %data.sub);
                        return RefreshOutcome::Ended;
                    }
                    tracing::warn!(target: "portcullis::auth", event = "refresh_id_token_unverified", %error, user = %data.sub);
                }
            }
        }
        let expires_in = tokens.expires_in.and_then(|s| i64::try_from(s).ok()).unwrap_or(300);
        refreshed.access_token = tokens.access_token.expose().to_owned();
        refreshed.access_expires_at = now.saturating_add(expires_in);
        refreshed.access_issued_at = now;
        refreshed.last_seen_at = now;
        // Without rotation the provider omits refresh_token: keep the one we have.
        if let Some(rotated) = tokens.refresh_token {
            refreshed.refresh_token = Some(rotated.expose().to_owned());
        }
        let Some(active) = ActiveSession::from_session(&refreshed) else { return RefreshOutcome::Ended };
        let active = Arc::new(active);
        self.cache.insert(refreshed.id.clone(), Arc::clone(&active)).await;
        tracing::info!(target: "portcullis::auth", event = "refreshed", user = %data.sub);
        self.metrics.refresh("refreshed");
        RefreshOutcome::Refreshed { data: Box::new(refreshed), active }
    }

    /// The outcome of a refresh that may succeed later: backs off from now.
    fn refresh_unavailable(&self) -> RefreshOutcome {
        RefreshOutcome::Unavailable { retry_at: self.clock.now().saturating_add(BACKOFF_SECONDS) }
    }
}

/// Whether an ID token that could not be verified says it is about another
/// user than `data`'s (fail closed: even unverified, that ends the session).
fn names_another_user(id_token: &str, data: &SessionData) -> bool {
    let Some(payload) = crate::authz::claims::unverified_payload(id_token) else { return false };
    let differs = |claim: &str, ours: &str| payload.get(claim).and_then(|value| value.as_str()) != Some(ours);
    differs("sub", &data.sub) || differs("iss", &data.iss)
}
