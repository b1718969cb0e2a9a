//! The whole login against an OpenID provider nobody here wrote: the npm
//! package `oauth2-mock-server` (started by tests/e2e/mock-idp.mjs, which adds
//! PKCE S256 enforcement, single-use codes and redirect_uri binding through the
//! package's public hooks). Proves the gateway interoperates beyond the
//! in-repo provider: RS256 keys, its discovery document, its token responses.

use http::StatusCode;

use crate::support::multi::{MOCK_CLIENT_ID, MockProvider};
use crate::support::{TestWorld, query_params, with_param};

async fn world_for(mock: &MockProvider) -> TestWorld {
    let issuer = mock.issuer.clone();
    TestWorld::builder()
        .tweak(move |raw| {
            raw.oidc.issuer = Some(issuer.clone());
            raw.oidc.client_id = Some(MOCK_CLIENT_ID.to_owned());
        })
        .start()
        .await
}

#[tokio::test]
async fn login_through_oauth2_mock_server_reaches_the_upstream_with_its_token() {
    let mock = MockProvider::start().await;
    let world = world_for(&mock).await;
    let browser = world.browser();

    let authorize = browser.navigate("/reports/q3?view=full").await.expect_redirect();
    assert!(authorize.starts_with(&format!("{}/authorize?", mock.issuer)), "{authorize}");
    let params = query_params(&authorize);
    assert_eq!(params.get("code_challenge_method").map(String::as_str), Some("S256"));
    assert_eq!(params.get("client_id").map(String::as_str), Some(MOCK_CLIENT_ID));

    // The mock approves at once and sends the browser back with a code.
    let callback = browser.navigate(&authorize).await.expect_redirect();
    assert!(callback.contains("/oauth2/callback?"), "{callback}");
    let landing = browser.navigate(&callback).await.expect_redirect();
    assert_eq!(landing, "/reports/q3?view=full");

    let echoed = browser.api_get("/reports/q3?view=full").await;
    assert_eq!(echoed.status, StatusCode::OK, "{}", echoed.body);
    let seen: serde_json::Value = serde_json::from_str(&echoed.body).expect("echo JSON");
    let header = |name: &str| seen["headers"][name][0].as_str().unwrap_or_default().to_owned();
    let session = world.open_session(&browser.session_value());
    assert_eq!(header("authorization"), format!("Bearer {}", session.access_token));
    assert_eq!(header("x-forwarded-user"), "mock-user-1");
    assert_eq!(header("x-forwarded-email"), "mock.user@example.test");
    assert_eq!(header("x-forwarded-preferred-username"), "mock.user");
}

#[tokio::test]
async fn a_callback_with_a_foreign_state_is_refused_before_the_mock_is_asked() {
    let mock = MockProvider::start().await;
    let world = world_for(&mock).await;
    let browser = world.browser();
    let authorize = browser.navigate("/").await.expect_redirect();
    let callback = browser.navigate(&authorize).await.expect_redirect();
    let forged = with_param(&callback, "state", "AAAAAAAAAAAAAAAAAAAAAA");
    let reply = browser.navigate(&forged).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(browser.cookie("_portcullis").is_none(), "no session from a forged state");
    // The genuine callback still completes: the forged one consumed nothing.
    assert_eq!(browser.navigate(&callback).await.expect_redirect(), "/");
    assert_eq!(browser.api_get("/").await.status, StatusCode::OK);
}
