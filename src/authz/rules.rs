//! Compiled authorization rules: built once from `[authz]` at start, then
//! evaluated per request without allocating — a first-match scan over rules
//! and a few case-insensitive comparisons.

use http::Method;

use super::Principal;
use super::claims::{domain_allowed, email_domain};
use super::settings::{RawAuthz, RawRule};
use crate::config::ConfigError;

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
    emails: Vec<String>,
    domains: Vec<String>,
    groups: Vec<String>,
}

impl Who {
    fn is_open(&self) -> bool {
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

#[derive(Debug, Clone)]
enum PathMatch {
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

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    methods: Vec<Method>,
    path: PathMatch,
    access: Access,
}

/// The outcome of routing a request through the rules.
#[derive(Debug, Clone, Copy)]
pub struct Route<'p> {
    pub access: &'p Access,
    /// The deciding rule's name, `default` when none matched.
    pub rule: &'p str,
}

/// An ordered list of compiled rules; the first match decides.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// Compiles `raw`; errors name `key` and the rule.
    pub fn compile(raw: &[RawRule], key: &'static str) -> Result<Self, ConfigError> {
        let rules = raw.iter().enumerate().map(|(i, rule)| compile_rule(i, rule, key)).collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    /// The first rule matching `method` and the normalised `path` (letters
    /// compared ignoring ASCII case when `case_insensitive`).
    pub fn route(&self, method: &Method, path: &str, case_insensitive: bool) -> Option<Route<'_>> {
        self.rules
            .iter()
            .find(|rule| {
                (rule.methods.is_empty() || rule.methods.contains(method)) && rule.path.matches(path, case_insensitive)
            })
            .map(|rule| Route { access: &rule.access, rule: &rule.name })
    }
}

/// Every authorization setting, compiled.
#[derive(Debug, Clone)]
pub struct Policy {
    global: Who,
    require_email_verified: bool,
    default: Access,
    rules: RuleSet,
    groups_claim: String,
    api_path_prefixes: Vec<String>,
    /// Whether the default upstream routes paths ignoring case (`authz.case_insensitive`).
    case_insensitive: bool,
    forward_client_authorization_on_public: bool,
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, problem: problem.into() }
}

fn who(emails: &[String], domains: &[String], groups: &[String], key: &'static str) -> Result<Who, ConfigError> {
    for email in emails {
        if email_domain(email).is_none() {
            return Err(invalid(key, format!("{email:?} is not an address with exactly one @")));
        }
    }
    for domain in domains {
        let bare = domain.strip_prefix('.').unwrap_or(domain);
        if bare.is_empty() || bare.contains(['@', '/', ' ']) || bare.starts_with('.') || bare.ends_with('.') {
            return Err(invalid(key, format!("{domain:?} is not a domain like example.com or .example.com")));
        }
    }
    if groups.iter().any(String::is_empty) {
        return Err(invalid(key, "group names must not be empty"));
    }
    Ok(Who {
        emails: emails.iter().map(|email| email.to_ascii_lowercase()).collect(),
        domains: domains.iter().map(|domain| domain.to_ascii_lowercase()).collect(),
        groups: groups.to_vec(),
    })
}

