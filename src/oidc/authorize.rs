//! The authorization request (RFC 6749 §4.1.1 + RFC 7636 §4.3 + OIDC Core
//! §3.1.2.1): every parameter the provider needs, built once per login.

use url::Url;

use super::pkce::{CHALLENGE_METHOD, S256Challenge};
use crate::config::OidcConfig;

/// The per-login values that go into the authorization URL.
#[derive(Debug)]
pub struct AuthorizationRequest<'a> {
    pub state: &'a str,
    pub nonce: &'a str,
    pub challenge: &'a S256Challenge,
}

/// The provider's authorization URL with our parameters appended to any it already has.
pub fn authorization_url(
    endpoint: &str,
    oidc: &OidcConfig,
    request: &AuthorizationRequest<'_>,
) -> Result<Url, url::ParseError> {
    let mut url = Url::parse(endpoint)?;
    let scope = oidc.scopes.join(" ");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &oidc.client_id)
        .append_pair("redirect_uri", oidc.redirect_url.as_str())
        .append_pair("scope", &scope)
        .append_pair("state", request.state)
        .append_pair("nonce", request.nonce)
        .append_pair("code_challenge", request.challenge.as_str())
        .append_pair("code_challenge_method", CHALLENGE_METHOD);
    Ok(url)
}
