//! `[oidc]` and `[[oidc.providers]]`: which providers the gateway knows, by
//! id, and the sets of them a route accepts.

use url::Url;

use super::raw::{RawOidc, RawProvider};
use super::{ConfigError, OidcConfig, invalid, validate_oidc};
use crate::authz::{MAX_PROVIDERS, ProviderSet};

/// The id of the provider a single `[oidc]` section configures.
pub const DEFAULT_PROVIDER_ID: &str = "default";

/// Where a provider's keys live, for error messages: `oidc` or `oidc.providers[staff]`.
pub(super) struct ProviderKey {
    pub(super) prefix: String,
    pub(super) id: String,
    pub(super) display_name: String,
}

impl ProviderKey {
    /// The full name of `key` in this provider's section.
    pub(super) fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.prefix)
    }
}

/// The validated providers, in configuration order (their index is their
/// place in every [`ProviderSet`]).
pub(super) fn validate_providers(
    mut raw: RawOidc,
    public_url: &Url,
    bearer_audience: Option<&str>,
) -> Result<Vec<OidcConfig>, ConfigError> {
    let listed = std::mem::take(&mut raw.providers);
    if listed.is_empty() {
        let at = ProviderKey {
            prefix: "oidc".to_owned(),
            id: DEFAULT_PROVIDER_ID.to_owned(),
            display_name: "Sign in".to_owned(),
        };
        let mut provider = validate_oidc(raw, public_url, &at)?;
        if let Some(audience) = bearer_audience {
            if audience.is_empty() {
                return Err(invalid("bearer.audience", "must not be empty"));
            }
            audience.clone_into(&mut provider.bearer_audience);
        }
        return Ok(vec![provider]);
    }
    if bearer_audience.is_some() {
        return Err(invalid(
            "bearer.audience",
            "is set per provider (oidc.providers[<id>].bearer_audience) when [[oidc.providers]] is used",
        ));
    }
    for (key, set) in [
        ("issuer", raw.issuer.is_some()),
        ("client_id", raw.client_id.is_some()),
        ("client_secret", raw.client_secret.is_some()),
        ("client_secret_file", raw.client_secret_file.is_some()),
    ] {
        if set {
            return Err(invalid(
                format!("oidc.{key}"),
                "is set per provider when [[oidc.providers]] is used; move it into each provider",
            ));
        }
    }
    if listed.len() > MAX_PROVIDERS {
        return Err(invalid("oidc.providers", format!("at most {MAX_PROVIDERS} providers")));
    }
    let mut providers: Vec<OidcConfig> = Vec::with_capacity(listed.len());
    for (index, provider) in listed.into_iter().enumerate() {
        let id = provider.id.clone().ok_or_else(|| invalid(format!("oidc.providers[{index}].id"), "is required"))?;
        if !is_valid_provider_id(&id) {
            return Err(invalid(
                format!("oidc.providers[{index}].id"),
                "must be 1-32 lowercase letters, digits or '-', starting with a letter, and not \"flow\" or \"choice\"",
            ));
        }
        if providers.iter().any(|known| known.id == id) {
            return Err(invalid(format!("oidc.providers[{index}].id"), format!("{id:?} is used twice")));
        }
        let display_name = match provider.display_name.as_deref().map(str::trim) {
            Some("") => return Err(invalid(format!("oidc.providers[{id}].display_name"), "must not be empty")),
            Some(name) if name.len() > 80 || name.chars().any(char::is_control) => {
                return Err(invalid(
                    format!("oidc.providers[{id}].display_name"),
                    "must be at most 80 characters, without control characters",
                ));
            }
            Some(name) => name.to_owned(),
            None => id.clone(),
        };
        let at = ProviderKey { prefix: format!("oidc.providers[{id}]"), id, display_name };
        let bearer_audience = provider.bearer_audience.clone();
        let mut validated = validate_oidc(with_defaults(provider, &raw), public_url, &at)?;
        match bearer_audience {
            Some(audience) if audience.is_empty() => {
                return Err(invalid(at.key("bearer_audience"), "must not be empty"));
            }
            Some(audience) => validated.bearer_audience = audience,
            None => {}
        }
        providers.push(validated);
    }
    Ok(providers)
}

/// `provider` with every unset key taken from `[oidc]`.
fn with_defaults(provider: RawProvider, defaults: &RawOidc) -> RawOidc {
    RawOidc {
        issuer: provider.issuer,
        client_id: provider.client_id,
        client_secret: provider.client_secret,
        client_secret_file: provider.client_secret_file,
        client_auth_method: provider.client_auth_method.unwrap_or_else(|| defaults.client_auth_method.clone()),
        scopes: provider.scopes.unwrap_or_else(|| defaults.scopes.clone()),
        redirect_url: provider.redirect_url.or_else(|| defaults.redirect_url.clone()),
        id_token_algorithms: provider.id_token_algorithms.unwrap_or_else(|| defaults.id_token_algorithms.clone()),
        trusted_audiences: provider.trusted_audiences.unwrap_or_else(|| defaults.trusted_audiences.clone()),
        clock_skew: provider.clock_skew.unwrap_or(defaults.clock_skew),
        http_timeout: provider.http_timeout.unwrap_or(defaults.http_timeout),
        end_session_on_sign_out: provider.end_session_on_sign_out.unwrap_or(defaults.end_session_on_sign_out),
        post_logout_redirect_url: provider
            .post_logout_redirect_url
            .or_else(|| defaults.post_logout_redirect_url.clone()),
        dangerous_allow_insecure_http_issuer: provider
            .dangerous_allow_insecure_http_issuer
            .unwrap_or(defaults.dangerous_allow_insecure_http_issuer),
        ca_file: provider.ca_file.or_else(|| defaults.ca_file.clone()),
        dangerous_skip_tls_verify: provider.dangerous_skip_tls_verify.unwrap_or(defaults.dangerous_skip_tls_verify),
        groups_claim: provider.groups_claim.or_else(|| defaults.groups_claim.clone()),
        providers: Vec::new(),
    }
}

/// Provider ids appear in cookie names, metric labels and URLs: a small alphabet.
/// `flow` would collide with the flow cookies' names.
fn is_valid_provider_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !RESERVED_PROVIDER_IDS.contains(&id)
}

/// Ids whose session cookie name (`{cookie_name}_{id}`) another gateway cookie
/// uses: the flow cookies and the chooser's remembered choice.
const RESERVED_PROVIDER_IDS: [&str; 2] = ["flow", "choice"];

/// The set `ids` names, among `providers`; `key` names the list in errors.
pub(super) fn provider_set(ids: &[String], providers: &[OidcConfig], key: &str) -> Result<ProviderSet, ConfigError> {
    let mut set = ProviderSet::NONE;
    for (position, id) in ids.iter().enumerate() {
        let index = providers.iter().position(|provider| &provider.id == id).ok_or_else(|| {
            let known: Vec<&str> = providers.iter().map(|provider| provider.id.as_str()).collect();
            invalid(format!("{key}[{position}]"), format!("no provider {id:?} (configured: {})", known.join(", ")))
        })?;
        set = set.union(ProviderSet::only(index));
    }
    if set == ProviderSet::NONE {
        return Err(invalid(key, "must name at least one provider (leave it out to accept all)"));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_ids_are_cookie_and_label_safe() {
        for good in ["staff", "a", "partners-2", "x1"] {
            assert!(is_valid_provider_id(good), "{good}");
        }
        for bad in ["", "Staff", "1x", "-x", "flow", "choice", "a_b", "a b", "a.b", &"a".repeat(33)] {
            assert!(!is_valid_provider_id(bad), "{bad}");
        }
    }
}
