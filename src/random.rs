//! Unpredictable values straight from the operating system's generator:
//! PKCE verifiers, `state`, `nonce`, session ids and AEAD nonces.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRng;
use rand::rngs::SysRng;

/// The operating system could not provide randomness; nothing secret may be
/// made without it, so the request fails.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomError;

/// `N` bytes from the OS generator.
pub fn bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut buffer = [0u8; N];
    SysRng.try_fill_bytes(&mut buffer).map_err(|_| RandomError)?;
    Ok(buffer)
}

/// `N` random bytes as unpadded base64url text (URL- and cookie-safe).
pub fn token<const N: usize>() -> Result<String, RandomError> {
    Ok(URL_SAFE_NO_PAD.encode(bytes::<N>()?))
}
