//! OpenID Connect client: discovery, keys, PKCE, the authorization request,
//! the token endpoint, ID-token and access-token validation. Everything that talks to the
//! provider lives here, off the authenticated-request hot path.

pub mod access_token;
pub mod authorize;
pub mod discovery;
pub mod http_client;
pub mod id_token;
pub mod introspection;
pub mod jwks;
pub mod logout_token;
pub mod pkce;
pub mod provider;
pub mod token;
