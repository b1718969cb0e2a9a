//! RP-initiated logout (the end session endpoint).

use hyper::StatusCode;

use super::Shared;
use super::login_page;
use super::web::{self, Params, Request, Response, redirect, with_query};

fn error_page(message: &str) -> Response {
    web::html(StatusCode::BAD_REQUEST, login_page::error_page("Logout failed", message))
}

/// GET with optional `id_token_hint`, `post_logout_redirect_uri`, `state`,
/// `client_id`: ends the session named by the hint (revoking its refresh
/// tokens), then redirects to a registered URI or shows a signed-out page.
pub(super) fn end_session(shared: &Shared, request: &Request) -> Response {
    let params = match Params::from_query(request) {
        Ok(params) => params,
        Err(problem) => return error_page(&problem),
    };
    if params.get("client_id").is_some_and(|client_id| client_id != shared.config.client_id) {
        return error_page("The client_id is not registered with this provider.");
    }
    if let Some(hint) = params.get("id_token_hint") {
        // An expired hint is fine (logout often happens after expiry); a forged one is not.
        let Some(claims) = shared.keys().verify(hint) else {
            return error_page("The id_token_hint was not issued by this provider.");
        };
        let ours = claims.get("iss").and_then(|iss| iss.as_str()) == Some(shared.issuer.as_str())
            && claims.get("aud").and_then(|aud| aud.as_str()) == Some(shared.config.client_id.as_str());
        if !ours {
            return error_page("The id_token_hint was not issued for this client.");
        }
        if let Some(sid) = claims.get("sid").and_then(|sid| sid.as_str()) {
            shared.store().revoke_session(sid);
        }
    }
    let Some(target) = params.get("post_logout_redirect_uri") else {
        return web::html(StatusCode::OK, login_page::signed_out());
    };
    if !shared.config.post_logout_redirect_uris.iter().any(|registered| registered == target) {
        return error_page("The post_logout_redirect_uri is not registered.");
    }
    match params.get("state") {
        Some(state) => redirect(&with_query(target, &[("state", state)])),
        None => redirect(target),
    }
}
