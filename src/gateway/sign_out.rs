//! `/oauth2/sign_out`: ends the session in this browser, on this gateway and,
//! when configured, at the provider.
//!
//! Cross-site requests cannot sign a user out: a GET signs out only when
//! Fetch Metadata shows the user's own navigation (`same-origin` or `none`);
//! anything else gets a confirmation page whose POST carries a CSRF token
//! bound to the session.

use http::{HeaderMap, Method, Request, Response, header};
use hyper::body::Incoming;

use super::form::{query_value, read_form, single};
use super::refusal::Refusal;
use super::{Gateway, RequestId};
use crate::authz::ProviderSet;
use crate::body::{ProxyBody, full};
use crate::pages::{self, Audience, escape_html};
use crate::session::data::SessionData;
use crate::sessions::StoreUnavailable;

const CSRF_LABEL: &str = "sign-out";

impl Gateway {
    pub(super) async fn sign_out(&self, request: Request<Incoming>, request_id: &RequestId) -> Response<ProxyBody> {
        // `?provider=ID` signs out of that provider's session only; without it, of every session this browser holds.
        let only = query_value(request.uri().query(), "provider");
        let providers = match only.as_deref() {
            None => ProviderSet::ALL,
            Some(id) => match self.providers.by_id(id) {
                Some((index, _)) => ProviderSet::only(index),
                None => return Refusal::UnknownProvider.render(Audience::Browser, request_id),
            },
        };
        let held = match self.sessions.held(request.headers(), providers).await {
            Ok(held) => held,
            // A sign-out that cannot reach the store could not end the session everywhere.
            Err(StoreUnavailable) => return Refusal::StoreUnavailable.render(Audience::Browser, request_id),
        };
        let headers = request.headers().clone();
        let fetch_site =
            headers.get("sec-fetch-site").and_then(|value| value.to_str().ok()).map(str::to_ascii_lowercase);
        let user_initiated = matches!(fetch_site.as_deref(), Some("same-origin" | "none"));

        let (confirmed, requested) = match *request.method() {
            Method::GET | Method::HEAD => (user_initiated, query_value(request.uri().query(), "rd")),
            Method::POST => {
                if !self.origin_allowed(&headers) {
                    return Refusal::CrossSiteSignOut.render(Audience::Browser, request_id);
                }
                let form = read_form(request).await.unwrap_or_default();
                let token_ok = match (held.first(), single(&form, "csrf")) {
                    (Some(data), Some(token)) => self.sessions.verify_mac(CSRF_LABEL, &data.id, token),
                    // Without a session there is nothing to protect.
                    (None, _) => true,
                    (Some(_), None) => false,
                };
                (token_ok || fetch_site.as_deref() == Some("same-origin"), single(&form, "rd").map(str::to_owned))
            }
            _ => {
                return Refusal::MethodNotAllowed.render(Audience::Api, request_id);
            }
        };
        let target = self.redirects.sanitise(requested.as_deref().unwrap_or("/"));
        if !confirmed {
            return self.confirmation_page(held.first(), only.as_deref(), &target);
        }

        let mut location = target;
        let mut provider_logout = None;
        for data in &held {
            if self.sessions.end(data, request_id).await.is_err() {
                return Refusal::StoreUnavailable.render(Audience::Browser, request_id);
            }
            // One redirect only: the first session whose provider ends its own session too.
            if provider_logout.is_none() {
                provider_logout = self.provider_logout_url(data);
            }
            tracing::info!(
                target: "portcullis::auth", request_id = %request_id, event = "signed_out",
                user = %data.sub, provider = %data.provider
            );
        }
        if let Some(end_session) = provider_logout {
            location = end_session;
        }
        let mut response = pages::redirect(&location);
        let clears = match only {
            None => self.sessions.clear_all_cookies(&headers),
            Some(_) => self.sessions.clear_session_cookie(&headers, providers),
        };
        for clear in clears {
            response.headers_mut().append(header::SET_COOKIE, clear);
        }
        response
    }

    /// A POST's `Origin`, when sent, must be one the gateway serves: its
    /// public origin, or an application host it routes (`[[upstreams]] host`,
    /// whose pages show this confirmation too) on the same port, over https or
    /// the public URL's scheme.
    fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN).and_then(|value| value.to_str().ok()) else { return true };
        let Ok(origin) = url::Url::parse(origin) else { return false };
        let public = &self.config.public_url;
        if origin.origin() == public.origin() {
            return true;
        }
        let scheme_ok = origin.scheme() == "https" || origin.scheme() == public.scheme();
        let port_ok = origin.port_or_known_default() == public.port_or_known_default();
        let served = origin.host_str().is_some_and(|host| self.upstreams.current().serves_host(host));
        scheme_ok && port_ok && served
    }

    /// OIDC RP-Initiated Logout 1.0 §2, when configured and offered.
    fn provider_logout_url(&self, data: &SessionData) -> Option<String> {
        let (_, identity_provider) = self.providers.by_id(&data.provider)?;
        let oidc = &identity_provider.config;
        if !oidc.end_session_on_sign_out {
            return None;
        }
        let provider = identity_provider.current()?;
        let mut url = url::Url::parse(provider.metadata.end_session_endpoint.as_deref()?).ok()?;
        let state = crate::random::token::<16>().ok()?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(id_token) = &data.id_token {
                query.append_pair("id_token_hint", id_token);
            }
            query
                .append_pair("client_id", &oidc.client_id)
                .append_pair("post_logout_redirect_uri", oidc.post_logout_redirect_url.as_str())
                .append_pair("state", &state);
        }
        Some(url.to_string())
    }

    fn confirmation_page(
        &self,
        session: Option<&SessionData>,
        only: Option<&str>,
        target: &str,
    ) -> Response<ProxyBody> {
        let csrf = session.map(|data| self.sessions.mac(CSRF_LABEL, &data.id)).unwrap_or_default();
        // The form posts back to the same scope (one provider, or all).
        let action = match only {
            Some(id) => format!("/oauth2/sign_out?provider={id}"),
            None => "/oauth2/sign_out".to_owned(),
        };
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign out</title>\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<style>body{{font-family:system-ui,sans-serif;max-width:30rem;margin:4rem auto;padding:0 1rem}}\
button{{font-size:1rem;padding:.5rem 1.2rem}}</style></head><body><h1>Sign out?</h1>\
<form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"rd\" value=\"{target}\"><button type=\"submit\">Sign out</button></form></body></html>",
            csrf = escape_html(&csrf),
            action = escape_html(&action),
            target = escape_html(target),
        );
        let mut response = Response::new(full(body));
        response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/html; charset=utf-8"));
        pages::harden(&mut response);
        response
    }
}
