//! `/oauth2/callback`: the end of a login. `state` is checked against the flow
//! cookie before anything else; then the provider's answer, the code exchange
//! (same verifier, same redirect_uri) and the ID token; then the session.

use std::net::IpAddr;

use http::{Request, Response, header};
use hyper::body::Incoming;
use subtle::ConstantTimeEq;

use super::login::seconds;
use super::providers::IdentityProvider;
use super::refusal::{LoginError, Refusal};
use super::{Connection, Gateway, LoggedUser, Outcome, RequestId};
use crate::body::ProxyBody;
use crate::config::OidcConfig;
use crate::oidc::id_token::{self, Expectations};
use crate::oidc::pkce::PkceVerifier;
use crate::oidc::provider::LoadedProvider;
use crate::oidc::token::{self, TokenError, sanitise_error_code};
use crate::pages::{self, Audience};
use crate::session::data::{SESSION_FORMAT, SessionData};
use crate::session::flow::LoginFlow;
use crate::sessions::CreateError;

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

/// The authorization code, unless the provider refused the login (its
/// sanitised `error`) or sent no usable code.
fn authorization_code(params: &CallbackParams) -> Result<&str, LoginError> {
    if let Some(error) = &params.error {
        return Err(LoginError::ProviderRefused(sanitise_error_code(error).to_owned()));
    }
    params.code.as_deref().filter(|code| !code.is_empty() && code.len() <= 2048).ok_or(LoginError::MissingCode)
}

