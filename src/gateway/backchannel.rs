//! `POST /oauth2/backchannel_logout` (OpenID Connect Back-Channel Logout 1.0
//! §2.5 and §2.8): the provider tells us a user or a provider session logged
//! out; every matching session here ends at once.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, header};
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;

use super::form::{read_form, single};
use super::login::seconds;
use super::refusal::{LogoutBlocker, Refusal};
use super::shared::Backend;
use super::{Gateway, RequestId};
use crate::body::ProxyBody;
use crate::clock::UnixSeconds;
use crate::oidc::id_token::JwtRules;
use crate::oidc::logout_token;
use crate::pages::Audience;
use crate::session::expiring::ExpiringMap;
use crate::session::store::StoreEvent;

/// Store mode: a used logout token's `jti` is claimed in Redis this long to refuse replays.
pub(super) const JTI_MEMORY: Duration = Duration::from_secs(600);

/// The `jti`s of the logout tokens used on this replica (without a session
/// store), each kept until its token would be refused as expired or too old
/// anyway, and never dropped before that to make room: a forgotten `jti`
/// could be replayed. At most `max_entries`; beyond that new logout tokens
/// are refused (503: the provider retries), counted and logged.
#[derive(Debug)]
pub(super) struct UsedLogoutTokens {
    ids: Mutex<ExpiringMap<()>>,
    max_entries: usize,
    /// Counts the logout tokens refused because the memory was full.
    overflows: Counter,
}

/// What [`UsedLogoutTokens::claim`] found.
#[derive(Debug, PartialEq, Eq)]
enum Claim {
    /// First use: remembered now.
    First,
    Replayed,
    /// The memory is full: try again in this many seconds, when an entry may go.
    Full {
        retry_after: u64,
    },
}

impl UsedLogoutTokens {
    pub(super) fn new(max_entries: u64, overflows: Counter) -> Self {
        Self {
            ids: Mutex::new(ExpiringMap::default()),
            max_entries: usize::try_from(max_entries).unwrap_or(usize::MAX).max(1),
            overflows,
        }
    }

    /// Remembers `jti` until `until` unless it was used before or there is no room.
    fn claim(&self, jti: &str, until: UnixSeconds, now: UnixSeconds) -> Claim {
        let retry_after = {
            let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
            ids.drop_expired(now);
            if ids.contains_key(jti) {
                return Claim::Replayed;
            }
            if ids.len() < self.max_entries {
                ids.insert(jti, (), until);
                return Claim::First;
            }
            ids.next_expiry().map_or(1, |first| first.saturating_sub(now)).max(1)
        };
        self.overflows.inc();
        tracing::error!(
            target: "portcullis::auth",
            event = "used_logout_tokens_full",
            max_entries = self.max_entries,
            "the used logout tokens reached session.ended_max_entries: back-channel logouts are refused (503) until \
             the oldest can no longer be replayed"
        );
        Claim::Full { retry_after: u64::try_from(retry_after).unwrap_or(1) }
    }
}

impl Gateway {
    pub(super) async fn backchannel_logout(
        &self,
        request: Request<Incoming>,
        request_id: &RequestId,
    ) -> Response<ProxyBody> {
        let refused = || Refusal::LogoutRefused.render(Audience::Api, request_id);
        let deferred = |blocker| Refusal::LogoutDeferred(blocker).render(Audience::Api, request_id);
        if request.method() != Method::POST {
            return Refusal::MethodNotAllowed.render(Audience::Api, request_id);
        }
        let Some(provider) = self.provider.current() else {
            return deferred(LogoutBlocker::ProviderUnavailable);
        };
        let Ok(form) = read_form(request).await else {
            return refused();
        };
        let Some(token) = single(&form, "logout_token") else {
            return refused();
        };
        let now = self.clock.now();
        let rules = JwtRules {
            algorithms: &self.config.oidc.id_token_algorithms,
            issuer: &self.config.oidc.issuer,
            audience: &self.config.oidc.client_id,
            trusted_audiences: &self.config.oidc.trusted_audiences,
            now,
            skew_seconds: seconds(self.config.oidc.clock_skew),
        };
        let validated = logout_token::validate(token, &provider.jwks, &rules).await;
        let logout = match validated {
            Ok(logout) => logout,
            Err(error) => {
                tracing::warn!(target: "portcullis::auth", request_id = %request_id, event = "backchannel_logout_refused", %error);
                return refused();
            }
        };
        let jti = &logout.jti;
        let claim = match &self.backend {
            Backend::Store(shared) => match shared.store.claim_once(jti, JTI_MEMORY).await {
                Ok(true) => Claim::First,
                Ok(false) => Claim::Replayed,
                Err(_) => return deferred(LogoutBlocker::StoreUnavailable),
            },
            Backend::Cookie => self.used_logout_tokens.claim(jti, logout.acceptable_until, now),
        };
        match claim {
            Claim::First => {}
            Claim::Replayed => {
                tracing::warn!(target: "portcullis::auth", request_id = %request_id, event = "backchannel_logout_refused", error = "replayed");
                return refused();
            }
            // §2.8 leaves the status of a logout that failed open; 503 tells the provider to retry.
            Claim::Full { retry_after } => {
                return deferred(LogoutBlocker::Full { retry_after_seconds: retry_after });
            }
        }
        // §2.6: with both, the sid names the session; sub alone ends all of the user's.
        let event = match (&logout.sid, &logout.sub) {
            (Some(sid), _) => Some(StoreEvent::ProviderSession { sid: sid.clone(), at: now }),
            (None, Some(sub)) => Some(StoreEvent::Subject { sub: sub.clone(), at: now }),
            (None, None) => None,
        };
        match (&self.backend, event) {
            (Backend::Store(shared), Some(event)) => {
                if self.announce(shared, event).await.is_err() {
                    // The provider may retry; the logout is not lost silently.
                    return deferred(LogoutBlocker::StoreUnavailable);
                }
            }
            (Backend::Cookie, Some(StoreEvent::ProviderSession { sid, at })) => {
                self.ended.end_provider_session(&sid, at, now);
            }
            (Backend::Cookie, Some(StoreEvent::Subject { sub, at })) => self.ended.end_subject(&sub, at, now),
            (Backend::Cookie, Some(StoreEvent::Session { .. })) | (_, None) => {}
        }
        self.close_ended_tunnels().await;
        tracing::info!(
            target: "portcullis::auth", request_id = %request_id, event = "backchannel_logout",
            user = logout.sub.as_deref().unwrap_or("-"), by_sid = logout.sid.is_some()
        );
        logged_out()
    }
}

/// The 200 of a logout recorded (§2.8: an empty body will do).
fn logged_out() -> Response<ProxyBody> {
    let mut response = Response::new(crate::body::empty());
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_tokens_are_kept_until_their_time_and_a_full_memory_refuses_new_ones() {
        let used = UsedLogoutTokens::new(2, Counter::default());
        assert_eq!(used.claim("a", 100, 10), Claim::First);
        assert_eq!(used.claim("b", 150, 11), Claim::First);
        assert_eq!(used.claim("a", 100, 12), Claim::Replayed);
        assert_eq!(used.claim("c", 200, 40), Claim::Full { retry_after: 60 }, "until a may go");
        assert_eq!(used.claim("b", 150, 41), Claim::Replayed, "nothing was forgotten for room");
        assert_eq!(used.overflows.get(), 1);
        assert_eq!(used.claim("c", 200, 100), Claim::First, "a went at its time");
        assert_eq!(used.claim("b", 150, 149), Claim::Replayed);
    }
}
