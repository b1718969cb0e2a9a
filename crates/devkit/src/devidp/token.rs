//! The token endpoint: `authorization_code` (with PKCE S256) and `refresh_token` grants.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Shared;
use super::client_auth::authenticate;
use super::mint::{Issued, issue};
use super::store::{Authorization, FamilyId, RefreshLookup};
use super::web::{self, Params, Request, Response, json, oauth_error, random_token};

/// Handles a POST to the token endpoint.
pub(super) async fn handle(shared: &Shared, request: Request) -> Response {
    let form = web::read_form(request).await;
    let grant_type = match &form {
        Ok((_, params)) => params.get("grant_type").unwrap_or(""),
        Err(_) => "",
    };
    shared.count_token_request(grant_type);
    shared.faults.token_gate.pass().await;
    if shared.faults.unavailable.get() {
        return web::unavailable();
    }
    let (headers, form) = match form {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    if shared.faults.token_endpoint_rate_limited.get() {
        let mut response = json(StatusCode::TOO_MANY_REQUESTS, &json!({}));
        response.headers_mut().insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from_static("1"));
        return response;
    }
    if let Some(error) = shared.faults.token_endpoint_error.get() {
        return json(StatusCode::BAD_REQUEST, &json!({ "error": error }));
    }
    if let Err(response) = authenticate(shared, &headers, &form) {
        return response;
    }
    match form.get("grant_type") {
        Some("authorization_code") => authorization_code(shared, &form),
        Some("refresh_token") => refresh_token(shared, &form),
        Some(_) => bad_request("unsupported_grant_type", "only authorization_code and refresh_token"),
        None => bad_request("invalid_request", "grant_type is required"),
    }
}

fn bad_request(error: &str, description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, error, description)
}

/// RFC 7636 §4.1: 43-128 characters from the unreserved set.
pub(super) fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~'))
}

fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

fn authorization_code(shared: &Shared, form: &Params) -> Response {
    let Some(code) = form.get("code") else {
        return bad_request("invalid_request", "code is required");
    };
    let Some(verifier) = form.get("code_verifier") else {
        return bad_request("invalid_request", "code_verifier is required (PKCE)");
    };
    let now = shared.config.clock.now();
    // Taking the code out first makes it single use, whatever happens next.
    let Some(pending) = shared.store().redeem_code(code) else {
        return bad_request("invalid_grant", "the code is unknown, expired or already used");
    };
    if pending.expires_at <= now {
        return bad_request("invalid_grant", "the code has expired");
    }
    if pending.client_id != shared.config.client_id {
        return bad_request("invalid_grant", "the code was issued to another client");
    }
    if form.get("redirect_uri") != Some(pending.redirect_uri.as_str()) {
        return bad_request("invalid_grant", "redirect_uri differs from the authorization request");
    }
    if !is_valid_verifier(verifier) || !pkce_matches(verifier, &pending.code_challenge) {
        return bad_request("invalid_grant", "code_verifier does not match the code_challenge");
    }
    let refresh = random_token(32);
    let family = shared.store().start_family(code, pending.authorization.clone(), refresh.clone());
    respond(shared, family, &pending.authorization, pending.nonce.as_deref(), Some(refresh))
}

fn refresh_token(shared: &Shared, form: &Params) -> Response {
    let Some(presented) = form.get("refresh_token") else {
        return bad_request("invalid_request", "refresh_token is required");
    };
    let lookup = shared.store().lookup_refresh(presented);
    let RefreshLookup::Valid(family, mut authorization) = lookup else {
        return bad_request("invalid_grant", "the refresh token is invalid, revoked or reused");
    };
    if let Some(requested) = form.get("scope") {
        let granted: Vec<&str> = authorization.scope.split(' ').collect();
        if !requested.split(' ').all(|scope| granted.contains(&scope)) {
            return bad_request("invalid_scope", "the requested scope exceeds the original grant");
        }
        authorization.scope = requested.to_owned();
    }
    let rotated = if shared.config.rotate_refresh_tokens {
        let next = random_token(32);
        shared.store().rotate_refresh(presented, next.clone(), family);
        Some(next)
    } else {
        None
    };
    respond(shared, family, &authorization, None, rotated)
}

fn respond(
    shared: &Shared,
    family: FamilyId,
    authorization: &Authorization,
    nonce: Option<&str>,
    refresh_token: Option<String>,
) -> Response {
    let Ok(Issued { access_token, id_token, expires_in }) = issue(shared, family, authorization, nonce) else {
        return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "could not sign tokens");
    };
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "id_token": id_token,
        "scope": authorization.scope,
    });
    if let (Some(refresh_token), Some(object)) = (refresh_token, body.as_object_mut()) {
        object.insert("refresh_token".into(), json!(refresh_token));
    }
    let mut response = json(StatusCode::OK, &body);
    response.headers_mut().insert(hyper::header::PRAGMA, hyper::header::HeaderValue::from_static("no-cache"));
    response
}
