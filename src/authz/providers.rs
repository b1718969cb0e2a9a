//! Which providers' sessions and tokens a route accepts.

/// At most this many providers: a [`ProviderSet`] is one machine word.
pub const MAX_PROVIDERS: usize = 64;

/// A set of providers, by index: which providers' sessions (and bearer
/// tokens) a route accepts. Copy, one word, so the hot path pays nothing for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProviderSet(u64);

impl ProviderSet {
    /// Every provider (a route that names none).
    pub const ALL: Self = Self(u64::MAX);
    pub const NONE: Self = Self(0);

    /// The set holding only the provider at `index`.
    pub fn only(index: usize) -> Self {
        Self(1u64.checked_shl(index as u32).unwrap_or(0))
    }

    /// Whether the provider at `index` is in the set.
    pub fn contains(self, index: usize) -> bool {
        index < MAX_PROVIDERS && self.0 & (1 << index) != 0
    }

    /// The providers in either set.
    #[must_use]
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The providers in both sets.
    #[must_use]
    pub fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// The indices in the set, below `count` (the configured providers), in order.
    pub fn indices(self, count: usize) -> impl Iterator<Item = usize> {
        (0..count.min(MAX_PROVIDERS)).filter(move |index| self.contains(*index))
    }

    /// The one provider (of `count`) in the set, if there is exactly one.
    pub fn single(self, count: usize) -> Option<usize> {
        let mut indices = self.indices(count);
        let first = indices.next()?;
        indices.next().is_none().then_some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_knows_its_members() {
        let set = ProviderSet::only(0).intersection(ProviderSet::ALL);
        assert_eq!(set.single(3), Some(0));
        assert_eq!(ProviderSet::ALL.single(1), Some(0));
        assert_eq!(ProviderSet::ALL.single(2), None);
        assert_eq!(ProviderSet::ALL.indices(3).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(!ProviderSet::only(63).contains(0));
        assert!(ProviderSet::only(63).contains(63));
        assert_eq!(ProviderSet::only(64), ProviderSet::NONE);
        assert_eq!(ProviderSet::only(1).intersection(ProviderSet::only(2)).single(3), None);
    }
}
