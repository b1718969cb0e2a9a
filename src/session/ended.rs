//! Sessions that ended before their cookies expired: signed out here, or
//! logged out by the provider (back-channel). A copied cookie of an ended
//! session stops working at once. Entries live as long as a session can.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;

use crate::clock::UnixSeconds;

/// The record of ended sessions on this replica.
#[derive(Clone, Debug)]
pub struct EndedSessions {
    /// Session ids signed out.
    sessions: Cache<String, ()>,
    /// Subjects logged out by the provider, with the time: sessions created before it end.
    subjects: Cache<String, UnixSeconds>,
    /// Provider session ids (`sid`) logged out, likewise.
    provider_sessions: Cache<String, UnixSeconds>,
    /// How many records have been added: see [`EndedSessions::generation`].
    generation: Arc<AtomicU64>,
}

/// A value [`EndedSessions::generation`] never returns: nothing checked yet.
pub const NEVER_CHECKED: u64 = u64::MAX;

impl EndedSessions {
    /// Records kept for `max_session_lifetime`, at most `max_entries` of each kind.
    pub fn new(max_session_lifetime: Duration, max_entries: u64) -> Self {
        Self {
            sessions: bounded(max_session_lifetime, max_entries),
            subjects: bounded(max_session_lifetime, max_entries),
            provider_sessions: bounded(max_session_lifetime, max_entries),
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

    /// Ends one session (sign-out).
    pub async fn end_session(&self, session_id: &str) {
        self.sessions.insert(session_id.to_owned(), ()).await;
        self.recorded();
    }

    /// Ends every session of `subject` created up to `at` (back-channel logout by `sub`).
    pub async fn end_subject(&self, subject: &str, at: UnixSeconds) {
        self.subjects.insert(subject.to_owned(), at).await;
        self.recorded();
    }

    /// Ends every session of provider session `sid` created up to `at`.
    pub async fn end_provider_session(&self, sid: &str, at: UnixSeconds) {
        self.provider_sessions.insert(sid.to_owned(), at).await;
        self.recorded();
    }

    /// Whether a session has ended.
    pub async fn has_ended(&self, session_id: &str, subject: &str, sid: Option<&str>, created_at: UnixSeconds) -> bool {
        // `contains_key` first: it records no read, and nearly every session has not ended.
        if self.sessions.contains_key(session_id) {
            return true;
        }
        if self.subjects.contains_key(subject) && self.subjects.get(subject).await.is_some_and(|at| created_at <= at) {
            return true;
        }
        match sid {
            Some(sid) if self.provider_sessions.contains_key(sid) => {
                self.provider_sessions.get(sid).await.is_some_and(|at| created_at <= at)
            }
            _ => false,
        }
    }
}

fn bounded<V: Clone + Send + Sync + 'static>(ttl: Duration, max_entries: u64) -> Cache<String, V> {
    Cache::builder().max_capacity(max_entries).time_to_live(ttl).build()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_kind_of_record_changes_the_generation_once_it_is_visible() {
        let ended = EndedSessions::new(Duration::from_secs(3600), 100);
        let mut seen = vec![ended.generation()];
        assert!(!ended.has_ended("s1", "alice", Some("p1"), 10).await);

        ended.end_session("s1").await;
        seen.push(ended.generation());
        assert!(ended.has_ended("s1", "alice", None, 10).await);

        ended.end_subject("bob", 20).await;
        seen.push(ended.generation());
        assert!(ended.has_ended("s2", "bob", None, 20).await);

        ended.end_provider_session("p1", 30).await;
        seen.push(ended.generation());
        assert!(ended.has_ended("s3", "carol", Some("p1"), 30).await);

        let mut distinct = seen.clone();
        distinct.dedup();
        assert_eq!(distinct, seen, "each record changed the generation: {seen:?}");
        assert!(!seen.contains(&NEVER_CHECKED));
        let clone = ended.clone();
        clone.end_session("s4").await;
        assert_ne!(ended.generation(), seen[3], "clones share the generation");
    }

    #[test]
    fn the_generation_never_takes_the_unchecked_value() {
        let ended = EndedSessions::new(Duration::from_secs(60), 10);
        ended.generation.store(NEVER_CHECKED - 1, Ordering::Relaxed);
        ended.recorded();
        assert_eq!(ended.generation(), 0);
    }
}
