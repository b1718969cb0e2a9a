//! Opaque bearer tokens checked by RFC 7662 introspection at the provider,
//! as the confidential client, with answers cached at most until `exp`.

use std::time::Duration;

use http::StatusCode;
use serde_json::json;

use crate::support::TestWorld;

/// How many inactive answers per client address (and window) the gateway asks for, as documented.
const INACTIVE_PER_CLIENT: u64 = 10;

async fn call(world: &TestWorld, token: &str) -> crate::support::Reply {
    world.browser().api_get_with_bearer("/api/data", token).await
}

#[tokio::test]
async fn opaque_tokens_are_introspected_cached_and_expire() {
    let world = TestWorld::builder()
        .confidential("introspection-secret", "client_secret_basic")
        .tweak(|raw| {
            raw.bearer.enabled = true;
            raw.bearer.introspection = true;
        })
        .start()
        .await;
    let token = world.provider.mint_opaque_access_token("bob", Duration::from_secs(300)).unwrap();

    let reply = call(&world, &token).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let echoed = reply.json();
    assert_eq!(echoed["headers"]["authorization"][0], format!("Bearer {token}"));
    assert_eq!(echoed["headers"]["x-forwarded-email"][0], "bob@example.test");
    assert_eq!(world.provider.introspections(), 1);
    for _ in 0..5 {
        assert_eq!(call(&world, &token).await.status, StatusCode::OK);
    }
    assert_eq!(world.provider.introspections(), 1, "answers are cached");

    let unknown = call(&world, "not-a-token-the-provider-knows").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(unknown.header("www-authenticate").unwrap().contains("invalid_token"));

    // Past the token's lifetime the cache does not answer, and the provider says inactive.
    world.clock.advance(400);
    assert_eq!(call(&world, &token).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(world.provider.introspections(), 3);
}

fn introspection_world() -> crate::support::world::WorldBuilder {
    TestWorld::builder().confidential("introspection-secret", "client_secret_basic").tweak(|raw| {
        raw.bearer.enabled = true;
        raw.bearer.introspection = true;
    })
}

#[tokio::test]
async fn tokens_issued_to_another_client_are_refused() {
    let world = introspection_world().start().await;
    let ttl = Duration::from_secs(300);
    for (what, changes) in [
        ("client_id of another client, no aud", json!({"aud": null, "client_id": "another-client"})),
        ("neither aud nor client_id", json!({"aud": null, "client_id": null})),
        ("aud of another client", json!({"aud": "another-client"})),
    ] {
        let token = world.provider.mint_opaque_access_token_with("bob", ttl, changes).unwrap();
        let reply = call(&world, &token).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {}", reply.body);
    }
    // Issued to this client, named by client_id alone: accepted.
    let ours = world.provider.mint_opaque_access_token_with("bob", ttl, json!({"aud": null})).unwrap();
    assert_eq!(call(&world, &ours).await.status, StatusCode::OK);
}

#[tokio::test]
async fn anonymous_requests_cannot_make_one_provider_call_each() {
    let world = introspection_world().start().await;
    // The same unknown token again and again: one introspection, the answer is kept.
    for _ in 0..5 {
        assert_eq!(call(&world, "the-same-unknown-token").await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(world.provider.introspections(), 1, "a negative answer is cached");
    // Ever-new unknown tokens from one client: the provider is asked at most
    // INACTIVE_PER_CLIENT times per window; after that the client gets 429.
    for attempt in 1..INACTIVE_PER_CLIENT {
        let reply = call(&world, &format!("unknown-token-{attempt}")).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    }
    for attempt in 0..5 {
        let reply = call(&world, &format!("one-more-unknown-token-{attempt}")).await;
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{}", reply.body);
        assert_eq!(reply.header("retry-after").as_deref(), Some("60"));
    }
    assert_eq!(world.provider.introspections(), INACTIVE_PER_CLIENT);
    // A token whose refusal is cached is still answered as such, at no cost.
    assert_eq!(call(&world, "the-same-unknown-token").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(world.provider.introspections(), INACTIVE_PER_CLIENT);
}
