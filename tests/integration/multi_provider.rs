//! Several providers in one gateway (issue 16): two development providers
//! with different issuers and users (`staff`, `partners`) and the npm
//! `oauth2-mock-server` (`mock`), over real TCP. Mix-up and code injection
//! across providers, one callback for all, sessions side by side and bound
//! to their provider, sign-out and back-channel logout isolation, bearer
//! tokens per provider, refresh per provider, one provider down.

use std::time::Duration;

use http::StatusCode;
use portcullis::config::raw::RawIssuer;
use portcullis_devkit::devidp::{DevProvider, DevProviderConfig};
use tokio::net::TcpListener;

use crate::support::connection::OneConnection;
use crate::support::multi::{
    MockProvider, MultiWorld, PARTNERS_APP, STAFF_APP, login_at, seen_header, session_cookie, sign_in, start_at,
};
use crate::support::redis::RedisServer;
use crate::support::{Browser, CLIENT_ID, Reply, query_params, with_param};

const CODE_GRANT: &str = "authorization_code";

/// The code in a callback URL the provider sent.
fn code_of(callback: &str) -> String {
    query_params(callback).get("code").cloned().expect("a code in the callback")
}

/// `/oauth2/callback` with exactly these parameters.
fn callback_url(code: &str, state: &str, iss: Option<&str>) -> String {
    let mut url = format!("/oauth2/callback?code={code}&state={state}");
    if let Some(iss) = iss {
        url = with_param(&url, "iss", iss);
    }
    url
}

fn no_session_cookie_set(reply: &Reply) {
    for provider in ["staff", "partners", "mock"] {
        assert!(
            reply.set_cookie(&session_cookie(provider)).is_none_or(|cookie| cookie.is_deletion()),
            "no {provider} session from this callback"
        );
    }
}

// 1. Mix-up (RFC 9700 §4.4).

#[tokio::test]
async fn a_code_from_staff_delivered_to_a_partners_flow_is_redeemed_only_at_partners() {
    let world = MultiWorld::builder().start().await;
    let browser = world.browser();
    // The attacker's (or a confused client's) code comes from staff...
    let at_staff = start_at(&browser, "staff", "/").await;
    let staff_callback = sign_in(&browser, &at_staff, "alice").await;
    let staff_code = code_of(&staff_callback);
    // ...and is delivered with the state of a flow started at partners.
    let at_partners = start_at(&browser, "partners", "/").await;
    let reply = browser.navigate(&callback_url(&staff_code, &at_partners.state, Some(world.partners.issuer()))).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "partners refuses a code it never issued: {}", reply.body);
    no_session_cookie_set(&reply);
    assert_eq!(world.partners.token_requests(CODE_GRANT), 1, "redeemed at the flow's provider");
    assert_eq!(world.staff().token_requests(CODE_GRANT), 0, "never redeemed at the provider that issued it");

    // Staff's `iss` on a partners flow: refused before any token request.
    let at_partners = start_at(&browser, "partners", "/").await;
    let reply = browser.navigate(&callback_url(&staff_code, &at_partners.state, Some(world.staff().issuer()))).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    no_session_cookie_set(&reply);
    assert_eq!(world.partners.token_requests(CODE_GRANT), 1);
    assert_eq!(world.staff().token_requests(CODE_GRANT), 0);

    // The staff code is still unused and the staff flow still works: nothing above consumed it.
    let landing = browser.navigate(&staff_callback).await;
    assert_eq!(landing.expect_redirect(), "/");
    assert!(landing.set_cookie(&session_cookie("staff")).is_some());
    assert_eq!(world.staff().token_requests(CODE_GRANT), 1);
}

#[tokio::test]
async fn an_id_token_naming_staff_never_makes_a_partners_session() {
    let world = MultiWorld::builder().start().await;
    // Partners answers its own code with an ID token claiming staff's issuer.
    let staff_issuer = world.staff().issuer().to_owned();
    world.partners.faults().id_token_claims.set(Some(serde_json::json!({ "iss": staff_issuer })));
    let browser = world.browser();
    let started = start_at(&browser, "partners", "/").await;
    let callback = sign_in(&browser, &started, "carol").await;
    let reply = browser.navigate(&callback).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.body);
    no_session_cookie_set(&reply);
    assert_eq!(browser.api_get("/").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(world.staff().token_requests(CODE_GRANT), 0);

    // And a staff session cookie, presented as a partners session, is no partners session.
    world.partners.faults().id_token_claims.set(None);
    login_at(&browser, "staff", "alice", "/").await;
    let staff_value = browser.cookie(&session_cookie("staff")).expect("a staff session");
    let other = world.browser();
    other.set_cookie(&session_cookie("partners"), &staff_value);
    assert_eq!(other.api_get(PARTNERS_APP).await.status, StatusCode::UNAUTHORIZED);
}

