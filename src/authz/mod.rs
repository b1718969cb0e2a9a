//! Authorization: who may reach which route. [`Policy`] is compiled once from
//! `[authz]`; each request is normalised ([`path`]), routed to its first
//! matching rule, and the caller's [`Principal`] checked against it.

pub mod claims;
pub mod path;
mod providers;
pub mod rules;

pub use self::providers::{MAX_PROVIDERS, ProviderSet};
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
