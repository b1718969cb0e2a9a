//! PKCE (RFC 7636) with the S256 method only.
//!
//! The verifier is 32 bytes from the OS generator, base64url-encoded (43
//! characters of the unreserved set, RFC 7636 §4.1). The challenge is
//! `BASE64URL(SHA256(verifier))` (§4.2). `plain` has no type here, so it
//! cannot be sent by mistake.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::random::{self, RandomError};

/// The only `code_challenge_method` Portcullis ever sends.
pub const CHALLENGE_METHOD: &str = "S256";

/// A PKCE code verifier. Secret until the token request; `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct PkceVerifier(String);

/// The S256 challenge derived from a [`PkceVerifier`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S256Challenge(String);

/// A stored verifier does not have the shape RFC 7636 §4.1 requires.
#[derive(Debug, thiserror::Error)]
#[error("malformed PKCE code verifier")]
pub struct MalformedVerifier;

impl PkceVerifier {
    /// A fresh verifier from 32 bytes of OS randomness (256 bits).
    pub fn generate() -> Result<Self, RandomError> {
        random::token::<32>().map(Self)
    }

    /// Rebuilds a verifier from a flow cookie, checking RFC 7636 §4.1:
    /// 43 to 128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
    pub fn from_stored(text: String) -> Result<Self, MalformedVerifier> {
        let length_ok = (43..=128).contains(&text.len());
        let charset_ok = text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if length_ok && charset_ok { Ok(Self(text)) } else { Err(MalformedVerifier) }
    }

    /// The S256 challenge for this verifier.
    pub fn challenge(&self) -> S256Challenge {
        S256Challenge(URL_SAFE_NO_PAD.encode(Sha256::digest(self.0.as_bytes())))
    }

    /// The verifier text, for the token request and the sealed flow cookie only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PkceVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PkceVerifier(<redacted>)")
    }
}

impl S256Challenge {
    /// The challenge text for the authorization request.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        let verifier = PkceVerifier::from_stored("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_owned()).unwrap();
        assert_eq!(verifier.challenge().as_str(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn generated_verifiers_are_long_fresh_and_valid() {
        let a = PkceVerifier::generate().unwrap();
        let b = PkceVerifier::generate().unwrap();
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a, b);
        assert!(PkceVerifier::from_stored(a.expose().to_owned()).is_ok());
        assert_ne!(a.challenge().as_str(), a.expose(), "S256, never plain");
    }

    #[test]
    fn malformed_verifiers_are_refused() {
        assert!(PkceVerifier::from_stored("short".to_owned()).is_err());
        assert!(PkceVerifier::from_stored("a".repeat(129)).is_err());
        assert!(PkceVerifier::from_stored(format!("{}+", "a".repeat(43))).is_err());
        assert!(format!("{:?}", PkceVerifier::generate().unwrap()).contains("redacted"));
    }
}
