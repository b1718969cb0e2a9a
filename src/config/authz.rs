//! `[authz]` and every rule list (`[[authz.rules]]`, `[[upstreams.rules]]`):
//! validated here and compiled into [`crate::authz`]'s evaluation types, so a
//! bad rule is a configuration error naming its key.

use http::Method;

use super::raw::{RawAuthz, RawRule};
use super::{ConfigError, invalid};
use crate::authz::claims::email_domain;
use crate::authz::{Access, PathMatch, Policy, Rule, RuleSet, Who};

/// Compiles `[authz]`; errors name the key.
pub fn compile_policy(raw: &RawAuthz) -> Result<Policy, ConfigError> {
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
    Ok(Policy {
        global,
        require_email_verified: raw.require_email_verified,
        default,
        rules: rules(&raw.rules, "authz.rules")?,
        groups_claim: raw.groups_claim.clone(),
        api_path_prefixes: raw.api_path_prefixes.clone(),
        case_insensitive: raw.case_insensitive,
        forward_client_authorization_on_public: raw.forward_client_authorization_on_public,
    })
}

/// Compiles a rule list; errors name `key` and the rule.
pub(super) fn rules(raw: &[RawRule], key: &str) -> Result<RuleSet, ConfigError> {
    let rules = raw.iter().enumerate().map(|(i, rule)| compile_rule(i, rule, key)).collect::<Result<_, _>>()?;
    Ok(RuleSet::new(rules))
}

fn who(emails: &[String], domains: &[String], groups: &[String], key: &str) -> Result<Who, ConfigError> {
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

fn compile_rule(index: usize, raw: &RawRule, key: &str) -> Result<Rule, ConfigError> {
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
