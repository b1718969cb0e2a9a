//! Request ids: taken from a well-formed `X-Request-Id`, otherwise made from a
//! per-gateway random prefix, the thread's number and a per-thread counter
//! (unique, no syscall and no counter shared between cores per request).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

/// The id of one request, shown on error pages and in every log line, and
/// sent upstream and back to the client as `X-Request-Id`.
///
/// Kept as the header value it is sent as (a client's id is the value it
/// sent, shared, not copied); its bytes are always visible ASCII.
#[derive(Clone, Debug)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The id text.
    pub fn as_str(&self) -> &str {
        // Only ids of visible ASCII are ever made, so this never falls back.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as the `X-Request-Id` header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The generator of request ids.
#[derive(Debug)]
pub struct RequestIds {
    prefix: String,
}

/// Threads that have made a request id so far.
static THREADS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's number and the number of the next id it makes.
    static LOCAL_SEQUENCE: Cell<(u64, u64)> = Cell::new((THREADS.fetch_add(1, Ordering::Relaxed), 0));
}

impl RequestIds {
    /// A generator with a fresh random prefix.
    pub fn new() -> Self {
        let prefix = crate::random::token::<6>().unwrap_or_else(|_| "portcullis".to_owned());
        Self { prefix }
    }

    /// The client's id when it is short and plain, else a new one.
    pub fn take(&self, headers: &HeaderMap) -> RequestId {
        let supplied = headers.get(crate::proxy::headers::X_REQUEST_ID).filter(|value| is_plain_id(value.as_bytes()));
        match supplied {
            Some(value) => RequestId(value.clone()),
            None => {
                // Hex digits, `-` and the random prefix's URL-safe base64: always a valid value.
                let made = HeaderValue::from_maybe_shared(Bytes::from(self.next_id()));
                RequestId(made.unwrap_or_else(|_| HeaderValue::from_static("portcullis")))
            }
        }
    }

    /// `{prefix}-{thread}-{sequence}`, both numbers in hex.
    fn next_id(&self) -> String {
        let (thread, sequence) = LOCAL_SEQUENCE.with(|local| {
            let (thread, sequence) = local.get();
            local.set((thread, sequence.wrapping_add(1)));
            (thread, sequence)
        });
        let mut id = String::with_capacity(self.prefix.len() + 2 + 2 * 16);
        id.push_str(&self.prefix);
        id.push('-');
        push_hex(&mut id, thread);
        id.push('-');
        push_hex(&mut id, sequence);
        id
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a client's `X-Request-Id` is short and plain enough to keep.
fn is_plain_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.iter().all(|&byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':'))
}

/// Appends `value` in lower-case hex without leading zeros.
fn push_hex(text: &mut String, value: u64) {
    let digits = (u64::BITS - value.leading_zeros()).div_ceil(4).max(1);
    for nibble in (0..digits).rev() {
        let digit = u32::try_from((value >> (nibble * 4)) & 0xf).unwrap_or(0);
        text.push(char::from_digit(digit, 16).unwrap_or('0'));
    }
}

#[cfg(test)]
mod tests {

    use std::collections::HashSet;

    use http::HeaderValue;

    use super::*;

    #[test]
    fn hex_is_lower_case_without_leading_zeros() {
        for value in [0, 1, 0xf, 0x10, 0xabc, u64::MAX] {
            let mut text = String::new();
            push_hex(&mut text, value);
            assert_eq!(text, format!("{value:x}"));
        }
    }

    #[test]
    fn made_ids_are_unique_across_threads() {
        let ids = std::sync::Arc::new(RequestIds::new());
        let made: Vec<String> = (0..4)
            .map(|_| {
                let ids = std::sync::Arc::clone(&ids);
                std::thread::spawn(move || {
                    (0..1000).map(|_| ids.take(&HeaderMap::new()).as_str().to_owned()).collect::<Vec<_>>()
                })
            })
            .flat_map(|thread| thread.join().unwrap())
            .collect();
        let distinct: HashSet<&String> = made.iter().collect();
        assert_eq!(distinct.len(), 4000);
        assert!(made.iter().all(|id| id.starts_with(&format!("{}-", ids.prefix))));
    }

    #[test]
    fn a_plain_client_id_is_kept_and_anything_else_replaced() {
        let ids = RequestIds::new();
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-request-id", HeaderValue::from_str(value).unwrap());
            ids.take(&headers).as_str().to_owned()
        };
        assert_eq!(with("abc-123_x.y:z"), "abc-123_x.y:z");
        for bad in ["", "has space", "quote\"", &"x".repeat(129)] {
            assert!(with(bad).starts_with(&format!("{}-", ids.prefix)), "{bad:?} was kept");
        }
    }
}
