//! Token revocation (RFC 7009): refresh tokens (with their family) and access tokens.

use std::sync::atomic::Ordering;

use hyper::StatusCode;

use super::Shared;
use super::client_auth::authenticate;
use super::userinfo::access_token_claims;
use super::web::{self, Request, Response, json, oauth_error};

/// POST `token=...` with client authentication; 200 whether or not the token was known.
pub(super) async fn handle(shared: &Shared, request: Request) -> Response {
    let (headers, form) = match web::read_form(request).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    if let Err(response) = authenticate(shared, &headers, &form) {
        return response;
    }
    let Some(token) = form.get("token") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "token is required");
    };
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
