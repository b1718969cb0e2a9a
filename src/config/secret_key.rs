//! Parsing and vetting of session keys: long enough, random-looking, and not
//! the sample value from the documentation.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::secret::SecretBytes;

/// The minimum key length in bytes (256 bits).
pub const MIN_KEY_BYTES: usize = 32;

/// Decodes a base64 (standard or URL-safe) session key and rejects weak ones.
/// The error never contains the key.
pub fn parse_session_secret(text: &str) -> Result<SecretBytes, String> {
    let text = text.trim();
    if text.contains("CHANGE") || text.contains("change-me") || text.contains("REPLACE") {
        return Err("still holds the sample placeholder; generate a key with `portcullis secret`".to_owned());
    }
    let bytes = STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
        .map_err(|_| "must be base64 of at least 32 random bytes (generate one with `portcullis secret`)".to_owned())?;
    if bytes.len() < MIN_KEY_BYTES {
        return Err(format!("decodes to {} bytes; at least {MIN_KEY_BYTES} random bytes are required", bytes.len()));
    }
    // 32 random bytes have about 30 distinct values; a key with few distinct
    // bytes was typed or padded by hand, not generated.
    let mut seen = [false; 256];
    for byte in &bytes {
        if let Some(slot) = seen.get_mut(usize::from(*byte)) {
            *slot = true;
        }
    }
    let distinct = seen.iter().filter(|s| **s).count();
    if distinct < 16 {
        return Err("looks hand-made (too few distinct bytes); generate a key with `portcullis secret`".to_owned());
    }
    Ok(SecretBytes::new(bytes))
}
