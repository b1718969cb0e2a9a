//! What a session cookie holds: identity, lifetimes and the tokens needed to
//! carry on after a restart or on another replica.

use serde::{Deserialize, Serialize};

use crate::authz::Principal;
use crate::clock::UnixSeconds;

/// The current session payload format.
pub const SESSION_FORMAT: u8 = 1;

/// The sealed content of a session cookie.
#[derive(Clone, Serialize, Deserialize)]
pub struct SessionData {
    /// Format version; other versions are refused (login again).
    pub v: u8,
    /// Random session id: the token-cache key and the unit of revocation.
    pub id: String,
    /// The id of the provider the session was created at (`default` when absent).
    #[serde(default = "default_provider", skip_serializing_if = "is_default_provider")]
    pub provider: String,
    pub iss: String,
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// Groups or roles read from the claim `authz.groups_claim` names (a
    /// dotted path such as `realm_access.roles`) at login and at each refresh
    /// that brings an ID token: what authorization rules see and what the
    /// groups header carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The provider's session id (`sid`), for back-channel logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub created_at: UnixSeconds,
    /// Last use, for the idle timeout; updated at most once a minute.
    pub last_seen_at: UnixSeconds,
    /// Absolute end of the session, whatever the cookie's `Max-Age` says.
    pub expires_at: UnixSeconds,
    pub access_token: String,
    pub access_expires_at: UnixSeconds,
    /// When the access token was issued (`0`: not known, in cookies from before
    /// it was recorded); its lifetime bounds how early it is refreshed.
    #[serde(default, skip_serializing_if = "is_unknown")]
    pub access_issued_at: UnixSeconds,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Kept for `id_token_hint` at provider logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

fn default_provider() -> String {
    crate::config::DEFAULT_PROVIDER_ID.to_owned()
}

fn is_default_provider(id: &str) -> bool {
    id == crate::config::DEFAULT_PROVIDER_ID
}

fn is_unknown(at: &UnixSeconds) -> bool {
    *at == 0
}

impl SessionData {
    /// The principal of this session, taking its claims out (no copies).
    pub fn into_principal(self) -> Principal {
        Principal {
            subject: self.sub,
            email: self.email,
            email_verified: self.email_verified.unwrap_or(false),
            name: self.name,
            preferred_username: self.preferred_username,
            groups: self.roles,
        }
    }

    /// The principal of this session: its identity claims and the roles read at login.
    pub fn principal(&self) -> Principal {
        Principal {
            subject: self.sub.clone(),
            email: self.email.clone(),
            email_verified: self.email_verified.unwrap_or(false),
            name: self.name.clone(),
            preferred_username: self.preferred_username.clone(),
            groups: self.roles.clone(),
        }
    }
}

impl std::fmt::Debug for SessionData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionData")
            .field("sub", &self.sub)
            .field("expires_at", &self.expires_at)
            .field("access_expires_at", &self.access_expires_at)
            .finish_non_exhaustive()
    }
}

/// What the session cookie holds when sessions live in the shared store: the
/// session id and what lets a replica refuse a dead session without asking
/// the store. No tokens.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionHandle {
    /// Format version; other versions are refused (login again).
    pub v: u8,
    pub id: String,
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub created_at: UnixSeconds,
    /// Last use, for the idle timeout; updated at most once a minute (in the cookie, never the store).
    pub last_seen_at: UnixSeconds,
    pub expires_at: UnixSeconds,
}

impl SessionHandle {
    /// The handle of a stored session.
    pub fn of(data: &SessionData) -> Self {
        Self {
            v: SESSION_FORMAT,
            id: data.id.clone(),
            sub: data.sub.clone(),
            sid: data.sid.clone(),
            created_at: data.created_at,
            last_seen_at: data.last_seen_at,
            expires_at: data.expires_at,
        }
    }
}
