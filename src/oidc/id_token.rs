//! ID token validation (OpenID Connect Core 1.0 §3.1.3.7): signature with a
//! provider key and an allow-listed algorithm, no `crit` header member (RFC
//! 7515 §4.1.11: none is understood here), then `iss`, `aud` (every audience
//! trusted), `azp`, a non-empty `sub`, `nbf`, `exp`, `iat` and `nonce`. The
//! time checks use the injectable clock. [`verify_signed`] holds logout tokens
//! and bearer JWTs to the same rules.

use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::jwks::Jwks;
use crate::clock::UnixSeconds;

/// How old an ID token's `iat` may be when it reaches us (it was just issued).
const MAX_ID_TOKEN_AGE_SECONDS: i64 = 600;

/// The claims the gateway reads from an ID token.
#[derive(Clone, Debug, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub azp: Option<String>,
    #[serde(default)]
    pub aud: Audience,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<bool>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub preferred_username: Option<String>,
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    #[serde(default)]
    pub sid: Option<String>,
    /// The whole verified payload, for claims read by a configured path
    /// (groups): the token is not decoded a second time for them.
    #[serde(skip)]
    pub payload: serde_json::Value,
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn len(&self) -> usize {
        match self {
            Audience::None => 0,
            Audience::One(_) => 1,
            Audience::Many(values) => values.len(),
        }
    }
}

/// Why an ID token was refused. Never contains the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdTokenError {
    #[error("malformed token header")]
    Malformed,
    #[error("algorithm {0} is not allowed")]
    AlgorithmNotAllowed(String),
    #[error("no provider key matches the token's kid")]
    UnknownKey,
    #[error("signature or standard claims invalid: {0}")]
    Invalid(String),
    #[error("token has expired")]
    Expired,
    #[error("token was issued in the future or too long ago")]
    BadIssuedAt,
    #[error("nonce does not match the login attempt")]
    NonceMismatch,
    #[error("azp does not name this client")]
    WrongAuthorizedParty,
    #[error("the header lists critical extensions, none of which is understood")]
    CriticalExtension,
    #[error("aud names an audience that is not trusted")]
    UntrustedAudience,
    #[error("sub is empty or not a string")]
    BadSubject,
    #[error("token is not valid yet (nbf)")]
    NotYetValid,
}

/// What an ID token must satisfy.
#[derive(Debug)]
pub struct Expectations<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// Audiences the token may name besides the client (`oidc.trusted_audiences`).
    pub trusted_audiences: &'a [String],
    /// The login attempt's nonce; `None` for tokens from a refresh (no nonce required).
    pub nonce: Option<&'a str>,
    pub algorithms: &'a [Algorithm],
    pub now: UnixSeconds,
    pub skew_seconds: i64,
}

/// Verifies the signature and claims of `token`.
pub async fn validate(token: &str, jwks: &Jwks, expect: &Expectations<'_>) -> Result<IdTokenClaims, IdTokenError> {
    let rules = JwtRules {
        algorithms: expect.algorithms,
        issuer: expect.issuer,
        audience: expect.client_id,
        trusted_audiences: expect.trusted_audiences,
        now: expect.now,
        skew_seconds: expect.skew_seconds,
    };
    let payload = verify_signed_payload(token, jwks, &rules, &["exp", "iss", "aud", "sub"]).await?;
    let mut claims =
        IdTokenClaims::deserialize(&payload).map_err(|_| IdTokenError::Invalid("malformed claims".to_owned()))?;
    claims.payload = payload;
    if claims.exp.saturating_add(expect.skew_seconds) <= expect.now {
        return Err(IdTokenError::Expired);
    }
    if claims.iat > expect.now.saturating_add(expect.skew_seconds)
        || claims.iat < expect.now.saturating_sub(MAX_ID_TOKEN_AGE_SECONDS + expect.skew_seconds)
    {
        return Err(IdTokenError::BadIssuedAt);
    }
    // OIDC Core §3.1.3.7 (4, 5): several audiences require azp, and azp, when present, must be us.
    match &claims.azp {
        Some(azp) if azp != expect.client_id => return Err(IdTokenError::WrongAuthorizedParty),
        None if claims.aud.len() > 1 => return Err(IdTokenError::WrongAuthorizedParty),
        _ => {}
    }
    if let Some(expected) = expect.nonce {
        let matches =
            claims.nonce.as_deref().is_some_and(|found| bool::from(found.as_bytes().ct_eq(expected.as_bytes())));
        if !matches {
            return Err(IdTokenError::NonceMismatch);
        }
    }
    Ok(claims)
}

