//! The authorization endpoint: login page, credentials, request validation.

use super::*;

#[tokio::test]
async fn login_page_is_a_tidy_escaped_form() {
    let harness = Harness::public().await;
    let pkce = pkce();
    let mut params = harness.authorize_params(&pkce);
    params.retain(|(name, _)| *name != "state");
    params.push(("state", "\"><script>alert(1)</script>"));
    let page = harness.authorize_get(&params).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    assert!(page.body.contains("Portcullis development provider"));
    assert!(page.body.contains("development only"));
    assert!(page.body.contains("name=\"username\""));
    assert!(page.body.contains("name=\"password\""));
    assert!(page.body.contains("<button type=\"submit\">Sign in</button>"));
    assert!(page.body.contains("method=\"post\""));
    assert!(!page.body.contains("<script>"));
    assert!(page.body.contains("&quot;&gt;&lt;script&gt;"));
}

#[tokio::test]
async fn wrong_password_shows_the_form_again() {
    let harness = Harness::public().await;
    let pkce = pkce();
    let reply = harness.login_with(&harness.authorize_params(&pkce), "alice", "not-alice").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers.get(header::LOCATION).is_none());
    assert!(reply.body.contains("Invalid username or password"));
    assert!(reply.body.contains("name=\"password\""));
    let unknown = harness.login_with(&harness.authorize_params(&pkce), "mallory", "mallory").await;
    assert!(unknown.body.contains("Invalid username or password"));
}

#[tokio::test]
async fn authorize_rejects_plain_and_missing_pkce_by_redirecting() {
    let harness = Harness::public().await;
    let pkce = pkce();
    for method in [Some("plain"), None] {
        let mut params = harness.authorize_params(&pkce);
        params.retain(|(name, _)| *name != "code_challenge_method");
        if let Some(method) = method {
            params.push(("code_challenge_method", method));
        }
        let reply = harness.authorize_get(&params).await;
        assert_eq!(reply.status, StatusCode::FOUND, "{method:?}");
        let query = query_of(&reply.location());
        assert_eq!(query["error"], "invalid_request");
        assert!(query["error_description"].contains("S256"));
        assert_eq!(query["state"], "state-123");
        assert!(!query.contains_key("code"));
    }
    let mut params = harness.authorize_params(&pkce);
    params.retain(|(name, _)| *name != "code_challenge");
    let query = query_of(&harness.authorize_get(&params).await.location());
    assert_eq!(query["error"], "invalid_request");

    let mut params = harness.authorize_params(&pkce);
    params.retain(|(name, _)| *name != "code_challenge");
    params.push(("code_challenge", "too-short"));
    let query = query_of(&harness.authorize_get(&params).await.location());
    assert_eq!(query["error"], "invalid_request");

    let mut params = harness.authorize_params(&pkce);
    params.retain(|(name, _)| *name != "scope");
    params.push(("scope", "profile"));
    let query = query_of(&harness.authorize_get(&params).await.location());
    assert_eq!(query["error"], "invalid_scope");
}

#[tokio::test]
async fn authorize_never_redirects_to_an_unregistered_uri() {
    let harness = Harness::public().await;
    let pkce = pkce();
    for (name, value) in [("redirect_uri", "http://127.0.0.1:9/callback/evil"), ("client_id", "someone-else")] {
        let mut params = harness.authorize_params(&pkce);
        params.retain(|(existing, _)| *existing != name);
        params.push((name, value));
        let reply = harness.authorize_get(&params).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{name}");
        assert!(reply.headers.get(header::LOCATION).is_none());
        assert!(reply.body.contains("<h1>"));
    }
    let mut params = harness.authorize_params(&pkce);
    params.retain(|(name, _)| *name != "redirect_uri");
    let reply = harness.authorize_get(&params).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.headers.get(header::LOCATION).is_none());
}
