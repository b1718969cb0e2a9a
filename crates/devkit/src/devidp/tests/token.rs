//! The code exchange: PKCE, single-use codes, redirect URI, client authentication.

use super::*;

#[tokio::test]
async fn code_flow_issues_tokens_that_verify_against_the_jwks() {
    let harness = Harness::public().await;
    let pkce = pkce();
    let reply = harness.login_with(&harness.authorize_params(&pkce), "alice", "alice").await;
    assert_eq!(reply.status, StatusCode::FOUND);
    let location = reply.location();
    assert!(location.starts_with(&format!("{REDIRECT_URI}?")));
    let query = query_of(&location);
    assert_eq!(query["state"], "state-123");
    assert_eq!(query["iss"], harness.provider.issuer());
    assert!(URL_SAFE_NO_PAD.decode(&query["code"]).unwrap().len() >= 16);

    let reply = harness.exchange(&query["code"], &pkce.verifier).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    let tokens = reply.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 300);
    assert_eq!(tokens["scope"], "openid profile email");
    assert!(tokens["refresh_token"].is_string());

    let id = harness.verify(tokens["id_token"].as_str().unwrap()).await.unwrap();
    assert_eq!(id["nonce"], "nonce-456");
    assert_eq!(id["aud"], CLIENT_ID);
    assert_eq!(id["azp"], CLIENT_ID);
    assert_eq!(id["iss"], harness.provider.issuer());
    assert_eq!(id["email"], "alice@example.test");
    assert_eq!(id["email_verified"], true);
    assert_eq!(id["preferred_username"], "alice");
    assert_eq!(id["groups"], serde_json::json!(["admins", "staff"]));
    assert!(id["sid"].is_string() && id["auth_time"].is_i64());
    assert_eq!(id["exp"].as_i64().unwrap() - id["iat"].as_i64().unwrap(), 300);

    let access = harness.verify(tokens["access_token"].as_str().unwrap()).await.unwrap();
    assert_eq!(access["sub"], id["sub"]);
    assert_eq!(access["client_id"], CLIENT_ID);
    assert_eq!(access["scope"], "openid profile email");
    assert!(access["jti"].is_string());

    // A second login of the same user keeps the same subject.
    let again = harness.tokens().await;
    let again = harness.verify(again["id_token"].as_str().unwrap()).await.unwrap();
    assert_eq!(again["sub"], id["sub"]);
    assert_ne!(again["sid"], id["sid"]);
    assert_eq!(harness.provider.token_requests("authorization_code"), 2);
    assert_eq!(harness.provider.token_requests("refresh_token"), 0);
}

#[tokio::test]
async fn pkce_mismatch_is_rejected() {
    let harness = Harness::public().await;
    let pkce = pkce();
    let code = harness.code(&pkce).await;
    let other = self::pkce();
    let reply = harness.exchange(&code, &other.verifier).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error(), "invalid_grant");
    // Sending the challenge itself as the verifier ("plain") fails too.
    let code = harness.code(&pkce).await;
    let reply = harness.exchange(&code, &pkce.challenge).await;
    assert_eq!(reply.error(), "invalid_grant");
    let code = harness.code(&pkce).await;
    let reply =
        harness.token(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT_URI)]).await;
    assert_eq!(reply.error(), "invalid_request");
}

#[tokio::test]
async fn codes_are_single_use_and_short_lived() {
    let harness = Harness::public().await;
    let pkce = pkce();
    let code = harness.code(&pkce).await;
    let first = harness.exchange(&code, &pkce.verifier).await;
    assert_eq!(first.status, StatusCode::OK);
    let refresh = first.json()["refresh_token"].as_str().unwrap().to_owned();
    let second = harness.exchange(&code, &pkce.verifier).await;
    assert_eq!(second.status, StatusCode::BAD_REQUEST);
    assert_eq!(second.error(), "invalid_grant");
    // The replay also revoked what the code produced.
    assert_eq!(harness.refresh(&refresh).await.error(), "invalid_grant");

    let code = harness.code(&pkce).await;
    harness.clock.advance(61);
    let late = harness.exchange(&code, &pkce.verifier).await;
    assert_eq!(late.error(), "invalid_grant");
}

#[tokio::test]
async fn redirect_uri_must_match_at_the_token_endpoint() {
    let harness = Harness::public().await;
    let pkce = pkce();
    for redirect_uri in [Some("http://127.0.0.1:9/other"), None] {
        let code = harness.code(&pkce).await;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("code_verifier", pkce.verifier.as_str()),
        ];
        if let Some(uri) = redirect_uri {
            form.push(("redirect_uri", uri));
        }
        let reply = harness.token(&form).await;
        assert_eq!(reply.error(), "invalid_grant", "{redirect_uri:?}");
    }
}

#[tokio::test]
async fn a_public_client_may_not_send_a_secret() {
    let harness = Harness::public().await;
    let pkce = pkce();
    let code = harness.code(&pkce).await;
    let reply = harness
        .post_form(
            paths::TOKEN,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", &pkce.verifier),
                ("client_id", CLIENT_ID),
                ("client_secret", "anything"),
            ],
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error(), "invalid_client");

    let basic = format!("Basic {}", STANDARD.encode(format!("{CLIENT_ID}:anything")));
    let code = harness.code(&pkce).await;
    let reply = harness
        .post_form(
            paths::TOKEN,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", &pkce.verifier),
            ],
            &[("authorization", &basic)],
        )
        .await;
    assert_eq!(reply.error(), "invalid_client");
}

#[tokio::test]
async fn a_confidential_client_authenticates_with_basic_or_post() {
    let harness = Harness::start(config(Some(SECRET), true)).await;
    // client_secret_basic (the harness default).
    let tokens = harness.tokens().await;
    assert!(tokens["id_token"].is_string());

    let pkce = pkce();
    let post = |code: String, secret: &'static str| {
        let verifier = pkce.verifier.clone();
        let harness = &harness;
        async move {
            harness
                .post_form(
                    paths::TOKEN,
                    &[
                        ("grant_type", "authorization_code"),
                        ("code", &code),
                        ("redirect_uri", REDIRECT_URI),
                        ("code_verifier", &verifier),
                        ("client_id", CLIENT_ID),
                        ("client_secret", secret),
                    ],
                    &[],
                )
                .await
        }
    };
    let good = post(harness.code(&pkce).await, SECRET).await;
    assert_eq!(good.status, StatusCode::OK, "{}", good.body);
    let bad = post(harness.code(&pkce).await, "wrong").await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad.error(), "invalid_client");

    let code = harness.code(&pkce).await;
    let missing = harness
        .post_form(
            paths::TOKEN,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", &pkce.verifier),
                ("client_id", CLIENT_ID),
            ],
            &[],
        )
        .await;
    assert_eq!(missing.error(), "invalid_client");
}