// 2. Code injection across providers.

#[tokio::test]
async fn a_partners_code_injected_into_a_staff_flow_makes_no_session() {
    let world = MultiWorld::builder().start().await;
    let victim = world.browser();
    let attacker = world.browser();
    // The attacker logs in at partners and stops before the callback.
    let attackers_flow = start_at(&attacker, "partners", "/").await;
    let partners_code = code_of(&sign_in(&attacker, &attackers_flow, "carol").await);
    // The victim's flow at staff receives the attacker's code (with staff's iss, as the victim's provider would say).
    let victims_flow = start_at(&victim, "staff", "/").await;
    let reply = victim.navigate(&callback_url(&partners_code, &victims_flow.state, Some(world.staff().issuer()))).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.body);
    no_session_cookie_set(&reply);
    assert_eq!(world.staff().token_requests(CODE_GRANT), 1, "tried at the flow's provider, which refuses it");
    assert_eq!(world.partners.token_requests(CODE_GRANT), 0, "never redeemed where it was issued");
    assert_eq!(victim.api_get("/").await.status, StatusCode::UNAUTHORIZED);
    assert!(victim.cookie(&session_cookie("partners")).is_none() && victim.cookie(&session_cookie("staff")).is_none());

    // With partners' iss the staff flow is refused outright.
    let victims_flow = start_at(&victim, "staff", "/").await;
    let reply =
        victim.navigate(&callback_url(&partners_code, &victims_flow.state, Some(world.partners.issuer()))).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(world.partners.token_requests(CODE_GRANT), 0);
}

// 3. One callback path for every provider.

#[tokio::test]
async fn one_callback_path_serves_all_three_providers_and_the_flow_records_its_provider() {
    let mock = MockProvider::start().await;
    let world = MultiWorld::builder().with_mock(&mock.issuer).start().await;
    // The npm mock does not announce RFC 9207's iss; the gateway says so once, naming it (the dev providers do).
    let warnings: Vec<String> = crate::support::logs::captured()
        .lines()
        .filter(|line| line.contains("does not announce the RFC 9207 iss parameter"))
        .map(str::to_owned)
        .collect();
    assert!(warnings.iter().any(|line| line.contains("provider=mock")), "{warnings:?}");
    assert!(!warnings.iter().any(|line| line.contains("provider=staff") || line.contains("provider=partners")));
    let browser = world.browser();
    let callback_path = format!("{}/oauth2/callback", world.public_url);

    for (provider, user) in [("staff", "alice"), ("partners", "carol")] {
        let started = start_at(&browser, provider, "/somewhere").await;
        assert_eq!(query_params(&started.authorize_url)["redirect_uri"], callback_path, "{provider}");
        let flow_value = browser.cookie(&started.flow_cookie).expect("the flow cookie in the jar");
        assert_eq!(world.open_flow(&started.flow_cookie, &flow_value).provider, provider);
        let callback = sign_in(&browser, &started, user).await;
        assert!(callback.starts_with(&format!("{callback_path}?")), "{callback}");
        // A `provider` in the query changes nothing: the flow says which provider answered.
        let other = if provider == "staff" { "partners" } else { "staff" };
        let reply = browser.navigate(&with_param(&callback, "provider", other)).await;
        assert_eq!(reply.expect_redirect(), "/somewhere");
        let session = reply.set_cookie(&session_cookie(provider)).expect("this provider's session cookie");
        assert!(reply.set_cookie(&session_cookie(other)).is_none());
        let data = world.open_session(provider, &session.value);
        assert_eq!(data.provider, provider);
    }
    assert_eq!(
        world.open_session("staff", &browser.cookie(&session_cookie("staff")).unwrap()).iss,
        world.staff().issuer()
    );

    // The npm mock approves at once and comes back to the same callback.
    let started = start_at(&browser, "mock", "/m").await;
    assert!(started.authorize_url.starts_with(&format!("{}/authorize?", mock.issuer)), "{}", started.authorize_url);
    assert_eq!(query_params(&started.authorize_url)["redirect_uri"], callback_path);
    let flow_value = browser.cookie(&started.flow_cookie).expect("the flow cookie");
    assert_eq!(world.open_flow(&started.flow_cookie, &flow_value).provider, "mock");
    let callback = browser.navigate(&started.authorize_url).await.expect_redirect();
    assert!(callback.starts_with(&format!("{callback_path}?")), "{callback}");
    let reply = browser.navigate(&callback).await;
    assert_eq!(reply.expect_redirect(), "/m");
    let session = reply.set_cookie(&session_cookie("mock")).expect("the mock's session cookie");
    assert_eq!(world.open_session("mock", &session.value).sub, "mock-user-1");

    // Three sessions side by side, none overwritten.
    for provider in ["staff", "partners", "mock"] {
        assert!(browser.cookie(&session_cookie(provider)).is_some(), "{provider}");
    }
}

