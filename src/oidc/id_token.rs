//! ID token validation (OpenID Connect Core 1.0 §3.1.3.7): signature with a
//! provider key and an allow-listed algorithm, then `iss`, `aud`, `azp`,
//! `exp`, `iat` and `nonce`. The time checks use the injectable clock.

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
}

/// What an ID token must satisfy.
#[derive(Debug)]
pub struct Expectations<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// The login attempt's nonce; `None` for tokens from a refresh (no nonce required).
    pub nonce: Option<&'a str>,
    pub algorithms: &'a [Algorithm],
    pub now: UnixSeconds,
    pub skew_seconds: i64,
}

/// Verifies the signature and claims of `token`.
pub async fn validate(token: &str, jwks: &Jwks, expect: &Expectations<'_>) -> Result<IdTokenClaims, IdTokenError> {
    let claims: IdTokenClaims =
        verify_signed(token, jwks, expect.algorithms, expect.issuer, expect.client_id, &["exp", "iss", "aud", "sub"])
            .await?;
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

/// Verifies a JWT's signature with a provider key and an allow-listed
/// algorithm, its `iss` and its `aud`, and that `required` claims exist.
/// Time claims are left to the caller, who owns the clock.
pub async fn verify_signed<T: DeserializeOwned>(
    token: &str,
    jwks: &Jwks,
    algorithms: &[Algorithm],
    issuer: &str,
    audience: &str,
    required: &[&str],
) -> Result<T, IdTokenError> {
    // `alg: none` and unknown algorithms fail here: they are not `Algorithm`s.
    let header = decode_header(token).map_err(|_| IdTokenError::Malformed)?;
    if !algorithms.contains(&header.alg) {
        return Err(IdTokenError::AlgorithmNotAllowed(format!("{:?}", header.alg)));
    }
    let candidates = jwks.keys_for(header.kid.as_deref()).await;
    if candidates.is_empty() {
        return Err(IdTokenError::UnknownKey);
    }
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(required);
    validation.validate_exp = false;
    validation.validate_nbf = false;

    let mut last_error = IdTokenError::UnknownKey;
    // A key that declares an algorithm is only used with that algorithm
    // (no RSA key verifying an ES256 token, no key confusion).
    for candidate in candidates.iter().filter(|key| key.algorithm.is_none_or(|alg| alg == header.alg)) {
        match decode::<T>(token, &candidate.key, &validation) {
            Ok(data) => return Ok(data.claims),
            Err(error) => last_error = IdTokenError::Invalid(error.kind_name()),
        }
    }
    Err(last_error)
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
