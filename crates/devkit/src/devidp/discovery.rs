//! Discovery (`/.well-known/openid-configuration`) and the JWKS.

use serde_json::json;

use super::web::{Response, public_json};
use super::{Shared, paths};

/// The OpenID Provider metadata, honouring the `omit_s256` fault.
pub(super) fn configuration(shared: &Shared) -> Response {
    let auth_methods =
        if shared.is_public_client() { json!(["none"]) } else { json!(["client_secret_basic", "client_secret_post"]) };
    let challenge_methods = if shared.faults.omit_s256.get() { json!(["plain"]) } else { json!(["S256"]) };
    let metadata = json!({
        "issuer": shared.issuer,
        "authorization_endpoint": shared.endpoint(paths::AUTHORIZE),
        "token_endpoint": shared.endpoint(paths::TOKEN),
        "jwks_uri": shared.endpoint(paths::JWKS),
        "userinfo_endpoint": shared.endpoint(paths::USERINFO),
        "revocation_endpoint": shared.endpoint(paths::REVOKE),
        "introspection_endpoint": shared.endpoint(paths::INTROSPECT),
        "end_session_endpoint": shared.endpoint(paths::END_SESSION),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": challenge_methods,
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "scopes_supported": ["openid", "profile", "email", "groups", "offline_access"],
        "claims_supported": [
            "iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "sid",
            "email", "email_verified", "name", "preferred_username", "groups"
        ],
        "authorization_response_iss_parameter_supported": true,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "frontchannel_logout_supported": false,
    });
    public_json(&metadata)
}

/// The JSON Web Key Set: only the current signing key.
pub(super) fn jwks(shared: &Shared) -> Response {
    let jwk = shared.keys().current().jwk();
    public_json(&json!({ "keys": [jwk] }))
}
