//! Request ids: taken from a well-formed `X-Request-Id`, otherwise made from a
//! per-process random prefix and a counter (unique, and no syscall per request).

use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderMap;

/// The id of one request, shown on error pages and in every log line.
#[derive(Clone, Debug)]
pub struct RequestId(String);

impl RequestId {
    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The generator of request ids.
#[derive(Debug)]
pub struct RequestIds {
    prefix: String,
    counter: AtomicU64,
}

impl RequestIds {
    /// A generator with a fresh random prefix.
    pub fn new() -> Self {
        let prefix = crate::random::token::<6>().unwrap_or_else(|_| "portcullis".to_owned());
        Self { prefix, counter: AtomicU64::new(0) }
    }

    /// The client's id when it is short and plain, else a new one.
    pub fn take(&self, headers: &HeaderMap) -> RequestId {
        let supplied = headers
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .filter(|id| !id.is_empty() && id.len() <= 128)
            .filter(|id| id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')));
        match supplied {
            Some(id) => RequestId(id.to_owned()),
            None => RequestId(format!("{}-{:x}", self.prefix, self.counter.fetch_add(1, Ordering::Relaxed))),
        }
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}