/// What every JWT the gateway accepts (ID, logout and bearer tokens) must satisfy.
#[derive(Debug)]
pub struct JwtRules<'a> {
    pub algorithms: &'a [Algorithm],
    pub issuer: &'a str,
    /// The audience the token must name.
    pub audience: &'a str,
    /// The only other audiences it may name (OIDC Core §3.1.3.7 step 3).
    pub trusted_audiences: &'a [String],
    pub now: UnixSeconds,
    pub skew_seconds: i64,
}

/// Verifies a JWT's signature with a provider key and an allow-listed
/// algorithm, that its header asks for no critical extension, its `iss`, its
/// `aud` (ours, and nothing untrusted), a non-empty `sub` and a `nbf` already
/// reached (when present), and that `required` claims exist. `exp` and `iat`
/// are left to the caller: their limits differ by kind of token.
pub async fn verify_signed<T: DeserializeOwned>(
    token: &str,
    jwks: &Jwks,
    rules: &JwtRules<'_>,
    required: &[&str],
) -> Result<T, IdTokenError> {
    let payload = verify_signed_payload(token, jwks, rules, required).await?;
    serde_json::from_value(payload).map_err(|_| IdTokenError::Invalid("malformed claims".to_owned()))
}

/// [`verify_signed`], answering the verified payload as JSON.
async fn verify_signed_payload(
    token: &str,
    jwks: &Jwks,
    rules: &JwtRules<'_>,
    required: &[&str],
) -> Result<serde_json::Value, IdTokenError> {
    // `alg: none` and unknown algorithms fail here: they are not `Algorithm`s.
    let header = decode_header(token).map_err(|_| IdTokenError::Malformed)?;
    if !rules.algorithms.contains(&header.alg) {
        return Err(IdTokenError::AlgorithmNotAllowed(format!("{:?}", header.alg)));
    }
    // RFC 7515 §4.1.11: an extension the recipient does not understand makes
    // the JWS invalid, and this verifier understands none.
    if header.crit.is_some() {
        return Err(IdTokenError::CriticalExtension);
    }
    let candidates = jwks.keys_for(header.kid.as_deref()).await;
    if candidates.is_empty() {
        return Err(IdTokenError::UnknownKey);
    }
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[rules.issuer]);
    validation.set_audience(&[rules.audience]);
    validation.set_required_spec_claims(required);
    validation.validate_exp = false;
    // Checked below against the gateway's clock, not the system's.
    validation.validate_nbf = false;

    let mut last_error = IdTokenError::UnknownKey;
    // A key that declares an algorithm is only used with that algorithm
    // (no RSA key verifying an ES256 token, no key confusion).
    for candidate in candidates.iter().filter(|key| key.algorithm.is_none_or(|alg| alg == header.alg)) {
        match decode::<serde_json::Value>(token, &candidate.key, &validation) {
            Ok(data) => {
                check_common_claims(&data.claims, rules)?;
                return Ok(data.claims);
            }
            Err(error) => last_error = IdTokenError::Invalid(error.kind_name()),
        }
    }
    Err(last_error)
}

