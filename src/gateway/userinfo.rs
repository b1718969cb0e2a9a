//! `/oauth2/userinfo`: the signed-in user's identity as JSON, for pages and
//! scripts behind the gateway. Claims only: tokens never leave the gateway here.

use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;

use super::refusal::{ProviderNeed, Refusal};
use super::{Gateway, RecentSession, RequestId};
use crate::body::{ProxyBody, full};
use crate::pages::{self, Audience};

impl Gateway {
    /// The session's principal as JSON; 401 without a session, 503 while the session store
    /// or the provider (for a session needing renewal) is unreachable.
    pub(super) async fn userinfo(
        &self,
        request: &Request<Incoming>,
        recent: &RecentSession,
        request_id: &RequestId,
    ) -> Response<ProxyBody> {
        let authenticated = self.authenticate(request.headers(), recent).await;
        let Some(session) = authenticated.session else {
            let refusal = if authenticated.store_unavailable {
                Refusal::StoreUnavailable
            } else if authenticated.provider_unavailable {
                Refusal::ProviderUnavailable(ProviderNeed::SessionRenewal)
            } else {
                Refusal::LoginRequired
            };
            return refusal.render(Audience::Api, request_id);
        };
        let Ok(body) = serde_json::to_string(&*session.caller.principal) else {
            return Refusal::Internal.render(Audience::Api, request_id);
        };
        let mut response = Response::new(full(body));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        pages::harden(&mut response);
        for cookie in authenticated.set_cookies {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        response
    }
}
