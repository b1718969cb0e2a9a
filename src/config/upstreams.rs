//! `[[upstreams]]`, validated: each extra upstream's URL, host, path prefix,
//! token, identity headers, extra headers and rules, checked and compiled here
//! so that `check-config` finds every mistake and the gateway only connects.

use http::{HeaderName, HeaderValue, header};
use url::Url;

use super::raw::RawUpstream;
use super::{ConfigError, invalid};
use crate::authz::RuleSet;

/// One `[[upstreams]]` entry, validated.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// `name`, or `upstreams[<index>]`.
    pub name: String,
    /// An http(s) base URL without credentials, query or fragment.
    pub url: Url,
    /// Lower-case, without a trailing dot; `None`: any host.
    pub host: Option<String>,
    /// `None`: any path.
    pub path_prefix: Option<String>,
    /// Whether this upstream routes paths ignoring ASCII case (`authz.case_insensitive` when unset).
    pub case_insensitive: bool,
    pub token: TokenChoice,
    pub identity: IdentitySelection,
    /// Added to every request to this upstream, replacing the client's; never a gateway-owned header.
    pub set_headers: Vec<(HeaderName, HeaderValue)>,
    /// Checked before the `[authz]` rules.
    pub rules: RuleSet,
    /// Whose sessions and tokens this upstream accepts.
    pub providers: crate::authz::ProviderSet,
}

/// Which token an upstream receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenChoice {
    Access,
    Id,
    None,
}

/// Which identity headers an upstream receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentitySelection {
    pub user: bool,
    pub email: bool,
    pub preferred_username: bool,
    pub groups: bool,
}

impl IdentitySelection {
    /// Every identity header.
    pub const ALL: Self = Self { user: true, email: true, preferred_username: true, groups: true };

    /// A selection from names (`user`, `email`, `groups`, `preferred_username`);
    /// `Err` names the first unknown one.
    fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, &'a str> {
        let mut selection = Self { user: false, email: false, preferred_username: false, groups: false };
        for name in names {
            match name {
                "user" => selection.user = true,
                "email" => selection.email = true,
                "preferred_username" => selection.preferred_username = true,
                "groups" => selection.groups = true,
                other => return Err(other),
            }
        }
        Ok(selection)
    }
}

/// Validates every `[[upstreams]]` entry; errors name the indexed key
/// (`upstreams[2].token`). `case_insensitive` is `authz.case_insensitive`, the entries' default.
pub(super) fn validate(
    raw: &[RawUpstream],
    case_insensitive: bool,
    providers: &[super::OidcConfig],
) -> Result<Vec<UpstreamConfig>, ConfigError> {
    raw.iter().enumerate().map(|(index, entry)| validate_entry(index, entry, case_insensitive, providers)).collect()
}

fn validate_entry(
    index: usize,
    entry: &RawUpstream,
    case_insensitive: bool,
    providers: &[super::OidcConfig],
) -> Result<UpstreamConfig, ConfigError> {
    let key = |field: &str| format!("upstreams[{index}].{field}");
    let url = upstream_url(&key("url"), &entry.url)?;
    if entry.host.is_none() && entry.path_prefix.is_none() {
        return Err(invalid(format!("upstreams[{index}]"), "needs host or path_prefix"));
    }
    if entry.path_prefix.as_ref().is_some_and(|prefix| !prefix.starts_with('/')) {
        return Err(invalid(key("path_prefix"), "must start with /"));
    }
    let host = match &entry.host {
        None => None,
        Some(host) => Some(
            configured_host(host)
                .ok_or_else(|| invalid(key("host"), "must be a host name or IP address, without port"))?,
        ),
    };
    let token = match entry.token.as_deref().unwrap_or("access") {
        "access" => TokenChoice::Access,
        "id" => TokenChoice::Id,
        "none" => TokenChoice::None,
        _ => return Err(invalid(key("token"), "must be \"access\", \"id\" or \"none\"")),
    };
    let identity = match &entry.identity_headers {
        None => IdentitySelection::ALL,
        Some(names) => IdentitySelection::from_names(names.iter().map(String::as_str)).map_err(|unknown| {
            invalid(
                key("identity_headers"),
                format!("{unknown:?} is not one of \"user\", \"email\", \"groups\", \"preferred_username\""),
            )
        })?,
    };
    let mut set_headers = Vec::with_capacity(entry.set_headers.len());
    for (header_name, value) in &entry.set_headers {
        let at = key(&format!("set_headers.{header_name}"));
        let header_name =
            HeaderName::from_bytes(header_name.as_bytes()).map_err(|_| invalid(&at, "is not a header name"))?;
        if crate::owned_headers::is_spoofable(header_name.as_str().as_bytes()) || header_name == header::AUTHORIZATION {
            return Err(invalid(at, "is set by the gateway"));
        }
        // Never quote the value: it may be an API key.
        let value = HeaderValue::from_str(value).map_err(|_| invalid(&at, "is not a valid header value"))?;
        set_headers.push((header_name, value));
    }
    Ok(UpstreamConfig {
        name: entry.name.clone().unwrap_or_else(|| format!("upstreams[{index}]")),
        url,
        host,
        path_prefix: entry.path_prefix.clone(),
        case_insensitive: entry.case_insensitive.unwrap_or(case_insensitive),
        token,
        identity,
        set_headers,
        rules: super::authz::rules(&entry.rules, &key("rules"), providers)?,
        providers: super::authz::accepted(entry.providers.as_deref(), providers, &key("providers"))?,
    })
}

/// An upstream base URL (`upstream`, `upstreams[i].url`): http or https, with a
/// host, without credentials, query or fragment.
pub(super) fn upstream_url(key: &str, text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text)
        .map_err(|_| invalid(key, "must be an http(s) URL without query, e.g. http://127.0.0.1:8080"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(key, format!("scheme {:?} is not http or https", url.scheme())));
    }
    if url.host().is_none() {
        return Err(invalid(key, "has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(key, "must not contain credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(key, "must not have a query or fragment"));
    }
    Ok(url)
}

/// An `[[upstreams]] host` as entries compare it: lower-case, without a
/// trailing dot; `None` unless it is a host name (letters, digits, `-` and `_`
/// in dotted labels, one trailing dot allowed) or an IP literal in brackets,
/// without port: what the gateway accepts as a request's host.
pub(super) fn configured_host(host: &str) -> Option<String> {
    let valid = match host.strip_prefix('[') {
        Some(literal) => literal.strip_suffix(']').is_some_and(|literal| {
            !literal.is_empty() && literal.bytes().all(|byte| byte.is_ascii_hexdigit() || byte == b':' || byte == b'.')
        }),
        None => {
            !host.is_empty()
                && !host.starts_with('.')
                && !host.contains("..")
                && host.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_'))
        }
    };
    valid.then(|| host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase())
}
