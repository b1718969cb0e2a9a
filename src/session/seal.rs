//! Authenticated encryption of cookie payloads (AES-256-GCM from aws-lc-rs).
//!
//! Format: base64url(`version` ‖ `key id` ‖ `nonce` ‖ ciphertext+tag). The
//! associated data binds the purpose (flow vs session) and the cookie name, so
//! a value sealed for one cookie never opens as another. Several keys may be
//! configured: the first seals, any opens (rotation without logging users out).
//! A configuration reload replaces the keys ([`KeyRing::replace`]); each seal,
//! open or MAC uses the keys of one moment.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{hkdf, hmac};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::random;
use crate::secret::SecretBytes;

const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = 2 + NONCE_LEN;
/// Sealed values larger than this are refused before any work is done.
pub const MAX_SEALED_LEN: usize = 32 * 1024;

/// What a sealed value is for; part of the authenticated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A login attempt (PKCE verifier, state, nonce, return path).
    Flow,
    /// An established session.
    Session,
    /// A session record in the shared store, bound to its key name (never a cookie).
    Stored,
    /// The session handle cookie of store mode (session id and lifetimes, no tokens).
    Handle,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Flow => b"portcullis/flow/v1",
            Purpose::Session => b"portcullis/session/v1",
            Purpose::Stored => b"portcullis/stored/v1",
            Purpose::Handle => b"portcullis/handle/v1",
        }
    }
}

/// Why a sealed value did not open. Deliberately coarse: the caller treats
/// every case as "no valid cookie".
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("not a sealed value")]
    Malformed,
    #[error("sealed with an unknown key")]
    UnknownKey,
    #[error("authentication failed")]
    Forged,
}

struct CookieKey {
    id: u8,
    aead: LessSafeKey,
    mac: hmac::Key,
}

/// The configured keys, ready to seal and open; replaced whole by a reload.
pub struct KeyRing {
    keys: arc_swap::ArcSwap<Vec<CookieKey>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("keys", &self.keys.load().len()).finish()
    }
}

/// The key ring could not be built (no key, or the provider refused one).
#[derive(Debug, thiserror::Error)]
#[error("invalid session key material")]
pub struct KeyError;

struct AesKeyLen;
impl hkdf::KeyType for AesKeyLen {
    fn len(&self) -> usize {
        32
    }
}

impl KeyRing {
    /// Derives an AEAD key from each configured secret (HKDF-SHA256), so the
    /// operator's secret is never used directly as a cipher key.
    pub fn new(secrets: &[SecretBytes]) -> Result<Self, KeyError> {
        Ok(Self { keys: arc_swap::ArcSwap::from_pointee(derive_keys(secrets)?) })
    }

    /// Replaces the keys with those of `secrets` (a configuration reload): values
    /// sealed with a key still among them keep opening; the first seals from now on.
    /// Nothing changes when one cannot be derived.
    pub fn replace(&self, secrets: &[SecretBytes]) -> Result<(), KeyError> {
        self.keys.store(std::sync::Arc::new(derive_keys(secrets)?));
        Ok(())
    }

