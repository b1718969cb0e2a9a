//! Client authentication at the token and revocation endpoints: `none` for a
//! public client, `client_secret_basic` or `client_secret_post` otherwise.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper::header::AUTHORIZATION;
use hyper::{HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

use super::Shared;
use super::web::{Params, Response, invalid_client, oauth_error};

/// Credentials from an `Authorization: Basic` header (RFC 6749 §2.3.1: both
/// parts are form-urlencoded before base64).
struct BasicCredentials {
    client_id: String,
    secret: String,
}

fn basic_credentials(headers: &HeaderMap) -> Result<Option<BasicCredentials>, Response> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || invalid_client("malformed Basic credentials");
    let text = value.to_str().map_err(|_| malformed())?;
    let Some((scheme, encoded)) = text.split_once(' ') else {
        return Err(malformed());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(invalid_client("unsupported client authentication scheme"));
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let unescape = |part: &str| {
        form_urlencoded::parse(format!("v={part}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    Ok(Some(BasicCredentials { client_id: unescape(id), secret: unescape(secret) }))
}

fn secret_matches(presented: &str, expected: &str) -> bool {
    bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

/// Reads a `token=...` form from the authenticated client (RFC 7009 §2.1 and
/// RFC 7662 §2.1 share this shape): the token, or the error response.
pub(super) async fn authenticated_token_form(
    shared: &Shared,
    request: super::web::Request,
) -> Result<String, Response> {
    let (headers, form) = super::web::read_form(request).await?;
    authenticate(shared, &headers, &form)?;
    form.get("token")
        .map(str::to_owned)
        .ok_or_else(|| super::web::oauth_error(http::StatusCode::BAD_REQUEST, "invalid_request", "token is required"))
}

/// Authenticates the one registered client, or returns the error response
/// (`invalid_client` 401, or `invalid_request` for ambiguous requests).
pub(super) fn authenticate(shared: &Shared, headers: &HeaderMap, form: &Params) -> Result<(), Response> {
    let registered = &shared.config.client_id;
    let basic = basic_credentials(headers)?;
    let form_client_id = form.get("client_id");

    let Some(expected_secret) = &shared.config.client_secret else {
        // Public client ("none"): any secret, in any place, is refused.
        if basic.is_some() || form.contains("client_secret") {
            return Err(invalid_client("a public client must not send a client secret"));
        }
        return match form_client_id {
            Some(client_id) if client_id == registered => Ok(()),
            Some(_) => Err(invalid_client("unknown client")),
            None => Err(invalid_client("client_id is required")),
        };
    };

    match (basic, form.get("client_secret")) {
        (Some(_), Some(_)) => {
            Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "use exactly one client authentication method"))
        }
        (Some(basic), None) => {
            if form_client_id.is_some_and(|client_id| client_id != basic.client_id) {
                return Err(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "client_id does not match the authenticated client",
                ));
            }
            if basic.client_id == *registered && secret_matches(&basic.secret, expected_secret) {
                Ok(())
            } else {
                Err(invalid_client("client authentication failed"))
            }
        }
        (None, Some(secret)) => {
            if form_client_id == Some(registered.as_str()) && secret_matches(secret, expected_secret) {
                Ok(())
            } else {
                Err(invalid_client("client authentication failed"))
            }
        }
        (None, None) => Err(invalid_client("client authentication is required")),
    }
}
