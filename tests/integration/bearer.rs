//! Bearer tokens from API clients over real TCP: the provider's access tokens
//! pass and are forwarded as they are; ID tokens, forged, re-signed,
//! `alg`-confused, foreign, expired and wrong-audience tokens are 401
//! `invalid_token`; unknown `kid`s cannot make the gateway hammer the JWKS.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Method, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::TestWorld;

fn bearer_world() -> crate::support::world::WorldBuilder {
    TestWorld::builder().tweak(|raw| raw.bearer.enabled = true)
}

/// An ES256 key the provider never published.
fn rogue_key() -> EncodingKey {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
    EncodingKey::from_ec_der(pkcs8.as_ref())
}

fn payload(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

fn sign(alg: Algorithm, typ: &str, kid: &str, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.typ = Some(typ.to_owned());
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// The refusal of a presented token (RFC 6750 §3): 401, the JSON code
/// `invalid_token` and a `Bearer` challenge with `error="invalid_token"`.
fn assert_invalid_token(reply: &crate::support::Reply, what: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {}", reply.body);
    assert_eq!(reply.json()["error"], "invalid_token", "{what}: {}", reply.body);
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""), "{what}: {challenge}");
}

async fn tokens_of_a_login(world: &TestWorld, user: &str) -> (String, String) {
    let browser = world.browser();
    browser.login_at("/", user, user).await;
    let session = world.open_session(&browser.session_value());
    (session.access_token, session.id_token.unwrap())
}

async fn call(world: &TestWorld, token: &str) -> crate::support::Reply {
    world.browser().api_get_with_bearer("/api/data", token).await
}

#[tokio::test]
async fn access_tokens_pass_and_are_forwarded_as_they_are() {
    let world = bearer_world().start().await;
    let (access_token, _) = tokens_of_a_login(&world, "bob").await;
    let reply = call(&world, &access_token).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let echoed = reply.json();
    assert_eq!(echoed["headers"]["authorization"][0], format!("Bearer {access_token}"));
    assert_eq!(echoed["headers"]["x-forwarded-user"][0], payload(&access_token)["sub"]);
    assert!(reply.set_cookies().is_empty(), "no session is made for a bearer caller");
}

#[tokio::test]
async fn bearer_tokens_are_off_by_default() {
    let world = TestWorld::start().await;
    let (access_token, _) = tokens_of_a_login(&world, "bob").await;
    // The token is not looked at: the caller is simply not signed in, and the
    // challenge carries no error code (RFC 6750 §3.1: none for a request
    // without usable authentication).
    let reply = call(&world, &access_token).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    assert_eq!(reply.json()["error"], "unauthenticated", "{}", reply.body);
    assert_eq!(reply.header("www-authenticate").as_deref(), Some("Bearer realm=\"portcullis\""));
}

#[tokio::test]
async fn id_tokens_and_forgeries_are_refused() {
    let world = bearer_world().start().await;
    let (access_token, id_token) = tokens_of_a_login(&world, "bob").await;
    let kid = world.provider.current_kid();
    let claims = payload(&access_token);

    assert_invalid_token(&call(&world, &id_token).await, "an ID token");
    // Same claims, the right kid, a key the provider never published.
    let resigned = sign(Algorithm::ES256, "at+jwt", &kid, &claims, &rogue_key());
    assert_invalid_token(&call(&world, &resigned).await, "re-signed");
    // alg confusion: HMAC keyed with the public key's bytes, and `none`.
    let jwks: Value = reqwest_jwks(&world).await;
    let x = jwks["keys"][0]["x"].as_str().unwrap().to_owned();
    let hmac = sign(Algorithm::HS256, "at+jwt", &kid, &claims, &EncodingKey::from_secret(x.as_bytes()));
    assert_invalid_token(&call(&world, &hmac).await, "HS256 with the public key");
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt", "kid": kid}).to_string());
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    assert_invalid_token(&call(&world, &format!("{header}.{body}.")).await, "alg none");
    // An embedded key (jwk) or a key URL (jku) in the header is never used.
    let rogue_pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".to_owned());
    header.jku = Some(format!("{}/jwks", world.provider.issuer()));
    let jku = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(rogue_pkcs8.as_ref())).unwrap();
    assert_invalid_token(&call(&world, &jku).await, "jku");
    // Tampered payload with the original signature.
    let mut parts: Vec<String> = access_token.split('.').map(str::to_owned).collect();
    let mut tampered = claims.clone();
    tampered["sub"] = json!("someone-else");
    parts[1] = URL_SAFE_NO_PAD.encode(tampered.to_string());
    assert_invalid_token(&call(&world, &parts.join(".")).await, "tampered");
    // Another issuer (unknown here), even with valid-looking claims.
    let mut foreign = claims.clone();
    foreign["iss"] = json!("https://issuer.elsewhere.example");
    assert_invalid_token(
        &call(&world, &sign(Algorithm::ES256, "at+jwt", "k", &foreign, &rogue_key())).await,
        "foreign",
    );
    // Garbage and opaque strings.
    assert_invalid_token(&call(&world, "opaque-token-value").await, "opaque");
    assert_invalid_token(&call(&world, "a.b.c").await, "garbage");
}

async fn reqwest_jwks(world: &TestWorld) -> Value {
    world.browser().api_get(&format!("{}/jwks", world.provider.issuer())).await.json()
}

