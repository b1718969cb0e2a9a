//! The session store over TLS, every Redis process TLS-only (`--port 0
//! --tls-port P`, replication, sentinel links and the cluster bus over TLS
//! too), with certificates from a test CA that the gateway trusts through
//! `session.store.ca_file`: one `rediss://` endpoint, a Sentinel group
//! (`rediss+sentinel://`, followed through a failover) and a Redis Cluster
//! (`rediss+cluster://`). A CA the gateway does not trust, or a data node
//! whose certificate does not name the address the sentinels announce, leaves
//! the store unused: not ready, the store's 503, and not one command sent.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;

use crate::support::cluster::RedisCluster;
use crate::support::pki::Pki;
use crate::support::redis::{RedisServer, RedisTls};
use crate::support::replicas::Replica;
use crate::support::sentinel::{SentinelGroup, query_node};
use crate::support::{TestWorld, eventually};

const PREFIX: &str = "itest-tls:";

async fn world_on(url: String, ca_file: PathBuf, min_replica_acks: u32) -> TestWorld {
    TestWorld::builder()
        .tweak(move |raw| {
            raw.session.store.url = Some(portcullis::secret::SecretString::new(url.clone()));
            raw.session.store.ca_file = Some(ca_file.clone());
            raw.session.store.key_prefix = PREFIX.to_owned();
            raw.session.store.min_replica_acks = min_replica_acks;
        })
        .start()
        .await
}