    /// Encrypts and authenticates `plaintext` for `purpose` and `cookie_name`.
    pub fn seal(&self, purpose: Purpose, cookie_name: &str, plaintext: &[u8]) -> Result<String, random::RandomError> {
        let keys = self.keys.load();
        let key = keys.first().ok_or(random::RandomError)?;
        let nonce_bytes = random::bytes::<NONCE_LEN>()?;
        let mut buffer = Vec::with_capacity(HEADER_LEN + plaintext.len() + AES_256_GCM.tag_len());
        buffer.push(FORMAT_VERSION);
        buffer.push(key.id);
        buffer.extend_from_slice(&nonce_bytes);
        let mut in_out = plaintext.to_vec();
        let aad = associated_data(purpose, cookie_name, key.id);
        key.aead
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), Aad::from(aad), &mut in_out)
            .map_err(|_| random::RandomError)?;
        buffer.extend_from_slice(&in_out);
        Ok(URL_SAFE_NO_PAD.encode(buffer))
    }

    /// Opens a value sealed by [`KeyRing::seal`] with any configured key. Returns
    /// the plaintext and whether it was sealed with an older key (re-seal it).
    pub fn open(
        &self,
        purpose: Purpose,
        cookie_name: &str,
        sealed: impl AsRef<[u8]>,
    ) -> Result<(Vec<u8>, bool), OpenError> {
        let sealed = sealed.as_ref();
        if sealed.len() > MAX_SEALED_LEN {
            return Err(OpenError::Malformed);
        }
        // SIMD decoding: a ~6 KB cookie on every request made scalar base64 a fifth
        // of the gateway's user-space instructions (docs/benchmarks.md).
        let mut bytes = base64_simd::URL_SAFE_NO_PAD.decode_to_vec(sealed).map_err(|_| OpenError::Malformed)?;
        let (&version, rest) = bytes.split_first().ok_or(OpenError::Malformed)?;
        let (&key_id, rest) = rest.split_first().ok_or(OpenError::Malformed)?;
        if version != FORMAT_VERSION || rest.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(OpenError::Malformed);
        }
        let (nonce_bytes, _) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce_bytes.try_into().map_err(|_| OpenError::Malformed)?;
        let keys = self.keys.load();
        let candidates = || keys.iter().enumerate().filter(|(_, key)| key.id == key_id);
        if candidates().count() == 1
            && let Some((index, key)) = candidates().next()
        {
            // The usual case, on every request: one key can have sealed it, so open
            // in place (a failed open may scribble on the buffer; nothing else needs it).
            let aad = associated_data(purpose, cookie_name, key_id);
            let length = key
                .aead
                .open_within(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut bytes, HEADER_LEN..)
                .map_err(|_| OpenError::Forged)?
                .len();
            bytes.truncate(length);
            return Ok((bytes, index > 0));
        }
        // Several keys share the one-byte id: each attempt gets a fresh copy.
        let ciphertext = bytes.split_off(HEADER_LEN);
        let mut any_candidate = false;
        for (index, key) in candidates() {
            any_candidate = true;
            let mut in_out = ciphertext.clone();
            let aad = associated_data(purpose, cookie_name, key_id);
            if let Ok(plaintext) =
                key.aead.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut in_out)
            {
                let length = plaintext.len();
                in_out.truncate(length);
                return Ok((in_out, index > 0));
            }
        }
        Err(if any_candidate { OpenError::Forged } else { OpenError::UnknownKey })
    }
}

impl KeyRing {
    /// A MAC of `message` for `label` with the newest key (e.g. a CSRF token bound to a session id).
    pub fn mac(&self, label: &str, message: &str) -> String {
        self.keys
            .load()
            .first()
            .map(|key| URL_SAFE_NO_PAD.encode(mac_tag(&key.mac, label, message)))
            .unwrap_or_default()
    }

    /// Checks a MAC made by [`KeyRing::mac`] with any configured key, in constant time.
    pub fn verify_mac(&self, label: &str, message: &str, tag: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else { return false };
        let mut data = Vec::with_capacity(label.len() + message.len() + 1);
        data.extend_from_slice(label.as_bytes());
        data.push(0);
        data.extend_from_slice(message.as_bytes());
        self.keys.load().iter().any(|key| hmac::verify(&key.mac, &data, &tag).is_ok())
    }
}

/// Derives an AEAD key and a MAC key from each secret (HKDF-SHA256), so the
/// operator's secret is never used directly as a cipher key.
fn derive_keys(secrets: &[SecretBytes]) -> Result<Vec<CookieKey>, KeyError> {
    if secrets.is_empty() {
        return Err(KeyError);
    }
    let mut keys = Vec::with_capacity(secrets.len());
    for secret in secrets {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"portcullis cookie keys");
        let prk = salt.extract(secret.expose());
        let okm = prk.expand(&[b"aes-256-gcm"], AesKeyLen).map_err(|_| KeyError)?;
        let mut material = [0u8; 32];
        okm.fill(&mut material).map_err(|_| KeyError)?;
        let unbound = UnboundKey::new(&AES_256_GCM, &material).map_err(|_| KeyError)?;
        // A one-byte id from the secret's hash tells which key sealed a value, so
        // opening tries one key, not all of them. Collisions only cost a retry.
        let id = Sha256::digest(material).first().copied().unwrap_or(0);
        let mac_okm = prk.expand(&[b"hmac-sha256"], hmac::HMAC_SHA256).map_err(|_| KeyError)?;
        keys.push(CookieKey { id, aead: LessSafeKey::new(unbound), mac: hmac::Key::from(mac_okm) });
    }
    Ok(keys)
}

fn mac_tag(key: &hmac::Key, label: &str, message: &str) -> hmac::Tag {
    let mut context = hmac::Context::with_key(key);
    context.update(label.as_bytes());
    context.update(&[0]);
    context.update(message.as_bytes());
    context.sign()
}

