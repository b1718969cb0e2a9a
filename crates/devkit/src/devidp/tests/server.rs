//! Binding, discovery, JWKS, routing and shutdown.

use super::*;

#[tokio::test]
async fn refuses_to_bind_outside_loopback() {
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let error = DevProvider::start(listener, config(None, true)).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn discovery_advertises_every_endpoint() {
    let harness = Harness::public().await;
    assert!(harness.provider.issuer().starts_with("http://127.0.0.1:"));
    assert!(!harness.provider.issuer().ends_with('/'));
    let reply = harness.get(&harness.url(paths::DISCOVERY)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let metadata = reply.json();
    assert_eq!(metadata["issuer"], harness.provider.issuer());
    for (field, path) in [
        ("authorization_endpoint", paths::AUTHORIZE),
        ("token_endpoint", paths::TOKEN),
        ("jwks_uri", paths::JWKS),
        ("userinfo_endpoint", paths::USERINFO),
        ("revocation_endpoint", paths::REVOKE),
        ("end_session_endpoint", paths::END_SESSION),
    ] {
        assert_eq!(metadata[field], harness.url(path), "{field}");
    }
    assert_eq!(metadata["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(metadata["token_endpoint_auth_methods_supported"], serde_json::json!(["none"]));
    assert_eq!(metadata["id_token_signing_alg_values_supported"], serde_json::json!(["ES256"]));
    assert_eq!(metadata["authorization_response_iss_parameter_supported"], true);
    assert_eq!(metadata["backchannel_logout_supported"], true);

    harness.provider.faults().omit_s256.set(true);
    let metadata = harness.get(&harness.url(paths::DISCOVERY)).await.json();
    assert_eq!(metadata["code_challenge_methods_supported"], serde_json::json!(["plain"]));

    let confidential = Harness::start(config(Some(SECRET), true)).await;
    let metadata = confidential.get(&confidential.url(paths::DISCOVERY)).await.json();
    assert_eq!(
        metadata["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );
}

#[tokio::test]
async fn jwks_publishes_the_p256_key() {
    let harness = Harness::public().await;
    let reply = harness.get(&harness.url(paths::JWKS)).await;
    let jwks = reply.json();
    let key = &jwks["keys"][0];
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["alg"], "ES256");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kid"], harness.provider.current_kid());
    for coordinate in ["x", "y"] {
        let bytes = URL_SAFE_NO_PAD.decode(key[coordinate].as_str().unwrap()).unwrap();
        assert_eq!(bytes.len(), 32);
    }
}

#[tokio::test]
async fn unknown_paths_are_404_and_dropping_stops_the_server() {
    let harness = Harness::public().await;
    assert_eq!(harness.get(&harness.url("/nope")).await.status, StatusCode::NOT_FOUND);
    let addr = harness.provider.issuer().trim_start_matches("http://").to_owned();
    drop(harness);
    // The accept loop is gone: connecting fails (bounded retries while the task is aborted).
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused);
}
