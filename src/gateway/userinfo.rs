//! `/oauth2/userinfo`: the signed-in user's identity as JSON, for pages and
//! scripts behind the gateway. Claims only: tokens never leave the gateway here.

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::{Connection, Gateway, RequestId};
use crate::body::{ProxyBody, full};
use crate::pages::{self, Audience};

impl Gateway {
    /// The session's principal as JSON; 401 without a session, 503 while the session store
    /// or the provider (for a session needing renewal) is unreachable.
    pub(super) async fn userinfo(
        &self,
        request: &Request<Incoming>,
        connection: &Connection,
        request_id: &RequestId,
    ) -> Response<ProxyBody> {
        let authenticated = self.authenticate(request.headers(), &connection.recent).await;
        let Some(session) = authenticated.session else {
            if authenticated.store_unavailable {
                return self.store_unavailable_page(Audience::Api, request_id);
            }
            if authenticated.provider_unavailable {
                return self.provider_unavailable_page(Audience::Api, super::SESSION_NOT_RENEWABLE, request_id);
            }
            let mut response = self.fail(
                Audience::Api,
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Sign in to see your identity.",
                request_id,
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"portcullis\""));
            return response;
        };
        let Ok(body) = serde_json::to_string(&*session.caller.principal) else {
            return self.fail(
                Audience::Api,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Try again.",
                request_id,
            );
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
