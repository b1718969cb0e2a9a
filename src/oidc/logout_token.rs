//! Logout tokens (OpenID Connect Back-Channel Logout 1.0 §2.4 and §2.6):
//! signed by the provider, for us, carrying the logout event, naming a
//! `sub` and/or `sid`, a `jti` (so a replay can be refused), and never a `nonce`.

use serde::Deserialize;

use super::id_token::{IdTokenError, JwtRules, verify_signed};
use super::jwks::Jwks;

/// The event a logout token must carry.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// How old a logout token may be when it arrives.
const MAX_AGE_SECONDS: i64 = 300;

#[derive(Deserialize)]
struct LogoutClaims {
    iat: i64,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    nonce: Option<serde_json::Value>,
    #[serde(default)]
    events: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    jti: Option<String>,
}

/// Whose sessions a valid logout token ends.
#[derive(Debug, PartialEq, Eq)]
pub struct LogoutRequest {
    pub sub: Option<String>,
    pub sid: Option<String>,
    /// The token's unique id: used once, a replay is refused.
    pub jti: String,
    /// From this time on the token is refused as expired or too old anyway:
    /// its `jti` need not be remembered longer.
    pub acceptable_until: i64,
}

/// Why a logout token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogoutTokenError {
    #[error(transparent)]
    Jwt(#[from] IdTokenError),
    #[error("the token carries no back-channel logout event")]
    NoLogoutEvent,
    #[error("a logout token must not carry a nonce")]
    HasNonce,
    #[error("the token names neither sub nor sid")]
    NoSubject,
    #[error("the token has no jti, so a replay could not be recognised")]
    NoJti,
    #[error("the token is expired, from the future or too old")]
    BadTime,
}

/// Validates a logout token for `rules.audience` (the client) from `rules.issuer`.
pub async fn validate(token: &str, jwks: &Jwks, rules: &JwtRules<'_>) -> Result<LogoutRequest, LogoutTokenError> {
    let claims: LogoutClaims = verify_signed(token, jwks, rules, &["iss", "aud"]).await?;
    let (now, skew_seconds) = (rules.now, rules.skew_seconds);
    let event_ok = claims
        .events
        .as_ref()
        .and_then(|events| events.get(BACKCHANNEL_LOGOUT_EVENT))
        .is_some_and(serde_json::Value::is_object);
    if !event_ok {
        return Err(LogoutTokenError::NoLogoutEvent);
    }
    // §2.4: a nonce would let an ID token be replayed as a logout token.
    if claims.nonce.is_some() {
        return Err(LogoutTokenError::HasNonce);
    }
    if claims.sub.is_none() && claims.sid.is_none() {
        return Err(LogoutTokenError::NoSubject);
    }
    // §2.4 makes jti required; without it a captured token could be replayed.
    let Some(jti) = claims.jti.filter(|jti| !jti.is_empty()) else {
        return Err(LogoutTokenError::NoJti);
    };
    let expired = claims.exp.is_some_and(|exp| exp.saturating_add(skew_seconds) <= now);
    let future = claims.iat > now.saturating_add(skew_seconds);
    let stale = claims.iat < now.saturating_sub(MAX_AGE_SECONDS + skew_seconds);
    if expired || future || stale {
        return Err(LogoutTokenError::BadTime);
    }
    // The checks above, solved for the first `now` each refuses.
    let too_old_from = claims.iat.saturating_add(MAX_AGE_SECONDS + skew_seconds).saturating_add(1);
    let acceptable_until = claims.exp.map_or(too_old_from, |exp| too_old_from.min(exp.saturating_add(skew_seconds)));
    Ok(LogoutRequest { sub: claims.sub, sid: claims.sid, jti, acceptable_until })
}
