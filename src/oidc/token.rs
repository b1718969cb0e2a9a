//! Token endpoint calls (RFC 6749 §4.1.3 and §6): the authorization-code
//! exchange with the PKCE verifier, and refresh. Client authentication follows
//! the configured client type; a public client never sends a secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use serde::Deserialize;

use super::http_client::{IdpCall, IdpHttpClient, IdpHttpError};
use super::pkce::PkceVerifier;
use crate::config::{ClientAuthMethod, ClientCredentials, OidcConfig};
use crate::secret::SecretString;

/// A successful token response (RFC 6749 §5.1).
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: SecretString,
    pub token_type: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub refresh_token: Option<SecretString>,
    #[serde(default)]
    pub id_token: Option<SecretString>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
}

/// A failed token request.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The provider refused the request (RFC 6749 §5.2); `code` is sanitised.
    #[error("the provider refused the token request: {code}")]
    Rejected { code: String },
    /// The provider could not be reached or answered with a server error.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider answered something that is not a usable token response.
    #[error("the provider's token response is invalid: {0}")]
    Invalid(&'static str),
}

impl TokenError {
    /// Whether the provider refused the grant itself (RFC 6749 §5.2
    /// `invalid_grant`: the refresh token is revoked, expired or reused). Any
    /// other refusal (`invalid_client`, `temporarily_unavailable`, a 429)
    /// says nothing about the session and may pass.
    pub fn is_invalid_grant(&self) -> bool {
        matches!(self, Self::Rejected { code } if code == "invalid_grant")
    }
}

impl From<IdpHttpError> for TokenError {
    fn from(error: IdpHttpError) -> Self {
        TokenError::Unavailable(error.to_string())
    }
}

/// Exchanges an authorization code, sending the same `redirect_uri` as the
/// authorization request and the flow's PKCE verifier.
pub async fn exchange_code(
    client: &IdpHttpClient,
    token_endpoint: &str,
    oidc: &OidcConfig,
    code: &str,
    verifier: &PkceVerifier,
) -> Result<TokenResponse, TokenError> {
    let params = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", oidc.redirect_url.as_str()),
        ("code_verifier", verifier.expose()),
    ];
    let response = request(client, IdpCall::TokenExchange, token_endpoint, oidc, &params).await?;
    if response.id_token.is_none() {
        return Err(TokenError::Invalid("no id_token in the response"));
    }
    Ok(response)
}

/// Uses a refresh token (RFC 6749 §6).
pub async fn refresh(
    client: &IdpHttpClient,
    token_endpoint: &str,
    oidc: &OidcConfig,
    refresh_token: &SecretString,
) -> Result<TokenResponse, TokenError> {
    let params = [("grant_type", "refresh_token"), ("refresh_token", refresh_token.expose())];
    request(client, IdpCall::Refresh, token_endpoint, oidc, &params).await
}

async fn request(
    client: &IdpHttpClient,
    call: IdpCall,
    endpoint: &str,
    oidc: &OidcConfig,
    grant: &[(&str, &str)],
) -> Result<TokenResponse, TokenError> {
    let (form, authorization) = authenticate(oidc, grant)?;
    let response = client.post_form(call, endpoint, &form, authorization).await?;
    if response.status.is_server_error() {
        return Err(TokenError::Unavailable(format!("HTTP {}", response.status.as_u16())));
    }
    if !response.status.is_success() {
        let code = serde_json::from_slice::<ErrorResponse>(&response.body)
            .map(|error| sanitise_error_code(&error.error))
            .unwrap_or_else(|_| format!("HTTP {}", response.status.as_u16()));
        return Err(TokenError::Rejected { code });
    }
    let tokens: TokenResponse =
        serde_json::from_slice(&response.body).map_err(|_| TokenError::Invalid("not a token response"))?;
    if !tokens.token_type.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Invalid("token_type is not Bearer"));
    }
    if tokens.access_token.expose().is_empty() {
        return Err(TokenError::Invalid("empty access_token"));
    }
    Ok(tokens)
}

type Form<'a> = Vec<(&'a str, &'a str)>;

/// Adds client authentication to a grant. Public clients send only their id.
pub(super) fn authenticate<'a>(
    oidc: &'a OidcConfig,
    grant: &[(&'a str, &'a str)],
) -> Result<(Form<'a>, Option<HeaderValue>), TokenError> {
    let mut form: Form<'a> = grant.to_vec();
    match &oidc.credentials {
        ClientCredentials::Public => {
            form.push(("client_id", oidc.client_id.as_str()));
            Ok((form, None))
        }
        ClientCredentials::Confidential { secret, method: ClientAuthMethod::SecretPost } => {
            form.push(("client_id", oidc.client_id.as_str()));
            form.push(("client_secret", secret.expose()));
            Ok((form, None))
        }
        ClientCredentials::Confidential { secret, method: ClientAuthMethod::SecretBasic } => {
            // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
            let user = form_urlencoded::byte_serialize(oidc.client_id.as_bytes()).collect::<String>();
            let password = form_urlencoded::byte_serialize(secret.expose().as_bytes()).collect::<String>();
            let mut value = HeaderValue::try_from(format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))))
                .map_err(|_| TokenError::Invalid("client credentials are not header-safe"))?;
            value.set_sensitive(true);
            // RFC 6749 §4.1.3: client_id goes in the body only when the client does not authenticate.
            Ok((form, Some(value)))
        }
    }
}

/// Error codes are echoed into logs and pages; keep them to RFC 6749's charset.
pub fn sanitise_error_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').take(64).collect()
}

/// Revokes a token (RFC 7009 §2.1). The provider's answer only matters for
/// the log: local sign-out goes ahead whatever happens here.
pub async fn revoke(
    client: &IdpHttpClient,
    revocation_endpoint: &str,
    oidc: &OidcConfig,
    token: &str,
    token_type_hint: &str,
) -> Result<(), TokenError> {
    let params = [("token", token), ("token_type_hint", token_type_hint)];
    let (form, authorization) = authenticate(oidc, &params)?;
    let response = client.post_form(IdpCall::Revocation, revocation_endpoint, &form, authorization).await?;
    if response.status.is_success() {
        Ok(())
    } else if response.status.is_server_error() {
        Err(TokenError::Unavailable(format!("HTTP {}", response.status.as_u16())))
    } else {
        Err(TokenError::Rejected { code: format!("HTTP {}", response.status.as_u16()) })
    }
}
