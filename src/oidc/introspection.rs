//! Token introspection (RFC 7662): asking the provider whether an opaque
//! bearer token is active, authenticated as the configured confidential client.

use serde_json::Value;

use super::http_client::{IdpCall, IdpHttpClient};
use super::token::{TokenError, authenticate};
use crate::config::OidcConfig;

/// The provider's answer for `token`: its claims when `active` is true,
/// `Ok(None)` when the token is not active.
pub async fn introspect(
    client: &IdpHttpClient,
    endpoint: &str,
    oidc: &OidcConfig,
    token: &str,
) -> Result<Option<Value>, TokenError> {
    let params = [("token", token), ("token_type_hint", "access_token")];
    let (form, authorization) = authenticate(oidc, &params)?;
    let response = client.post_form(IdpCall::Introspection, endpoint, &form, authorization).await?;
    if response.status.is_server_error() {
        return Err(TokenError::Unavailable(format!("HTTP {}", response.status.as_u16())));
    }
    if !response.status.is_success() {
        return Err(TokenError::Rejected { code: format!("HTTP {}", response.status.as_u16()) });
    }
    let claims: Value = serde_json::from_slice(&response.body).map_err(|_| TokenError::Invalid("not JSON"))?;
    // RFC 7662 §2.2: only a literal `true` is active.
    Ok((claims.get("active") == Some(&Value::Bool(true))).then_some(claims))
}
