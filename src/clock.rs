//! The only place that reads wall-clock time.
//!
//! Expiry decisions (cookies, tokens, flows) take a [`Clock`] so tests can move
//! time forward instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub type UnixSeconds = i64;

/// A source of wall-clock time; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// Now, in whole seconds since the Unix epoch (plus any test offset).
    pub fn now(&self) -> UnixSeconds {
        let system = system_time()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        system.saturating_add(self.offset.load(Ordering::Relaxed))
    }

    /// Moves this clock (and every clone of it) forward; for tests and the demo.
    pub fn advance(&self, seconds: i64) {
        self.offset.fetch_add(seconds, Ordering::Relaxed);
    }
}

/// The system's wall-clock time with sub-second precision and no test offset:
/// for log timestamps, which record when something really happened.
#[inline]
#[allow(clippy::disallowed_methods, reason = "this module is the one place that reads the wall clock")]
pub fn system_time() -> SystemTime {
    SystemTime::now()
}

/// Whole seconds of a duration, saturating.
pub fn seconds(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_every_clone() {
        let clock = Clock::system();
        let other = clock.clone();
        let before = other.now();
        clock.advance(3600);
        assert!(other.now() >= before + 3600);
    }
}
