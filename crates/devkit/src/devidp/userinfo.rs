//! The userinfo endpoint and the access token checks it shares with revocation.

use hyper::StatusCode;
use hyper::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};

use super::mint::{profile_claims, subject};
use super::web::{Request, Response, json};
use super::{DevUser, Shared};

/// A verified, unexpired, unrevoked access token's user.
fn bearer_user<'a>(shared: &'a Shared, request: &Request) -> Option<&'a DevUser> {
    let header = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let claims = access_token_claims(shared, token.trim())?;
    if claims.get("exp")?.as_i64()? <= shared.config.clock.now() {
        return None;
    }
    let jti = claims.get("jti")?.as_str()?;
    if shared.store().access_token_revoked(jti) {
        return None;
    }
    let sub = claims.get("sub")?.as_str()?;
    shared.config.users.iter().find(|user| subject(user) == sub)
}

/// The claims of an access token we signed for our client (expiry not checked).
pub(super) fn access_token_claims(shared: &Shared, token: &str) -> Option<serde_json::Value> {
    let claims = shared.keys().verify(token)?;
    let ours = claims.get("iss")?.as_str()? == shared.issuer
        && claims.get("aud")?.as_str()? == shared.config.client_id
        && claims.get("client_id")?.as_str()? == shared.config.client_id;
    ours.then_some(claims)
}

/// GET/POST userinfo with `Authorization: Bearer <access token>`.
pub(super) fn handle(shared: &Shared, request: &Request) -> Response {
    let Some(user) = bearer_user(shared, request) else {
        let mut response = json(StatusCode::UNAUTHORIZED, &serde_json::json!({ "error": "invalid_token" }));
        response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
        return response;
    };
    json(StatusCode::OK, &serde_json::Value::Object(profile_claims(user)))
}
