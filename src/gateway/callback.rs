//! `/oauth2/callback`: the end of a login. `state` is checked against the flow
//! cookie before anything else; then the provider's answer, the code exchange
//! (same verifier, same redirect_uri) and the ID token; then the session.

use std::net::IpAddr;
use std::sync::Arc;

use http::{Request, Response, header};
use hyper::body::Incoming;
use subtle::ConstantTimeEq;

use super::login::seconds;
use super::refusal::{LoginError, Refusal};
use super::shared::Backend;
use super::{Connection, Gateway, LoggedUser, Outcome, RequestId};
use crate::body::ProxyBody;
use crate::oidc::id_token::{self, Expectations};
use crate::oidc::pkce::PkceVerifier;
use crate::oidc::token::{self, TokenError, sanitise_error_code};
use crate::pages::{self, Audience};
use crate::session::cache::ActiveSession;
use crate::session::cookies::single_cookie_value;
use crate::session::data::{SESSION_FORMAT, SessionData};
use crate::session::flow::{FLOW_FORMAT, LoginFlow};
use crate::session::seal::Purpose;

/// Access-token lifetime assumed when the provider does not say (RFC 6749 §5.1 makes `expires_in` optional).
const DEFAULT_ACCESS_TOKEN_SECONDS: i64 = 300;

#[derive(Default)]
struct CallbackParams {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

fn parse_params(query: Option<&str>) -> CallbackParams {
    let mut params = CallbackParams::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let slot = match key.as_ref() {
            "state" => &mut params.state,
            "code" => &mut params.code,
            "error" => &mut params.error,
            "iss" => &mut params.iss,
            _ => continue,
        };
        // A repeated parameter is ambiguous (RFC 6749 §3.1): refuse by making it unusable.
        *slot = if slot.is_some() { Some(String::new()) } else { Some(value.into_owned()) };
    }
    params
}