// 4. Sessions side by side.

#[tokio::test]
async fn sessions_at_two_providers_live_side_by_side_and_each_route_sees_its_own() {
    let world = MultiWorld::builder().start().await;
    side_by_side(&world).await;
    // Each upstream gets its own provider's access token.
    let browser = world.browser();
    login_at(&browser, "staff", "alice", "/").await;
    login_at(&browser, "partners", "carol", "/").await;
    let staff_data = world.open_session("staff", &browser.cookie(&session_cookie("staff")).unwrap());
    let partners_data = world.open_session("partners", &browser.cookie(&session_cookie("partners")).unwrap());
    let staff_seen = browser.api_get(STAFF_APP).await;
    let partners_seen = browser.api_get(PARTNERS_APP).await;
    assert_eq!(seen_header(&staff_seen, "authorization"), format!("Bearer {}", staff_data.access_token));
    assert_eq!(seen_header(&partners_seen, "authorization"), format!("Bearer {}", partners_data.access_token));
}

#[tokio::test]
async fn sessions_at_two_providers_live_side_by_side_in_store_mode() {
    let redis = RedisServer::start().await;
    side_by_side(&store_world(&redis).await).await;
}

async fn side_by_side(world: &MultiWorld) {
    let browser = world.browser();
    login_at(&browser, "staff", "alice", "/").await;
    login_at(&browser, "partners", "carol", "/").await;
    assert!(browser.cookie(&session_cookie("staff")).is_some());
    assert!(browser.cookie(&session_cookie("partners")).is_some());

    let staff_seen = browser.api_get(&format!("{STAFF_APP}/x")).await;
    assert_eq!(seen_header(&staff_seen, "x-forwarded-email"), "alice@example.test");
    let partners_seen = browser.api_get(&format!("{PARTNERS_APP}/x")).await;
    assert_eq!(seen_header(&partners_seen, "x-forwarded-email"), "carol@example.test");
    // The upstream forwarding for all takes the first accepted provider's session (configuration order).
    assert_eq!(seen_header(&browser.api_get("/any").await, "x-forwarded-email"), "alice@example.test");
    assert_ne!(seen_header(&staff_seen, "authorization"), seen_header(&partners_seen, "authorization"));
}

