//! Every way the gateway refuses a request, and the one place a refusal
//! becomes a response. Each [`Refusal`] knows its status, its code (the JSON
//! `error`), the sentence a person reads, its `Retry-After`, its
//! `WWW-Authenticate` challenge and its metric reason; [`Refusal::render`]
//! writes the page (browsers) or JSON (API clients) from them.
//!
//! A browser navigation that needs a login is not rendered here: the proxy
//! path answers [`Refusal::LoginRequired`] to a browser by starting the login
//! flow (a 302 to the provider), which is the beginning of a sign-in, not a refusal.

use std::borrow::Cow;
use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};

use super::RequestId;
use super::bearer::INVALID_TOKEN_CHALLENGE;
use super::throttle;
use crate::authz::ProviderSet;
use crate::body::ProxyBody;
use crate::pages::{self, Audience, ErrorPage};

/// How long to wait when the identity provider cannot be reached: long enough
/// for a restart or a network blip, short enough that users do not give up.
pub(super) const PROVIDER_RETRY_AFTER: Duration = Duration::from_secs(30);
/// How long to wait when the shared session store cannot be reached: its
/// health check runs every few seconds and the cookie stays valid meanwhile.
pub(super) const STORE_RETRY_AFTER: Duration = Duration::from_secs(5);
/// How long a client whose budget of failed provider calls is spent waits:
/// until its budget's window has surely ended.
pub(super) const THROTTLE_RETRY_AFTER: Duration = throttle::WINDOW;

/// The challenge of a request that needs credentials (RFC 6750 §3).
const LOGIN_CHALLENGE: &str = "Bearer realm=\"portcullis\"";

/// Why the identity provider was needed, for the message a person reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ProviderNeed {
    /// A session whose access token expired must be refreshed.
    SessionRenewal,
    /// A login must start or finish.
    SignIn,
    /// A bearer token's issuer must be asked about it.
    TokenCheck,
}

/// A request the gateway answers itself with a refusal.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The request target is longer than `server.max_url_bytes` (414).
    UriTooLong,
    /// Several `Host` headers (RFC 9112 §3.2).
    SeveralHosts,
    /// A malformed host, or a `Host` header that contradicts the URI's authority.
    BadAuthority,
    /// A host the gateway does not serve (421, RFC 9110 §15.5.20).
    Misdirected,
    /// A path with several possible meanings (dot segments, encoded slashes).
    AmbiguousPath,
    /// Forward-auth: the proxy's account of the original request is
    /// malformed, competing or lacks the host that host routes need.
    UnknownOriginal,
    /// A bearer token that is not valid here.
    InvalidToken,
    /// This client's budget of fruitless provider calls is spent.
    TooManyFailures,
    /// The identity provider cannot be reached for what the request needs.
    /// Never a 401: forward-auth proxies would turn that into a sign-in, which needs the provider too.
    ProviderUnavailable(ProviderNeed),
    /// The shared session store cannot be reached; the session cookie is left alone.
    StoreUnavailable,
    /// No session or token at any of these providers (an API client's 401;
    /// browsers are sent to sign in at one of them instead).
    LoginRequired(ProviderSet),
    /// As [`Self::LoginRequired`], for a session cookie that is no good: the answer also clears it.
    SessionInvalid(ProviderSet),
    /// `?provider=` names no configured provider.
    UnknownProvider,
    /// Signed in, but the matched rule does not admit the caller.
    RuleDenied,
    /// The upstream could not be reached or answered badly (its status: 502, 400 or 500).
    UpstreamUnavailable(StatusCode),
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// A sign-out POST from another site.
    CrossSiteSignOut,
    /// A method the endpoint does not take.
    MethodNotAllowed,
    /// Back-channel logout: the request or its logout token is not acceptable (§2.8).
    LogoutRefused,
    /// Back-channel logout: the logout cannot be recorded now; the provider retries.
    LogoutDeferred(LogoutBlocker),
    /// A failed login (the callback).
    Login(LoginError),
    /// Something failed on the gateway's side.
    Internal,
}

/// What keeps a back-channel logout from being recorded now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LogoutBlocker {
    /// The provider's keys are not loaded.
    ProviderUnavailable,
    /// The shared session store cannot be reached.
    StoreUnavailable,
    /// The used logout tokens fill `session.ended_max_entries`: the oldest
    /// can be forgotten after this many seconds.
    Full { retry_after_seconds: u64 },
}

