//! The provider's ES256 signing keys: generation, JWK publication, signing,
//! rotation, and the "rogue" key used to forge bad signatures on purpose.

use std::io;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;

use super::web::random_token;

/// One P-256 key pair with its key id.
pub(super) struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    x: String,
    y: String,
}

impl SigningKey {
    /// A fresh P-256 key pair with a random `kid`.
    fn generate() -> io::Result<Self> {
        Self::generate_with_kid(random_token(12))
    }

    fn generate_with_kid(kid: String) -> io::Result<Self> {
        let crypto_error = |what: &str| io::Error::other(format!("ES256 key {what} failed"));
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|_| crypto_error("generation"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| crypto_error("parsing"))?;
        // The public key is the uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
        let point = pair.public_key().as_ref();
        let (Some(x), Some(y)) = (point.get(1..33), point.get(33..65)) else {
            return Err(crypto_error("encoding"));
        };
        let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
        let decoding = DecodingKey::from_ec_components(&x, &y).map_err(|_| crypto_error("import"))?;
        Ok(Self { kid, encoding: EncodingKey::from_ec_der(pkcs8.as_ref()), decoding, x, y })
    }

    /// The key id published in the JWKS and in token headers.
    pub(super) fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK.
    pub(super) fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": self.x,
            "y": self.y,
            "kid": self.kid,
            "alg": "ES256",
            "use": "sig",
        })
    }

    /// An ES256 JWS of `claims` with this key, `typ` and `kid` in the header.
    pub(super) fn sign<T: Serialize>(&self, typ: &str, kid: &str, claims: &T) -> io::Result<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(typ.to_owned());
        header.kid = Some(kid.to_owned());
        self.sign_with_header(&header, claims)
    }

    /// An ES256 JWS of `claims` with this key under `header` as given (its `alg` must be ES256).
    pub(super) fn sign_with_header<T: Serialize>(&self, header: &Header, claims: &T) -> io::Result<String> {
        jsonwebtoken::encode(header, claims, &self.encoding)
            .map_err(|error| io::Error::other(format!("signing failed: {error}")))
    }
}

/// The current key, the keys it replaced, and a rogue key that is never published.
pub(super) struct KeyRing {
    current: SigningKey,
    retired: Vec<SigningKey>,
    rogue: SigningKey,
}

impl KeyRing {
    /// A ring with a fresh current key and a fresh rogue key.
    pub(super) fn generate() -> io::Result<Self> {
        Ok(Self {
            current: SigningKey::generate()?,
            retired: Vec::new(),
            rogue: SigningKey::generate_with_kid("rogue".to_owned())?,
        })
    }

    /// The key that signs new tokens and is the only one in the JWKS.
    pub(super) fn current(&self) -> &SigningKey {
        &self.current
    }

    /// A key not in the JWKS, for the `id_token_bad_signature` fault.
    pub(super) fn rogue(&self) -> &SigningKey {
        &self.rogue
    }

    /// Replaces the current key; the old one is kept only to verify tokens it signed.
    pub(super) fn rotate(&mut self) -> io::Result<()> {
        let next = SigningKey::generate()?;
        let previous = std::mem::replace(&mut self.current, next);
        self.retired.push(previous);
        Ok(())
    }

    /// The claims of a token signed by one of our keys (current or retired),
    /// without checking `exp`, `aud` or `iss`: callers check those against the
    /// provider clock and configuration.
    pub(super) fn verify(&self, token: &str) -> Option<serde_json::Value> {
        let kid = jsonwebtoken::decode_header(token).ok()?.kid?;
        let key = std::iter::once(&self.current).chain(self.retired.iter()).find(|key| key.kid == kid)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<serde_json::Value>(token, &key.decoding, &validation).ok().map(|data| data.claims)
    }
}
