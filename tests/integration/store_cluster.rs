//! The session store on a Redis Cluster: three shards (real `redis-server
//! --cluster-enabled yes`, joined with `redis-cli --cluster create`) and two
//! gateway replicas. Sessions spread over the shards; the lookup's `MGET` of a
//! session and its logout records (keys in different slots) works; one refresh
//! per session across both replicas; a sign-out on one replica reaches the
//! other through the cluster's pub/sub.

use std::time::Duration;

use http::StatusCode;

use crate::support::cluster::RedisCluster;
use crate::support::replicas::Replica;
use crate::support::{Browser, TestWorld, eventually};

const PREFIX: &str = "itest-cluster:";
const SESSIONS: usize = 24;

fn bearer(reply: &crate::support::Reply) -> String {
    reply.json()["headers"]["authorization"][0].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn sessions_spread_over_three_shards_and_refresh_once_across_two_replicas() {
    let cluster = RedisCluster::start().await;
    let url = cluster.url();
    let world = TestWorld::builder()
        .tweak(move |raw| {
            raw.session.store.url = Some(portcullis::secret::SecretString::new(url.clone()));
            raw.session.store.key_prefix = PREFIX.to_owned();
        })
        .start()
        .await;
    let replica = Replica::start(&world).await;
    assert_eq!(world.ready().await.status, StatusCode::OK);

    let mut browsers = Vec::new();
    for _ in 0..SESSIONS {
        let browser = world.browser();
        browser.login().await;
        assert_eq!(browser.api_get("/private").await.status, StatusCode::OK);
        browsers.push(browser);
    }
    // Random session ids hash to every shard (a shard without one of 24: p < 1e-4).
    let per_node = cluster.keys_per_node(&format!("{PREFIX}session:*")).await;
    eprintln!("{SESSIONS} sessions over three shards: {per_node:?}");
    assert_eq!(per_node.iter().sum::<usize>(), SESSIONS, "{per_node:?}");
    assert!(per_node.iter().all(|count| *count > 0), "sessions on every shard: {per_node:?}");

    // A session read on the other replica: its MGET spans three slots.
    let name = world.session_cookie_name();
    let on_b = replica.browser();
    on_b.set_cookie(&name, &browsers[0].session_value());
    let first = on_b.api_get("/private").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);

    // 300 s access tokens, a 60 s margin: now every request wants a refresh; one happens.
    world.clock.advance(250);
    let old = bearer(&first);
    let cookie = browsers[0].session_value();
    let gateways = [format!("http://{}", world.gateway_addr), format!("http://{}", replica.addr)];
    let mut requests = Vec::new();
    for index in 0..100 {
        let browser = Browser::new(
            gateways[index % 2].clone(),
            world.public_url.clone(),
            world.provider.issuer().to_owned(),
            name.clone(),
        );
        browser.set_cookie(&name, &cookie);
        requests.push(tokio::spawn(async move { browser.api_get("/private").await }));
    }
    let mut forwarded = std::collections::HashSet::new();
    for request in requests {
        let reply = request.await.expect("the request task");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        forwarded.insert(bearer(&reply));
    }
    assert_eq!(world.provider.token_requests("refresh_token"), 1, "exactly one refresh reached the provider");
    assert_eq!(forwarded.len(), 1, "every request carried the same new token");
    assert!(!forwarded.contains(&old));

    // A sign-out on A reaches B (which holds a local copy) through pub/sub.
    let victim = &browsers[1];
    let copied = victim.session_value();
    let thief = replica.browser();
    thief.set_cookie(&name, &copied);
    assert_eq!(thief.api_get("/private").await.status, StatusCode::OK);
    assert_eq!(victim.navigate("/oauth2/sign_out").await.expect_redirect(), "/");
    let ended = eventually(Duration::from_secs(2), || async {
        thief.set_cookie(&name, &copied);
        thief.api_get("/private").await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(ended, "the sign-out did not reach replica B");
}
