//! `[authz]` and every rule list (`[[authz.rules]]`, `[[upstreams.rules]]`):
//! validated here and compiled into [`crate::authz`]'s evaluation types, so a
//! bad rule is a configuration error naming its key.

use http::Method;

use super::providers::provider_set;
use super::raw::{RawAuthz, RawRule};
use super::{ConfigError, OidcConfig, invalid};
use crate::authz::claims::email_domain;
use crate::authz::{Access, PathMatch, Policy, ProviderSet, Rule, RuleSet, Who};

/// Compiles `[authz]`; errors name the key (`authz.rules[1].path_prefix`).
pub fn compile_policy(raw: &RawAuthz, providers: &[OidcConfig]) -> Result<Policy, ConfigError> {
    let global = who(&raw.allowed_emails, &raw.allowed_email_domains, &raw.allowed_groups, |field| {
        format!("authz.allowed_{field}")
    })?;
    let default = match raw.default.as_str() {
        "authenticated" => Access::Users(Who::default()),
        "deny" => Access::Deny,
        _ => return Err(invalid("authz.default", "must be \"authenticated\" or \"deny\"")),
    };
    if raw.groups_claim.is_empty() || raw.groups_claim.split('.').any(str::is_empty) {
        return Err(invalid("authz.groups_claim", "must be a claim name or dotted path like realm_access.roles"));
    }
    if let Some(index) = raw.api_path_prefixes.iter().position(|prefix| !prefix.starts_with('/')) {
        return Err(invalid(format!("authz.api_path_prefixes[{index}]"), "must start with /"));
    }
    Ok(Policy {
        global,
        require_email_verified: raw.require_email_verified,
        default,
        rules: rules(&raw.rules, "authz.rules", providers)?,
        groups_claim: raw.groups_claim.clone(),
        api_path_prefixes: raw.api_path_prefixes.clone(),
        case_insensitive: raw.case_insensitive,
        forward_client_authorization_on_public: raw.forward_client_authorization_on_public,
        providers: accepted(raw.providers.as_deref(), providers, "authz.providers")?,
    })
}

/// Compiles the rule list at `key`; errors name the rule's indexed key (`upstreams[0].rules[1].allow`).
pub(super) fn rules(raw: &[RawRule], key: &str, providers: &[OidcConfig]) -> Result<RuleSet, ConfigError> {
    let rules = raw
        .iter()
        .enumerate()
        .map(|(index, rule)| compile_rule(index, rule, &format!("{key}[{index}]"), providers))
        .collect::<Result<_, _>>()?;
    Ok(RuleSet::new(rules))
}

/// Whom a rule (or `[authz]` itself) admits; `key_of` turns a field
/// (`emails[0]`, `email_domains[1]`, `groups[2]`) into its full key.
fn who(
    emails: &[String],
    domains: &[String],
    groups: &[String],
    key_of: impl Fn(&str) -> String,
) -> Result<Who, ConfigError> {
    for (index, email) in emails.iter().enumerate() {
        if email_domain(email).is_none() {
            return Err(invalid(key_of(&format!("emails[{index}]")), "is not an address with exactly one @"));
        }
    }
    for (index, domain) in domains.iter().enumerate() {
        let bare = domain.strip_prefix('.').unwrap_or(domain);
        if bare.is_empty() || bare.contains(['@', '/', ' ']) || bare.starts_with('.') || bare.ends_with('.') {
            return Err(invalid(
                key_of(&format!("email_domains[{index}]")),
                "is not a domain like example.com or .example.com",
            ));
        }
    }
    if let Some(index) = groups.iter().position(String::is_empty) {
        return Err(invalid(key_of(&format!("groups[{index}]")), "must not be empty"));
    }
    Ok(Who {
        emails: emails.iter().map(|email| email.to_ascii_lowercase()).collect(),
        domains: domains.iter().map(|domain| domain.to_ascii_lowercase()).collect(),
        groups: groups.to_vec(),
    })
}

/// One rule; `key` is its indexed key, e.g. `authz.rules[1]`.
fn compile_rule(index: usize, raw: &RawRule, key: &str, providers: &[OidcConfig]) -> Result<Rule, ConfigError> {
    let field = |name: &str| format!("{key}.{name}");
    let path = match (&raw.path_prefix, &raw.path_pattern) {
        (Some(prefix), None) => {
            if !prefix.starts_with('/') || prefix.contains("//") || prefix.contains(['?', '#', ';', '%', '\\']) {
                return Err(invalid(field("path_prefix"), "must be a plain path starting with /"));
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
                return Err(invalid(
                    field("path_pattern"),
                    "must start with / and use * for one segment, ** only at the end",
                ));
            }
            PathMatch::Pattern(segments)
        }
        (Some(_), Some(_)) => return Err(invalid(key, "set path_prefix or path_pattern, not both")),
        (None, None) => return Err(invalid(key, "needs path_prefix or path_pattern")),
    };
    let mut methods = Vec::with_capacity(raw.methods.len());
    for (method_index, method) in raw.methods.iter().enumerate() {
        methods.push(
            Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .map_err(|_| invalid(field(&format!("methods[{method_index}]")), "is not an HTTP method"))?,
        );
    }
    let who = who(&raw.emails, &raw.email_domains, &raw.groups, field)?;
    let access = match raw.allow.as_deref().unwrap_or("authenticated") {
        "authenticated" => Access::Users(who),
        "public" | "deny" if !who.is_open() => {
            return Err(invalid(
                field("allow"),
                "emails, email_domains and groups only go with allow = \"authenticated\"",
            ));
        }
        "public" => Access::Public,
        "deny" => Access::Deny,
        _ => return Err(invalid(field("allow"), "must be \"public\", \"authenticated\" or \"deny\"")),
    };
    let name = raw.name.clone().unwrap_or_else(|| format!("rules[{index}]"));
    let providers = accepted(raw.providers.as_deref(), providers, &field("providers"))?;
    Ok(Rule { name, methods, path, access, providers })
}

/// The providers a `providers = [...]` list at `key` accepts; all when it is unset.
pub(super) fn accepted(
    ids: Option<&[String]>,
    providers: &[OidcConfig],
    key: &str,
) -> Result<ProviderSet, ConfigError> {
    ids.map_or(Ok(ProviderSet::ALL), |ids| provider_set(ids, providers, key))
}
