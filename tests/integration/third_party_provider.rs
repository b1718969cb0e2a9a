//! The whole login against an OpenID provider nobody here wrote: the npm
//! package `oauth2-mock-server` (started by tests/e2e/mock-idp.mjs, which adds
//! PKCE S256 enforcement, single-use codes and redirect_uri binding through the
//! package's public hooks). Proves the gateway interoperates beyond the
//! in-repo provider: RS256 keys, its discovery document, its token responses.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::{TestWorld, query_params, with_param};

const MOCK_CLIENT_ID: &str = "portcullis-e2e";

/// A running `oauth2-mock-server`; killed on drop (and it exits by itself
/// when its stdin closes, should this process die first).
struct MockProvider {
    issuer: String,
    _child: Child,
}

async fn start_mock_provider() -> MockProvider {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("tests/e2e/mock-idp.mjs");
    let modules = root.join("tests/e2e/node_modules/oauth2-mock-server");
    assert!(
        modules.is_dir(),
        "oauth2-mock-server is not installed in tests/e2e/node_modules: run `tests/run-all.sh --deps-only` (or the full tests/run-all.sh)"
    );
    let mut child = Command::new("node")
        .arg(&script)
        .args(["--client-id", MOCK_CLIENT_ID])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start node {}: {error} (is node installed?)", script.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let issuer = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read the mock's stdout") {
            if let Some(issuer) = line.strip_prefix("MOCK_IDP_ISSUER=") {
                return issuer.trim().to_owned();
            }
        }
        panic!("the mock provider exited before printing its issuer");
    })
    .await
    .expect("the mock provider printed its issuer within 30 s");
    MockProvider { issuer, _child: child }
}

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
    let mock = start_mock_provider().await;
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
    let mock = start_mock_provider().await;
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
