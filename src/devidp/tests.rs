//! End-to-end tests of the development provider over real loopback TCP.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderMap};
use hyper::{Method, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use super::*;

const CLIENT_ID: &str = "portcullis-test";
const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
const LOGGED_OUT_URI: &str = "http://127.0.0.1:9/logged-out";
const SECRET: &str = "s3cret value+/=";

type Pairs = Vec<(&'static str, String)>;

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }

    fn location(&self) -> String {
        self.headers
            .get(header::LOCATION)
            .expect("a Location header")
            .to_str()
            .unwrap()
            .to_owned()
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

struct Harness {
    provider: DevProvider,
    client: Client<HttpConnector, Full<Bytes>>,
    clock: Clock,
    secret: Option<String>,
}

struct Pkce {
    verifier: String,
    challenge: String,
}

fn pkce() -> Pkce {
    let verifier = format!("{}{}", web::random_token(32), "-._~");
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    Pkce {
        verifier,
        challenge,
    }
}

fn query_of(url: &str) -> HashMap<String, String> {
    let query = url.split_once('?').map(|(_, query)| query).unwrap_or("");
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn config(secret: Option<&str>, rotate: bool) -> DevProviderConfig {
    let mut config = DevProviderConfig::demo(CLIENT_ID, REDIRECT_URI.to_owned());
    config.client_secret = secret.map(str::to_owned);
    config.rotate_refresh_tokens = rotate;
    config.post_logout_redirect_uris = vec![LOGGED_OUT_URI.to_owned()];
    config
}

impl Harness {
    async fn start(config: DevProviderConfig) -> Self {
        let clock = config.clock.clone();
        let secret = config.client_secret.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let provider = DevProvider::start(listener, config).await.unwrap();
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self {
            provider,
            client,
            clock,
            secret,
        }
    }

    async fn public() -> Self {
        Self::start(config(None, true)).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.provider.issuer())
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: String,
    ) -> Reply {
        let mut request = hyper::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .client
            .request(request.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    async fn get(&self, url: &str) -> Reply {
        self.send(Method::GET, url, &[], String::new()).await
    }

    async fn post_form(
        &self,
        path: &str,
        pairs: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Reply {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        self.send(Method::POST, &self.url(path), &all, body).await
    }

    fn authorize_params<'a>(&self, pkce: &'a Pkce) -> Vec<(&'static str, &'a str)> {
        vec![
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT_URI),
            ("response_type", "code"),
            ("scope", "openid profile email"),
            ("state", "state-123"),
            ("nonce", "nonce-456"),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
        ]
    }

    async fn authorize_get(&self, params: &[(&str, &str)]) -> Reply {
        let url = web::with_query(&self.url(paths::AUTHORIZE), params);
        self.get(&url).await
    }

    /// Shows the login page, submits the form, and returns the redirect.
    async fn login_with(&self, params: &[(&str, &str)], username: &str, password: &str) -> Reply {
        let page = self.authorize_get(params).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let mut form = params.to_vec();
        form.push(("username", username));
        form.push(("password", password));
        self.post_form(paths::AUTHORIZE, &form, &[]).await
    }

    /// Logs alice in and returns the code.
    async fn code(&self, pkce: &Pkce) -> String {
        let reply = self
            .login_with(&self.authorize_params(pkce), "alice", "alice")
            .await;
        assert_eq!(reply.status, StatusCode::FOUND, "{}", reply.body);
        let query = query_of(&reply.location());
        query.get("code").expect("a code").clone()
    }

    /// Client authentication as (form fields, headers).
    fn client_auth(&self) -> (Pairs, Pairs) {
        match &self.secret {
            None => (vec![("client_id", CLIENT_ID.to_owned())], vec![]),
            Some(secret) => {
                let encode = |part: &str| {
                    form_urlencoded::byte_serialize(part.as_bytes()).collect::<String>()
                };
                let basic = STANDARD.encode(format!("{}:{}", encode(CLIENT_ID), encode(secret)));
                (vec![], vec![("authorization", format!("Basic {basic}"))])
            }
        }
    }

    async fn token(&self, pairs: &[(&str, &str)]) -> Reply {
        let (form_auth, header_auth) = self.client_auth();
        let mut form = pairs.to_vec();
        form.extend(
            form_auth
                .iter()
                .map(|(name, value)| (*name, value.as_str())),
        );
        let headers: Vec<(&str, &str)> = header_auth
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        self.post_form(paths::TOKEN, &form, &headers).await
    }

    async fn exchange(&self, code: &str, verifier: &str) -> Reply {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier),
        ])
        .await
    }

    async fn refresh(&self, refresh_token: &str) -> Reply {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    /// A full login and code exchange; returns the token response.
    async fn tokens(&self) -> Value {
        let pkce = pkce();
        let code = self.code(&pkce).await;
        let reply = self.exchange(&code, &pkce.verifier).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.json()
    }

    async fn jwks(&self) -> JwkSet {
        let discovery = self.get(&self.url(paths::DISCOVERY)).await.json();
        let jwks = self.get(discovery["jwks_uri"].as_str().unwrap()).await;
        serde_json::from_str(&jwks.body).unwrap()
    }

    /// Verifies a JWT against the published JWKS as a relying party would.
    async fn verify(&self, token: &str) -> jsonwebtoken::errors::Result<Value> {
        let header = jsonwebtoken::decode_header(token)?;
        let jwks = self.jwks().await;
        let jwk = jwks
            .find(header.kid.as_deref().unwrap_or_default())
            .ok_or(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat)?;
        let key = DecodingKey::from_jwk(jwk)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[CLIENT_ID]);
        validation.set_issuer(&[self.provider.issuer()]);
        jsonwebtoken::decode::<Value>(token, &key, &validation).map(|data| data.claims)
    }
}