#[tokio::test]
async fn wrong_audience_and_expired_tokens_are_refused() {
    let world = TestWorld::builder()
        .tweak(|raw| {
            raw.bearer.enabled = true;
            raw.bearer.audience = Some("https://api.example".to_owned());
        })
        .start()
        .await;
    let (access_token, _) = tokens_of_a_login(&world, "bob").await;
    assert_invalid_token(&call(&world, &access_token).await, "aud is the client, not the API");

    let world = bearer_world().start().await;
    let (access_token, _) = tokens_of_a_login(&world, "bob").await;
    assert_eq!(call(&world, &access_token).await.status, StatusCode::OK);
    world.clock.advance(600);
    assert_invalid_token(&call(&world, &access_token).await, "expired");
}

#[tokio::test]
async fn untyped_tokens_pass_only_when_allowed_and_never_when_id_token_like() {
    let world = TestWorld::builder()
        .tweak(|raw| {
            raw.bearer.enabled = true;
            raw.bearer.require_access_token_type = false;
        })
        .start()
        .await;
    let (access_token, id_token) = tokens_of_a_login(&world, "bob").await;
    assert_eq!(call(&world, &access_token).await.status, StatusCode::OK);
    // The provider's ID tokens carry a nonce from the login: refused as ID-token-like.
    assert!(payload(&id_token).get("nonce").is_some());
    assert_invalid_token(&call(&world, &id_token).await, "ID token with untyped tokens allowed");
}

#[tokio::test]
async fn unknown_kids_cannot_cause_a_jwks_fetch_storm() {
    let world = bearer_world().start().await;
    let (access_token, _) = tokens_of_a_login(&world, "bob").await;
    let claims = payload(&access_token);
    let before = world.provider.jwks_requests();
    let key = rogue_key();
    let tokens: Vec<String> =
        (0..40).map(|i| sign(Algorithm::ES256, "at+jwt", &format!("unknown-kid-{i}"), &claims, &key)).collect();
    // Concurrently, then once more in sequence.
    let mut replies = futures_util::future::join_all(tokens.iter().map(|token| call(&world, token))).await;
    for token in &tokens {
        replies.push(call(&world, token).await);
    }
    for reply in &replies {
        assert_invalid_token(reply, "unknown kid");
    }
    let fetched = world.provider.jwks_requests() - before;
    assert!(fetched <= 1, "{fetched} JWKS fetches for 40 unknown kids");
    // The real token still works (from the cached keys).
    assert_eq!(call(&world, &access_token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_session_and_a_bearer_token_never_mix() {
    let world = bearer_world().start().await;
    let (bob_token, _) = tokens_of_a_login(&world, "bob").await;
    let alice = world.browser();
    alice.login().await;
    let alice_session = world.open_session(&alice.session_value());
    let authorization = format!("Bearer {bob_token}");
    let reply = alice.send(Method::GET, "/api/data", &[("authorization", &authorization)], Bytes::new()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let echoed = reply.json();
    assert_eq!(echoed["headers"]["authorization"], json!([format!("Bearer {}", alice_session.access_token)]));
    assert_eq!(echoed["headers"]["x-forwarded-user"], json!([alice_session.sub]));
    assert_eq!(echoed["headers"]["x-forwarded-email"], json!(["alice@example.test"]));
}

#[tokio::test]
async fn tokens_from_a_configured_extra_issuer_pass_with_its_audience() {
    use portcullis::config::raw::RawIssuer;
    use portcullis_devkit::devidp::{DevProvider, DevProviderConfig};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = DevProvider::start(listener, DevProviderConfig::demo("ci-api", "http://127.0.0.1:9/cb".to_owned()))
        .await
        .unwrap();
    let token = other.mint_access_token("bob", std::time::Duration::from_secs(300)).unwrap();

    // Not configured: another issuer's token is refused.
    let world = bearer_world().start().await;
    assert_invalid_token(&call(&world, &token).await, "unconfigured issuer");

    let issuer = other.issuer().to_owned();
    let world = TestWorld::builder()
        .tweak(move |raw| {
            raw.bearer.enabled = true;
            raw.bearer.issuers =
                vec![RawIssuer { issuer: issuer.clone(), audience: "ci-api".to_owned(), algorithms: vec![] }];
        })
        .start()
        .await;
    let reply = call(&world, &token).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.json()["headers"]["x-forwarded-email"][0], "bob@example.test");
    // The main provider's key cannot sign for the other issuer, and vice versa.
    let mut claims = payload(&token);
    claims["iss"] = json!(world.provider.issuer());
    let forged = sign(Algorithm::ES256, "at+jwt", &other.current_kid(), &claims, &rogue_key());
    assert_invalid_token(&call(&world, &forged).await, "iss swapped");
    let main_token = world.provider.mint_access_token("bob", std::time::Duration::from_secs(300)).unwrap();
    let mut claims = payload(&main_token);
    claims["iss"] = json!(other.issuer());
    claims["aud"] = json!("ci-api");
    let resigned = sign(Algorithm::ES256, "at+jwt", &world.provider.current_kid(), &claims, &rogue_key());
    assert_invalid_token(&call(&world, &resigned).await, "main kid claimed for the other issuer");
}