#[tokio::test]
async fn a_route_for_partners_sends_a_staff_only_user_to_log_in_and_keeps_the_staff_cookie() {
    let world = MultiWorld::builder().start().await;
    let browser = world.browser();
    login_at(&browser, "staff", "alice", "/").await;
    let staff_value = browser.cookie(&session_cookie("staff")).unwrap();

    let api = browser.api_get(&format!("{PARTNERS_APP}/data")).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED, "{}", api.body);
    // (Which issuers the challenge names is the login helper's part of issue 16.)
    assert!(api.header("www-authenticate").is_some_and(|challenge| challenge.starts_with("Bearer")));

    let navigation = browser.navigate(&format!("{PARTNERS_APP}/page")).await;
    assert_eq!(navigation.status, StatusCode::FOUND, "{}", navigation.body);
    let location = navigation.location();
    assert!(
        location.starts_with(&format!("{}/authorize?", world.partners.issuer()))
            || location.contains("provider=partners"),
        "a login at partners, not {location}"
    );
    for reply in [&api, &navigation] {
        assert!(reply.set_cookie(&session_cookie("staff")).is_none(), "the staff cookie is not touched");
    }
    assert_eq!(browser.cookie(&session_cookie("staff")), Some(staff_value.clone()));
    assert_eq!(browser.api_get(&format!("{STAFF_APP}/data")).await.status, StatusCode::OK);

    // A partners cookie that does not open is cleared there; the staff cookie still is not.
    browser.set_cookie(&session_cookie("partners"), "bm90LWEtc2Vzc2lvbg");
    let invalid = browser.navigate(&format!("{PARTNERS_APP}/page")).await;
    assert_eq!(invalid.status, StatusCode::FOUND, "{}", invalid.body);
    assert!(invalid.set_cookie(&session_cookie("partners")).is_some_and(|cookie| cookie.is_deletion()));
    assert!(invalid.set_cookie(&session_cookie("staff")).is_none(), "the staff cookie is not touched");
    assert_eq!(browser.cookie(&session_cookie("staff")), Some(staff_value));
    // The upstream never sees the gateway's cookies, the application's own it does.
    browser.set_cookie("app", "1");
    let seen = browser.api_get(&format!("{STAFF_APP}/data")).await;
    let cookies = seen_header(&seen, "cookie");
    assert!(cookies.contains("app=1") && !cookies.contains("_portcullis"), "{cookies}");
}

// 5. A session is bound to its provider's cookie name, on a connection too.

#[tokio::test]
async fn a_staff_cookie_under_the_partners_name_is_refused_even_on_the_connection_that_opened_it() {
    cookie_bound_to_its_provider(MultiWorld::builder().start().await).await;
}

#[tokio::test]
async fn a_staff_handle_under_the_partners_name_is_refused_in_store_mode() {
    let redis = RedisServer::start().await;
    cookie_bound_to_its_provider(store_world(&redis).await).await;
}