fn compile_rule(index: usize, raw: &RawRule, key: &'static str) -> Result<Rule, ConfigError> {
    let name = raw.name.clone().unwrap_or_else(|| format!("rules[{index}]"));
    let at = |problem: String| invalid(key, format!("rule {name:?}: {problem}"));
    let path = match (&raw.path_prefix, &raw.path_pattern) {
        (Some(prefix), None) => {
            if !prefix.starts_with('/') || prefix.contains("//") || prefix.contains(['?', '#', ';', '%', '\\']) {
                return Err(at("path_prefix must be a plain path starting with /".to_owned()));
            }
            PathMatch::Prefix(prefix.clone())
        }
        (None, Some(pattern)) => {
            let segments: Vec<String> = pattern.split('/').skip(1).map(str::to_owned).collect();
            let bad_star = segments.iter().enumerate().any(|(i, segment)| {
                (segment == "**" && i + 1 != segments.len())
                    || (segment.contains('*') && segment != "*" && segment != "**")
            });
            if !pattern.starts_with('/') || bad_star || pattern.contains(['?', '#', ';', '%', '\\']) {
                return Err(at(
                    "path_pattern must start with / and use * for one segment, ** only at the end".to_owned()
                ));
            }
            PathMatch::Pattern(segments)
        }
        (Some(_), Some(_)) => return Err(at("set path_prefix or path_pattern, not both".to_owned())),
        (None, None) => return Err(at("needs path_prefix or path_pattern".to_owned())),
    };
    let mut methods = Vec::with_capacity(raw.methods.len());
    for method in &raw.methods {
        methods.push(
            Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|_| at(format!("method {method:?}")))?,
        );
    }
    let who = who(&raw.emails, &raw.email_domains, &raw.groups, key).map_err(|error| at(error.to_string()))?;
    let access = match raw.allow.as_deref().unwrap_or("authenticated") {
        "authenticated" => Access::Users(who),
        "public" | "deny" if !who.is_open() => {
            return Err(at("emails, email_domains and groups only go with allow = \"authenticated\"".to_owned()));
        }
        "public" => Access::Public,
        "deny" => Access::Deny,
        other => return Err(at(format!("allow = {other:?}: use \"public\", \"authenticated\" or \"deny\""))),
    };
    Ok(Rule { name, methods, path, access })
}

impl Policy {
    /// Compiles `[authz]`; errors name the key.
    pub fn compile(raw: &RawAuthz) -> Result<Self, ConfigError> {
        let global = who(&raw.allowed_emails, &raw.allowed_email_domains, &raw.allowed_groups, "authz.allowed_emails")?;
        let default = match raw.default.as_str() {
            "authenticated" => Access::Users(Who::default()),
            "deny" => Access::Deny,
            _ => return Err(invalid("authz.default", "must be \"authenticated\" or \"deny\"")),
        };
        if raw.groups_claim.is_empty() || raw.groups_claim.split('.').any(str::is_empty) {
            return Err(invalid("authz.groups_claim", "must be a claim name or dotted path like realm_access.roles"));
        }
        if raw.api_path_prefixes.iter().any(|prefix| !prefix.starts_with('/')) {
            return Err(invalid("authz.api_path_prefixes", "each prefix must start with /"));
        }
        let rules = RuleSet::compile(&raw.rules, "authz.rules")?;
        Ok(Self {
            global,
            require_email_verified: raw.require_email_verified,
            default,
            rules,
            groups_claim: raw.groups_claim.clone(),
            api_path_prefixes: raw.api_path_prefixes.clone(),
            case_insensitive: raw.case_insensitive,
            forward_client_authorization_on_public: raw.forward_client_authorization_on_public,
        })
    }

