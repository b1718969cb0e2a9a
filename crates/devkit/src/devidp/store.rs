//! In-memory grant state: pending authorization codes, refresh token families,
//! and revocations. Everything is lost when the provider stops, on purpose.

use std::collections::{HashMap, HashSet};

use super::UnixSeconds;

/// How long an authorization code stays redeemable, in provider-clock seconds.
pub(super) const CODE_TTL_SECONDS: i64 = 60;

/// What a successful login authorized; shared by the code and the tokens it yields.
#[derive(Clone, Debug)]
pub(super) struct Authorization {
    /// Index into the configured users.
    pub(super) user: usize,
    pub(super) scope: String,
    pub(super) sid: String,
    pub(super) auth_time: UnixSeconds,
}

/// An issued, not yet redeemed authorization code and what it is bound to.
#[derive(Debug)]
pub(super) struct PendingCode {
    pub(super) client_id: String,
    pub(super) redirect_uri: String,
    pub(super) code_challenge: String,
    pub(super) nonce: Option<String>,
    pub(super) authorization: Authorization,
    pub(super) expires_at: UnixSeconds,
}

/// Identifies the tokens descended from one code redemption.
pub(super) type FamilyId = u64;

#[derive(Debug)]
struct Family {
    authorization: Authorization,
    revoked: bool,
}

#[derive(Debug)]
struct RefreshToken {
    family: FamilyId,
    /// False once rotated away: presenting it again is reuse.
    current: bool,
}

/// The outcome of presenting a refresh token.
#[derive(Debug)]
pub(super) enum RefreshLookup {
    /// Valid: the family and what it authorizes.
    Valid(FamilyId, Authorization),
    /// Unknown, revoked, or (now) revoked because an old token was reused.
    Invalid,
}

/// All mutable grant state of one provider.
#[derive(Debug, Default)]
pub(super) struct Store {
    codes: HashMap<String, PendingCode>,
    /// Redeemed codes and the family they produced, to detect replays.
    redeemed_codes: HashMap<String, Option<FamilyId>>,
    families: HashMap<FamilyId, Family>,
    refresh_tokens: HashMap<String, RefreshToken>,
    access_token_families: HashMap<String, FamilyId>,
    revoked_access_tokens: HashSet<String>,
    next_family: FamilyId,
}

impl Store {
    /// Remembers a new code; drops codes that have expired meanwhile.
    pub(super) fn insert_code(&mut self, code: String, pending: PendingCode, now: UnixSeconds) {
        self.codes.retain(|_, existing| existing.expires_at > now);
        self.codes.insert(code, pending);
    }

    /// Takes a code out for redemption (single use: it never comes back). A
    /// replayed code revokes the family it produced (RFC 6749 §4.1.2) and yields `None`.
    pub(super) fn redeem_code(&mut self, code: &str) -> Option<PendingCode> {
        if let Some(pending) = self.codes.remove(code) {
            self.redeemed_codes.insert(code.to_owned(), None);
            return Some(pending);
        }
        if let Some(Some(family)) = self.redeemed_codes.get(code).copied() {
            self.revoke_family(family);
        }
        None
    }

    /// Starts a token family for a redeemed code and returns its first refresh token id.
    pub(super) fn start_family(&mut self, code: &str, authorization: Authorization, refresh_token: String) -> FamilyId {
        let family = self.next_family;
        self.next_family += 1;
        self.families.insert(family, Family { authorization, revoked: false });
        self.redeemed_codes.insert(code.to_owned(), Some(family));
        self.refresh_tokens.insert(refresh_token, RefreshToken { family, current: true });
        family
    }

    /// Checks a presented refresh token; reuse of a rotated one revokes its family.
    pub(super) fn lookup_refresh(&mut self, token: &str) -> RefreshLookup {
        let Some(entry) = self.refresh_tokens.get(token) else {
            return RefreshLookup::Invalid;
        };
        let (family, current) = (entry.family, entry.current);
        if !current {
            self.revoke_family(family);
            return RefreshLookup::Invalid;
        }
        match self.families.get(&family) {
            Some(found) if !found.revoked => RefreshLookup::Valid(family, found.authorization.clone()),
            _ => RefreshLookup::Invalid,
        }
    }

    /// Retires `old` and makes `new` the family's current refresh token.
    pub(super) fn rotate_refresh(&mut self, old: &str, new: String, family: FamilyId) {
        if let Some(entry) = self.refresh_tokens.get_mut(old) {
            entry.current = false;
        }
        self.refresh_tokens.insert(new, RefreshToken { family, current: true });
    }

    /// Records which family an access token (by `jti`) belongs to.
    pub(super) fn record_access_token(&mut self, jti: String, family: FamilyId) {
        self.access_token_families.insert(jti, family);
    }

    /// Whether the access token with this `jti` was revoked, directly or via its family.
    pub(super) fn access_token_revoked(&self, jti: &str) -> bool {
        if self.revoked_access_tokens.contains(jti) {
            return true;
        }
        self.access_token_families
            .get(jti)
            .and_then(|family| self.families.get(family))
            .is_none_or(|family| family.revoked)
    }

    /// Revokes a refresh token and its whole family; true if it was live.
    pub(super) fn revoke_refresh(&mut self, token: &str) -> bool {
        let Some(family) = self.refresh_tokens.get(token).map(|entry| entry.family) else {
            return false;
        };
        self.revoke_family(family)
    }

    /// Revokes one access token by `jti`; true if it was not revoked before.
    pub(super) fn revoke_access_token(&mut self, jti: &str) -> bool {
        self.revoked_access_tokens.insert(jti.to_owned())
    }

    /// Revokes every family created by the login session `sid`; returns how many.
    pub(super) fn revoke_session(&mut self, sid: &str) -> usize {
        let mut revoked = 0;
        for family in self.families.values_mut() {
            if family.authorization.sid == sid && !family.revoked {
                family.revoked = true;
                revoked += 1;
            }
        }
        revoked
    }

    fn revoke_family(&mut self, family: FamilyId) -> bool {
        match self.families.get_mut(&family) {
            Some(found) if !found.revoked => {
                found.revoked = true;
                true
            }
            _ => false,
        }
    }
}
