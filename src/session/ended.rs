//! Sessions that ended before their cookies expired: signed out here, or
//! logged out by the provider (back-channel). A copied cookie of an ended
//! session stops working at once. Entries live as long as a session can.

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
}

impl EndedSessions {
    /// Records kept for `max_session_lifetime`, at most `max_entries` of each kind.
    pub fn new(max_session_lifetime: Duration, max_entries: u64) -> Self {
        Self {
            sessions: bounded(max_session_lifetime, max_entries),
            subjects: bounded(max_session_lifetime, max_entries),
            provider_sessions: bounded(max_session_lifetime, max_entries),
        }
    }

    /// Ends one session (sign-out).
    pub async fn end_session(&self, session_id: &str) {
        self.sessions.insert(session_id.to_owned(), ()).await;
    }

    /// Ends every session of `subject` created up to `at` (back-channel logout by `sub`).
    pub async fn end_subject(&self, subject: &str, at: UnixSeconds) {
        self.subjects.insert(subject.to_owned(), at).await;
    }

    /// Ends every session of provider session `sid` created up to `at`.
    pub async fn end_provider_session(&self, sid: &str, at: UnixSeconds) {
        self.provider_sessions.insert(sid.to_owned(), at).await;
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