    /// The first rule matching `method` and the normalised `path`, or the
    /// default; paths compared as `authz.case_insensitive` says.
    pub fn route(&self, method: &Method, path: &str) -> Route<'_> {
        self.route_with_case(method, path, self.case_insensitive)
    }

    /// [`Policy::route`] for a request to an upstream whose routing ignores
    /// case (`case_insensitive`) or not, whatever `authz.case_insensitive` says.
    pub fn route_with_case(&self, method: &Method, path: &str, case_insensitive: bool) -> Route<'_> {
        self.rules.route(method, path, case_insensitive).unwrap_or(Route { access: &self.default, rule: "default" })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(email: &str, verified: bool, groups: &[&str]) -> Principal {
        Principal {
            subject: "s".to_owned(),
            email: Some(email.to_owned()),
            email_verified: verified,
            name: None,
            preferred_username: None,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    fn rule(prefix: &str, allow: &str) -> RawRule {
        RawRule { path_prefix: Some(prefix.to_owned()), allow: Some(allow.to_owned()), ..RawRule::default() }
    }

    #[test]
    fn first_match_wins_and_prefixes_respect_segments() {
        let mut raw = RawAuthz::default();
        raw.rules.push(rule("/admin", "deny"));
        raw.rules.push(rule("/", "public"));
        let policy = Policy::compile(&raw).unwrap();
        assert_eq!(policy.route(&Method::GET, "/admin").access, &Access::Deny);
        assert_eq!(policy.route(&Method::GET, "/admin/x").access, &Access::Deny);
        assert_eq!(policy.route(&Method::GET, "/administrator").access, &Access::Public);
    }

    #[test]
    fn patterns_are_anchored() {
        let mut raw = RawAuthz::default();
        raw.rules.push(RawRule {
            path_pattern: Some("/api/*/admin/**".to_owned()),
            allow: Some("deny".to_owned()),
            ..RawRule::default()
        });
        let policy = Policy::compile(&raw).unwrap();
        assert_eq!(policy.route(&Method::GET, "/api/v1/admin/x").rule, "rules[0]");
        assert_eq!(policy.route(&Method::GET, "/api/v1/admin").rule, "default");
        assert_eq!(policy.route(&Method::GET, "/x/api/v1/admin/x").rule, "default");
        assert_eq!(policy.route(&Method::GET, "/api/v1/v2/admin/x").rule, "default");
    }

    #[test]
    fn case_insensitive_matching_is_opt_in() {
        let mut raw = RawAuthz::default();
        raw.rules.push(rule("/admin", "deny"));
        raw.rules.push(RawRule {
            path_pattern: Some("/api/*/Keys".to_owned()),
            allow: Some("deny".to_owned()),
            ..RawRule::default()
        });
        let policy = Policy::compile(&raw).unwrap();
        assert!(!policy.case_insensitive());
        for path in ["/ADMIN", "/Admin/x", "/api/v1/keys"] {
            assert_eq!(policy.route(&Method::GET, path).rule, "default", "{path}");
            assert_ne!(policy.route_with_case(&Method::GET, path, true).rule, "default", "{path}");
        }
        raw.case_insensitive = true;
        let policy = Policy::compile(&raw).unwrap();
        assert_eq!(policy.route(&Method::GET, "/aDmIn/x").rule, "rules[0]");
        assert_eq!(policy.route(&Method::GET, "/API/v1/KEYS").rule, "rules[1]");
        assert_eq!(policy.route(&Method::GET, "/administrator").rule, "default");
        assert_eq!(policy.route(&Method::GET, "/adm").rule, "default");
        assert_eq!(policy.route_with_case(&Method::GET, "/ADMIN", false).rule, "default");
    }

    #[test]
    fn methods_narrow_rules() {
        let mut raw = RawAuthz::default();
        raw.rules.push(RawRule { methods: vec!["post".to_owned()], ..rule("/x", "deny") });
        let policy = Policy::compile(&raw).unwrap();
        assert_eq!(policy.route(&Method::POST, "/x").access, &Access::Deny);
        assert_eq!(policy.route(&Method::GET, "/x").rule, "default");
    }

    #[test]
    fn emails_domains_groups_and_verification() {
        let mut raw = RawAuthz::default();
        raw.rules.push(RawRule {
            email_domains: vec!["example.com".to_owned()],
            groups: vec!["admins".to_owned()],
            ..rule("/", "authenticated")
        });
        let policy = Policy::compile(&raw).unwrap();
        let access = policy.route(&Method::GET, "/").access;
        assert!(policy.admits(access, &principal("a@EXAMPLE.com", true, &[])));
        assert!(!policy.admits(access, &principal("a@example.com", false, &[])));
        assert!(!policy.admits(access, &principal("a@evil.com@example.com", true, &[])));
        assert!(!policy.admits(access, &principal("a@notexample.com", true, &[])));
        assert!(policy.admits(access, &principal("a@other.org", false, &["admins"])));
        assert!(!policy.admits(access, &principal("a@other.org", true, &["Admins"])));
    }

    #[test]
    fn config_errors_name_the_key() {
        let mut raw = RawAuthz::default();
        raw.rules.push(RawRule { emails: vec!["x@y".to_owned()], ..rule("/", "public") });
        assert!(Policy::compile(&raw).unwrap_err().to_string().starts_with("authz.rules:"));
        let raw = RawAuthz { default: "maybe".to_owned(), ..RawAuthz::default() };
        assert!(Policy::compile(&raw).unwrap_err().to_string().starts_with("authz.default:"));
        let raw = RawAuthz { allowed_emails: vec!["a@b@c".to_owned()], ..RawAuthz::default() };
        assert!(Policy::compile(&raw).unwrap_err().to_string().starts_with("authz.allowed_emails:"));
    }
}