async fn cookie_bound_to_its_provider(world: MultiWorld) {
    let browser = world.browser();
    login_at(&browser, "staff", "alice", "/").await;
    let value = browser.cookie(&session_cookie("staff")).unwrap();

    // Renamed: the seal binds the cookie's name.
    let renamed = world.browser();
    renamed.set_cookie(&session_cookie("partners"), &value);
    assert_eq!(renamed.api_get(PARTNERS_APP).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(renamed.api_get("/all").await.status, StatusCode::UNAUTHORIZED);

    // On one keep-alive connection: opened as staff first, then sent under partners' name.
    let mut connection = OneConnection::open_at(world.gateway_addr).await;
    let as_staff = format!("{}={value}", session_cookie("staff"));
    let as_partners = format!("{}={value}", session_cookie("partners"));
    assert_eq!(connection.get(STAFF_APP, &as_staff).await.status, StatusCode::OK, "the control: staff's name works");
    assert_eq!(connection.get(PARTNERS_APP, &as_partners).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(connection.get("/all", &as_partners).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(connection.get("/all", &as_staff).await.status, StatusCode::OK);
}

// 6. Sign-out isolation.

async fn sign_out(browser: &Browser, query: &str) -> Reply {
    let reply = browser.navigate(&format!("/oauth2/sign_out{query}")).await;
    assert_eq!(reply.status, StatusCode::FOUND, "{}", reply.body);
    reply
}

/// A world whose sessions live in `redis` (store mode).
async fn store_world(redis: &RedisServer) -> MultiWorld {
    let url = redis.url();
    MultiWorld::builder()
        .tweak(move |raw| raw.session.store.url = Some(portcullis::secret::SecretString::new(url.clone())))
        .start()
        .await
}

#[tokio::test]
async fn signing_out_of_staff_leaves_the_partners_session_and_plain_sign_out_ends_both() {
    sign_out_isolation(MultiWorld::builder().start().await).await;
}

#[tokio::test]
async fn signing_out_of_staff_leaves_the_partners_session_in_store_mode() {
    let redis = RedisServer::start().await;
    sign_out_isolation(store_world(&redis).await).await;
}

async fn sign_out_isolation(world: MultiWorld) {
    let browser = world.browser();
    login_at(&browser, "staff", "alice", "/").await;
    login_at(&browser, "partners", "carol", "/").await;
    let old_staff = browser.cookie(&session_cookie("staff")).unwrap();

    // A provider nobody configured is no scope to sign out of: nothing ends.
    let unknown = browser.navigate("/oauth2/sign_out?provider=nobody").await;
    assert!(unknown.status.is_client_error(), "{}", unknown.status);
    assert!(unknown.set_cookies().is_empty());
    assert_eq!(browser.api_get(STAFF_APP).await.status, StatusCode::OK);

    let reply = sign_out(&browser, "?provider=staff").await;
    assert!(reply.set_cookie(&session_cookie("staff")).is_some_and(|cookie| cookie.is_deletion()));
    assert!(reply.set_cookie(&session_cookie("partners")).is_none(), "partners' cookie is kept");
    assert!(world.staff().revoked_tokens() >= 1, "staff's tokens revoked at staff");
    assert_eq!(world.partners.revoked_tokens(), 0, "nothing revoked at partners");
    assert_eq!(browser.api_get(STAFF_APP).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(seen_header(&browser.api_get(PARTNERS_APP).await, "x-forwarded-email"), "carol@example.test");
    // The ended staff session stays ended when its old cookie comes back.
    let replay = world.browser();
    replay.set_cookie(&session_cookie("staff"), &old_staff);
    assert_eq!(replay.api_get(STAFF_APP).await.status, StatusCode::UNAUTHORIZED);

    // Both again, then a plain sign-out ends both and revokes at each provider.
    login_at(&browser, "staff", "alice", "/").await;
    let (staff_revoked, partners_revoked) = (world.staff().revoked_tokens(), world.partners.revoked_tokens());
    let old_partners = browser.cookie(&session_cookie("partners")).unwrap();
    let reply = sign_out(&browser, "").await;
    for provider in ["staff", "partners"] {
        assert!(reply.set_cookie(&session_cookie(provider)).is_some_and(|cookie| cookie.is_deletion()), "{provider}");
    }
    assert!(world.staff().revoked_tokens() > staff_revoked, "revoked at staff");
    assert!(world.partners.revoked_tokens() > partners_revoked, "revoked at partners");
    assert_eq!(browser.api_get(STAFF_APP).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(browser.api_get(PARTNERS_APP).await.status, StatusCode::UNAUTHORIZED);
    replay.set_cookie(&session_cookie("partners"), &old_partners);
    assert_eq!(replay.api_get(PARTNERS_APP).await.status, StatusCode::UNAUTHORIZED);
}

// 7. Back-channel logout isolation.

async fn backchannel_isolation(world: MultiWorld) {
    // The same user name, so the same `sub`, at both providers.
    let at_staff = world.browser();
    login_at(&at_staff, "staff", "alice", "/").await;
    let at_partners = world.browser();
    login_at(&at_partners, "partners", "alice", "/").await;
    let both = world.browser();
    login_at(&both, "staff", "alice", "/").await;
    login_at(&both, "partners", "alice", "/").await;
    let (staff_sub, staff_sid) = world.sub_and_sid("staff", &at_staff.cookie(&session_cookie("staff")).unwrap());
    let (partners_sub, partners_sid) =
        world.sub_and_sid("partners", &at_partners.cookie(&session_cookie("partners")).unwrap());
    assert_eq!(staff_sub, partners_sub, "the premise: one sub at two issuers");

    // A logout token signed by partners that claims staff's issuer is checked with staff's keys: refused.
    let now = world.clock.now();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("logout+jwt".to_owned());
    let claims = serde_json::json!({
        "iss": world.staff().issuer(), "sub": staff_sub, "aud": CLIENT_ID, "iat": now, "exp": now + 120,
        "jti": "forged-by-partners", "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
    });
    let forged = world.partners.sign_with_current_key(header, &claims).unwrap();
    assert_eq!(world.browser().post_logout_token(&forged).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(at_staff.api_get(STAFF_APP).await.status, StatusCode::OK, "a forged logout ends nothing");

    // By sid: staff names the partners session's sid; it is not staff's to end.
    let partners_sid = partners_sid.expect("a sid in the partners ID token");
    let token = world.staff().backchannel_logout_token("alice", Some(&partners_sid)).unwrap();
    assert_eq!(world.browser().post_logout_token(&token).await.status, StatusCode::OK);
    assert_eq!(at_partners.api_get(PARTNERS_APP).await.status, StatusCode::OK, "a sid is per issuer");

    // By sid of staff's own session: that one ends.
    let staff_sid = staff_sid.expect("a sid in the staff ID token");
    let token = world.staff().backchannel_logout_token("alice", Some(&staff_sid)).unwrap();
    assert_eq!(world.browser().post_logout_token(&token).await.status, StatusCode::OK);
    assert_eq!(at_staff.api_get(STAFF_APP).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(both.api_get(STAFF_APP).await.status, StatusCode::OK, "another staff session of alice lives on");
    assert_eq!(at_partners.api_get(PARTNERS_APP).await.status, StatusCode::OK);

    // By sub at staff: every staff session of alice ends; partners' alice stays.
    let token = world.staff().backchannel_logout_token("alice", None).unwrap();
    assert_eq!(world.browser().post_logout_token(&token).await.status, StatusCode::OK);
    assert_eq!(both.api_get(STAFF_APP).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(seen_header(&both.api_get(PARTNERS_APP).await, "x-forwarded-email"), "alice@example.test");
    assert_eq!(at_partners.api_get(PARTNERS_APP).await.status, StatusCode::OK);
    // The route accepting both now finds the partners session.
    assert_eq!(both.api_get("/all").await.status, StatusCode::OK);

    // An issuer the gateway does not know is refused and ends nothing.
    let stranger = stranger_provider().await;
    let token = stranger.backchannel_logout_token("alice", None).unwrap();
    let refused = world.browser().post_logout_token(&token).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(at_partners.api_get(PARTNERS_APP).await.status, StatusCode::OK);

    // Partners' own logout ends partners' sessions.
    let token = world.partners.backchannel_logout_token("alice", None).unwrap();
    assert_eq!(world.browser().post_logout_token(&token).await.status, StatusCode::OK);
    assert_eq!(at_partners.api_get(PARTNERS_APP).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(both.api_get("/all").await.status, StatusCode::UNAUTHORIZED);
}

/// A development provider no gateway here is configured for.
async fn stranger_provider() -> DevProvider {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = DevProviderConfig::demo(CLIENT_ID, "http://127.0.0.1:1/oauth2/callback".to_owned());
    DevProvider::start(listener, config).await.unwrap()
}

#[tokio::test]
async fn a_back_channel_logout_ends_only_its_own_providers_sessions() {
    backchannel_isolation(MultiWorld::builder().start().await).await;
}

#[tokio::test]
async fn a_back_channel_logout_ends_only_its_own_providers_sessions_in_store_mode() {
    let redis = RedisServer::start().await;
    backchannel_isolation(store_world(&redis).await).await;
}

// 8. Bearer tokens per provider.

/// An access token as `provider` would issue it, for `audience`.
fn access_token(provider: &DevProvider, audience: &str, email: &str) -> String {
    let now = portcullis::clock::Clock::system().now();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("at+jwt".to_owned());
    let claims = serde_json::json!({
        "iss": provider.issuer(), "sub": format!("sub-{email}"), "aud": audience, "client_id": CLIENT_ID,
        "email": email, "email_verified": true, "iat": now, "exp": now + 300, "jti": format!("jti-{email}-{audience}"),
    });
    provider.sign_with_current_key(header, &claims).expect("a signed token")
}

#[tokio::test]
async fn bearer_tokens_are_accepted_only_from_the_routes_providers_with_each_providers_audience() {
    let extra = stranger_provider().await;
    let extra_issuer = extra.issuer().to_owned();
    let world = MultiWorld::builder()
        .tweak(move |raw| {
            raw.bearer.enabled = true;
            raw.oidc.providers[1].bearer_audience = Some("https://partners-api.example".to_owned());
            raw.bearer.issuers = vec![RawIssuer {
                issuer: extra_issuer.clone(),
                audience: "https://extra.example".to_owned(),
                algorithms: Vec::new(),
            }];
        })
        .start()
        .await;
    let client = world.browser();
    let staff_token = access_token(world.staff(), CLIENT_ID, "alice@example.test");
    let partners_token = access_token(&world.partners, "https://partners-api.example", "carol@example.test");
    let partners_token_for_client = access_token(&world.partners, CLIENT_ID, "carol@example.test");
    let extra_token = access_token(&extra, "https://extra.example", "eve@example.test");

    let refused = |reply: Reply| {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(challenge.contains("invalid_token"), "{challenge}");
    };
    // Staff's token: on staff's route, not on partners'.
    assert_eq!(
        seen_header(&client.api_get_with_bearer(STAFF_APP, &staff_token).await, "x-forwarded-email"),
        "alice@example.test"
    );
    refused(client.api_get_with_bearer(PARTNERS_APP, &staff_token).await);
    // Partners' token with partners' audience: on partners' route, not on staff's.
    assert_eq!(
        seen_header(&client.api_get_with_bearer(PARTNERS_APP, &partners_token).await, "x-forwarded-email"),
        "carol@example.test"
    );
    refused(client.api_get_with_bearer(STAFF_APP, &partners_token).await);
    // Partners' audience is its own: the client id is not it.
    refused(client.api_get_with_bearer(PARTNERS_APP, &partners_token_for_client).await);
    // Both on the route for all providers.
    assert_eq!(client.api_get_with_bearer("/api/all", &staff_token).await.status, StatusCode::OK);
    assert_eq!(client.api_get_with_bearer("/api/all", &partners_token).await.status, StatusCode::OK);
    // An extra issuer: only where every provider is accepted.
    assert_eq!(
        seen_header(&client.api_get_with_bearer("/api/all", &extra_token).await, "x-forwarded-email"),
        "eve@example.test"
    );
    refused(client.api_get_with_bearer(STAFF_APP, &extra_token).await);
    refused(client.api_get_with_bearer(PARTNERS_APP, &extra_token).await);
}

#[tokio::test]
async fn an_opaque_token_refused_on_another_providers_route_still_works_on_its_own() {
    let world = MultiWorld::builder()
        .confidential("s3cret-for-introspection")
        .tweak(|raw| {
            raw.bearer.enabled = true;
            raw.bearer.introspection = true;
        })
        .start()
        .await;
    let client = world.browser();
    let partners_token = world.partners.mint_opaque_access_token("carol", Duration::from_secs(300)).unwrap();
    // On staff's route only staff may vouch for it, and staff does not know it.
    let refused = client.api_get_with_bearer(STAFF_APP, &partners_token).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert_eq!(world.partners.introspections(), 0, "partners is not asked on staff's route");
    // That refusal says nothing about partners: on its own route the token is good.
    let accepted = client.api_get_with_bearer(PARTNERS_APP, &partners_token).await;
    assert_eq!(seen_header(&accepted, "x-forwarded-email"), "carol@example.test");
    assert_eq!(world.partners.introspections(), 1);
    // And a refusal by every accepted provider is still remembered (no second introspection).
    let unknown = "opaque-token-nobody-issued";
    assert_eq!(client.api_get_with_bearer(PARTNERS_APP, unknown).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(client.api_get_with_bearer(PARTNERS_APP, unknown).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(world.partners.introspections(), 2, "the second refusal came from the cache");
    // Refused at staff too; the route for both asks nobody (see the test below).
    let staff_before = world.staff().introspections();
    assert_eq!(client.api_get_with_bearer(STAFF_APP, unknown).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(world.staff().introspections(), staff_before + 1);
    assert_eq!(client.api_get_with_bearer("/api/all", unknown).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(world.staff().introspections(), staff_before + 1);
    assert_eq!(world.partners.introspections(), 2);
}

// 9. Refresh per provider.

#[tokio::test]
async fn a_partners_session_is_refreshed_at_partners_not_at_staff() {
    refresh_per_provider(MultiWorld::builder().partners_access_ttl(Duration::from_secs(120)).start().await).await;
}

#[tokio::test]
async fn a_partners_session_is_refreshed_at_partners_not_at_staff_in_store_mode() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let world = MultiWorld::builder()
        .partners_access_ttl(Duration::from_secs(120))
        .tweak(move |raw| raw.session.store.url = Some(portcullis::secret::SecretString::new(url.clone())))
        .start()
        .await;
    refresh_per_provider(world).await;
}

async fn refresh_per_provider(world: MultiWorld) {
    let browser = world.browser();
    login_at(&browser, "staff", "alice", "/").await;
    login_at(&browser, "partners", "carol", "/").await;
    let before = seen_header(&browser.api_get(PARTNERS_APP).await, "authorization");
    let staff_before = seen_header(&browser.api_get(STAFF_APP).await, "authorization");
    // Partners' token is now within the refresh margin (60 s); staff's (300 s) is not.
    world.clock.advance(90);
    let seen = browser.api_get(PARTNERS_APP).await;
    assert_eq!(seen_header(&seen, "x-forwarded-email"), "carol@example.test");
    assert_eq!(world.partners.token_requests("refresh_token"), 1, "refreshed at partners");
    assert_eq!(world.staff().token_requests("refresh_token"), 0, "never at staff");
    assert_ne!(seen_header(&seen, "authorization"), before, "a new partners access token goes upstream");
    let staff_seen = browser.api_get(STAFF_APP).await;
    assert_eq!(seen_header(&staff_seen, "authorization"), staff_before, "staff's token is untouched");
    assert_eq!(seen_header(&browser.api_get(PARTNERS_APP).await, "authorization"), seen_header(&seen, "authorization"));
    assert_eq!(world.staff().token_requests("refresh_token"), 0);
    assert_eq!(world.partners.token_requests("refresh_token"), 1);
}

// 10. One provider down.

#[tokio::test]
async fn with_staff_down_partners_still_logs_in_and_serves_and_the_gateway_is_ready() {
    let world = MultiWorld::builder().staff_down().start().await;
    let ready = world.ready().await;
    assert_eq!(ready.status, StatusCode::OK, "ready while some provider is loaded: {}", ready.body);
    let browser = world.browser();
    let refused = browser.navigate(&format!("/oauth2/start?provider=staff&rd={STAFF_APP}")).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE, "{}", refused.body);
    login_at(&browser, "partners", "carol", PARTNERS_APP).await;
    assert_eq!(seen_header(&browser.api_get(PARTNERS_APP).await, "x-forwarded-email"), "carol@example.test");
    assert_eq!(browser.api_get(STAFF_APP).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_gateway_is_not_ready_while_no_provider_is_loaded() {
    let world = MultiWorld::builder()
        .staff_faults(|faults| faults.unavailable.set(true))
        .partners_faults(|faults| faults.unavailable.set(true))
        .start()
        .await;
    assert_eq!(world.ready().await.status, StatusCode::SERVICE_UNAVAILABLE);
    world.partners.faults().unavailable.set(false);
    let ready =
        crate::support::eventually(Duration::from_secs(10), || async { world.ready().await.status == StatusCode::OK })
            .await;
    assert!(ready, "one provider back is enough");
    let browser = world.browser();
    login_at(&browser, "partners", "carol", "/").await;
}

/// An opaque token names no issuer: on a route that several introspecting
/// providers may vouch for, asking them in turn would hand one provider's
/// token to another. It is refused instead, and nobody is asked.
#[tokio::test]
async fn an_opaque_token_is_never_shown_to_a_provider_that_did_not_issue_it() {
    let world = MultiWorld::builder()
        .confidential("s3cret-for-introspection")
        .tweak(|raw| {
            raw.bearer.enabled = true;
            raw.bearer.introspection = true;
        })
        .start()
        .await;
    let client = world.browser();
    let partners_token = world.partners.mint_opaque_access_token("carol", Duration::from_secs(300)).unwrap();
    let refused = client.api_get_with_bearer("/api/all", &partners_token).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert_eq!(world.staff().introspections(), 0, "staff never saw partners' token");
    assert_eq!(world.partners.introspections(), 0, "an ambiguous route asks nobody");
    // Where exactly one provider can vouch for it, it is asked.
    let accepted = client.api_get_with_bearer(PARTNERS_APP, &partners_token).await;
    assert_eq!(seen_header(&accepted, "x-forwarded-email"), "carol@example.test");
    assert_eq!(world.partners.introspections(), 1);
    assert_eq!(world.staff().introspections(), 0);
}
