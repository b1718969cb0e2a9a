//! The operator-facing configuration of authorization, bearer tokens and
//! forward-auth: serde mirrors of `[authz]`, `[[authz.rules]]`, `[bearer]`
//! and `[forward_auth]`, validated by [`super::Policy::compile`] and friends.

use serde::{Deserialize, Serialize};

/// `[authz]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuthz {
    /// Only these addresses may pass (with the domains and groups below); empty: no email gate.
    pub allowed_emails: Vec<String>,
    /// Only addresses in these domains (`example.com`, or `.example.com` for subdomains).
    pub allowed_email_domains: Vec<String>,
    /// Only members of these groups/roles.
    pub allowed_groups: Vec<String>,
    /// Dotted path of the claim holding groups or roles, e.g. `realm_access.roles`.
    pub groups_claim: String,
    /// Email addresses count only when the provider says `email_verified: true`.
    pub require_email_verified: bool,
    /// Access for routes no rule matches: `authenticated` or `deny`.
    pub default: String,
    /// Paths (prefixes) that are APIs: never a login redirect, always a 401.
    pub api_path_prefixes: Vec<String>,
    /// Per-route rules; the first match decides.
    pub rules: Vec<RawRule>,
    /// Rule paths match ignoring ASCII case, for an upstream that routes that
    /// way (Express, ASP.NET); also the default for `[[upstreams]]` entries.
    pub case_insensitive: bool,
    /// Forward the client's own `Authorization` header on public routes
    /// (`allow = "public"`); off, it is removed like any gateway-owned header.
    pub forward_client_authorization_on_public: bool,
}

impl Default for RawAuthz {
    fn default() -> Self {
        Self {
            allowed_emails: Vec::new(),
            allowed_email_domains: Vec::new(),
            allowed_groups: Vec::new(),
            groups_claim: "groups".to_owned(),
            require_email_verified: true,
            default: "authenticated".to_owned(),
            api_path_prefixes: Vec::new(),
            rules: Vec::new(),
            case_insensitive: false,
            forward_client_authorization_on_public: false,
        }
    }
}

/// `[[authz.rules]]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRule {
    /// Shown in logs when the rule decides.
    pub name: Option<String>,
    /// HTTP methods the rule applies to; empty: all.
    pub methods: Vec<String>,
    /// Matches this path and everything below it (segment boundaries).
    pub path_prefix: Option<String>,
    /// Matches the whole path: `*` is one segment, a final `**` any rest.
    pub path_pattern: Option<String>,
    /// `public` (no authentication at all), `authenticated` (default) or `deny`.
    pub allow: Option<String>,
    /// With `authenticated`: only these addresses, domains or groups (any one suffices).
    pub emails: Vec<String>,
    pub email_domains: Vec<String>,
    pub groups: Vec<String>,
}

/// `[bearer]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBearer {
    /// Accept `Authorization: Bearer <JWT>` from requests without a session.
    pub enabled: bool,
    /// The `aud` tokens from `oidc.issuer` must carry; default: `oidc.client_id`.
    pub audience: Option<String>,
    /// Require `typ: at+jwt` (RFC 9068). When off, tokens that look like ID
    /// tokens (`nonce`, `at_hash`, `c_hash`, or `typ` claim `ID`) are still refused.
    pub require_access_token_type: bool,
    /// Other issuers whose tokens are accepted, each with its own audience.
    pub issuers: Vec<RawIssuer>,
    /// Check opaque (non-JWT) tokens at the provider's RFC 7662 introspection
    /// endpoint; needs a confidential client (`oidc.client_secret`).
    pub introspection: bool,
}

impl Default for RawBearer {
    fn default() -> Self {
        Self {
            enabled: false,
            audience: None,
            require_access_token_type: true,
            issuers: Vec::new(),
            introspection: false,
        }
    }
}

/// `[[bearer.issuers]]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawIssuer {
    pub issuer: String,
    pub audience: String,
    /// Signature algorithms accepted; default: the `oidc.id_token_algorithms` list.
    pub algorithms: Vec<String>,
}