#[tokio::test]
async fn refuses_to_bind_outside_loopback() {
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let error = DevProvider::start(listener, config(None, true))
        .await
        .unwrap_err();
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
    assert_eq!(
        metadata["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        metadata["token_endpoint_auth_methods_supported"],
        serde_json::json!(["none"])
    );
    assert_eq!(
        metadata["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    assert_eq!(
        metadata["authorization_response_iss_parameter_supported"],
        true
    );
    assert_eq!(metadata["backchannel_logout_supported"], true);

    harness.provider.faults().omit_s256.set(true);
    let metadata = harness.get(&harness.url(paths::DISCOVERY)).await.json();
    assert_eq!(
        metadata["code_challenge_methods_supported"],
        serde_json::json!(["plain"])
    );

    let confidential = Harness::start(config(Some(SECRET), true)).await;
    let metadata = confidential
        .get(&confidential.url(paths::DISCOVERY))
        .await
        .json();
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
        let bytes = URL_SAFE_NO_PAD
            .decode(key[coordinate].as_str().unwrap())
            .unwrap();
        assert_eq!(bytes.len(), 32);
    }
}

#[tokio::test]
async fn login_page_is_a_tidy_escaped_form() {
    let harness = Harness::public().await;
    let pkce = pkce();
    let mut params = harness.authorize_params(&pkce);
    params.retain(|(name, _)| *name != "state");
    params.push(("state", "\"><script>alert(1)</script>"));
    let page = harness.authorize_get(&params).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.body.contains("Portcullis development provider"));
    assert!(page.body.contains("development only"));
    assert!(page.body.contains("name=\"username\""));
    assert!(page.body.contains("name=\"password\""));
    assert!(
        page.body
            .contains("<button type=\"submit\">Sign in</button>")
    );
    assert!(page.body.contains("method=\"post\""));
    assert!(!page.body.contains("<script>"));
    assert!(page.body.contains("&quot;&gt;&lt;script&gt;"));
}

#[tokio::test]
async fn wrong_password_shows_the_form_again() {
    let harness = Harness::public().await;
    let pkce = pkce();
    let reply = harness
        .login_with(&harness.authorize_params(&pkce), "alice", "not-alice")
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers.get(header::LOCATION).is_none());
    assert!(reply.body.contains("Invalid username or password"));
    assert!(reply.body.contains("name=\"password\""));
    let unknown = harness
        .login_with(&harness.authorize_params(&pkce), "mallory", "mallory")
        .await;
    assert!(unknown.body.contains("Invalid username or password"));
}

