//! `/oauth2/sign_out`: ends the session in this browser and on this gateway.

use http::{Request, Response, header};
use hyper::body::Incoming;

use super::Gateway;
use crate::body::ProxyBody;
use crate::pages;
use crate::session::cookies::{flow_cookie_names, single_cookie_value};
use crate::session::data::SessionData;
use crate::session::seal::Purpose;

impl Gateway {
    pub(super) async fn sign_out(&self, request: &Request<Incoming>) -> Response<ProxyBody> {
        let name = self.cookies.session_name();
        let session = single_cookie_value(request.headers(), name)
            .and_then(|sealed| self.keys.open(Purpose::Session, name, sealed).ok())
            .and_then(|(json, _)| serde_json::from_slice::<SessionData>(&json).ok());
        if let Some(data) = &session {
            self.cache.remove(&data.id).await;
            tracing::info!(target: "portcullis::auth", event = "signed_out", user = %data.sub);
        }
        let requested = request
            .uri()
            .query()
            .and_then(|query| {
                form_urlencoded::parse(query.as_bytes())
                    .find(|(key, _)| key == "rd")
                    .map(|(_, value)| value.into_owned())
            })
            .unwrap_or_else(|| "/".to_owned());
        let mut response = pages::redirect(&self.redirects.sanitise(&requested));
        let headers = response.headers_mut();
        let stale: Vec<String> = flow_cookie_names(request.headers(), &self.cookies).map(str::to_owned).collect();
        for cookie in std::iter::once(name.to_owned()).chain(stale) {
            if let Some(clear) = self.cookies.clear(&cookie) {
                headers.append(header::SET_COOKIE, clear);
            }
        }
        response
    }
}
