//! `/oauth2/userinfo`: the signed-in user's identity as JSON, for pages and
//! scripts behind the gateway. Claims only: tokens never leave the gateway here.

use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;

use super::refusal::Refusal;
use super::{Connection, Gateway, RequestId};
use crate::authz::ProviderSet;
use crate::body::{ProxyBody, full};
use crate::pages::{self, Audience};

impl Gateway {
    /// The caller's principal as JSON, identified as on the proxy path (session
    /// cookie, else bearer token); refused as there: 401 without a caller (an
    /// invalid session cookie cleared), 503 while the session store or the
    /// provider (for a session needing renewal, or a token's check) is unreachable.
    pub(super) async fn userinfo(
        &self,
        request: &Request<Incoming>,
        connection: &Connection,
        request_id: &RequestId,
    ) -> Response<ProxyBody> {
        // No route: a session at any provider will do.
        let session = match self.identify(request.headers(), connection, request_id, ProviderSet::ALL).await {
            Ok(caller) => caller,
            Err(refusal) => {
                let mut response = refusal.render(Audience::Api, request_id);
                if let Some(challenge) = refusal.needs_login().and_then(|accepted| self.login_challenge(accepted)) {
                    response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
                }
                if let Refusal::SessionInvalid(accepted) = refusal {
                    self.clear_session_cookie(request.headers(), accepted, &mut response);
                }
                return response;
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