/// Every way a login's callback fails.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LoginError {
    /// No usable `state` parameter.
    MissingState,
    /// No flow cookie for the `state`, or one that does not match it.
    StateMismatch,
    /// The flow cookie's login took longer than `session.login_timeout`.
    Expired,
    /// The flow cookie's PKCE verifier is unusable.
    InvalidVerifier,
    /// The provider's metadata is not loaded.
    ProviderUnavailable,
    /// RFC 9207: the response names another issuer.
    IssuerMismatch,
    /// RFC 9207: the provider promises `iss` and sent none.
    IssuerMissing,
    /// The provider refused the login (its sanitised `error` code).
    ProviderRefused(String),
    /// No usable authorization code.
    MissingCode,
    /// This client's budget of refused code exchanges is spent.
    TooManyFailures,
    /// The token endpoint cannot be reached (the error, for the log).
    TokenEndpointUnavailable(String),
    /// The token endpoint refused the code or answered nonsense (the error, for the log).
    TokenEndpointRejected(String),
    /// The token response carries no ID token.
    IdTokenMissing,
    /// The ID token does not validate (why, for the log).
    IdTokenInvalid(String),
    /// Store mode: the session cannot be stored.
    StoreUnavailable,
    /// The session does not fit in the cookie's parts.
    SessionTooLarge,
    /// Randomness failed, or a new session names no configured provider (a bug).
    Internal,
}

const RESTART_LOGIN: &str =
    "This sign-in link has expired or was opened in another browser. Please start again from the page you wanted.";
const SIGN_IN_UNAVAILABLE: &str = "The sign-in service is unavailable right now. Please try again in a minute.";
const STORE_UNAVAILABLE: &str = "Your session cannot be checked right now because the session store is unavailable. Please try again in a few seconds.";
const UNVERIFIABLE_ANSWER: &str = "The identity provider's answer could not be verified.";
const INTERNAL: &str = "Something went wrong on our side. Please try again.";

impl LoginError {
    fn status(&self) -> StatusCode {
        match self {
            Self::MissingState
            | Self::StateMismatch
            | Self::Expired
            | Self::InvalidVerifier
            | Self::IssuerMismatch
            | Self::IssuerMissing
            | Self::MissingCode => StatusCode::BAD_REQUEST,
            Self::ProviderRefused(_) => StatusCode::FORBIDDEN,
            Self::TooManyFailures => StatusCode::TOO_MANY_REQUESTS,
            Self::ProviderUnavailable | Self::TokenEndpointUnavailable(_) | Self::StoreUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::TokenEndpointRejected(_) | Self::IdTokenMissing | Self::IdTokenInvalid(_) => StatusCode::BAD_GATEWAY,
            Self::SessionTooLarge | Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::MissingState => "missing_state",
            Self::StateMismatch | Self::InvalidVerifier => "state_mismatch",
            Self::Expired => "login_expired",
            Self::ProviderUnavailable => "idp_unavailable",
            Self::IssuerMismatch => "issuer_mismatch",
            Self::IssuerMissing => "issuer_missing",
            Self::ProviderRefused(_) => "idp_error",
            Self::MissingCode => "missing_code",
            Self::TooManyFailures => "too_many_failures",
            Self::TokenEndpointUnavailable(_) | Self::TokenEndpointRejected(_) => "token_exchange_failed",
            Self::IdTokenMissing => "id_token_missing",
            Self::IdTokenInvalid(_) => "id_token_invalid",
            Self::StoreUnavailable => "session_store_unavailable",
            Self::SessionTooLarge => "session_too_large",
            Self::Internal => "internal_error",
        }
    }

