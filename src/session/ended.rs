//! Sessions that ended before their cookies expired: signed out here, or
//! logged out by the provider (back-channel). A copied cookie of an ended
//! session stops working at once.
//!
//! A record is kept until no session it ends can still be alive, and is never
//! dropped before that to make room: a cache that evicts (or refuses to admit)
//! records under pressure would let an attacker who logs in and out often
//! enough revive copied cookies. The records are bounded all the same
//! (`session.ended_max_entries`); should that bound be reached, the table
//! fails closed: every session created until then ends, which makes all the
//! records redundant, so they are dropped and counted, and an error is logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use super::expiring::ExpiringMap;
use crate::clock::UnixSeconds;

/// The record of ended sessions on this replica.
#[derive(Clone, Debug)]
pub struct EndedSessions {
    records: Arc<RwLock<Records>>,
    /// Sessions live at most this long from their creation.
    max_session_lifetime: i64,
    max_entries: usize,
    /// Counts the times the bound was reached (the table failed closed).
    overflows: Counter,
    /// How many records have been added: see [`EndedSessions::generation`].
    generation: Arc<AtomicU64>,
}

/// Each record is kept until no session it ends can still be alive.
#[derive(Debug, Default)]
struct Records {
    /// Session ids signed out.
    sessions: ExpiringMap<()>,
    /// Subjects logged out by the provider: sessions created up to the value ended.
    subjects: ExpiringMap<UnixSeconds>,
    /// Provider session ids (`sid`) logged out, likewise.
    provider_sessions: ExpiringMap<UnixSeconds>,
    /// Every session created up to this time ended (the bound was reached then).
    all_ended_up_to: Option<UnixSeconds>,
}

impl Records {
    fn len(&self) -> usize {
        self.sessions.len() + self.subjects.len() + self.provider_sessions.len()
    }

    /// Drops the records whose sessions can no longer be alive at `now`.
    fn drop_expired(&mut self, now: UnixSeconds) {
        self.sessions.drop_expired(now);
        self.subjects.drop_expired(now);
        self.provider_sessions.drop_expired(now);
    }

    /// Ends every session created up to `at` and drops the records it makes redundant (all of them:
    /// each ends only sessions created before now).
    fn end_all(&mut self, at: UnixSeconds) {
        self.sessions.clear();
        self.subjects.clear();
        self.provider_sessions.clear();
        self.all_ended_up_to = Some(self.all_ended_up_to.map_or(at, |earlier| earlier.max(at)));
    }
}

/// Records that `key`'s sessions created up to `at` ended, until `until`; a
/// repeated record keeps the later of each time.
fn end_up_to(records: &mut ExpiringMap<UnixSeconds>, key: &str, at: UnixSeconds, until: UnixSeconds) {
    let (at, until) =
        records.get(key).map_or((at, until), |&(was_at, was_until)| (was_at.max(at), was_until.max(until)));
    records.insert(key, at, until);
}

/// A value [`EndedSessions::generation`] never returns: nothing checked yet.
pub const NEVER_CHECKED: u64 = u64::MAX;

