//! A map whose entries each carry the time they may go, dropped only once
//! that time has passed: never evicted (nor refused) to make room, unlike a
//! cache. Revocation records and used token ids live in such maps, where a
//! forgotten entry would let a revoked cookie or a replayed token through;
//! their owners bound them and fail closed when the bound is reached.

use std::collections::{BTreeSet, HashMap};

use crate::clock::UnixSeconds;

/// Entries by key, each kept until its own time.
#[derive(Debug)]
pub struct ExpiringMap<V> {
    /// The value and the time the entry may go, by key.
    entries: HashMap<String, (V, UnixSeconds)>,
    /// Every entry by the time it may go, oldest first, so expired ones are dropped cheaply.
    by_expiry: BTreeSet<(UnixSeconds, String)>,
}

impl<V> Default for ExpiringMap<V> {
    fn default() -> Self {
        Self { entries: HashMap::new(), by_expiry: BTreeSet::new() }
    }
}

impl<V> ExpiringMap<V> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// `key`'s value and the time it may go.
    pub fn get(&self, key: &str) -> Option<&(V, UnixSeconds)> {
        self.entries.get(key)
    }

    /// The earliest time an entry may go.
    pub fn next_expiry(&self) -> Option<UnixSeconds> {
        self.by_expiry.first().map(|(until, _)| *until)
    }

    /// Adds `key`, or replaces its value and time: kept while the time is after `now`.
    pub fn insert(&mut self, key: &str, value: V, until: UnixSeconds) {
        if let Some((_, previous)) = self.entries.insert(key.to_owned(), (value, until)) {
            self.by_expiry.remove(&(previous, key.to_owned()));
        }
        self.by_expiry.insert((until, key.to_owned()));
    }

    /// Drops the entries whose time is `now` or earlier.
    pub fn drop_expired(&mut self, now: UnixSeconds) {
        while let Some(first) = self.by_expiry.first()
            && first.0 <= now
        {
            let Some((_, key)) = self.by_expiry.pop_first() else { break };
            self.entries.remove(&key);
        }
    }

    /// Drops every entry.
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_stay_until_their_own_time_however_many_there_are() {
        let mut map = ExpiringMap::default();
        map.insert("first", (), 100);
        for index in 0..1000 {
            map.insert(&format!("never-read-{index}"), (), 50);
        }
        map.drop_expired(49);
        assert_eq!(map.len(), 1001, "nothing is dropped before its time");
        assert_eq!(map.next_expiry(), Some(50));
        map.drop_expired(50);
        assert_eq!(map.len(), 1);
        assert!(map.contains_key("first"));
        map.drop_expired(100);
        assert!(map.is_empty());
    }

    #[test]
    fn a_replaced_entry_keeps_only_its_new_time() {
        let mut map = ExpiringMap::default();
        map.insert("key", 1, 10);
        map.insert("key", 2, 30);
        map.drop_expired(20);
        assert_eq!(map.get("key"), Some(&(2, 30)));
        map.insert("key", 3, 15);
        map.drop_expired(20);
        assert!(!map.contains_key("key"), "the earlier time replaced the later one");
        map.insert("other", 4, 40);
        map.clear();
        assert!(map.is_empty());
        map.drop_expired(50);
    }
}