    fn message(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Self::MissingState | Self::StateMismatch | Self::Expired => RESTART_LOGIN,
            Self::InvalidVerifier => "This sign-in attempt is invalid. Please start again.",
            Self::ProviderUnavailable | Self::TokenEndpointUnavailable(_) => SIGN_IN_UNAVAILABLE,
            Self::IssuerMismatch => "The sign-in response came from an unexpected identity provider.",
            Self::IssuerMissing => "The sign-in response did not name its identity provider.",
            Self::ProviderRefused(code) if code == "access_denied" => {
                "The sign-in was cancelled or access was denied by the identity provider."
            }
            Self::ProviderRefused(code) => {
                return Cow::Owned(format!("The identity provider could not sign you in (error: {code})."));
            }
            Self::MissingCode => "The sign-in response carried no authorization code.",
            Self::TooManyFailures => THROTTLED,
            Self::TokenEndpointRejected(_) => "The identity provider did not accept this sign-in. Please start again.",
            Self::IdTokenMissing | Self::IdTokenInvalid(_) => UNVERIFIABLE_ANSWER,
            Self::StoreUnavailable => STORE_UNAVAILABLE,
            Self::SessionTooLarge => "Your account's sign-in data is too large for this gateway's cookie.",
            Self::Internal => INTERNAL,
        })
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::ProviderUnavailable | Self::TokenEndpointUnavailable(_) => Some(PROVIDER_RETRY_AFTER),
            Self::StoreUnavailable => Some(STORE_RETRY_AFTER),
            Self::TooManyFailures => Some(THROTTLE_RETRY_AFTER),
            _ => None,
        }
    }

    /// The `reason` label of `portcullis_logins_total{stage="failed"}`.
    pub(super) fn metric_reason(&self) -> &'static str {
        match self {
            Self::TokenEndpointUnavailable(_) | Self::TokenEndpointRejected(_) => "token_endpoint",
            other => other.code(),
        }
    }

    /// What the failure log line adds to the reason: the provider's error
    /// code or the internal error (never shown to the user).
    pub(super) fn detail(&self) -> Option<&str> {
        match self {
            Self::ProviderRefused(detail)
            | Self::TokenEndpointUnavailable(detail)
            | Self::TokenEndpointRejected(detail)
            | Self::IdTokenInvalid(detail) => Some(detail),
            _ => None,
        }
    }
}

const THROTTLED: &str = "Too many failed attempts from your network. Please wait a minute and try again.";

impl Refusal {
    pub(super) fn status(&self) -> StatusCode {
        match self {
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::SeveralHosts | Self::BadAuthority | Self::AmbiguousPath | Self::UnknownProvider => {
                StatusCode::BAD_REQUEST
            }
            Self::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            Self::UnknownOriginal | Self::RuleDenied | Self::CrossSiteSignOut => StatusCode::FORBIDDEN,
            Self::InvalidToken | Self::LoginRequired(_) | Self::SessionInvalid(_) => StatusCode::UNAUTHORIZED,
            Self::TooManyFailures => StatusCode::TOO_MANY_REQUESTS,
            Self::ProviderUnavailable(_) | Self::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamUnavailable(status) => *status,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::LogoutRefused => StatusCode::BAD_REQUEST,
            Self::LogoutDeferred(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Login(error) => error.status(),
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable code, the JSON body's `error`.
    pub(super) fn code(&self) -> &'static str {
        match self {
            Self::UriTooLong => "uri_too_long",
            Self::SeveralHosts => "bad_request",
            Self::BadAuthority => "bad_host",
            Self::Misdirected => "misdirected_request",
            Self::AmbiguousPath => "ambiguous_path",
            Self::UnknownProvider => "unknown_provider",
            Self::UnknownOriginal | Self::RuleDenied => "forbidden",
            Self::InvalidToken => "invalid_token",
            Self::TooManyFailures => "too_many_failures",
            Self::ProviderUnavailable(_) => "idp_unavailable",
            Self::StoreUnavailable => "session_store_unavailable",
            Self::LoginRequired(_) | Self::SessionInvalid(_) => "unauthenticated",
            Self::UpstreamUnavailable(_) | Self::UpstreamTimeout => "upstream_unavailable",
            Self::CrossSiteSignOut => "cross_site",
            Self::MethodNotAllowed => "method_not_allowed",
            // OAuth 2.0 error codes, as §2.8 asks.
            Self::LogoutRefused => "invalid_request",
            Self::LogoutDeferred(_) => "temporarily_unavailable",
            Self::Login(error) => error.code(),
            Self::Internal => "internal_error",
        }
    }

    /// One sentence a person can act on.
    pub(super) fn message(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Self::UriTooLong => "The request URL is too long.",
            Self::SeveralHosts => "Several Host headers.",
            Self::BadAuthority => "The request's host is malformed, or its Host header names another host.",
            Self::Misdirected => "This gateway does not serve the requested host.",
            Self::AmbiguousPath => {
                "The request path contains dot segments or encoded slashes and cannot be authorized."
            }
            Self::UnknownOriginal => "The original request could not be determined.",
            Self::UnknownProvider => "There is no such sign-in provider here.",
            Self::InvalidToken => "The bearer token is not valid here.",
            Self::TooManyFailures => THROTTLED,
            Self::ProviderUnavailable(ProviderNeed::SessionRenewal) => {
                "Your session needs renewing, but the sign-in service is unavailable right now. Please try again in a minute."
            }
            Self::ProviderUnavailable(ProviderNeed::SignIn) => SIGN_IN_UNAVAILABLE,
            Self::ProviderUnavailable(ProviderNeed::TokenCheck) => {
                "The token's issuer cannot be reached to check it. Try again shortly."
            }
            Self::StoreUnavailable => STORE_UNAVAILABLE,
            Self::LoginRequired(_) | Self::SessionInvalid(_) => {
                "Authentication is required: sign in through a browser, or send a valid session."
            }
            Self::RuleDenied => {
                "You are signed in, but your account is not allowed to use this page. Ask the service's administrator for access."
            }
            Self::UpstreamUnavailable(_) => "The service behind this gateway is unavailable. Try again shortly.",
            Self::UpstreamTimeout => "The service behind this gateway did not answer in time. Try again shortly.",
            Self::CrossSiteSignOut => "Sign-out must come from this site.",
            Self::MethodNotAllowed => "This method is not accepted here.",
            Self::LogoutRefused => "The logout request or its logout token is not acceptable.",
            Self::LogoutDeferred(_) => "The logout cannot be recorded right now. Retry shortly.",
            Self::Login(error) => return error.message(),
            Self::Internal => INTERNAL,
        })
    }

