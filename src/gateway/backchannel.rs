//! `POST /oauth2/backchannel_logout` (OpenID Connect Back-Channel Logout 1.0
//! §2.5 and §2.8): the provider tells us a user or a provider session logged
//! out; every matching session here ends at once.

use http::{HeaderValue, Method, Request, Response, header};
use hyper::body::Incoming;

use super::form::{read_form, single};
use super::login::seconds;
use super::refusal::{LogoutBlocker, Refusal};
use super::{Gateway, RequestId};
use crate::authz::ProviderSet;
use crate::body::ProxyBody;
use crate::oidc::id_token::JwtRules;
use crate::oidc::logout_token;
use crate::pages::Audience;
use crate::session::store::StoreEvent;
use crate::sessions::{LogoutClaim, StoreUnavailable};

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
        let Ok(form) = read_form(request).await else {
            return refused();
        };
        let Some(token) = single(&form, "logout_token") else {
            return refused();
        };
        let now = self.clock.now();
        // The token's issuer selects the provider (its signature is checked
        // with that provider's keys below); several clients may share one issuer.
        let issuer = crate::authz::claims::unverified_payload(token)
            .and_then(|claims| claims.get("iss").and_then(|iss| iss.as_str()).map(str::to_owned));
        let Some(issuer) = issuer else { return refused() };
        let mut validated = None;
        let mut provider_unavailable = false;
        for (_, candidate) in self.providers.with_issuer(ProviderSet::ALL, &issuer) {
            let Some(provider) = candidate.current() else {
                provider_unavailable = true;
                continue;
            };
            let oidc = &candidate.config;
            let rules = JwtRules {
                algorithms: &oidc.id_token_algorithms,
                issuer: &oidc.issuer,
                audience: &oidc.client_id,
                trusted_audiences: &oidc.trusted_audiences,
                now,
                skew_seconds: seconds(oidc.clock_skew),
            };
            match logout_token::validate(token, &provider.jwks, &rules).await {
                Ok(logout) => {
                    validated = Some(Ok(logout));
                    break;
                }
                Err(error) => validated = Some(Err(error)),
            }
        }
        let logout = match validated {
            Some(Ok(logout)) => logout,
            None if provider_unavailable => return deferred(LogoutBlocker::ProviderUnavailable),
            None => {
                tracing::warn!(target: "portcullis::auth", request_id = %request_id, event = "backchannel_logout_refused", error = "unknown issuer");
                return refused();
            }
            Some(Err(error)) => {
                tracing::warn!(target: "portcullis::auth", request_id = %request_id, event = "backchannel_logout_refused", %error);
                return refused();
            }
        };
        // Token ids are unique per issuer only.
        let jti = crate::session::ended::issued_by(&issuer, &logout.jti);
        let claim = match self.sessions.claim_logout_token(&jti, logout.acceptable_until, now).await {
            Ok(claim) => claim,
            Err(StoreUnavailable) => return deferred(LogoutBlocker::StoreUnavailable),
        };
        match claim {
            LogoutClaim::First => {}
            LogoutClaim::Replayed => {
                tracing::warn!(target: "portcullis::auth", request_id = %request_id, event = "backchannel_logout_refused", error = "replayed");
                return refused();
            }
            // §2.8 leaves the status of a logout that failed open; 503 tells the provider to retry.
            LogoutClaim::Full { retry_after } => {
                return deferred(LogoutBlocker::Full { retry_after_seconds: retry_after });
            }
        }
        // §2.6: with both, the sid names the session; sub alone ends all of the user's.
        let event = match (&logout.sid, &logout.sub) {
            (Some(sid), _) => Some(StoreEvent::ProviderSession { iss: issuer.clone(), sid: sid.clone(), at: now }),
            (None, Some(sub)) => Some(StoreEvent::Subject { iss: issuer.clone(), sub: sub.clone(), at: now }),
            (None, None) => None,
        };
        if let Some(event) = event
            && self.sessions.end_by_logout(event).await.is_err()
        {
            // The provider may retry; the logout is not lost silently.
            return deferred(LogoutBlocker::StoreUnavailable);
        }
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
