//! The authorization endpoint: request validation (PKCE S256 required), the
//! login form, credential checks and code issuance.

use hyper::StatusCode;
use subtle::ConstantTimeEq;

use super::login_page;
use super::store::{Authorization, CODE_TTL_SECONDS, PendingCode};
use super::token::is_valid_verifier;
use super::web::{self, Params, Request, Response, random_token, redirect, with_query};
use super::{Shared, paths};

/// A validated authorization request.
#[derive(Debug)]
struct AuthRequest {
    redirect_uri: String,
    response_type: String,
    scope: String,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: String,
    code_challenge_method: String,
}

fn error_page(title: &str, message: &str) -> Response {
    web::html(StatusCode::BAD_REQUEST, login_page::error_page(title, message))
}

/// Sends the browser back to the client with an error (RFC 6749 §4.1.2.1).
fn redirect_error(
    shared: &Shared,
    redirect_uri: &str,
    state: Option<&str>,
    error: &str,
    description: &str,
) -> Response {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(state) = state {
        params.push(("state", state));
    }
    if !shared.faults.omit_iss_parameter.get() {
        params.push(("iss", shared.issuer.as_str()));
    }
    redirect(&with_query(redirect_uri, &params))
}

/// Validates the request; errors about the client or redirect URI are shown as
/// a page (never redirected), all others go back to the registered redirect URI.
fn validate(shared: &Shared, params: Result<Params, String>) -> Result<AuthRequest, Response> {
    let params = params.map_err(|problem| error_page("Invalid request", &problem))?;
    if params.get("client_id") != Some(shared.config.client_id.as_str()) {
        return Err(error_page("Unknown client", "The client_id is missing or not registered with this provider."));
    }
    let Some(redirect_uri) =
        params.get("redirect_uri").filter(|uri| shared.config.redirect_uris.iter().any(|registered| registered == uri))
    else {
        return Err(error_page(
            "Invalid redirect URI",
            "The redirect_uri is missing or does not exactly match a registered one.",
        ));
    };
    let state = params.get("state");
    let fail = |error: &str, description: &str| redirect_error(shared, redirect_uri, state, error, description);

    if let Some(error) = shared.faults.authorize_error.get() {
        return Err(fail(&error, "simulated by the development provider"));
    }
    if params.get("response_type") != Some("code") {
        return Err(fail("unsupported_response_type", "only response_type=code is supported"));
    }
    let scope = params.get("scope").unwrap_or("");
    if !scope.split(' ').any(|item| item == "openid") {
        return Err(fail("invalid_scope", "scope must include openid"));
    }
    let Some(code_challenge) = params.get("code_challenge") else {
        return Err(fail("invalid_request", "code_challenge is required (PKCE with S256)"));
    };
    if !is_valid_verifier(code_challenge) {
        return Err(fail("invalid_request", "code_challenge must be 43-128 unreserved characters"));
    }
    if params.get("code_challenge_method") != Some("S256") {
        return Err(fail("invalid_request", "code_challenge_method must be S256; plain is not supported"));
    }
    Ok(AuthRequest {
        redirect_uri: redirect_uri.to_owned(),
        response_type: "code".to_owned(),
        scope: scope.to_owned(),
        state: state.map(str::to_owned),
        nonce: params.get("nonce").map(str::to_owned),
        code_challenge: code_challenge.to_owned(),
        code_challenge_method: "S256".to_owned(),
    })
}

fn login_form(shared: &Shared, request: &AuthRequest, username: &str, error: Option<&str>) -> Response {
    let mut hidden = vec![
        ("client_id", shared.config.client_id.as_str()),
        ("redirect_uri", request.redirect_uri.as_str()),
        ("response_type", request.response_type.as_str()),
        ("scope", request.scope.as_str()),
        ("code_challenge", request.code_challenge.as_str()),
        ("code_challenge_method", request.code_challenge_method.as_str()),
    ];
    if let Some(state) = &request.state {
        hidden.push(("state", state));
    }
    if let Some(nonce) = &request.nonce {
        hidden.push(("nonce", nonce));
    }
    let page = login_page::login(paths::AUTHORIZE, &shared.config.client_id, &hidden, username, error);
    web::html(StatusCode::OK, page)
}

/// GET: validates the request and shows the login form.
pub(super) fn show(shared: &Shared, request: &Request) -> Response {
    match validate(shared, Params::from_query(request)) {
        Ok(auth_request) => login_form(shared, &auth_request, "", None),
        Err(response) => response,
    }
}

/// POST: the login form came back; checks credentials and redirects with a code.
pub(super) async fn submit(shared: &Shared, request: Request) -> Response {
    let form = match web::read_form(request).await {
        Ok((_, form)) => form,
        Err(_) => return error_page("Invalid request", "The login form could not be read."),
    };
    let username = form.get("username").unwrap_or("").to_owned();
    let password = form.get("password").unwrap_or("").to_owned();
    let auth_request = match validate(shared, Ok(form)) {
        Ok(auth_request) => auth_request,
        Err(response) => return response,
    };
    let Some(user) = find_user(shared, &username, &password) else {
        return login_form(shared, &auth_request, &username, Some("Invalid username or password"));
    };
    let now = shared.config.clock.now();
    let code = random_token(32);
    let pending = PendingCode {
        client_id: shared.config.client_id.clone(),
        redirect_uri: auth_request.redirect_uri.clone(),
        code_challenge: auth_request.code_challenge,
        nonce: auth_request.nonce,
        authorization: Authorization { user, scope: auth_request.scope, sid: random_token(16), auth_time: now },
        expires_at: now.saturating_add(CODE_TTL_SECONDS),
    };
    shared.store().insert_code(code.clone(), pending, now);
    let mut params = vec![("code", code.as_str())];
    if let Some(state) = &auth_request.state {
        params.push(("state", state));
    }
    if !shared.faults.omit_iss_parameter.get() {
        params.push(("iss", shared.issuer.as_str()));
    }
    redirect(&with_query(&auth_request.redirect_uri, &params))
}

/// The index of the user with these credentials; the password comparison does
/// not short-circuit, so timing says nothing about how much of it matched.
fn find_user(shared: &Shared, username: &str, password: &str) -> Option<usize> {
    shared.config.users.iter().position(|user| user.username == username).filter(|index| {
        shared
            .config
            .users
            .get(*index)
            .is_some_and(|user| bool::from(user.password.as_bytes().ct_eq(password.as_bytes())))
    })
}
