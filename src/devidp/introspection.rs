//! Token introspection (RFC 7662) for opaque access tokens minted on request
//! by tests ([`super::DevProvider::mint_opaque_access_token`]); every other
//! token is reported inactive.

use std::sync::atomic::Ordering;

use hyper::StatusCode;
use serde_json::json;

use super::Shared;
use super::client_auth::authenticate;
use super::web::{self, Request, Response, oauth_error};

/// POST `token=...` with client authentication.
pub(super) async fn handle(shared: &Shared, request: Request) -> Response {
    shared.introspections.fetch_add(1, Ordering::SeqCst);
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
    let found = shared.opaque_tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(token).cloned();
    let now = shared.config.clock.now();
    match found {
        Some(claims) if claims.get("exp").and_then(serde_json::Value::as_i64).is_some_and(|exp| exp > now) => {
            web::json(StatusCode::OK, &claims)
        }
        _ => web::json(StatusCode::OK, &json!({ "active": false })),
    }
}
