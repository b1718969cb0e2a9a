//! `[bearer]`, validated: which access tokens API clients may present.

use super::raw::RawBearer;
use super::{ConfigError, invalid};

/// `[bearer]`, validated.
#[derive(Debug, Clone)]
pub struct BearerConfig {
    pub enabled: bool,
    /// Required `aud` of tokens from `oidc.issuer`.
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

/// Validates `[bearer]` against the `[oidc]` client; errors name the key.
pub(super) fn validate(raw: &RawBearer, providers: &[super::OidcConfig]) -> Result<BearerConfig, ConfigError> {
    let confidential =
        |provider: &super::OidcConfig| matches!(provider.credentials, super::ClientCredentials::Confidential { .. });
    if raw.introspection && !providers.iter().any(confidential) {
        return Err(invalid("bearer.introspection", "needs a confidential client: set oidc.client_secret"));
    }
    use jsonwebtoken::Algorithm;
    let default_algorithms =
        providers.first().map(|provider| provider.id_token_algorithms.as_slice()).unwrap_or_default();
    let mut issuers = Vec::with_capacity(raw.issuers.len());
    for (index, issuer) in raw.issuers.iter().enumerate() {
        let key = |field: &str| format!("bearer.issuers[{index}].{field}");
        let url = url::Url::parse(&issuer.issuer).map_err(|_| invalid(key("issuer"), "must be an absolute URL"))?;
        if url.scheme() != "https" && !(url.scheme() == "http" && super::is_loopback_host(&url)) {
            return Err(invalid(key("issuer"), "must be https (http only on loopback)"));
        }
        if issuer.audience.is_empty() {
            return Err(invalid(key("audience"), "is required"));
        }
        let mut algorithms = Vec::new();
        for (algorithm_index, name) in issuer.algorithms.iter().enumerate() {
            let at = key(&format!("algorithms[{algorithm_index}]"));
            let algorithm: Algorithm = name.parse().map_err(|_| invalid(&at, format!("unknown algorithm {name:?}")))?;
            if matches!(algorithm, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                return Err(invalid(at, "HMAC algorithms are not accepted"));
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
        require_access_token_type: raw.require_access_token_type,
        issuers,
    })
}
