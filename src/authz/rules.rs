//! Compiled authorization rules: built once from `[authz]` at start, then
//! evaluated per request without allocating — a first-match scan over rules
//! and a few case-insensitive comparisons.

use http::Method;

use super::ProviderSet;

use super::Principal;
use super::claims::{domain_allowed, email_domain};

/// What a matched route asks of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No authentication at all (only for canonical paths).
    Public,
    /// Any authenticated user who passes the global allow-lists and `who`.
    Users(Who),
    /// Nobody.
    Deny,
}

/// Whom a rule admits: any one listed email, domain or group suffices; all empty admits everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Who {
    /// Lower-case.
    pub(crate) emails: Vec<String>,
    /// Lower-case; a leading `.` admits subdomains.
    pub(crate) domains: Vec<String>,
    pub(crate) groups: Vec<String>,
}

impl Who {
    pub(crate) fn is_open(&self) -> bool {
        self.emails.is_empty() && self.domains.is_empty() && self.groups.is_empty()
    }

    fn admits(&self, principal: &Principal, require_verified: bool) -> bool {
        if self.is_open() {
            return true;
        }
        let email = principal.email.as_deref().filter(|_| principal.email_verified || !require_verified);
        if let Some(email) = email
            && let Some(domain) = email_domain(email)
        {
            if self.emails.iter().any(|allowed| allowed.eq_ignore_ascii_case(email)) {
                return true;
            }
            if self.domains.iter().any(|allowed| domain_allowed(domain, allowed)) {
                return true;
            }
        }
        principal.groups.iter().any(|group| self.groups.iter().any(|allowed| allowed == group))
    }
}

/// Which paths a rule covers.
#[derive(Debug, Clone)]
pub(crate) enum PathMatch {
    Prefix(String),
    /// Segments; `*` matches one, a final `**` any rest (at least one).
    Pattern(Vec<String>),
}

impl PathMatch {
    /// Whether the normalised `path` matches; letters compared ignoring ASCII
    /// case when `case_insensitive` (the upstream routes that way).
    fn matches(&self, path: &str, case_insensitive: bool) -> bool {
        let same = |a: &str, b: &str| if case_insensitive { a.eq_ignore_ascii_case(b) } else { a == b };
        match self {
            PathMatch::Prefix(prefix) => {
                path.get(..prefix.len()).is_some_and(|head| same(head, prefix))
                    && (path.len() == prefix.len()
                        || prefix.ends_with('/')
                        || path.as_bytes().get(prefix.len()) == Some(&b'/'))
            }
            PathMatch::Pattern(segments) => {
                let mut parts = path.split('/').skip(1);
                for segment in segments {
                    if segment == "**" {
                        return parts.next().is_some();
                    }
                    match parts.next() {
                        Some(part) if segment == "*" && !part.is_empty() => {}
                        Some(part) if same(part, segment) => {}
                        _ => return false,
                    }
                }
                parts.next().is_none()
            }
        }
    }
}

/// One compiled rule (see `config::authz`, which validates and builds it).
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) name: String,
    /// Empty: every method.
    pub(crate) methods: Vec<Method>,
    pub(crate) path: PathMatch,
    pub(crate) access: Access,
    /// Whose sessions and tokens the rule accepts.
    pub(crate) providers: ProviderSet,
}

/// The outcome of routing a request through the rules.
#[derive(Debug, Clone, Copy)]
pub struct Route<'p> {
    pub access: &'p Access,
    /// The deciding rule's name, `default` when none matched.
    pub rule: &'p str,
    /// The providers the deciding rule accepts (all for the default).
    pub providers: ProviderSet,
}

/// An ordered list of compiled rules; the first match decides.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// The rules in the order they are tried.
    pub(crate) fn new(rules: Vec<Rule>) -> Self {
        Self { rules }
    }

    /// The first rule matching `method` and the normalised `path` (letters
    /// compared ignoring ASCII case when `case_insensitive`).
    pub fn route(&self, method: &Method, path: &str, case_insensitive: bool) -> Option<Route<'_>> {
        self.rules
            .iter()
            .find(|rule| {
                (rule.methods.is_empty() || rule.methods.contains(method)) && rule.path.matches(path, case_insensitive)
            })
            .map(|rule| Route { access: &rule.access, rule: &rule.name, providers: rule.providers })
    }
}

/// Every authorization setting, compiled (by `config::authz`).
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) global: Who,
    pub(crate) require_email_verified: bool,
    pub(crate) default: Access,
    pub(crate) rules: RuleSet,
    pub(crate) groups_claim: String,
    pub(crate) api_path_prefixes: Vec<String>,
    /// Whether the default upstream routes paths ignoring case (`authz.case_insensitive`).
    pub(crate) case_insensitive: bool,
    pub(crate) forward_client_authorization_on_public: bool,
    /// The providers the default upstream accepts (`authz.providers`).
    pub(crate) providers: ProviderSet,
}

impl Policy {
    /// The first rule matching `method` and the normalised `path`, or the
    /// default; paths compared as `authz.case_insensitive` says.
    pub fn route(&self, method: &Method, path: &str) -> Route<'_> {
        self.route_with_case(method, path, self.case_insensitive)
    }

    /// [`Policy::route`] for a request to an upstream whose routing ignores
    /// case (`case_insensitive`) or not, whatever `authz.case_insensitive` says.
    pub fn route_with_case(&self, method: &Method, path: &str, case_insensitive: bool) -> Route<'_> {
        self.rules.route(method, path, case_insensitive).unwrap_or(Route {
            access: &self.default,
            rule: "default",
            providers: ProviderSet::ALL,
        })
    }

    /// Whether the default upstream routes paths ignoring case (the default for `[[upstreams]]` too).
    pub fn case_insensitive(&self) -> bool {
        self.case_insensitive
    }

    /// Whether `principal` may pass `access` (the global allow-lists included).
    pub fn admits(&self, access: &Access, principal: &Principal) -> bool {
        match access {
            Access::Public => true,
            Access::Deny => false,
            Access::Users(who) => {
                self.global.admits(principal, self.require_email_verified)
                    && who.admits(principal, self.require_email_verified)
            }
        }
    }

    /// The providers the default upstream accepts (`authz.providers`; all when unset).
    pub fn providers(&self) -> ProviderSet {
        self.providers
    }

    /// The dotted claim path groups are read from.
    pub fn groups_claim(&self) -> &str {
        &self.groups_claim
    }

    /// Whether public routes receive the client's own `Authorization` header.
    pub fn forwards_client_authorization_on_public(&self) -> bool {
        self.forward_client_authorization_on_public
    }

    /// Whether `path` is configured as an API route (401, never a redirect).
    pub fn is_api_path(&self, path: &str) -> bool {
        self.api_path_prefixes.iter().any(|prefix| path.starts_with(prefix.as_str()))
    }
}
