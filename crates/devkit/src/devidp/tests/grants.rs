//! Tokens after the exchange: userinfo, refresh, revocation, key rotation, logout.

use super::*;

#[tokio::test]
async fn userinfo_answers_for_a_valid_access_token_only() {
    let harness = Harness::public().await;
    let tokens = harness.tokens().await;
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    let reply =
        harness.send(Method::GET, &harness.url(paths::USERINFO), &[("authorization", &bearer)], String::new()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.json()["preferred_username"], "alice");
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");

    let forged = harness
        .send(Method::GET, &harness.url(paths::USERINFO), &[("authorization", "Bearer abc.def.ghi")], String::new())
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);

    harness.clock.advance(301);
    let expired =
        harness.send(Method::GET, &harness.url(paths::USERINFO), &[("authorization", &bearer)], String::new()).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let harness = Harness::public().await;
    let tokens = harness.tokens().await;
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();

    let reply = harness.refresh(&first).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    let refreshed = reply.json();
    let second = refreshed["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    let id = harness.verify(refreshed["id_token"].as_str().unwrap()).await.unwrap();
    assert!(id.get("nonce").is_none());
    assert!(harness.verify(refreshed["access_token"].as_str().unwrap()).await.is_ok());

    // Reusing the rotated-away token is theft: the whole family dies.
    let reuse = harness.refresh(&first).await;
    assert_eq!(reuse.status, StatusCode::BAD_REQUEST);
    assert_eq!(reuse.error(), "invalid_grant");
    assert_eq!(harness.refresh(&second).await.error(), "invalid_grant");
    assert_eq!(harness.provider.token_requests("refresh_token"), 3);
}

#[tokio::test]
async fn without_rotation_the_refresh_token_stays_valid() {
    let harness = Harness::start(config(None, false)).await;
    let tokens = harness.tokens().await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    for _ in 0..2 {
        let reply = harness.refresh(refresh).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert!(reply.json().get("refresh_token").is_none());
    }
    let narrowed =
        harness.token(&[("grant_type", "refresh_token"), ("refresh_token", refresh), ("scope", "openid")]).await;
    assert_eq!(narrowed.json()["scope"], "openid");
    let widened =
        harness.token(&[("grant_type", "refresh_token"), ("refresh_token", refresh), ("scope", "openid admin")]).await;
    assert_eq!(widened.error(), "invalid_scope");
}

#[tokio::test]
async fn revocation_kills_refresh_and_access_tokens() {
    let harness = Harness::public().await;
    let tokens = harness.tokens().await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let access = tokens["access_token"].as_str().unwrap();

    let reply = harness.post_form(paths::REVOKE, &[("token", refresh), ("client_id", CLIENT_ID)], &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(harness.provider.revoked_tokens(), 1);
    assert_eq!(harness.refresh(refresh).await.error(), "invalid_grant");
    // Revoking the refresh token revoked its grant, so the access token is dead too.
    let bearer = format!("Bearer {access}");
    let userinfo =
        harness.send(Method::GET, &harness.url(paths::USERINFO), &[("authorization", &bearer)], String::new()).await;
    assert_eq!(userinfo.status, StatusCode::UNAUTHORIZED);

    // Unknown tokens: still 200, nothing counted.
    let reply = harness.post_form(paths::REVOKE, &[("token", "nonsense"), ("client_id", CLIENT_ID)], &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(harness.provider.revoked_tokens(), 1);

    // Access tokens can be revoked on their own.
    let tokens = harness.tokens().await;
    let access = tokens["access_token"].as_str().unwrap();
    harness.post_form(paths::REVOKE, &[("token", access), ("client_id", CLIENT_ID)], &[]).await;
    assert_eq!(harness.provider.revoked_tokens(), 2);
    let bearer = format!("Bearer {access}");
    let userinfo =
        harness.send(Method::GET, &harness.url(paths::USERINFO), &[("authorization", &bearer)], String::new()).await;
    assert_eq!(userinfo.status, StatusCode::UNAUTHORIZED);
    assert_eq!(harness.refresh(tokens["refresh_token"].as_str().unwrap()).await.status, StatusCode::OK);

    // Revocation needs client authentication like the token endpoint.
    let reply = harness.post_form(paths::REVOKE, &[("token", access), ("client_id", "someone-else")], &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn rotating_the_signing_key_replaces_it_in_the_jwks() {
    let harness = Harness::public().await;
    let before = harness.tokens().await;
    let old_kid = harness.provider.current_kid();
    harness.provider.rotate_signing_key();
    let new_kid = harness.provider.current_kid();
    assert_ne!(old_kid, new_kid);
    let jwks = harness.jwks().await;
    assert_eq!(jwks.keys.len(), 1);
    assert!(jwks.find(&new_kid).is_some());
    assert!(jwks.find(&old_kid).is_none());
    assert!(harness.verify(before["id_token"].as_str().unwrap()).await.is_err());
    let after = harness.tokens().await;
    let header = jsonwebtoken::decode_header(after["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(header.kid.as_deref(), Some(new_kid.as_str()));
    assert!(harness.verify(after["id_token"].as_str().unwrap()).await.is_ok());
}

#[tokio::test]
async fn end_session_redirects_only_to_registered_uris() {
    let harness = Harness::public().await;
    let tokens = harness.tokens().await;
    let id_token = tokens["id_token"].as_str().unwrap();
    let url = web::with_query(
        &harness.url(paths::END_SESSION),
        &[("id_token_hint", id_token), ("post_logout_redirect_uri", LOGGED_OUT_URI), ("state", "bye")],
    );
    let reply = harness.get(&url).await;
    assert_eq!(reply.status, StatusCode::FOUND);
    assert_eq!(reply.location(), format!("{LOGGED_OUT_URI}?state=bye"));
    // Logging out ended the session's grants.
    assert_eq!(harness.refresh(tokens["refresh_token"].as_str().unwrap()).await.error(), "invalid_grant");

    let url = web::with_query(&harness.url(paths::END_SESSION), &[("post_logout_redirect_uri", "http://evil.test/")]);
    let reply = harness.get(&url).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.headers.get(header::LOCATION).is_none());

    let reply = harness.get(&harness.url(paths::END_SESSION)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.contains("Signed out"));
}

#[tokio::test]
async fn backchannel_logout_tokens_verify_against_the_jwks() {
    let harness = Harness::public().await;
    let token = harness.provider.backchannel_logout_token("bob", Some("sid-1")).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[CLIENT_ID]);
    validation.set_issuer(&[harness.provider.issuer()]);
    let jwks = harness.jwks().await;
    let key = DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
    let claims = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap().claims;
    assert_eq!(claims["sid"], "sid-1");
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(claims.get("nonce").is_none());
    assert!(harness.provider.backchannel_logout_token("nobody", None).is_none());
}
