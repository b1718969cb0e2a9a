//! Opaque bearer tokens checked by RFC 7662 introspection at the provider,
//! as the confidential client, with answers cached at most until `exp`.

use std::time::Duration;

use http::StatusCode;

use crate::support::TestWorld;

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
