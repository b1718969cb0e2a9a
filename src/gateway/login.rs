//! Starting a login: browsers are redirected to the provider with a fresh
//! PKCE verifier, `state` and `nonce` sealed in a flow cookie; API clients get
//! a 401 they can act on, never a redirect.

use http::{Request, Response, header};
use hyper::body::Incoming;
use url::Url;

use super::authority;
use super::form::query_value;
use super::providers::IdentityProvider;
use super::refusal::{ProviderNeed, Refusal};
use super::{Gateway, RequestId};
use crate::authz::ProviderSet;
use crate::body::ProxyBody;
use crate::oidc::authorize::{AuthorizationRequest, authorization_url};
use crate::oidc::pkce::PkceVerifier;
use crate::pages::{self, Audience};
use crate::random;
use crate::session::flow::{FLOW_FORMAT, LoginFlow};

/// Login attempts kept at once per browser; older flow cookies are cleared so
/// a crawler or a stuck tab cannot grow the Cookie header without bound.
const MAX_PARALLEL_FLOWS: usize = 4;

impl Gateway {
    /// The answer to a browser navigation that needs a login: the start of
    /// one, returning to the page it asked for.
    pub(super) async fn login_redirect(
        &self,
        request: &Request<Incoming>,
        accepted: ProviderSet,
        request_id: &RequestId,
    ) -> Response<ProxyBody> {
        let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let return_to = self.return_to(request, target);
        let Some((_, provider)) = self.providers.accepted(accepted).next() else {
            return Refusal::RuleDenied.render(Audience::Browser, request_id);
        };
        self.begin_login(request, provider, return_to, request_id).await
    }

    /// `/oauth2/start?provider=ID&rd=/path`: an explicit login.
    pub(super) async fn start_login_explicit(
        &self,
        request: &Request<Incoming>,
        request_id: &RequestId,
    ) -> Response<ProxyBody> {
        let requested = query_value(request.uri().query(), "rd").unwrap_or_else(|| "/".to_owned());
        let return_to = self.return_to(request, &requested);
        let chosen = match query_value(request.uri().query(), "provider") {
            None => self.providers.get(0),
            Some(id) => self.providers.by_id(&id).map(|(_, provider)| provider),
        };
        let Some(provider) = chosen else {
            return Refusal::UnknownProvider.render(Audience::Browser, request_id);
        };
        self.begin_login(request, provider, return_to, request_id).await
    }

    /// Where the browser goes after the login: `requested`, if the redirect
    /// policy allows it. With `session.cookie_domain` every subdomain's login
    /// ends at one callback origin, so the way back is an absolute URL on the
    /// request's own host (one the policy allows; else `/` on the callback origin).
    fn return_to(&self, request: &Request<Incoming>, requested: &str) -> String {
        if self.config.session.cookie_domain.is_none() {
            return self.redirects.sanitise(requested);
        }
        // Shared cookies are https only (validated), so the browser is on https whatever the socket.
        let request_origin = authority::of_request(request.uri(), request.headers())
            .ok()
            .flatten()
            .and_then(|authority| Url::parse(&format!("https://{}", authority.header_value().to_str().ok()?)).ok());
        self.redirects.sanitise_on(requested, request_origin.as_ref().unwrap_or(&self.config.public_url))
    }

    /// Starts a login at the provider at index `provider`.
    async fn begin_login(
        &self,
        request: &Request<Incoming>,
        identity_provider: &IdentityProvider,
        return_to: String,
        request_id: &RequestId,
    ) -> Response<ProxyBody> {
        let oidc = &identity_provider.config;
        let Some(provider) = identity_provider.current() else {
            tracing::warn!(request_id = %request_id, "login refused: identity provider not loaded");
            return Refusal::ProviderUnavailable(ProviderNeed::SignIn).render(Audience::Browser, request_id);
        };
        let secrets = (|| {
            Ok::<_, random::RandomError>((PkceVerifier::generate()?, random::token::<16>()?, random::token::<16>()?))
        })();
        let Ok((verifier, state, nonce)) = secrets else {
            return self.internal_error(request_id);
        };
        let flow = LoginFlow {
            v: FLOW_FORMAT,
            provider: oidc.id.clone(),
            state: state.clone(),
            nonce: nonce.clone(),
            code_verifier: verifier.expose().to_owned(),
            return_to,
            expires_at: self.clock.now().saturating_add(seconds(self.config.session.login_timeout)),
        };
        let challenge = verifier.challenge();
        let Ok(location) = authorization_url(
            &provider.metadata.authorization_endpoint,
            oidc,
            &AuthorizationRequest { state: &state, nonce: &nonce, challenge: &challenge },
        ) else {
            return self.internal_error(request_id);
        };
        let Some(set_flow) = self.sessions.seal_flow(&flow) else {
            return self.internal_error(request_id);
        };

        let mut response = pages::redirect(location.as_str());
        let headers = response.headers_mut();
        let stale: Vec<String> = self.sessions.flow_cookie_names(request.headers()).map(str::to_owned).collect();
        for name in stale.iter().rev().skip(MAX_PARALLEL_FLOWS - 1) {
            if let Some(clear) = self.sessions.clear_cookie(name) {
                headers.append(header::SET_COOKIE, clear);
            }
        }
        headers.append(header::SET_COOKIE, set_flow);
        tracing::info!(target: "portcullis::auth", request_id = %request_id, event = "login_started");
        self.metrics.login("started", "-");
        response
    }

    pub(super) fn internal_error(&self, request_id: &RequestId) -> Response<ProxyBody> {
        tracing::error!(request_id = %request_id, "internal error while handling a login");
        Refusal::Internal.render(Audience::Browser, request_id)
    }
}

pub(super) use crate::clock::seconds;
