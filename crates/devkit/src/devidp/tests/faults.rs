//! Every fault switch does what it says, and only that.

use super::*;

#[tokio::test]
async fn id_token_faults_break_exactly_what_they_say() {
    use jsonwebtoken::errors::ErrorKind;
    let harness = Harness::public().await;
    let faults = harness.provider.faults();

    faults.id_token_wrong_nonce.set(true);
    let id = harness.verify(harness.tokens().await["id_token"].as_str().unwrap()).await.unwrap();
    assert_ne!(id["nonce"], "nonce-456");
    faults.id_token_wrong_nonce.set(false);

    faults.id_token_wrong_audience.set(true);
    let error = harness.verify(harness.tokens().await["id_token"].as_str().unwrap()).await.unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::InvalidAudience);
    faults.id_token_wrong_audience.set(false);

    faults.id_token_wrong_issuer.set(true);
    let error = harness.verify(harness.tokens().await["id_token"].as_str().unwrap()).await.unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::InvalidIssuer);
    faults.id_token_wrong_issuer.set(false);

    faults.id_token_bad_signature.set(true);
    let token = harness.tokens().await["id_token"].as_str().unwrap().to_owned();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(harness.provider.current_kid().as_str()));
    let error = harness.verify(&token).await.unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::InvalidSignature);
    faults.id_token_bad_signature.set(false);

    faults.id_token_expired.set(true);
    let error = harness.verify(harness.tokens().await["id_token"].as_str().unwrap()).await.unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::ExpiredSignature);
    faults.id_token_expired.set(false);

    faults.id_token_alg_none.set(true);
    let token = harness.tokens().await["id_token"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[2], "");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "none");
    assert!(harness.verify(&token).await.is_err());
    faults.id_token_alg_none.set(false);

    // All off again: a clean token.
    let id = harness.verify(harness.tokens().await["id_token"].as_str().unwrap()).await.unwrap();
    assert_eq!(id["nonce"], "nonce-456");
}

#[tokio::test]
async fn endpoint_faults_break_exactly_what_they_say() {
    let harness = Harness::public().await;
    let faults = harness.provider.faults();
    let pkce = pkce();

    faults.authorize_error.set(Some("access_denied"));
    let reply = harness.authorize_get(&harness.authorize_params(&pkce)).await;
    let query = query_of(&reply.location());
    assert_eq!(query["error"], "access_denied");
    assert_eq!(query["state"], "state-123");
    faults.authorize_error.set(None);

    faults.omit_iss_parameter.set(true);
    let reply = harness.login_with(&harness.authorize_params(&pkce), "bob", "bob").await;
    let query = query_of(&reply.location());
    assert!(query.contains_key("code") && !query.contains_key("iss"));
    faults.omit_iss_parameter.set(false);

    faults.token_endpoint_error.set(Some("temporarily_unavailable"));
    let reply = harness.exchange(&query["code"], &pkce.verifier).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error(), "temporarily_unavailable");
    faults.token_endpoint_error.set(None);

    faults.unavailable.set(true);
    for path in [paths::DISCOVERY, paths::JWKS, paths::AUTHORIZE, paths::USERINFO, paths::END_SESSION] {
        assert_eq!(harness.get(&harness.url(path)).await.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
    }
    let reply = harness.refresh("whatever").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(harness.provider.token_requests("refresh_token"), 1);
    faults.unavailable.set(false);
    assert_eq!(harness.get(&harness.url(paths::DISCOVERY)).await.status, StatusCode::OK);
}