fn is_plain_token(text: &str) -> bool {
    !text.is_empty() && text.len() <= 64 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Gateway {
    pub(super) async fn callback(
        &self,
        request: &Request<Incoming>,
        connection: &Connection,
        request_id: &RequestId,
        outcome: &mut Outcome,
    ) -> Response<ProxyBody> {
        let params = parse_params(request.uri().query());
        let refuse = |error: LoginError| {
            tracing::warn!(target: "portcullis::auth", request_id = %request_id, event = "login_failed", reason = error.metric_reason());
            self.metrics.login("failed", error.metric_reason());
            Refusal::Login(error).render(Audience::Browser, request_id)
        };

        // 1. state, against the flow cookie named after it.
        let Some(state) = params.state.as_deref().filter(|state| is_plain_token(state)) else {
            return refuse(LoginError::MissingState);
        };
        let flow_name = self.cookies.flow_name(state);
        let flow = single_cookie_value(request.headers(), &flow_name)
            .and_then(|sealed| self.keys.open(Purpose::Flow, &flow_name, sealed).ok())
            .and_then(|(json, _)| serde_json::from_slice::<LoginFlow>(&json).ok())
            .filter(|flow| flow.v == FLOW_FORMAT);
        let mut response = match flow {
            // Constant time: the state is a secret binding this browser to this login.
            Some(flow) if bool::from(flow.state.as_bytes().ct_eq(state.as_bytes())) => {
                if flow.expires_at <= self.clock.now() {
                    refuse(LoginError::Expired)
                } else {
                    let client = connection.client_addr.ip();
                    self.finish_login(flow, &params, request.headers(), client, request_id, outcome).await
                }
            }
            _ => refuse(LoginError::StateMismatch),
        };
        // The flow cookie is single-use, whatever the outcome.
        if let Some(clear) = self.cookies.clear(&flow_name) {
            response.headers_mut().append(header::SET_COOKIE, clear);
        }
        response
    }

    async fn finish_login(
        &self,
        flow: LoginFlow,
        params: &CallbackParams,
        request_headers: &http::HeaderMap,
        client: IpAddr,
        request_id: &RequestId,
        outcome: &mut Outcome,
    ) -> Response<ProxyBody> {
        let refuse = |error: LoginError| {
            tracing::warn!(target: "portcullis::auth", request_id = %request_id, event = "login_failed", reason = error.metric_reason());
            self.metrics.login("failed", error.metric_reason());
            Refusal::Login(error).render(Audience::Browser, request_id)
        };
        let Some(provider) = self.provider.current() else {
            return refuse(LoginError::ProviderUnavailable);
        };

        // 2. RFC 9207: the response must come from our issuer (mix-up defence).
        let issuer = &self.config.oidc.issuer;
        match params.iss.as_deref() {
            Some(iss) if iss != issuer => {
                return refuse(LoginError::IssuerMismatch);
            }
            None if provider.metadata.authorization_response_iss_parameter_supported => {
                return refuse(LoginError::IssuerMissing);
            }
            _ => {}
        }

        // 3. The provider's own refusal.
        if let Some(error) = &params.error {
            let code = sanitise_error_code(error);
            tracing::warn!(target: "portcullis::auth", request_id = %request_id, event = "login_failed", reason = "idp_error", idp_error = %code);
            let error = LoginError::ProviderRefused(code.to_owned());
            self.metrics.login("failed", error.metric_reason());
            return Refusal::Login(error).render(Audience::Browser, request_id);
        }
        let Some(code) = params.code.as_deref().filter(|code| !code.is_empty() && code.len() <= 2048) else {
            return refuse(LoginError::MissingCode);
        };
        let Ok(verifier) = PkceVerifier::from_stored(flow.code_verifier) else {
            return refuse(LoginError::InvalidVerifier);
        };

        // 4. Code exchange with the same redirect_uri and verifier. Anyone can
        // get a flow cookie and state, so refused codes are budgeted per client.
        if self.failed_callbacks.exhausted(client).await {
            return refuse(LoginError::TooManyFailures);
        }
        let exchange_started = std::time::Instant::now();
        let exchanged = token::exchange_code(
            self.provider.client(),
            &provider.metadata.token_endpoint,
            &self.config.oidc,
            code,
            &verifier,
        )
        .await;
        self.metrics.idp_call("token_exchange", exchange_started.elapsed().as_secs_f64());
        let tokens = match exchanged {
            Ok(tokens) => tokens,
            Err(error) => {
                tracing::warn!(target: "portcullis::auth", request_id = %request_id, event = "login_failed", reason = "token_endpoint", %error);
                self.metrics.login("failed", "token_endpoint");
                if !matches!(error, TokenError::Unavailable(_)) {
                    self.failed_callbacks.spend(client).await;
                }
                let error = match error {
                    TokenError::Unavailable(_) => LoginError::TokenEndpointUnavailable,
                    TokenError::Rejected { .. } | TokenError::Invalid(_) => LoginError::TokenEndpointRejected,
                };
                return Refusal::Login(error).render(Audience::Browser, request_id);
            }
        };

        // 5. The ID token.
        let now = self.clock.now();
        let Some(raw_id_token) = tokens.id_token.as_ref() else {
            return refuse(LoginError::IdTokenMissing);
        };
        let expectations = Expectations {
            issuer,
            client_id: &self.config.oidc.client_id,
            trusted_audiences: &self.config.oidc.trusted_audiences,
            nonce: Some(&flow.nonce),
            algorithms: &self.config.oidc.id_token_algorithms,
            now,
            skew_seconds: seconds(self.config.oidc.clock_skew),
        };
        let claims = match id_token::validate(raw_id_token.expose(), &provider.jwks, &expectations).await {
            Ok(claims) => claims,
            Err(error) => {
                tracing::warn!(target: "portcullis::auth", request_id = %request_id, event = "login_failed", reason = "id_token_invalid", %error);
                self.metrics.login("failed", "id_token_invalid");
                return Refusal::Login(LoginError::IdTokenInvalid).render(Audience::Browser, request_id);
            }
        };

        // 6. The session.
        let Ok(session_id) = crate::random::token::<16>() else {
            return self.internal_error(request_id);
        };
        let lifetime = seconds(self.config.session.lifetime);
        let expires_in = tokens.expires_in.and_then(|s| i64::try_from(s).ok()).unwrap_or(DEFAULT_ACCESS_TOKEN_SECONDS);
        let data = SessionData {
            v: SESSION_FORMAT,
            id: session_id,
            iss: claims.iss,
            sub: claims.sub,
            email: claims.email,
            email_verified: claims.email_verified,
            name: claims.name,
            preferred_username: claims.preferred_username,
            roles: self.groups_in(raw_id_token.expose()),
            sid: claims.sid,
            created_at: now,
            last_seen_at: now,
            expires_at: now.saturating_add(lifetime),
            access_token: tokens.access_token.expose().to_owned(),
            access_expires_at: now.saturating_add(expires_in),
            access_issued_at: now,
            refresh_token: tokens.refresh_token.map(|token| token.expose().to_owned()),
            id_token: Some(raw_id_token.expose().to_owned()),
        };
        let held_parts = self.cookies.read_session(request_headers).map_or(0, |cookie| cookie.part_count());
        let sealed = match &self.backend {
            Backend::Cookie => self.seal_session(&data, held_parts),
            Backend::Store(shared) => match self.store_new_session(shared, &data, held_parts).await {
                Ok(sealed) => sealed,
                Err(()) => {
                    self.metrics.login("failed", "session_store_unavailable");
                    return Refusal::Login(LoginError::StoreUnavailable).render(Audience::Browser, request_id);
                }
            },
        };
        let Some(set_cookies) = sealed else {
            tracing::error!(request_id = %request_id, "the session does not fit in a cookie");
            return Refusal::Login(LoginError::SessionTooLarge).render(Audience::Browser, request_id);
        };
        if let Some(active) = self.active_session(&data) {
            self.cache.insert(data.id.clone(), Arc::new(active)).await;
        }
        tracing::info!(target: "portcullis::auth", request_id = %request_id, event = "login_succeeded", user = %data.sub);
        self.metrics.login("succeeded", "-");
        outcome.user = Some(LoggedUser::SignedIn(data.sub.clone()));

        let mut response = pages::redirect(&flow.return_to);
        for set_cookie in set_cookies {
            response.headers_mut().append(header::SET_COOKIE, set_cookie);
        }
        response
    }

    /// The `Set-Cookie` headers for a session (split into parts when large),
    /// or `None` if it cannot be sealed or is larger than the part limit.
    pub(super) fn seal_session(&self, data: &SessionData, held_parts: usize) -> Option<Vec<http::HeaderValue>> {
        let json = serde_json::to_vec(data).ok()?;
        let sealed = self.keys.seal(Purpose::Session, self.cookies.session_name(), &json).ok()?;
        self.cookies.set_session(&sealed, self.config.session.lifetime, held_parts)
    }
}

impl Gateway {
    /// The groups (or roles) in a verified ID token, from the claim
    /// `authz.groups_claim` names: what rules see and the groups header carries.
    pub(super) fn groups_in(&self, verified_id_token: &str) -> Vec<String> {
        crate::authz::claims::unverified_payload(verified_id_token)
            .map(|payload| crate::authz::claims::strings_at(&payload, self.config.authz.groups_claim()))
            .unwrap_or_default()
    }

    /// The cache entry for a session: headers prepared once.
    pub(super) fn active_session(&self, data: &SessionData) -> Option<ActiveSession> {
        ActiveSession::from_session(data)
    }
}
