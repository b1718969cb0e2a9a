//! `/oauth2/userinfo`: the signed-in user's identity as JSON, for pages and
//! scripts behind the gateway. Claims only: tokens never leave the gateway here.

use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;

use super::refusal::{ProviderNeed, Refusal};
use super::session_auth::Authentication;
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
        let session = match authenticated {
            Authentication::Session(session) => session,
            Authentication::StoreUnavailable => return Refusal::StoreUnavailable.render(Audience::Api, request_id),
            Authentication::ProviderUnavailable => {
                return Refusal::ProviderUnavailable(ProviderNeed::SessionRenewal).render(Audience::Api, request_id);
            }
            Authentication::Anonymous | Authentication::Invalid => {
                return Refusal::LoginRequired.render(Audience::Api, request_id);
            }
        };
        let Ok(body) = serde_json::to_string(&*session.caller.principal) else {
            return Refusal::Internal.render(Audience::Api, request_id);
        };
        let mut response = Response::new(full(body));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        pages::harden(&mut response);
        for cookie in session.set_cookies {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        response
    }
}