#[tokio::test]
async fn code_flow_issues_tokens_that_verify_against_the_jwks() {
    let harness = Harness::public().await;
    let pkce = pkce();
    let reply = harness
        .login_with(&harness.authorize_params(&pkce), "alice", "alice")
        .await;
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

    let id = harness
        .verify(tokens["id_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(id["nonce"], "nonce-456");
    assert_eq!(id["aud"], CLIENT_ID);
    assert_eq!(id["azp"], CLIENT_ID);
    assert_eq!(id["iss"], harness.provider.issuer());
    assert_eq!(id["email"], "alice@example.test");
    assert_eq!(id["email_verified"], true);
    assert_eq!(id["preferred_username"], "alice");
    assert_eq!(id["groups"], serde_json::json!(["admins", "staff"]));
    assert!(id["sid"].is_string() && id["auth_time"].is_i64());
    assert_eq!(
        id["exp"].as_i64().unwrap() - id["iat"].as_i64().unwrap(),
        300
    );

    let access = harness
        .verify(tokens["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(access["sub"], id["sub"]);
    assert_eq!(access["client_id"], CLIENT_ID);
    assert_eq!(access["scope"], "openid profile email");
    assert!(access["jti"].is_string());

    // A second login of the same user keeps the same subject.
    let again = harness.tokens().await;
    let again = harness
        .verify(again["id_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(again["sub"], id["sub"]);
    assert_ne!(again["sid"], id["sid"]);
    assert_eq!(harness.provider.token_requests("authorization_code"), 2);
    assert_eq!(harness.provider.token_requests("refresh_token"), 0);
}

#[tokio::test]
async fn userinfo_answers_for_a_valid_access_token_only() {
    let harness = Harness::public().await;
    let tokens = harness.tokens().await;
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    let reply = harness
        .send(
            Method::GET,
            &harness.url(paths::USERINFO),
            &[("authorization", &bearer)],
            String::new(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.json()["preferred_username"], "alice");
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");

    let forged = harness
        .send(
            Method::GET,
            &harness.url(paths::USERINFO),
            &[("authorization", "Bearer abc.def.ghi")],
            String::new(),
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);

    harness.clock.advance(301);
    let expired = harness
        .send(
            Method::GET,
            &harness.url(paths::USERINFO),
            &[("authorization", &bearer)],
            String::new(),
        )
        .await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
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
    for (name, value) in [
        ("redirect_uri", "http://127.0.0.1:9/callback/evil"),
        ("client_id", "someone-else"),
    ] {
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
    let reply = harness
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
        ])
        .await;
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
    let id = harness
        .verify(refreshed["id_token"].as_str().unwrap())
        .await
        .unwrap();
    assert!(id.get("nonce").is_none());
    assert!(
        harness
            .verify(refreshed["access_token"].as_str().unwrap())
            .await
            .is_ok()
    );

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
    let narrowed = harness
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("scope", "openid"),
        ])
        .await;
    assert_eq!(narrowed.json()["scope"], "openid");
    let widened = harness
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("scope", "openid admin"),
        ])
        .await;
    assert_eq!(widened.error(), "invalid_scope");
}

#[tokio::test]
async fn revocation_kills_refresh_and_access_tokens() {
    let harness = Harness::public().await;
    let tokens = harness.tokens().await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let access = tokens["access_token"].as_str().unwrap();

    let reply = harness
        .post_form(
            paths::REVOKE,
            &[("token", refresh), ("client_id", CLIENT_ID)],
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(harness.provider.revoked_tokens(), 1);
    assert_eq!(harness.refresh(refresh).await.error(), "invalid_grant");
    // Revoking the refresh token revoked its grant, so the access token is dead too.
    let bearer = format!("Bearer {access}");
    let userinfo = harness
        .send(
            Method::GET,
            &harness.url(paths::USERINFO),
            &[("authorization", &bearer)],
            String::new(),
        )
        .await;
    assert_eq!(userinfo.status, StatusCode::UNAUTHORIZED);

    // Unknown tokens: still 200, nothing counted.
    let reply = harness
        .post_form(
            paths::REVOKE,
            &[("token", "nonsense"), ("client_id", CLIENT_ID)],
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(harness.provider.revoked_tokens(), 1);

    // Access tokens can be revoked on their own.
    let tokens = harness.tokens().await;
    let access = tokens["access_token"].as_str().unwrap();
    harness
        .post_form(
            paths::REVOKE,
            &[("token", access), ("client_id", CLIENT_ID)],
            &[],
        )
        .await;
    assert_eq!(harness.provider.revoked_tokens(), 2);
    let bearer = format!("Bearer {access}");
    let userinfo = harness
        .send(
            Method::GET,
            &harness.url(paths::USERINFO),
            &[("authorization", &bearer)],
            String::new(),
        )
        .await;
    assert_eq!(userinfo.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        harness
            .refresh(tokens["refresh_token"].as_str().unwrap())
            .await
            .status,
        StatusCode::OK
    );

    // Revocation needs client authentication like the token endpoint.
    let reply = harness
        .post_form(
            paths::REVOKE,
            &[("token", access), ("client_id", "someone-else")],
            &[],
        )
        .await;
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
    assert!(
        harness
            .verify(before["id_token"].as_str().unwrap())
            .await
            .is_err()
    );
    let after = harness.tokens().await;
    let header = jsonwebtoken::decode_header(after["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(header.kid.as_deref(), Some(new_kid.as_str()));
    assert!(
        harness
            .verify(after["id_token"].as_str().unwrap())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn id_token_faults_break_exactly_what_they_say() {
    use jsonwebtoken::errors::ErrorKind;
    let harness = Harness::public().await;
    let faults = harness.provider.faults();

    faults.id_token_wrong_nonce.set(true);
    let id = harness
        .verify(harness.tokens().await["id_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_ne!(id["nonce"], "nonce-456");
    faults.id_token_wrong_nonce.set(false);

    faults.id_token_wrong_audience.set(true);
    let error = harness
        .verify(harness.tokens().await["id_token"].as_str().unwrap())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::InvalidAudience);
    faults.id_token_wrong_audience.set(false);

    faults.id_token_wrong_issuer.set(true);
    let error = harness
        .verify(harness.tokens().await["id_token"].as_str().unwrap())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::InvalidIssuer);
    faults.id_token_wrong_issuer.set(false);

    faults.id_token_bad_signature.set(true);
    let token = harness.tokens().await["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(
        header.kid.as_deref(),
        Some(harness.provider.current_kid().as_str())
    );
    let error = harness.verify(&token).await.unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::InvalidSignature);
    faults.id_token_bad_signature.set(false);

    faults.id_token_expired.set(true);
    let error = harness
        .verify(harness.tokens().await["id_token"].as_str().unwrap())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::ExpiredSignature);
    faults.id_token_expired.set(false);

    faults.id_token_alg_none.set(true);
    let token = harness.tokens().await["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[2], "");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "none");
    assert!(harness.verify(&token).await.is_err());
    faults.id_token_alg_none.set(false);

    // All off again: a clean token.
    let id = harness
        .verify(harness.tokens().await["id_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(id["nonce"], "nonce-456");
}

#[tokio::test]
async fn endpoint_faults_break_exactly_what_they_say() {
    let harness = Harness::public().await;
    let faults = harness.provider.faults();
    let pkce = pkce();

    faults.authorize_error.set(Some("access_denied"));
    let reply = harness
        .authorize_get(&harness.authorize_params(&pkce))
        .await;
    let query = query_of(&reply.location());
    assert_eq!(query["error"], "access_denied");
    assert_eq!(query["state"], "state-123");
    faults.authorize_error.set(None);

    faults.omit_iss_parameter.set(true);
    let reply = harness
        .login_with(&harness.authorize_params(&pkce), "bob", "bob")
        .await;
    let query = query_of(&reply.location());
    assert!(query.contains_key("code") && !query.contains_key("iss"));
    faults.omit_iss_parameter.set(false);

    faults
        .token_endpoint_error
        .set(Some("temporarily_unavailable"));
    let reply = harness.exchange(&query["code"], &pkce.verifier).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error(), "temporarily_unavailable");
    faults.token_endpoint_error.set(None);

    faults.unavailable.set(true);
    for path in [
        paths::DISCOVERY,
        paths::JWKS,
        paths::AUTHORIZE,
        paths::USERINFO,
        paths::END_SESSION,
    ] {
        assert_eq!(
            harness.get(&harness.url(path)).await.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}"
        );
    }
    let reply = harness.refresh("whatever").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(harness.provider.token_requests("refresh_token"), 1);
    faults.unavailable.set(false);
    assert_eq!(
        harness.get(&harness.url(paths::DISCOVERY)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn end_session_redirects_only_to_registered_uris() {
    let harness = Harness::public().await;
    let tokens = harness.tokens().await;
    let id_token = tokens["id_token"].as_str().unwrap();
    let url = web::with_query(
        &harness.url(paths::END_SESSION),
        &[
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", LOGGED_OUT_URI),
            ("state", "bye"),
        ],
    );
    let reply = harness.get(&url).await;
    assert_eq!(reply.status, StatusCode::FOUND);
    assert_eq!(reply.location(), format!("{LOGGED_OUT_URI}?state=bye"));
    // Logging out ended the session's grants.
    assert_eq!(
        harness
            .refresh(tokens["refresh_token"].as_str().unwrap())
            .await
            .error(),
        "invalid_grant"
    );

    let url = web::with_query(
        &harness.url(paths::END_SESSION),
        &[("post_logout_redirect_uri", "http://evil.test/")],
    );
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
    let token = harness
        .provider
        .backchannel_logout_token("bob", Some("sid-1"))
        .unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[CLIENT_ID]);
    validation.set_issuer(&[harness.provider.issuer()]);
    let jwks = harness.jwks().await;
    let key = DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
    let claims = jsonwebtoken::decode::<Value>(&token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sid"], "sid-1");
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(claims.get("nonce").is_none());
    assert!(
        harness
            .provider
            .backchannel_logout_token("nobody", None)
            .is_none()
    );
}

#[tokio::test]
async fn unknown_paths_are_404_and_dropping_stops_the_server() {
    let harness = Harness::public().await;
    assert_eq!(
        harness.get(&harness.url("/nope")).await.status,
        StatusCode::NOT_FOUND
    );
    let addr = harness
        .provider
        .issuer()
        .trim_start_matches("http://")
        .to_owned();
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