fn associated_data(purpose: Purpose, cookie_name: &str, key_id: u8) -> Vec<u8> {
    let label = purpose.label();
    let mut aad = Vec::with_capacity(label.len() + cookie_name.len() + 3);
    aad.extend_from_slice(label);
    aad.push(0);
    aad.extend_from_slice(cookie_name.as_bytes());
    aad.push(0);
    aad.push(key_id);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(seeds: &[u8]) -> KeyRing {
        let secrets: Vec<SecretBytes> = seeds.iter().map(|seed| SecretBytes::new(vec![*seed; 32])).collect();
        KeyRing::new(&secrets).unwrap()
    }

    #[test]
    fn round_trip() {
        let keys = ring(&[1]);
        let sealed = keys.seal(Purpose::Session, "_p", b"hello").unwrap();
        assert_eq!(keys.open(Purpose::Session, "_p", &sealed).unwrap(), (b"hello".to_vec(), false));
    }

    #[test]
    fn a_replaced_ring_opens_what_a_kept_key_sealed_and_seals_with_its_first() {
        let secret = |seed: u8| SecretBytes::new(vec![seed; 32]);
        let keys = ring(&[1]);
        let before = keys.seal(Purpose::Session, "_p", b"before").unwrap();
        keys.replace(&[secret(2), secret(1)]).unwrap();
        assert_eq!(keys.open(Purpose::Session, "_p", &before).unwrap(), (b"before".to_vec(), true), "re-seal it");
        let after = keys.seal(Purpose::Session, "_p", b"after").unwrap();
        assert!(ring(&[2]).open(Purpose::Session, "_p", &after).is_ok());
        assert!(ring(&[1]).open(Purpose::Session, "_p", &after).is_err());
        // A failed replacement changes nothing.
        assert!(keys.replace(&[]).is_err());
        assert!(keys.open(Purpose::Session, "_p", &after).is_ok());
        // A key removed: what it alone sealed no longer opens.
        keys.replace(&[secret(2)]).unwrap();
        assert!(keys.open(Purpose::Session, "_p", &before).is_err());
    }

    #[test]
    fn purpose_and_name_are_bound() {
        let keys = ring(&[1]);
        let sealed = keys.seal(Purpose::Flow, "_p_flow_x", b"hello").unwrap();
        assert_eq!(keys.open(Purpose::Session, "_p_flow_x", &sealed), Err(OpenError::Forged));
        assert_eq!(keys.open(Purpose::Flow, "_p_flow_y", &sealed), Err(OpenError::Forged));
    }

    #[test]
    fn stored_records_and_cookies_do_not_open_as_each_other() {
        let keys = ring(&[1]);
        let stored = keys.seal(Purpose::Stored, "_p", b"record").unwrap();
        assert_eq!(keys.open(Purpose::Session, "_p", &stored), Err(OpenError::Forged));
        assert_eq!(keys.open(Purpose::Handle, "_p", &stored), Err(OpenError::Forged));
        let handle = keys.seal(Purpose::Handle, "_p", b"handle").unwrap();
        assert_eq!(keys.open(Purpose::Stored, "_p", &handle), Err(OpenError::Forged));
        assert_eq!(keys.open(Purpose::Session, "_p", &handle), Err(OpenError::Forged));
    }

    #[test]
    fn every_single_byte_change_is_rejected() {
        let keys = ring(&[7]);
        let sealed = keys.seal(Purpose::Session, "_p", b"some session payload").unwrap();
        let raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for index in 0..raw.len() {
            let mut flipped = raw.clone();
            flipped[index] ^= 0x01;
            let text = URL_SAFE_NO_PAD.encode(&flipped);
            assert!(keys.open(Purpose::Session, "_p", &text).is_err(), "flip at {index} opened");
        }
        for length in 0..sealed.len() {
            assert!(keys.open(Purpose::Session, "_p", &sealed[..length]).is_err(), "truncation to {length} opened");
        }
    }

    #[test]
    fn rotation_opens_old_values_and_reports_them() {
        let old = ring(&[1]);
        let sealed = old.seal(Purpose::Session, "_p", b"x").unwrap();
        let rotated = ring(&[2, 1]);
        assert_eq!(rotated.open(Purpose::Session, "_p", &sealed).unwrap(), (b"x".to_vec(), true));
        let removed = ring(&[2]);
        assert!(removed.open(Purpose::Session, "_p", &sealed).is_err());
    }

    #[test]
    fn macs_verify_only_for_the_same_label_and_message() {
        let keys = ring(&[4]);
        let tag = keys.mac("sign-out", "session-1");
        assert!(keys.verify_mac("sign-out", "session-1", &tag));
        assert!(!keys.verify_mac("sign-out", "session-2", &tag));
        assert!(!keys.verify_mac("other", "session-1", &tag));
        assert!(!keys.verify_mac("sign-out", "session-1", "AAAA"));
        assert!(ring(&[5, 4]).verify_mac("sign-out", "session-1", &tag), "older keys still verify");
    }

    #[test]
    fn nonces_differ() {
        let keys = ring(&[3]);
        let a = keys.seal(Purpose::Session, "_p", b"same").unwrap();
        let b = keys.seal(Purpose::Session, "_p", b"same").unwrap();
        assert_ne!(a, b);
    }
}
