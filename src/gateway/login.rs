//! Starting a login: browsers are redirected to the provider with a fresh
//! PKCE verifier, `state` and `nonce` sealed in a flow cookie; API clients get
//! a 401 they can act on, never a redirect.

use http::{HeaderMap, Request, Response, header};
use hyper::body::Incoming;
use url::Url;

use super::authority::{self, RequestAuthority};
use super::form::query_value;
use super::providers::IdentityProvider;
use super::refusal::{ProviderNeed, Refusal};
use super::{Asked, Gateway, RequestId};
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
    /// one at the one provider the page accepts, or the chooser among
    /// several; either way returning to the page it asked for.
    pub(super) async fn login_redirect(
        &self,
        asked: &Asked<'_>,
        accepted: ProviderSet,
        request_id: &RequestId,
    ) -> Response<ProxyBody> {
        let return_to = self.return_to(asked.authority, asked.target);
        self.login_or_choose(asked.headers, accepted, return_to, request_id).await
    }

    /// Starts a login at the one provider of `accepted`, or shows the chooser among several.
    async fn login_or_choose(
        &self,
        headers: &HeaderMap,
        accepted: ProviderSet,
        return_to: String,
        request_id: &RequestId,
    ) -> Response<ProxyBody> {
        let mut providers = self.providers.accepted(accepted);
        let Some((_, first)) = providers.next() else {
            return Refusal::RuleDenied.render(Audience::Browser, request_id);
        };
        if providers.next().is_none() {
            return self.begin_login(headers, first, return_to, request_id).await;
        }
        self.chooser(headers, accepted, &return_to)
    }

    /// `/oauth2/start?provider=ID&rd=/path`: an explicit login. Without
    /// `provider=`: the one configured provider, else the one or the chooser
    /// among those the `rd` page accepts (all, when it cannot be routed). A
    /// provider the `rd` page does not accept may still be chosen: its session
    /// simply does not count there, and the page asks for another login.
    pub(super) async fn start_login_explicit(
        &self,
        request: &Request<Incoming>,
        request_id: &RequestId,
    ) -> Response<ProxyBody> {
        let requested = query_value(request.uri().query(), "rd").unwrap_or_else(|| "/".to_owned());
        let authority = authority::of_request(request.uri(), request.headers()).ok().flatten();
        let return_to = self.return_to(authority.as_ref(), &requested);
        let Some(id) = query_value(request.uri().query(), "provider") else {
            if self.config.providers.len() == 1 {
                return match self.providers.get(0) {
                    Some(provider) => self.begin_login(request.headers(), provider, return_to, request_id).await,
                    None => self.internal_error(request_id),
                };
            }
            let accepted = self.accepted_at(authority.as_ref(), &return_to);
            return self.login_or_choose(request.headers(), accepted, return_to, request_id).await;
        };
        let Some((_, provider)) = self.providers.by_id(&id) else {
            return Refusal::UnknownProvider.render(Audience::Browser, request_id);
        };
        let mut response = self.begin_login(request.headers(), provider, return_to, request_id).await;
        if response.status() == http::StatusCode::FOUND
            && let Some(remember) = self.remember_choice(&provider.config.id)
        {
            response.headers_mut().append(header::SET_COOKIE, remember);
        }
        response
    }

    /// The providers the page at `return_to` (a path on the request's host,
    /// or an absolute URL) accepts; all when it cannot be routed, or accepts none.
    fn accepted_at(&self, request_host: Option<&RequestAuthority>, return_to: &str) -> ProviderSet {
        let absolute;
        let (host, path) = if return_to.starts_with('/') {
            let path = return_to.split(['?', '#']).next().unwrap_or("/");
            (request_host.map(RequestAuthority::host), path)
        } else {
            let Ok(url) = Url::parse(return_to) else { return ProviderSet::ALL };
            absolute = url;
            (absolute.host_str(), absolute.path())
        };
        let routes = self.upstreams.current();
        let accepted = Self::target(&routes, &http::Method::GET, host, path)
            .map_or(ProviderSet::ALL, |target| target.accepted(&routes.authz));
        if self.providers.accepted(accepted).next().is_none() { ProviderSet::ALL } else { accepted }
    }

    /// Where the browser goes after the login: `requested`, if the redirect
    /// policy allows it. With `session.cookie_domain` every subdomain's login
    /// ends at one callback origin, so the way back is an absolute URL on the
    /// request's own host (one the policy allows; else `/` on the callback origin).
    fn return_to(&self, authority: Option<&RequestAuthority>, requested: &str) -> String {
        if self.config.session.cookie_domain.is_none() {
            return self.redirects.sanitise(requested);
        }
        // Shared cookies are https only (validated), so the browser is on https whatever the socket.
        let request_origin = authority
            .and_then(|authority| Url::parse(&format!("https://{}", authority.header_value().to_str().ok()?)).ok());
        self.redirects.sanitise_on(requested, request_origin.as_ref().unwrap_or(&self.config.public_url))
    }

    /// Starts a login at the provider at index `provider`.
    async fn begin_login(
        &self,
        request_headers: &HeaderMap,
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
        let stale: Vec<String> = self.sessions.flow_cookie_names(request_headers).map(str::to_owned).collect();
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