/// Calls per command on `server` (`INFO commandstats`, over TLS).
async fn command_calls(server: &RedisServer) -> BTreeMap<String, u64> {
    let text: String =
        query_node(server, redis::cmd("INFO").arg("commandstats").clone()).await.expect("INFO commandstats");
    text.lines()
        .filter_map(|line| {
            let (name, fields) = line.trim_end().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = fields.split(',').find_map(|field| field.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// Connections `server` accepted (`INFO stats`, over TLS).
async fn connections_received(server: &RedisServer) -> u64 {
    let text: String = query_node(server, redis::cmd("INFO").arg("stats").clone()).await.expect("INFO stats");
    text.lines()
        .find_map(|line| line.trim_end().strip_prefix("total_connections_received:")?.parse().ok())
        .expect("total_connections_received")
}

/// A gateway that must not use the store: it starts not ready, stays so, and
/// a login gets the store's 503 without a session cookie.
async fn refuses_the_store(world: &TestWorld) {
    assert_eq!(world.ready().await.status, StatusCode::SERVICE_UNAVAILABLE);
    let browser = world.browser();
    let pending = browser.start_login("/").await;
    let callback = browser.sign_in_at_provider(&pending, "alice", "alice").await;
    let finished = browser.finish_login(&callback).await;
    assert_eq!(finished.status, StatusCode::SERVICE_UNAVAILABLE, "{}", finished.body);
    assert!(finished.set_cookie(&world.session_cookie_name()).is_none());
    assert_eq!(world.ready().await.status, StatusCode::SERVICE_UNAVAILABLE);
}

/// While a gateway that distrusts `server`'s certificate keeps trying,
/// `server` accepts its connections but runs none of its commands: the
/// handshake fails and nothing is sent in the clear instead. `background`:
/// commands other clients send meanwhile (sentinels, a replica), not counted.
async fn connects_but_sends_nothing(server: &RedisServer, background: &[&str]) {
    let counted = |mut calls: BTreeMap<String, u64>| {
        // Our own INFO calls are the other new commands.
        calls.retain(|name, _| name != "info" && !background.contains(&name.as_str()));
        calls
    };
    let calls_before = counted(command_calls(server).await);
    let connections_before = connections_received(server).await;
    // The health check retries every 100 ms while unhealthy; a few attempts suffice.
    let retried =
        eventually(Duration::from_secs(10), || async { connections_received(server).await >= connections_before + 6 })
            .await;
    assert!(retried, "the gateway did not keep trying to connect");
    let calls_after = counted(command_calls(server).await);
    assert_eq!(calls_after, calls_before, "a command reached the server without TLS verification");
}

#[tokio::test]
async fn a_single_rediss_endpoint_trusts_the_ca_file_and_nothing_else() {
    let pki = Pki::new();
    let tls = RedisTls::new(&pki, &["127.0.0.1"], "redis");
    let redis = RedisServer::start_tls(&tls, &[]).await;
    let url = format!("rediss://127.0.0.1:{}/", redis.port());

    let world = world_on(url.clone(), pki.ca_file(), 0).await;
    let browser = world.browser();
    browser.login().await;
    assert_eq!(browser.api_get("/private").await.status, StatusCode::OK);
    assert_eq!(world.ready().await.status, StatusCode::OK);
    let keys: Vec<String> =
        query_node(&redis, redis::cmd("KEYS").arg(format!("{PREFIX}session:*")).clone()).await.expect("KEYS over TLS");
    assert_eq!(keys.len(), 1, "the session is in the TLS-only Redis");

    // Another CA: the system roots are not consulted either (ca_file replaces them).
    let stranger = Pki::new();
    let distrusting = world_on(url, stranger.ca_file(), 0).await;
    refuses_the_store(&distrusting).await;
    connects_but_sends_nothing(&redis, &[]).await;
}

#[tokio::test]
async fn sentinel_over_tls_serves_sessions_and_follows_a_failover() {
    let pki = Pki::new();
    // The sentinels announce the primary as 127.0.0.1: the data nodes' certificate has that IP SAN.
    let tls = RedisTls::new(&pki, &["127.0.0.1"], "redis");
    let mut group = SentinelGroup::start_tls(&tls, &tls).await;
    assert!(group.url().starts_with("rediss+sentinel://"));
    let world = world_on(group.url(), pki.ca_file(), 1).await;
    assert_eq!(world.ready().await.status, StatusCode::OK);
    let browser = world.browser();
    browser.login().await;
    assert_eq!(browser.api_get("/private").await.status, StatusCode::OK);
    let waits = command_calls(&group.primary).await.get("wait").copied().unwrap_or(0);
    assert!(waits >= 1, "the session write waited for the replica (over TLS replication)");

    group.primary.kill();
    let promoted = eventually(Duration::from_secs(60), || async {
        group.named_primary_port().await == Some(group.replica.port())
    })
    .await;
    assert!(promoted, "the sentinels did not promote the replica within 60 s");
    let statuses = std::sync::Mutex::new(Vec::new());
    let followed = eventually(Duration::from_secs(30), || async {
        let status = browser.api_get("/private").await.status;
        statuses.lock().expect("statuses").push(status);
        status == StatusCode::OK
    })
    .await;
    let statuses = statuses.into_inner().expect("statuses");
    assert!(followed, "the gateway did not follow the promotion over TLS within 30 s: {statuses:?}");
    assert!(
        statuses.iter().all(|status| [StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE].contains(status)),
        "only the store's 503 in the gap: {statuses:?}"
    );
    // The session written before the failover is read from the new primary by a fresh replica.
    let fresh = Replica::start(&world).await;
    let on_fresh = fresh.browser();
    on_fresh.set_cookie(&world.session_cookie_name(), &browser.session_value());
    assert_eq!(on_fresh.api_get("/private").await.status, StatusCode::OK);

    // A gateway trusting another CA does not use the sentinels (nor would it reach a data node).
    let stranger = Pki::new();
    let distrusting = world_on(group.url(), stranger.ca_file(), 0).await;
    refuses_the_store(&distrusting).await;
}

#[tokio::test]
async fn a_data_node_whose_certificate_does_not_name_the_announced_address_is_refused() {
    let pki = Pki::new();
    let sentinels = RedisTls::new(&pki, &["127.0.0.1"], "sentinel");
    // Signed by the trusted CA, valid for `localhost` only; the sentinels announce 127.0.0.1.
    let data_nodes = RedisTls::new(&pki, &["localhost"], "data");
    let group = SentinelGroup::start_tls(&sentinels, &data_nodes).await;
    assert_eq!(group.named_primary_port().await, Some(group.primary.port()), "the sentinels answer over TLS");
    let world = world_on(group.url(), pki.ca_file(), 0).await;
    refuses_the_store(&world).await;
    // The sentinels' and the replica's own traffic; the gateway would start with ROLE.
    let background = ["ping", "publish", "subscribe", "replconf", "psync", "client|setname"];
    connects_but_sends_nothing(&group.primary, &background).await;
}

#[tokio::test]
async fn cluster_over_tls_spreads_sessions_and_refuses_an_unknown_ca() {
    const SESSIONS: usize = 24;
    let pki = Pki::new();
    let tls = RedisTls::new(&pki, &["127.0.0.1"], "redis");
    let cluster = RedisCluster::start_tls(&tls).await;
    assert!(cluster.url().starts_with("rediss+cluster://"));
    let world = world_on(cluster.url(), pki.ca_file(), 0).await;
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
    assert_eq!(per_node.iter().sum::<usize>(), SESSIONS, "{per_node:?}");
    assert!(per_node.iter().all(|count| *count > 0), "sessions on every shard: {per_node:?}");
    // Read on the other replica: an MGET over three slots, so over TLS connections to other shards.
    for browser in &browsers {
        let on_replica = replica.browser();
        on_replica.set_cookie(&world.session_cookie_name(), &browser.session_value());
        assert_eq!(on_replica.api_get("/private").await.status, StatusCode::OK);
    }

    // Only the distrusting gateway talks to the cluster from here on.
    drop((replica, browsers, world));
    let stranger = Pki::new();
    let distrusting = world_on(cluster.url(), stranger.ca_file(), 0).await;
    refuses_the_store(&distrusting).await;
    connects_but_sends_nothing(&cluster.nodes[0], &[]).await;
}
