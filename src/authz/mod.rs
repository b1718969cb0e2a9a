//! Authorization: who may reach which route. [`Policy`] is compiled once from
//! `[authz]`; each request is normalised ([`path`]), routed to its first
//! matching rule, and the caller's [`Principal`] checked against it.

pub mod claims;
pub mod path;
pub mod rules;

pub use self::rules::{Access, Policy, Route, RuleSet, Who};
pub(crate) use self::rules::{PathMatch, Rule};

/// The facts about a caller that rules look at, from a session or a bearer token.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Principal {
    /// The `sub` claim.
    #[serde(rename = "sub")]
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub email_verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// Groups or roles, from the configured claim.
    pub groups: Vec<String>,
}

impl Principal {
    /// The principal of a session, taking its claims out of `data` (no copies).
    pub fn from_session(data: crate::session::data::SessionData) -> Self {
        Self {
            subject: data.sub,
            email: data.email,
            email_verified: data.email_verified.unwrap_or(false),
            name: data.name,
            preferred_username: data.preferred_username,
            groups: data.roles,
        }
    }

    /// The principal of a session: its identity claims and the roles read at login.
    pub fn of_session(data: &crate::session::data::SessionData) -> Self {
        Self {
            subject: data.sub.clone(),
            email: data.email.clone(),
            email_verified: data.email_verified.unwrap_or(false),
            name: data.name.clone(),
            preferred_username: data.preferred_username.clone(),
            groups: data.roles.clone(),
        }
    }
}
