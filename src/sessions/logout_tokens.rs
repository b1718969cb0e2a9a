//! The `jti`s of the back-channel logout tokens used on this replica (cookie
//! mode), so that a logout token cannot be replayed.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use crate::clock::UnixSeconds;
use crate::session::expiring::ExpiringMap;

/// Store mode: a used logout token's `jti` is claimed in Redis this long to refuse replays.
pub(super) const JTI_MEMORY: Duration = Duration::from_secs(600);

/// The `jti`s of the logout tokens used on this replica (without a session
/// store), each kept until its token would be refused as expired or too old
/// anyway, and never dropped before that to make room: a forgotten `jti`
/// could be replayed. At most `max_entries`; beyond that new logout tokens
/// are refused (503: the provider retries), counted and logged.
#[derive(Debug)]
pub(super) struct UsedLogoutTokens {
    ids: Mutex<ExpiringMap<()>>,
    max_entries: usize,
    /// Counts the logout tokens refused because the memory was full.
    overflows: Counter,
}

/// What [`UsedLogoutTokens::claim`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LogoutClaim {
    /// First use: remembered now.
    First,
    Replayed,
    /// The memory is full: try again in this many seconds, when an entry may go.
    Full {
        retry_after: u64,
    },
}

impl UsedLogoutTokens {
    pub(super) fn new(max_entries: u64, overflows: Counter) -> Self {
        Self {
            ids: Mutex::new(ExpiringMap::default()),
            max_entries: usize::try_from(max_entries).unwrap_or(usize::MAX).max(1),
            overflows,
        }
    }

    /// Remembers `jti` until `until` unless it was used before or there is no room.
    pub(super) fn claim(&self, jti: &str, until: UnixSeconds, now: UnixSeconds) -> LogoutClaim {
        let retry_after = {
            let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
            ids.drop_expired(now);
            if ids.contains_key(jti) {
                return LogoutClaim::Replayed;
            }
            if ids.len() < self.max_entries {
                ids.insert(jti, (), until);
                return LogoutClaim::First;
            }
            ids.next_expiry().map_or(1, |first| first.saturating_sub(now)).max(1)
        };
        self.overflows.inc();
        tracing::error!(
            target: "portcullis::auth",
            event = "used_logout_tokens_full",
            max_entries = self.max_entries,
            "the used logout tokens reached session.ended_max_entries: back-channel logouts are refused (503) until \
             the oldest can no longer be replayed"
        );
        LogoutClaim::Full { retry_after: u64::try_from(retry_after).unwrap_or(1) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_tokens_are_kept_until_their_time_and_a_full_memory_refuses_new_ones() {
        let used = UsedLogoutTokens::new(2, Counter::default());
        assert_eq!(used.claim("a", 100, 10), LogoutClaim::First);
        assert_eq!(used.claim("b", 150, 11), LogoutClaim::First);
        assert_eq!(used.claim("a", 100, 12), LogoutClaim::Replayed);
        assert_eq!(used.claim("c", 200, 40), LogoutClaim::Full { retry_after: 60 }, "until a may go");
        assert_eq!(used.claim("b", 150, 41), LogoutClaim::Replayed, "nothing was forgotten for room");
        assert_eq!(used.overflows.get(), 1);
        assert_eq!(used.claim("c", 200, 100), LogoutClaim::First, "a went at its time");
        assert_eq!(used.claim("b", 150, 149), LogoutClaim::Replayed);
    }
}