/// `[forward_auth]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawForwardAuth {
    /// Peers (CIDRs like `10.0.0.0/8`, or single addresses) whose
    /// `X-Forwarded-Method/-Host/-Uri` and `X-Original-URL` are believed. Empty: none.
    pub trusted_proxies: Vec<String>,
    /// Also answer `X-Auth-Request-Access-Token` (the session's access token).
    pub pass_access_token: bool,
    /// Answer browser navigations without a session with a 302 to sign in
    /// (Traefik, Caddy relay it) instead of a 401 (what nginx `auth_request` needs).
    pub redirect_browsers: bool,
    /// Which headers of a trusted proxy state the original request:
    /// `x-forwarded` (default), `x-original` or `envoy`.
    pub original_request: Option<String>,
}

/// `[bearer]`, validated.
#[derive(Debug, Clone)]
pub struct BearerConfig {
    pub enabled: bool,
    /// Required `aud` of tokens from `oidc.issuer`.
    pub audience: String,
    pub require_access_token_type: bool,
    pub issuers: Vec<IssuerConfig>,
    pub introspection: bool,
}

/// One extra accepted issuer, validated.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub issuer: String,
    pub audience: String,
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
}

/// `[forward_auth]`, validated.
#[derive(Debug, Clone, Default)]
pub struct ForwardAuthConfig {
    pub trusted_proxies: Vec<Cidr>,
    pub pass_access_token: bool,
    pub redirect_browsers: bool,
    pub original_request: OriginalRequest,
}

/// Where a trusted proxy states the original request. Exactly one convention
/// is believed: proxies pass their clients' headers on, so a header of another
/// convention next to it may be a client's and makes the request a 403.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OriginalRequest {
    /// `X-Forwarded-Method`, `X-Forwarded-Uri` and `X-Forwarded-Host`
    /// (the nginx recipe, Traefik, Caddy).
    #[default]
    XForwarded,
    /// `X-Original-Method` and the absolute `X-Original-URL` (ingress-nginx).
    XOriginal,
    /// The path after `/oauth2/auth`, the subrequest's method and `Host` (Envoy `ext_authz`).
    Envoy,
}

impl ForwardAuthConfig {
    /// Whether requests from `peer` may state the original request.
    pub fn trusts(&self, peer: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|cidr| cidr.contains(peer))
    }
}

/// An IP network, `address/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: std::net::IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `::1/128` or a bare address (a single host).
    pub fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let network: std::net::IpAddr = address.trim().parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { network, prefix })
    }

    /// Whether `ip` is inside this network (IPv4-mapped IPv6 peers count as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn invalid(key: &'static str, problem: impl Into<String>) -> crate::config::ConfigError {
    crate::config::ConfigError::Invalid { key, problem: problem.into() }
}

/// Validates `[forward_auth]`; errors name the key.
pub fn forward_auth(raw: &RawForwardAuth) -> Result<ForwardAuthConfig, crate::config::ConfigError> {
    let mut trusted_proxies = Vec::with_capacity(raw.trusted_proxies.len());
    for text in &raw.trusted_proxies {
        trusted_proxies.push(Cidr::parse(text).ok_or_else(|| {
            invalid("forward_auth.trusted_proxies", format!("{text:?} is not an address or CIDR like 10.0.0.0/8"))
        })?);
    }
    let original_request = match raw.original_request.as_deref().unwrap_or("x-forwarded") {
        "x-forwarded" => OriginalRequest::XForwarded,
        "x-original" => OriginalRequest::XOriginal,
        "envoy" => OriginalRequest::Envoy,
        other => {
            return Err(invalid(
                "forward_auth.original_request",
                format!("{other:?} is not one of \"x-forwarded\", \"x-original\", \"envoy\""),
            ));
        }
    };
    Ok(ForwardAuthConfig {
        trusted_proxies,
        pass_access_token: raw.pass_access_token,
        redirect_browsers: raw.redirect_browsers,
        original_request,
    })
}

