//! `POST /oauth2/backchannel_logout` (OpenID Connect Back-Channel Logout 1.0
//! §2.5 and §2.8): the provider tells us a user or a provider session logged
//! out; every matching session here ends at once.

use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::form::{read_form, single};
use super::login::seconds;
use super::{Gateway, RequestId};
use crate::body::{ProxyBody, full};
use crate::oidc::id_token::JwtRules;
use crate::oidc::logout_token;
use crate::session::store::StoreEvent;

/// A used logout token's `jti` is remembered this long to refuse replays.
pub(super) const JTI_MEMORY: Duration = Duration::from_secs(600);

impl Gateway {
    pub(super) async fn backchannel_logout(
        &self,
        request: Request<Incoming>,
        request_id: &RequestId,
    ) -> Response<ProxyBody> {
        if request.method() != Method::POST {
            return answer(StatusCode::METHOD_NOT_ALLOWED, Some("invalid_request"));
        }
        let Some(provider) = self.provider.current() else {
            return answer(StatusCode::SERVICE_UNAVAILABLE, Some("temporarily_unavailable"));
        };
        let Ok(form) = read_form(request).await else {
            return answer(StatusCode::BAD_REQUEST, Some("invalid_request"));
        };
        let Some(token) = single(&form, "logout_token") else {
            return answer(StatusCode::BAD_REQUEST, Some("invalid_request"));
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
                return answer(StatusCode::BAD_REQUEST, Some("invalid_request"));
            }
        };
        let jti = &logout.jti;
        if let Some(shared) = &self.shared {
            match shared.store.claim_once(jti, JTI_MEMORY).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(target: "portcullis::auth", request_id = %request_id, event = "backchannel_logout_refused", error = "replayed");
                    return answer(StatusCode::BAD_REQUEST, Some("invalid_request"));
                }
                Err(_) => return answer(StatusCode::SERVICE_UNAVAILABLE, Some("temporarily_unavailable")),
            }
        }
        if self.used_logout_tokens.contains_key(jti) {
            tracing::warn!(target: "portcullis::auth", request_id = %request_id, event = "backchannel_logout_refused", error = "replayed");
            return answer(StatusCode::BAD_REQUEST, Some("invalid_request"));
        }
        self.used_logout_tokens.insert(jti.clone(), ()).await;
        // §2.6: with both, the sid names the session; sub alone ends all of the user's.
        let event = match (&logout.sid, &logout.sub) {
            (Some(sid), _) => Some(StoreEvent::ProviderSession { sid: sid.clone(), at: now }),
            (None, Some(sub)) => Some(StoreEvent::Subject { sub: sub.clone(), at: now }),
            (None, None) => None,
        };
        match (&self.shared, event) {
            (Some(shared), Some(event)) => {
                if self.announce(shared, event).await.is_err() {
                    // The provider may retry; the logout is not lost silently.
                    return answer(StatusCode::SERVICE_UNAVAILABLE, Some("temporarily_unavailable"));
                }
            }
            (None, Some(StoreEvent::ProviderSession { sid, at })) => self.ended.end_provider_session(&sid, at, now),
            (None, Some(StoreEvent::Subject { sub, at })) => self.ended.end_subject(&sub, at, now),
            (None, Some(StoreEvent::Session { .. })) | (_, None) => {}
        }
        self.tunnels.close_ended(&self.ended).await;
        tracing::info!(
            target: "portcullis::auth", request_id = %request_id, event = "backchannel_logout",
            user = logout.sub.as_deref().unwrap_or("-"), by_sid = logout.sid.is_some()
        );
        answer(StatusCode::OK, None)
    }
}

fn answer(status: StatusCode, error: Option<&str>) -> Response<ProxyBody> {
    let body = error.map(|code| serde_json::json!({ "error": code }).to_string()).unwrap_or_default();
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if error.is_some() {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    response
}
