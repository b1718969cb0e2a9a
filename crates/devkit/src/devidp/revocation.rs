//! Token revocation (RFC 7009): refresh tokens (with their family) and access tokens.

use std::sync::atomic::Ordering;

use hyper::StatusCode;

use super::Shared;
use super::client_auth::authenticated_token_form;
use super::userinfo::access_token_claims;
use super::web::{Request, Response, json};

/// POST `token=...` with client authentication; 200 whether or not the token was known.
pub(super) async fn handle(shared: &Shared, request: Request) -> Response {
    let token = match authenticated_token_form(shared, request).await {
        Ok(token) => token,
        Err(response) => return response,
    };
    let token = token.as_str();
    let revoked = if shared.store().revoke_refresh(token) {
        true
    } else {
        access_token_claims(shared, token)
            .and_then(|claims| claims.get("jti")?.as_str().map(str::to_owned))
            .is_some_and(|jti| shared.store().revoke_access_token(&jti))
    };
    if revoked {
        shared.revoked_tokens.fetch_add(1, Ordering::SeqCst);
    }
    json(StatusCode::OK, &serde_json::json!({}))
}