/// The registered claims every kind of token is held to alike (RFC 7519 §4.1):
/// each audience ours or trusted, `sub` a non-empty string, `nbf` reached.
fn check_common_claims(claims: &serde_json::Value, rules: &JwtRules<'_>) -> Result<(), IdTokenError> {
    let trusted = |audience: &serde_json::Value| {
        audience.as_str().is_some_and(|audience| {
            audience == rules.audience || rules.trusted_audiences.iter().any(|trusted| trusted == audience)
        })
    };
    let audiences_trusted = match claims.get("aud") {
        None => true,
        Some(serde_json::Value::Array(audiences)) => audiences.iter().all(trusted),
        Some(one) => trusted(one),
    };
    if !audiences_trusted {
        return Err(IdTokenError::UntrustedAudience);
    }
    if claims.get("sub").is_some_and(|sub| sub.as_str().is_none_or(str::is_empty)) {
        return Err(IdTokenError::BadSubject);
    }
    if let Some(nbf) = claims.get("nbf") {
        // NumericDate may have a fraction (RFC 7519 §2); anything else is malformed.
        let Some(nbf) = nbf.as_f64() else { return Err(IdTokenError::Invalid("malformed nbf".to_owned())) };
        // Seconds since 1970 are exact in an f64 (53-bit mantissa).
        if nbf > rules.now.saturating_add(rules.skew_seconds) as f64 {
            return Err(IdTokenError::NotYetValid);
        }
    }
    Ok(())
}

/// A short, secret-free name for a jsonwebtoken error kind (for logs).
trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for jsonwebtoken::errors::Error {
    fn kind_name(&self) -> String {
        use jsonwebtoken::errors::ErrorKind;
        match self.kind() {
            ErrorKind::InvalidSignature => "invalid signature".to_owned(),
            ErrorKind::InvalidIssuer => "wrong issuer".to_owned(),
            ErrorKind::InvalidAudience => "wrong audience".to_owned(),
            ErrorKind::MissingRequiredClaim(claim) => format!("missing claim {claim}"),
            ErrorKind::InvalidAlgorithm => "algorithm does not fit the key".to_owned(),
            ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                "malformed token".to_owned()
            }
            _ => "verification failed".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rules(trusted: &[String]) -> JwtRules<'_> {
        JwtRules {
            algorithms: &[Algorithm::ES256],
            issuer: "https://idp.example",
            audience: "client",
            trusted_audiences: trusted,
            now: 1_000,
            skew_seconds: 60,
        }
    }

    #[test]
    fn every_audience_must_be_ours_or_trusted() {
        let trusted = ["https://api.example".to_owned()];
        let check = |claims| check_common_claims(&claims, &rules(&trusted));
        assert_eq!(check(json!({"aud": "client"})), Ok(()));
        assert_eq!(check(json!({"aud": ["client", "https://api.example"]})), Ok(()));
        assert_eq!(check(json!({"aud": ["client", "other"]})), Err(IdTokenError::UntrustedAudience));
        assert_eq!(check(json!({"aud": ["client", 7]})), Err(IdTokenError::UntrustedAudience));
        assert_eq!(
            check_common_claims(&json!({"aud": ["client", "https://api.example"]}), &rules(&[])),
            Err(IdTokenError::UntrustedAudience)
        );
    }

    #[test]
    fn sub_must_be_a_non_empty_string() {
        let check = |claims| check_common_claims(&claims, &rules(&[]));
        assert_eq!(check(json!({"sub": "u1"})), Ok(()));
        assert_eq!(check(json!({"sub": ""})), Err(IdTokenError::BadSubject));
        assert_eq!(check(json!({"sub": 42})), Err(IdTokenError::BadSubject));
    }

    #[test]
    fn nbf_must_be_reached_within_the_skew_and_be_a_number() {
        let check = |claims| check_common_claims(&claims, &rules(&[]));
        assert_eq!(check(json!({"nbf": 1_060})), Ok(()));
        assert_eq!(check(json!({"nbf": 1_060.5})), Err(IdTokenError::NotYetValid));
        assert_eq!(check(json!({"nbf": 1_061})), Err(IdTokenError::NotYetValid));
        assert!(matches!(check(json!({"nbf": "1000"})), Err(IdTokenError::Invalid(_))));
    }
}