/// Validates `[bearer]` against the `[oidc]` client; errors name the key.
pub fn bearer(
    raw: &RawBearer,
    client_id: &str,
    confidential: bool,
    default_algorithms: &[jsonwebtoken::Algorithm],
) -> Result<BearerConfig, crate::config::ConfigError> {
    if raw.introspection && !confidential {
        return Err(invalid("bearer.introspection", "needs a confidential client: set oidc.client_secret"));
    }
    use jsonwebtoken::Algorithm;
    let audience = raw.audience.clone().unwrap_or_else(|| client_id.to_owned());
    if audience.is_empty() {
        return Err(invalid("bearer.audience", "must not be empty"));
    }
    let mut issuers = Vec::with_capacity(raw.issuers.len());
    for issuer in &raw.issuers {
        let url = url::Url::parse(&issuer.issuer)
            .map_err(|_| invalid("bearer.issuers", format!("issuer {:?} is not an absolute URL", issuer.issuer)))?;
        if url.scheme() != "https" && !(url.scheme() == "http" && crate::config::is_loopback_host(&url)) {
            return Err(invalid("bearer.issuers", format!("issuer {:?} must be https", issuer.issuer)));
        }
        if issuer.audience.is_empty() {
            return Err(invalid("bearer.issuers", format!("issuer {:?} needs an audience", issuer.issuer)));
        }
        let mut algorithms = Vec::new();
        for name in &issuer.algorithms {
            let algorithm: Algorithm =
                name.parse().map_err(|_| invalid("bearer.issuers", format!("unknown algorithm {name:?}")))?;
            if matches!(algorithm, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                return Err(invalid("bearer.issuers", "HMAC algorithms are not accepted"));
            }
            algorithms.push(algorithm);
        }
        if algorithms.is_empty() {
            algorithms = default_algorithms.to_vec();
        }
        issuers.push(IssuerConfig { issuer: issuer.issuer.clone(), audience: issuer.audience.clone(), algorithms });
    }
    Ok(BearerConfig {
        introspection: raw.introspection,
        enabled: raw.enabled,
        audience,
        require_access_token_type: raw.require_access_token_type,
        issuers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_contain_what_they_should() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(Cidr::parse("127.0.0.1").unwrap().contains("127.0.0.1".parse().unwrap()));
        assert!(!Cidr::parse("127.0.0.1").unwrap().contains("127.0.0.2".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nonsense").is_none());
        assert!(!ForwardAuthConfig::default().trusts("127.0.0.1".parse().unwrap()));
    }
}

/// `[[upstreams]]`: an extra upstream chosen by host and/or path prefix.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    pub name: Option<String>,
    /// Base URL, like the top-level `upstream`.
    pub url: String,
    /// Requests for this host (`:authority` or `Host`; port and one trailing dot
    /// ignored, case-insensitive); absent: any host.
    pub host: Option<String>,
    /// Requests whose normalised path is this prefix or below; absent: any path.
    pub path_prefix: Option<String>,
    /// Which token the upstream gets as `Authorization: Bearer`: `access` (default), `id` or `none`.
    pub token: Option<String>,
    /// Which identity headers this upstream gets, of `user`, `email`, `groups` and
    /// `preferred_username`; absent: all of them. Client-sent ones are stripped either way.
    pub identity_headers: Option<Vec<String>>,
    /// Headers added to every request to this upstream (replacing the client's).
    pub set_headers: std::collections::BTreeMap<String, String>,
    /// Rules checked before the `[authz]` rules for this upstream's requests.
    pub rules: Vec<RawRule>,
    /// This upstream routes paths ignoring ASCII case: its `path_prefix`, its
    /// rules and the `[authz]` rules match its requests that way. Absent:
    /// `authz.case_insensitive`.
    pub case_insensitive: Option<bool>,
}

/// Which token an upstream receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenChoice {
    Access,
    Id,
    None,
}
