//! OpenID Provider metadata (OpenID Connect Discovery 1.0 §3 and §4.3):
//! fetched from `{issuer}/.well-known/openid-configuration`, and refused
//! unless it is safe to use with this client.

use serde::Deserialize;
use url::Url;

use super::http_client::{IdpCall, IdpHttpClient, IdpHttpError};
use crate::config::is_loopback_host;

/// The parts of the provider's metadata the gateway uses.
#[derive(Clone, Debug, Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// RFC 7662 token introspection, for opaque bearer tokens.
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// RFC 9207: the provider sends `iss` in authorization responses.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

/// Discovery failed or produced metadata that must not be used.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("discovery request failed: {0}")]
    Http(#[from] IdpHttpError),
    #[error("discovery answered HTTP {0}")]
    Status(u16),
    #[error("discovery document is not valid JSON metadata: {0}")]
    Json(String),
    #[error("the provider's issuer {found:?} does not match oidc.issuer {expected:?} exactly")]
    IssuerMismatch { expected: String, found: String },
    #[error("the provider does not support PKCE S256 (code_challenge_methods_supported = {0:?})")]
    NoS256(Vec<String>),
    #[error("metadata field {0} must be an https URL (http only for a loopback provider)")]
    InsecureEndpoint(&'static str),
}

impl DiscoveryError {
    /// Whether retrying can help (network trouble) or the provider is unusable
    /// as configured, so the gateway must not start.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::IssuerMismatch { .. } | Self::NoS256(_) | Self::InsecureEndpoint(_))
    }
}

/// The discovery URL for an issuer (OIDC Discovery §4: the issuer with any
/// trailing slash removed, then `/.well-known/openid-configuration`).
pub fn discovery_url(issuer: &str) -> String {
    format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'))
}

/// Fetches and checks the metadata of `issuer`.
pub async fn discover(client: &IdpHttpClient, issuer: &str) -> Result<ProviderMetadata, DiscoveryError> {
    let response = client.get(IdpCall::Discovery, &discovery_url(issuer)).await?;
    if !response.status.is_success() {
        return Err(DiscoveryError::Status(response.status.as_u16()));
    }
    let metadata: ProviderMetadata =
        serde_json::from_slice(&response.body).map_err(|error| DiscoveryError::Json(error.to_string()))?;
    check(metadata, issuer)
}

/// The checks that make metadata usable, separated for tests.
pub fn check(metadata: ProviderMetadata, issuer: &str) -> Result<ProviderMetadata, DiscoveryError> {
    // OIDC Discovery §4.3: the issuer must be identical, or tokens from a
    // different issuer could be accepted.
    if metadata.issuer != issuer {
        return Err(DiscoveryError::IssuerMismatch { expected: issuer.to_owned(), found: metadata.issuer });
    }
    // RFC 9700 §2.1.1: a provider that lists its PKCE methods must offer S256.
    // A provider that does not list them is tried; it must still honour PKCE.
    if let Some(methods) = &metadata.code_challenge_methods_supported
        && !methods.iter().any(|method| method == "S256")
    {
        return Err(DiscoveryError::NoS256(methods.clone()));
    }
    let issuer_is_loopback = Url::parse(issuer).map(|url| is_loopback_host(&url)).unwrap_or(false);
    let endpoints = [
        ("authorization_endpoint", Some(&metadata.authorization_endpoint)),
        ("token_endpoint", Some(&metadata.token_endpoint)),
        ("jwks_uri", Some(&metadata.jwks_uri)),
        ("revocation_endpoint", metadata.revocation_endpoint.as_ref()),
        ("introspection_endpoint", metadata.introspection_endpoint.as_ref()),
        ("end_session_endpoint", metadata.end_session_endpoint.as_ref()),
    ];
    for (name, value) in endpoints {
        if let Some(value) = value {
            let url = Url::parse(value).map_err(|_| DiscoveryError::InsecureEndpoint(name))?;
            let secure = url.scheme() == "https" || (url.scheme() == "http" && issuer_is_loopback);
            if !secure {
                return Err(DiscoveryError::InsecureEndpoint(name));
            }
        }
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(issuer: &str, methods: Option<Vec<&str>>) -> ProviderMetadata {
        ProviderMetadata {
            issuer: issuer.to_owned(),
            authorization_endpoint: format!("{issuer}/authorize"),
            token_endpoint: format!("{issuer}/token"),
            jwks_uri: format!("{issuer}/jwks"),
            userinfo_endpoint: None,
            revocation_endpoint: None,
            introspection_endpoint: None,
            end_session_endpoint: None,
            code_challenge_methods_supported: methods.map(|m| m.into_iter().map(str::to_owned).collect()),
            authorization_response_iss_parameter_supported: false,
        }
    }

    #[test]
    fn issuer_must_match_exactly() {
        let found = metadata("https://idp.example/", None);
        assert!(matches!(check(found, "https://idp.example"), Err(DiscoveryError::IssuerMismatch { .. })));
    }

    #[test]
    fn plain_only_providers_are_refused() {
        let found = metadata("https://idp.example", Some(vec!["plain"]));
        let error = check(found, "https://idp.example").unwrap_err();
        assert!(error.is_fatal());
        assert!(check(metadata("https://idp.example", Some(vec!["plain", "S256"])), "https://idp.example").is_ok());
    }

    #[test]
    fn http_endpoints_only_for_loopback() {
        assert!(check(metadata("http://127.0.0.1:9", None), "http://127.0.0.1:9").is_ok());
        let mut found = metadata("https://idp.example", None);
        found.token_endpoint = "http://idp.example/token".to_owned();
        assert!(matches!(check(found, "https://idp.example"), Err(DiscoveryError::InsecureEndpoint("token_endpoint"))));
    }
}
