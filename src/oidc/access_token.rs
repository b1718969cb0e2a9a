//! JWT access tokens presented as bearer tokens: held to the rules every JWT
//! here meets ([`verify_signed`]: signature, algorithm allow-list, `crit`,
//! `iss`, audiences, `sub`, `nbf`), plus `exp` and a check that the token is an
//! access token and not an ID or logout token.
//!
//! Which token is an access token: RFC 9068 §4 has resource servers check
//! `typ: at+jwt`, the only marker an ID token cannot carry; callers require it
//! unless the provider does not type its access tokens, and then tokens that
//! carry ID-token claims (`nonce`, `at_hash`, `c_hash`, Keycloak's `typ: ID`)
//! are refused anyway. Logout tokens (`events`, `typ: logout+jwt`) are always
//! refused.

use serde_json::Value;

use super::id_token::{IdTokenError, JwtRules, verify_signed};
use super::jwks::Jwks;

/// Why an access token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccessTokenError {
    #[error("not a JWT")]
    Malformed,
    #[error(transparent)]
    Jwt(#[from] IdTokenError),
    #[error("token has expired")]
    Expired,
    #[error("a logout token")]
    LogoutToken,
    #[error("not typed as an access token, or carries ID-token claims")]
    NotAnAccessToken,
}

impl AccessTokenError {
    /// The short reason logged and counted for a refused bearer token.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Jwt(_) => "verification_failed",
            Self::Expired => "expired",
            Self::LogoutToken => "logout_token",
            Self::NotAnAccessToken => "not_an_access_token",
        }
    }
}

/// Verifies `token` as an access token under `rules`; `require_type` asks for
/// `typ: at+jwt`. Returns its claims and its `exp`.
pub async fn validate(
    token: &str,
    jwks: &Jwks,
    rules: &JwtRules<'_>,
    require_type: bool,
) -> Result<(Value, i64), AccessTokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| AccessTokenError::Malformed)?;
    let claims: Value = verify_signed(token, jwks, rules, &["exp", "iss", "aud", "sub"]).await?;
    let exp = claims.get("exp").and_then(Value::as_i64);
    let Some(exp) = exp.filter(|exp| exp.saturating_add(rules.skew_seconds) > rules.now) else {
        return Err(AccessTokenError::Expired);
    };
    let typ = header.typ.as_deref();
    if typ.is_some_and(|typ| typ.eq_ignore_ascii_case("logout+jwt")) || claims.get("events").is_some() {
        return Err(AccessTokenError::LogoutToken);
    }
    if !is_access_token_type(typ) {
        let id_token_like = ["nonce", "at_hash", "c_hash"].iter().any(|claim| claims.get(claim).is_some())
            || claims.get("typ").and_then(Value::as_str).is_some_and(|typ| typ.eq_ignore_ascii_case("id"));
        if require_type || id_token_like {
            return Err(AccessTokenError::NotAnAccessToken);
        }
    }
    Ok((claims, exp))
}

/// RFC 9068 §2.1: `at+jwt`, with or without the `application/` prefix.
fn is_access_token_type(typ: Option<&str>) -> bool {
    typ.is_some_and(|typ| typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_token_types() {
        assert!(is_access_token_type(Some("at+jwt")));
        assert!(is_access_token_type(Some("application/AT+JWT")));
        assert!(!is_access_token_type(Some("JWT")));
        assert!(!is_access_token_type(None));
    }
}
