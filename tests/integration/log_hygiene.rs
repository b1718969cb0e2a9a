//! What the gateway logs: after a whole login, a proxied request and a sign-out,
//! the captured logs hold no token, code, verifier, cookie value or client
//! secret, and do hold the access-log line (so the capture itself works).

use bytes::Bytes;
use http::{Method, StatusCode};

use crate::support::{TestWorld, logs, query_params};

/// Whether `text` contains something shaped like a JWT (`eyJ...`.`...`.).
fn contains_jwt(text: &str) -> Option<String> {
    let is_b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(offset) = text[from..].find("eyJ") {
        let start = from + offset;
        let header_len = bytes[start..].iter().take_while(|b| is_b64(**b)).count();
        let after = start + header_len;
        if bytes.get(after) == Some(&b'.') {
            let payload_len = bytes[after + 1..].iter().take_while(|b| is_b64(**b)).count();
            if header_len >= 10 && payload_len >= 10 {
                return Some(text[start..(after + 1 + payload_len).min(text.len())].to_owned());
            }
        }
        from = start + 3;
    }
    None
}

#[tokio::test]
async fn logs_hold_no_secrets_but_do_hold_the_access_line() {
    let client_secret = format!("itest-client-secret-{}", portcullis::random::token::<12>().unwrap());
    let world = TestWorld::builder().confidential(&client_secret, "client_secret_post").start().await;
    let browser = world.browser();

    let pending = browser.start_login("/logs/probe").await;
    let flow = world.open_flow(&pending.flow_cookie_name, &pending.flow_cookie_value);
    let callback = browser.sign_in_at_provider(&pending, "alice", "alice").await;
    let code = query_params(&callback)["code"].clone();
    assert_eq!(browser.finish_login(&callback).await.expect_redirect(), "/logs/probe");
    let session_cookie = browser.session_value();
    let session = world.open_session(&session_cookie);
    let refresh_token = session.refresh_token.clone().expect("the provider issues a refresh token");

    let request_id = format!("itest-logs-{}", portcullis::random::token::<8>().unwrap());
    let reply = browser
        .send(
            Method::GET,
            "/logs/probe",
            &[("accept", "application/json"), ("x-request-id", &request_id)],
            Bytes::new(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-request-id").as_deref(), Some(request_id.as_str()));
    assert_eq!(browser.navigate("/oauth2/sign_out").await.expect_redirect(), "/");

    let captured = logs::captured();
    let secrets = [
        ("authorization code", code.as_str()),
        ("PKCE code verifier", flow.code_verifier.as_str()),
        ("nonce", flow.nonce.as_str()),
        ("flow cookie", pending.flow_cookie_value.as_str()),
        ("session cookie", session_cookie.as_str()),
        ("access token", session.access_token.as_str()),
        ("refresh token", refresh_token.as_str()),
        ("client secret", client_secret.as_str()),
    ];
    for (what, secret) in secrets {
        assert!(secret.len() >= 16, "{what} is long enough to search for");
        assert!(!captured.contains(secret), "the logs contain the {what}");
    }
    // ID and access tokens are JWTs: no JWT-shaped text anywhere in the logs.
    assert_eq!(contains_jwt(&captured), None, "the logs contain a JWT");

    let access_line = captured
        .lines()
        .find(|line| line.contains(&request_id) && line.contains("portcullis::access"))
        .unwrap_or_else(|| panic!("no log line for request {request_id}"));
    assert!(access_line.contains("portcullis::access"), "{access_line}");
    assert!(access_line.contains("path=/logs/probe") && access_line.contains("status=200"), "{access_line}");
    assert!(access_line.contains(&session.sub), "the access line names the user: {access_line}");
    assert!(captured.contains("login_succeeded"), "auth events are captured too");
}

#[test]
fn jwt_detector_finds_jwts() {
    assert!(contains_jwt("token=eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.sig").is_some());
    assert_eq!(contains_jwt("eyJ alone, eyJhbGciOiJFUzI1NiJ9 without a dot"), None);
}
