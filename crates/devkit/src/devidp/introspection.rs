//! Token introspection (RFC 7662) for opaque access tokens minted on request
//! by tests ([`super::DevProvider::mint_opaque_access_token`]); every other
//! token is reported inactive.

use std::sync::atomic::Ordering;

use hyper::StatusCode;
use serde_json::json;

use super::Shared;
use super::client_auth::authenticated_token_form;
use super::web::{self, Request, Response};

/// POST `token=...` with client authentication.
pub(super) async fn handle(shared: &Shared, request: Request) -> Response {
    shared.introspections.fetch_add(1, Ordering::SeqCst);
    let token = match authenticated_token_form(shared, request).await {
        Ok(token) => token,
        Err(response) => return response,
    };
    let token = token.as_str();
    let found = shared.opaque_tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(token).cloned();
    let now = shared.config.clock.now();
    match found {
        Some(claims) if claims.get("exp").and_then(serde_json::Value::as_i64).is_some_and(|exp| exp > now) => {
            web::json(StatusCode::OK, &claims)
        }
        _ => web::json(StatusCode::OK, &json!({ "active": false })),
    }
}
