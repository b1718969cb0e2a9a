//! End-to-end tests of the development provider over real loopback TCP: the
//! harness (an HTTP client playing browser and relying party) and the test files.

#[cfg(feature = "faults")]
mod faults;
mod grants;
mod login;
mod server;
mod token;

use std::collections::HashMap;
use std::sync::atomic::AtomicI64;

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
        self.headers.get(header::LOCATION).expect("a Location header").to_str().unwrap().to_owned()
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

struct Harness {
    provider: DevProvider,
    client: Client<HttpConnector, Full<Bytes>>,
    clock: TestClock,
    secret: Option<String>,
}

/// The system clock plus an offset the tests move forward.
#[derive(Clone, Default)]
struct TestClock {
    offset: Arc<AtomicI64>,
}

impl TestClock {
    fn advance(&self, seconds: i64) {
        self.offset.fetch_add(seconds, Ordering::SeqCst);
    }

    fn source(&self) -> TimeSource {
        let offset = Arc::clone(&self.offset);
        let system = TimeSource::system();
        TimeSource::from_fn(move || system.now() + offset.load(Ordering::SeqCst))
    }
}

struct Pkce {
    verifier: String,
    challenge: String,
}

fn pkce() -> Pkce {
    let verifier = format!("{}{}", web::random_token(32), "-._~");
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    Pkce { verifier, challenge }
}

fn query_of(url: &str) -> HashMap<String, String> {
    let query = url.split_once('?').map(|(_, query)| query).unwrap_or("");
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

fn config(secret: Option<&str>, rotate: bool) -> DevProviderConfig {
    let mut config = DevProviderConfig::demo(CLIENT_ID, REDIRECT_URI.to_owned());
    config.client_secret = secret.map(str::to_owned);
    config.rotate_refresh_tokens = rotate;
    config.post_logout_redirect_uris = vec![LOGGED_OUT_URI.to_owned()];
    config
}

impl Harness {
    async fn start(mut config: DevProviderConfig) -> Self {
        let clock = TestClock::default();
        config.clock = clock.source();
        let secret = config.client_secret.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let provider = DevProvider::start(listener, config).await.unwrap();
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self { provider, client, clock, secret }
    }

    async fn public() -> Self {
        Self::start(config(None, true)).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.provider.issuer())
    }

    async fn send(&self, method: Method, url: &str, headers: &[(&str, &str)], body: String) -> Reply {
        let mut request = hyper::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self.client.request(request.body(Full::new(Bytes::from(body))).unwrap()).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Reply { status, headers, body: String::from_utf8(body.to_vec()).unwrap() }
    }

    async fn get(&self, url: &str) -> Reply {
        self.send(Method::GET, url, &[], String::new()).await
    }

    async fn post_form(&self, path: &str, pairs: &[(&str, &str)], headers: &[(&str, &str)]) -> Reply {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
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
        let reply = self.login_with(&self.authorize_params(pkce), "alice", "alice").await;
        assert_eq!(reply.status, StatusCode::FOUND, "{}", reply.body);
        let query = query_of(&reply.location());
        query.get("code").expect("a code").clone()
    }

    /// Client authentication as (form fields, headers).
    fn client_auth(&self) -> (Pairs, Pairs) {
        match &self.secret {
            None => (vec![("client_id", CLIENT_ID.to_owned())], vec![]),
            Some(secret) => {
                let encode = |part: &str| form_urlencoded::byte_serialize(part.as_bytes()).collect::<String>();
                let basic = STANDARD.encode(format!("{}:{}", encode(CLIENT_ID), encode(secret)));
                (vec![], vec![("authorization", format!("Basic {basic}"))])
            }
        }
    }

    async fn token(&self, pairs: &[(&str, &str)]) -> Reply {
        let (form_auth, header_auth) = self.client_auth();
        let mut form = pairs.to_vec();
        form.extend(form_auth.iter().map(|(name, value)| (*name, value.as_str())));
        let headers: Vec<(&str, &str)> = header_auth.iter().map(|(name, value)| (*name, value.as_str())).collect();
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
        self.token(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
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
