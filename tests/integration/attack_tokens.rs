//! Forged ID tokens: `alg: none`, algorithm confusion (HS256 keyed with the
//! public key), unknown and hostile `kid`s, missing `exp`/`aud`/`iss`/`sub`,
//! wrong issuer and audience, an audience the client does not trust, an empty
//! `sub`, a future `nbf`, an unknown `crit` header, expired, bad signature.
//! None may make a session, none may cause a 5xx other than the provider-error
//! page, and nothing reaches the upstream.

use http::StatusCode;
use portcullis_devkit::devidp::Faults;
use serde_json::json;

use crate::support::upstreams::CountingUpstream;
use crate::support::{CLIENT_ID, TestWorld};

type Forgery = (&'static str, fn(&Faults));

const FORGERIES: &[Forgery] = &[
    ("alg none", |faults| faults.id_token_alg_none.set(true)),
    ("HS256 keyed with the public key", |faults| faults.id_token_hmac_with_public_key.set(true)),
    ("bad signature under the published kid", |faults| faults.id_token_bad_signature.set(true)),
    ("unknown kid", |faults| faults.id_token_kid.set(Some("no-such-key"))),
    ("empty kid", |faults| faults.id_token_kid.set(Some(""))),
    ("path traversal kid", |faults| faults.id_token_kid.set(Some("../../../../../../etc/passwd"))),
    ("SQL kid", |faults| faults.id_token_kid.set(Some("x' UNION SELECT 'key"))),
    ("URL kid", |faults| faults.id_token_kid.set(Some("https://evil.example/jwks.json"))),
    ("control character kid", |faults| faults.id_token_kid.set(Some("k\u{0}\r\nid"))),
    ("the rogue key's own kid", |faults| faults.id_token_kid.set(Some("rogue"))),
    ("missing exp", |faults| faults.id_token_omit_claim.set(Some("exp"))),
    ("missing aud", |faults| faults.id_token_omit_claim.set(Some("aud"))),
    ("missing iss", |faults| faults.id_token_omit_claim.set(Some("iss"))),
    ("missing sub", |faults| faults.id_token_omit_claim.set(Some("sub"))),
    ("missing iat", |faults| faults.id_token_omit_claim.set(Some("iat"))),
    ("missing nonce", |faults| faults.id_token_omit_claim.set(Some("nonce"))),
    ("wrong issuer", |faults| faults.id_token_wrong_issuer.set(true)),
    ("wrong audience", |faults| faults.id_token_wrong_audience.set(true)),
    ("expired", |faults| faults.id_token_expired.set(true)),
    ("wrong nonce", |faults| faults.id_token_wrong_nonce.set(true)),
    ("empty sub", |faults| faults.id_token_claims.set(Some(json!({"sub": ""})))),
    ("nbf in the future", |faults| faults.id_token_claims.set(Some(json!({"nbf": FAR_FUTURE})))),
    ("an audience the client does not trust, azp naming the client", |faults| {
        faults.id_token_claims.set(Some(json!({"aud": [CLIENT_ID, "https://untrusted.example"], "azp": CLIENT_ID})));
    }),
    ("an unknown critical header", |faults| faults.id_token_critical.set(Some("urn:example:unknown"))),
];

/// A time no test clock reaches (year 2096).
const FAR_FUTURE: i64 = 4_000_000_000;

fn clear(faults: &Faults) {
    faults.id_token_alg_none.set(false);
    faults.id_token_hmac_with_public_key.set(false);
    faults.id_token_bad_signature.set(false);
    faults.id_token_kid.set(None);
    faults.id_token_omit_claim.set(None);
    faults.id_token_wrong_issuer.set(false);
    faults.id_token_wrong_audience.set(false);
    faults.id_token_expired.set(false);
    faults.id_token_wrong_nonce.set(false);
    faults.id_token_claims.set(None);
    faults.id_token_critical.set(None);
}

#[tokio::test]
async fn forged_id_tokens_never_make_a_session() {
    let upstream = CountingUpstream::start().await;
    let world = TestWorld::builder().upstream(upstream.url.clone()).start().await;
    for (what, forge) in FORGERIES {
        clear(world.provider.faults());
        forge(world.provider.faults());
        let browser = world.browser();
        let pending = browser.start_login("/after").await;
        let callback = browser.sign_in_at_provider(&pending, "alice", "alice").await;
        let reply = browser.finish_login(&callback).await;
        assert!(
            reply.status.is_client_error() || reply.status == StatusCode::BAD_GATEWAY,
            "{what}: {} {}",
            reply.status,
            reply.body
        );
        assert!(browser.cookie(&world.session_cookie_name()).is_none(), "{what} made a session");
        let after = browser.api_get("/after").await;
        assert_eq!(after.status, StatusCode::UNAUTHORIZED, "{what}: {}", after.body);
        assert_eq!(upstream.requests(), 0, "{what}: something reached the upstream");
    }
    // The same walk with honest tokens succeeds, so each refusal was the forgery's doing.
    clear(world.provider.faults());
    let browser = world.browser();
    assert_eq!(browser.login_at("/after", "alice", "alice").await, "/after");
    assert_eq!(browser.api_get("/after").await.status, StatusCode::OK);
    assert_eq!(upstream.requests(), 1);
}