fn is_plain_token(text: &str) -> bool {
    !text.is_empty() && text.len() <= 64 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What a successful callback produced.
struct SignedIn {
    subject: String,
    return_to: String,
    set_cookies: Vec<http::HeaderValue>,
}

impl Gateway {
    /// `/oauth2/callback`: finishes the login, or refuses it with one log line and one count.
    pub(super) async fn callback(
        &self,
        request: &Request<Incoming>,
        connection: &Connection,
        request_id: &RequestId,
        outcome: &mut Outcome,
    ) -> Response<ProxyBody> {
        let params = parse_params(request.uri().query());
        // 1. state, against the flow cookie named after it.
        let Some(state) = params.state.as_deref().filter(|state| is_plain_token(state)) else {
            return self.login_failed(LoginError::MissingState, request_id);
        };
        let flow_name = self.sessions.flow_name(state);
        let client = connection.client_addr.ip();
        let mut response = match self
            .finish_login(state, &flow_name, &params, request.headers(), client, request_id)
            .await
        {
            Ok(signed_in) => {
                tracing::info!(target: "portcullis::auth", request_id = %request_id, event = "login_succeeded", user = %signed_in.subject);
                self.metrics.login("succeeded", "-");
                let mut response = pages::redirect(&signed_in.return_to);
                for set_cookie in signed_in.set_cookies {
                    response.headers_mut().append(header::SET_COOKIE, set_cookie);
                }
                outcome.user = Some(LoggedUser::SignedIn(signed_in.subject));
                response
            }
            Err(error) => self.login_failed(error, request_id),
        };
        // The flow cookie is single-use, whatever the outcome.
        if let Some(clear) = self.sessions.clear_cookie(&flow_name) {
            response.headers_mut().append(header::SET_COOKIE, clear);
        }
        response
    }

    /// The one place a failed login is logged, counted and answered.
    fn login_failed(&self, error: LoginError, request_id: &RequestId) -> Response<ProxyBody> {
        let reason = error.metric_reason();
        match error.detail() {
            Some(detail) => {
                tracing::warn!(target: "portcullis::auth", request_id = %request_id, event = "login_failed", reason, detail);
            }
            None => {
                tracing::warn!(target: "portcullis::auth", request_id = %request_id, event = "login_failed", reason)
            }
        }
        self.metrics.login("failed", reason);
        Refusal::Login(error).render(Audience::Browser, request_id)
    }

    /// The steps of a login after `state`: the flow, the provider's answer,
    /// the code exchange, the ID token, the session.
    async fn finish_login(
        &self,
        state: &str,
        flow_name: &str,
        params: &CallbackParams,
        request_headers: &http::HeaderMap,
        client: IpAddr,
        request_id: &RequestId,
    ) -> Result<SignedIn, LoginError> {
        let flow = self.open_flow(request_headers, flow_name, state)?;
        // The provider is the one the login was started at, as sealed in the
        // flow: never taken from the query (RFC 9700 §4.4 mix-up defence).
        let (provider_index, identity_provider) =
            self.providers.by_id(&flow.provider).ok_or(LoginError::StateMismatch)?;
        let oidc = &identity_provider.config;
        let provider = identity_provider.current().ok_or(LoginError::ProviderUnavailable)?;
        let iss_promised = provider.metadata.authorization_response_iss_parameter_supported;
        check_issuer(params.iss.as_deref(), &oidc.issuer, iss_promised)?;
        let code = authorization_code(params)?;
        let verifier = PkceVerifier::from_stored(flow.code_verifier).map_err(|_| LoginError::InvalidVerifier)?;
        let tokens = self.exchange_code(identity_provider, &provider, code, &verifier, client).await?;
        let raw_id_token = tokens.id_token.as_ref().ok_or(LoginError::IdTokenMissing)?;
        let now = self.clock.now();
        let claims = self.validate_id_token(oidc, raw_id_token.expose(), &provider, &flow.nonce, now).await?;

        // The session.
        let session_id = crate::random::token::<16>().map_err(|_| LoginError::Internal)?;
        let lifetime = seconds(self.config.session.lifetime);
        let expires_in = tokens.expires_in.and_then(|s| i64::try_from(s).ok()).unwrap_or(DEFAULT_ACCESS_TOKEN_SECONDS);
        let data = SessionData {
            v: SESSION_FORMAT,
            id: session_id,
            provider: flow.provider,
            iss: claims.iss,
            sub: claims.sub,
            email: claims.email,
            email_verified: claims.email_verified,
            name: claims.name,
            preferred_username: claims.preferred_username,
            roles: self.sessions.groups_in(provider_index, &claims.payload),
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
        // The new session, sealed or stored, and cached.
        let set_cookies = (self.sessions.create(&data, request_headers).await)
            .map_err(|error| Self::creation_failed(error, request_id))?;
        Ok(SignedIn { subject: data.sub, return_to: flow.return_to, set_cookies })
    }

    /// The login flow sealed in the cookie named after `state`, if it is
    /// this browser's (same state, compared in constant time) and not expired.
    fn open_flow(&self, headers: &http::HeaderMap, flow_name: &str, state: &str) -> Result<LoginFlow, LoginError> {
        let flow = (self.sessions.open_flow(headers, flow_name))
            // Constant time: the state is a secret binding this browser to this login.
            .filter(|flow| bool::from(flow.state.as_bytes().ct_eq(state.as_bytes())))
            .ok_or(LoginError::StateMismatch)?;
        if flow.expires_at <= self.clock.now() {
            return Err(LoginError::Expired);
        }
        Ok(flow)
    }

    /// The code exchange, with the same redirect_uri and verifier. Anyone can
    /// get a flow cookie and state, so refused codes are budgeted per client.
    async fn exchange_code(
        &self,
        identity_provider: &IdentityProvider,
        provider: &LoadedProvider,
        code: &str,
        verifier: &PkceVerifier,
        client: IpAddr,
    ) -> Result<token::TokenResponse, LoginError> {
        if self.providers.callbacks_exhausted(client).await {
            return Err(LoginError::TooManyFailures);
        }
        let started = std::time::Instant::now();
        let exchanged = token::exchange_code(
            identity_provider.client(),
            &provider.metadata.token_endpoint,
            &identity_provider.config,
            code,
            verifier,
        )
        .await;
        self.metrics.idp_call("token_exchange", &identity_provider.config.id, started.elapsed().as_secs_f64());
        match exchanged {
            Ok(tokens) => Ok(tokens),
            Err(error @ TokenError::Unavailable(_)) => Err(LoginError::TokenEndpointUnavailable(error.to_string())),
            Err(error) => {
                self.providers.callback_failed(client).await;
                Err(LoginError::TokenEndpointRejected(error.to_string()))
            }
        }
    }

    /// The ID token's signature and claims, for this login's nonce.
    async fn validate_id_token(
        &self,
        oidc: &OidcConfig,
        raw: &str,
        provider: &LoadedProvider,
        nonce: &str,
        now: crate::clock::UnixSeconds,
    ) -> Result<id_token::IdTokenClaims, LoginError> {
        let expectations = Expectations {
            issuer: &oidc.issuer,
            client_id: &oidc.client_id,
            trusted_audiences: &oidc.trusted_audiences,
            nonce: Some(nonce),
            algorithms: &oidc.id_token_algorithms,
            now,
            skew_seconds: seconds(oidc.clock_skew),
        };
        id_token::validate(raw, &provider.jwks, &expectations)
            .await
            .map_err(|error| LoginError::IdTokenInvalid(error.to_string()))
    }

    /// The login error for a session that could not be created.
    fn creation_failed(error: CreateError, request_id: &RequestId) -> LoginError {
        match error {
            CreateError::StoreUnavailable => LoginError::StoreUnavailable,
            CreateError::TooLarge => {
                tracing::error!(request_id = %request_id, "the session does not fit in a cookie");
                LoginError::SessionTooLarge
            }
            CreateError::UnknownProvider => {
                tracing::error!(request_id = %request_id, "the new session names no configured provider");
                LoginError::Internal
            }
        }
    }
}

/// RFC 9207: the response must come from the flow's provider (mix-up defence).
fn check_issuer(iss: Option<&str>, expected: &str, iss_promised: bool) -> Result<(), LoginError> {
    match iss {
        Some(iss) if iss != expected => Err(LoginError::IssuerMismatch),
        None if iss_promised => Err(LoginError::IssuerMissing),
        _ => Ok(()),
    }
}