    /// `Retry-After`: one value per cause (the constants above), on every
    /// refusal that the same request may pass later without changing.
    pub(super) fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::ProviderUnavailable(_) => Some(PROVIDER_RETRY_AFTER),
            Self::StoreUnavailable => Some(STORE_RETRY_AFTER),
            Self::TooManyFailures => Some(THROTTLE_RETRY_AFTER),
            Self::LogoutDeferred(LogoutBlocker::ProviderUnavailable) => Some(PROVIDER_RETRY_AFTER),
            Self::LogoutDeferred(LogoutBlocker::StoreUnavailable) => Some(STORE_RETRY_AFTER),
            Self::LogoutDeferred(LogoutBlocker::Full { retry_after_seconds }) => {
                Some(Duration::from_secs(*retry_after_seconds))
            }
            Self::Login(error) => error.retry_after(),
            _ => None,
        }
    }

    /// `WWW-Authenticate` (RFC 6750 §3): what credentials would do.
    pub(super) fn challenge(&self) -> Option<&'static str> {
        match self {
            Self::LoginRequired(_) | Self::SessionInvalid(_) => Some(LOGIN_CHALLENGE),
            Self::InvalidToken => Some(INVALID_TOKEN_CHALLENGE),
            _ => None,
        }
    }

    /// The `reason` label this refusal is counted under
    /// (`portcullis_auth_decisions_total`, `portcullis_logins_total`).
    pub(super) fn metric_reason(&self) -> &'static str {
        match self {
            Self::ProviderUnavailable(_) => "idp_unavailable",
            Self::StoreUnavailable => "store_unavailable",
            Self::LoginRequired(_) => "no_session",
            Self::SessionInvalid(_) => "invalid_session",
            Self::RuleDenied => "rule",
            Self::Login(error) => error.metric_reason(),
            other => other.code(),
        }
    }

    /// Whether the refusal is about a bearer token: programs send those, so
    /// the answer is JSON whatever the request looks like.
    pub(super) fn is_about_a_token(&self) -> bool {
        matches!(self, Self::InvalidToken | Self::TooManyFailures | Self::ProviderUnavailable(ProviderNeed::TokenCheck))
    }

    /// The providers a browser navigation refused with this is sent to sign in at, instead.
    pub(super) fn needs_login(&self) -> Option<ProviderSet> {
        match self {
            Self::LoginRequired(accepted) | Self::SessionInvalid(accepted) => Some(*accepted),
            _ => None,
        }
    }

    /// The response: a page for a browser, JSON for an API client.
    pub(super) fn render(&self, audience: Audience, request_id: &RequestId) -> Response<ProxyBody> {
        self.render_as(self.status(), self.challenge(), audience, request_id)
    }

    /// The response to a forward-auth request (`/oauth2/auth`), always JSON.
    /// nginx `auth_request` understands only 2xx, 401 and 403 (anything else
    /// becomes its 500), so other client errors are a 403, and a spent
    /// failure budget is a 401 as for a bad token; 5xx stay what they are.
    pub(super) fn render_for_auth_request(&self, request_id: &RequestId) -> Response<ProxyBody> {
        let (status, challenge) = match self.status() {
            StatusCode::TOO_MANY_REQUESTS => (StatusCode::UNAUTHORIZED, Some(INVALID_TOKEN_CHALLENGE)),
            StatusCode::UNAUTHORIZED => (StatusCode::UNAUTHORIZED, self.challenge()),
            status if status.is_client_error() => (StatusCode::FORBIDDEN, None),
            status => (status, self.challenge()),
        };
        self.render_as(status, challenge, Audience::Api, request_id)
    }

    fn render_as(
        &self,
        status: StatusCode,
        challenge: Option<&'static str>,
        audience: Audience,
        request_id: &RequestId,
    ) -> Response<ProxyBody> {
        let message = self.message();
        let mut response = pages::error(
            audience,
            &ErrorPage { status, code: self.code(), message: &message, request_id: request_id.as_str() },
        );
        let headers = response.headers_mut();
        if let Some(retry_after) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after.as_secs()));
        }
        if let Some(challenge) = challenge {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn request_id() -> RequestId {
        super::super::request_id::RequestIds::new().take(&http::HeaderMap::new())
    }

    type Row = (Refusal, u16, &'static str, Option<u64>, Option<&'static str>);

    fn table() -> Vec<Row> {
        let login = Some(LOGIN_CHALLENGE);
        let invalid = Some(INVALID_TOKEN_CHALLENGE);
        vec![
            (Refusal::UriTooLong, 414, "uri_too_long", None, None),
            (Refusal::SeveralHosts, 400, "bad_request", None, None),
            (Refusal::BadAuthority, 400, "bad_host", None, None),
            (Refusal::Misdirected, 421, "misdirected_request", None, None),
            (Refusal::AmbiguousPath, 400, "ambiguous_path", None, None),
            (Refusal::UnknownOriginal, 403, "forbidden", None, None),
            (Refusal::InvalidToken, 401, "invalid_token", None, invalid),
            (Refusal::TooManyFailures, 429, "too_many_failures", Some(60), None),
            (Refusal::ProviderUnavailable(ProviderNeed::SessionRenewal), 503, "idp_unavailable", Some(30), None),
            (Refusal::ProviderUnavailable(ProviderNeed::SignIn), 503, "idp_unavailable", Some(30), None),
            (Refusal::ProviderUnavailable(ProviderNeed::TokenCheck), 503, "idp_unavailable", Some(30), None),
            (Refusal::StoreUnavailable, 503, "session_store_unavailable", Some(5), None),
            (Refusal::LoginRequired(ProviderSet::ALL), 401, "unauthenticated", None, login),
            (Refusal::SessionInvalid(ProviderSet::ALL), 401, "unauthenticated", None, login),
            (Refusal::RuleDenied, 403, "forbidden", None, None),
            (Refusal::UpstreamUnavailable(StatusCode::BAD_GATEWAY), 502, "upstream_unavailable", None, None),
            (Refusal::UpstreamTimeout, 504, "upstream_unavailable", None, None),
            (Refusal::CrossSiteSignOut, 403, "cross_site", None, None),
            (Refusal::MethodNotAllowed, 405, "method_not_allowed", None, None),
            (Refusal::LogoutRefused, 400, "invalid_request", None, None),
            (
                Refusal::LogoutDeferred(LogoutBlocker::ProviderUnavailable),
                503,
                "temporarily_unavailable",
                Some(30),
                None,
            ),
            (Refusal::LogoutDeferred(LogoutBlocker::StoreUnavailable), 503, "temporarily_unavailable", Some(5), None),
            (
                Refusal::LogoutDeferred(LogoutBlocker::Full { retry_after_seconds: 7 }),
                503,
                "temporarily_unavailable",
                Some(7),
                None,
            ),
            (Refusal::Internal, 500, "internal_error", None, None),
            (Refusal::Login(LoginError::MissingState), 400, "missing_state", None, None),
            (Refusal::Login(LoginError::StateMismatch), 400, "state_mismatch", None, None),
            (Refusal::Login(LoginError::Expired), 400, "login_expired", None, None),
            (Refusal::Login(LoginError::InvalidVerifier), 400, "state_mismatch", None, None),
            (Refusal::Login(LoginError::ProviderUnavailable), 503, "idp_unavailable", Some(30), None),
            (Refusal::Login(LoginError::IssuerMismatch), 400, "issuer_mismatch", None, None),
            (Refusal::Login(LoginError::IssuerMissing), 400, "issuer_missing", None, None),
            (Refusal::Login(LoginError::ProviderRefused("access_denied".into())), 403, "idp_error", None, None),
            (Refusal::Login(LoginError::MissingCode), 400, "missing_code", None, None),
            (Refusal::Login(LoginError::TooManyFailures), 429, "too_many_failures", Some(60), None),
            (
                Refusal::Login(LoginError::TokenEndpointUnavailable("down".into())),
                503,
                "token_exchange_failed",
                Some(30),
                None,
            ),
            (Refusal::Login(LoginError::TokenEndpointRejected("no".into())), 502, "token_exchange_failed", None, None),
            (Refusal::Login(LoginError::IdTokenMissing), 502, "id_token_missing", None, None),
            (Refusal::Login(LoginError::IdTokenInvalid("bad".into())), 502, "id_token_invalid", None, None),
            (Refusal::Login(LoginError::StoreUnavailable), 503, "session_store_unavailable", Some(5), None),
            (Refusal::Login(LoginError::SessionTooLarge), 500, "session_too_large", None, None),
            (Refusal::Login(LoginError::Internal), 500, "internal_error", None, None),
        ]
    }

    #[test]
    fn every_refusal_has_its_status_code_retry_after_and_challenge() {
        let request_id = request_id();
        for (refusal, status, code, retry_after, challenge) in table() {
            assert_eq!(refusal.status().as_u16(), status, "{refusal:?}");
            assert_eq!(refusal.code(), code, "{refusal:?}");
            assert_eq!(refusal.retry_after().map(|after| after.as_secs()), retry_after, "{refusal:?}");
            assert_eq!(refusal.challenge(), challenge, "{refusal:?}");
            assert!(!refusal.message().is_empty(), "{refusal:?}");

            let response = refusal.render(Audience::Api, &request_id);
            assert_eq!(response.status().as_u16(), status, "{refusal:?}");
            let header = |name| response.headers().get(name).map(|value| value.to_str().unwrap().to_owned());
            assert_eq!(header(header::RETRY_AFTER), retry_after.map(|after| after.to_string()), "{refusal:?}");
            assert_eq!(header(header::WWW_AUTHENTICATE).as_deref(), challenge, "{refusal:?}");
            assert_eq!(header(header::CACHE_CONTROL).as_deref(), Some("no-store"), "{refusal:?}");
        }
    }

    #[test]
    fn a_provider_outage_is_never_a_401_and_every_5xx_cause_says_when_to_retry() {
        for (refusal, ..) in table() {
            if matches!(refusal, Refusal::ProviderUnavailable(_) | Refusal::StoreUnavailable) {
                assert_eq!(refusal.render_for_auth_request(&request_id()).status(), 503);
            }
            if refusal.status() == StatusCode::SERVICE_UNAVAILABLE {
                assert!(refusal.retry_after().is_some(), "{refusal:?}");
            }
        }
    }

    #[test]
    fn auth_request_proxies_get_only_401_403_or_a_server_error() {
        let request_id = request_id();
        for (refusal, ..) in table() {
            let status = refusal.render_for_auth_request(&request_id).status();
            assert!(
                status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN || status.is_server_error(),
                "{refusal:?}: {status}"
            );
        }
        let throttled = Refusal::TooManyFailures.render_for_auth_request(&request_id);
        assert_eq!(throttled.headers()[header::WWW_AUTHENTICATE], INVALID_TOKEN_CHALLENGE);
    }

    #[test]
    fn login_failures_are_counted_by_cause() {
        assert_eq!(LoginError::TokenEndpointRejected("x".into()).metric_reason(), "token_endpoint");
        assert_eq!(LoginError::TokenEndpointUnavailable("x".into()).metric_reason(), "token_endpoint");
        assert_eq!(LoginError::IdTokenInvalid("expired".into()).detail(), Some("expired"));
        assert_eq!(LoginError::MissingCode.detail(), None);
        assert_eq!(LoginError::ProviderRefused("x".into()).metric_reason(), "idp_error");
        assert_eq!(Refusal::Login(LoginError::StoreUnavailable).metric_reason(), "session_store_unavailable");
        assert_eq!(
            LoginError::ProviderRefused("server_error".into()).message(),
            "The identity provider could not sign you in (error: server_error)."
        );
    }
}