impl EndedSessions {
    /// Records kept as long as a session of `max_session_lifetime` they end
    /// can be alive, at most `max_entries` in all; `overflows` counts the
    /// times that bound is reached.
    pub fn new(max_session_lifetime: Duration, max_entries: u64, overflows: Counter) -> Self {
        Self {
            records: Arc::new(RwLock::new(Records::default())),
            max_session_lifetime: i64::try_from(max_session_lifetime.as_secs()).unwrap_or(i64::MAX),
            max_entries: usize::try_from(max_entries).unwrap_or(usize::MAX).max(1),
            overflows,
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Changes whenever a record is added, after it is added. A session found
    /// not ended when the generation was `g` (read before asking) has still
    /// not ended while it is `g`: a connection can skip asking again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn recorded(&self) {
        // Wraps only after 2^64 records; NEVER_CHECKED is skipped.
        let previous = self.generation.fetch_add(1, Ordering::Release);
        if previous.wrapping_add(1) == NEVER_CHECKED {
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    /// Adds one record with `add`, unless the bound is reached: then every
    /// session created up to `now` ends instead (which covers this record too).
    fn record(&self, now: UnixSeconds, add: impl FnOnce(&mut Records)) {
        let overflowed = {
            let mut records = self.records.write().unwrap_or_else(PoisonError::into_inner);
            records.drop_expired(now);
            // A record already present is replaced, never refused.
            add(&mut records);
            let overflowed = records.len() > self.max_entries;
            if overflowed {
                records.end_all(now);
            }
            overflowed
        };
        self.recorded();
        if overflowed {
            self.overflows.inc();
            tracing::error!(
                target: "portcullis::auth",
                event = "ended_sessions_full",
                max_entries = self.max_entries,
                "the records of ended sessions reached session.ended_max_entries: every session created until now \
                 has ended (fail closed) and must sign in again"
            );
        }
    }

    /// Ends one session (sign-out), which would have expired by itself at `expires_at`.
    pub fn end_session(&self, session_id: &str, expires_at: UnixSeconds, now: UnixSeconds) {
        self.record(now, |records| {
            let until = records.sessions.get(session_id).map_or(expires_at, |&((), previous)| previous.max(expires_at));
            records.sessions.insert(session_id, (), until);
        });
    }

    /// Ends every session of `issuer`'s `subject` created up to `at` (back-channel logout by `sub`).
    pub fn end_subject(&self, issuer: &str, subject: &str, at: UnixSeconds, now: UnixSeconds) {
        let until = at.saturating_add(self.max_session_lifetime);
        let key = issued_by(issuer, subject);
        self.record(now, |records| end_up_to(&mut records.subjects, &key, at, until));
    }

    /// Ends every session of `issuer`'s provider session `sid` created up to `at`.
    pub fn end_provider_session(&self, issuer: &str, sid: &str, at: UnixSeconds, now: UnixSeconds) {
        let until = at.saturating_add(self.max_session_lifetime);
        let key = issued_by(issuer, sid);
        self.record(now, |records| end_up_to(&mut records.provider_sessions, &key, at, until));
    }

    /// Whether a session (of `issuer`'s `subject`) has ended.
    pub fn has_ended(
        &self,
        session_id: &str,
        issuer: &str,
        subject: &str,
        sid: Option<&str>,
        created_at: UnixSeconds,
    ) -> bool {
        let records = self.records.read().unwrap_or_else(PoisonError::into_inner);
        // The scoped keys are built only when there are records to look them up in.
        let ended_up_to = |map: &ExpiringMap<UnixSeconds>, value: &str| {
            !map.is_empty() && map.get(&issued_by(issuer, value)).is_some_and(|(at, _)| created_at <= *at)
        };
        records.all_ended_up_to.is_some_and(|at| created_at <= at)
            || records.sessions.contains_key(session_id)
            || ended_up_to(&records.subjects, subject)
            || sid.is_some_and(|sid| ended_up_to(&records.provider_sessions, sid))
    }
}

/// Subjects and provider session ids are unique per issuer only (OIDC Core
/// §2), so records are keyed by both: one provider's logout never ends
/// another's sessions. An issuer never holds a NUL.
pub fn issued_by(issuer: &str, value: &str) -> String {
    format!("{issuer}\0{value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn ended(max_entries: u64) -> EndedSessions {
        EndedSessions::new(HOUR, max_entries, Counter::default())
    }

    #[test]
    fn a_logout_at_one_issuer_never_ends_another_issuers_sessions() {
        let ended = ended(100);
        ended.end_subject("https://staff.example", "alice", 20, 20);
        ended.end_provider_session("https://staff.example", "p1", 20, 20);
        assert!(ended.has_ended("s1", "https://staff.example", "alice", None, 10));
        assert!(!ended.has_ended("s2", "https://partners.example", "alice", None, 10));
        assert!(ended.has_ended("s3", "https://staff.example", "bob", Some("p1"), 10));
        assert!(!ended.has_ended("s4", "https://partners.example", "bob", Some("p1"), 10));
    }

    #[test]
    fn every_kind_of_record_changes_the_generation_once_it_is_visible() {
        let ended = ended(100);
        let mut seen = vec![ended.generation()];
        assert!(!ended.has_ended("s1", "iss", "alice", Some("p1"), 10));

        ended.end_session("s1", 3610, 11);
        seen.push(ended.generation());
        assert!(ended.has_ended("s1", "iss", "alice", None, 10));

        ended.end_subject("iss", "bob", 20, 20);
        seen.push(ended.generation());
        assert!(ended.has_ended("s2", "iss", "bob", None, 20));
        assert!(!ended.has_ended("s2b", "iss", "bob", None, 21), "a later login of bob is not ended");

        ended.end_provider_session("iss", "p1", 30, 30);
        seen.push(ended.generation());
        assert!(ended.has_ended("s3", "iss", "carol", Some("p1"), 30));

        let mut distinct = seen.clone();
        distinct.dedup();
        assert_eq!(distinct, seen, "each record changed the generation: {seen:?}");
        assert!(!seen.contains(&NEVER_CHECKED));
        let clone = ended.clone();
        clone.end_session("s4", 3640, 40);
        assert_ne!(ended.generation(), seen[3], "clones share the generation");
    }

    #[test]
    fn the_generation_never_takes_the_unchecked_value() {
        let ended = ended(10);
        ended.generation.store(NEVER_CHECKED - 1, Ordering::Relaxed);
        ended.recorded();
        assert_eq!(ended.generation(), 0);
    }

    #[test]
    fn records_are_kept_until_their_sessions_expire_and_never_evicted_for_room() {
        let ended = ended(4);
        ended.end_session("victim", 1000, 10);
        // Records that are never read, as an attacker's own sign-outs would be.
        for index in 0..3 {
            ended.end_session(&format!("attacker-{index}"), 500, 11);
        }
        assert!(ended.has_ended("victim", "iss", "alice", None, 5), "the bound is not exceeded: nothing is dropped");
        assert_eq!(ended.records.read().unwrap().len(), 4);

        // Expired records make room; live ones stay.
        ended.end_session("next", 2000, 500);
        assert_eq!(ended.records.read().unwrap().len(), 2);
        assert!(ended.has_ended("victim", "iss", "alice", None, 5));
        assert!(ended.has_ended("next", "iss", "alice", None, 400));
        assert!(!ended.has_ended("attacker-0", "iss", "mallory", None, 6), "its session had expired by itself");
        assert_eq!(ended.overflows.get(), 0);
    }

    #[test]
    fn reaching_the_bound_ends_every_session_created_until_then() {
        let ended = ended(2);
        ended.end_session("a", 1000, 10);
        ended.end_subject("iss", "bob", 11, 11);
        let before = ended.generation();
        ended.end_session("c", 1000, 12);
        assert_eq!(ended.overflows.get(), 1, "counted");
        assert_ne!(ended.generation(), before, "connections ask again");
        for (id, created_at) in [("a", 1), ("c", 2), ("still-signed-in", 12)] {
            assert!(ended.has_ended(id, "iss", "someone", None, created_at), "{id} created at {created_at}");
        }
        assert!(!ended.has_ended("new", "iss", "bob", None, 13), "sessions created afterwards are not ended");
        assert_eq!(ended.records.read().unwrap().len(), 0, "the records it covers are dropped");
        // And the table works again.
        ended.end_session("d", 2000, 14);
        assert!(ended.has_ended("d", "iss", "carol", None, 13));
    }

    #[test]
    fn a_repeated_record_keeps_the_later_time() {
        let ended = ended(10);
        ended.end_subject("iss", "alice", 100, 100);
        ended.end_subject("iss", "alice", 50, 101);
        assert!(ended.has_ended("s", "iss", "alice", None, 100));
        ended.end_session("s1", 900, 1);
        ended.end_session("s1", 800, 2);
        assert_eq!(ended.records.read().unwrap().len(), 2);
        ended.end_session("other", 5000, 850);
        assert!(ended.has_ended("s1", "iss", "x", None, 0), "kept until the later expiry");
    }
}
