//! Store mode at steady state: authenticated requests are served from the
//! replica's local copy of the session, so they cost no Redis command; the
//! store is asked again once per session per `local_cache_ttl` (one MGET).
//! Counted from a real `redis-server`'s `INFO commandstats`, never timed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::support::connection::OneConnection;
use crate::support::redis::RedisServer;
use crate::support::{Browser, TestWorld};

/// The longest local copy the configuration allows: the window in which the
/// measured requests must cost nothing.
const LOCAL_CACHE_TTL: u64 = 60;

/// Requests per phase (keep-alive, then a new connection each).
const REQUESTS: usize = 200;

/// Commands the gateway sends whatever the traffic, and the test's own reads:
/// the health check's PING every second and the `INFO` that reads the counts.
const BACKGROUND: [&str; 2] = ["ping", "info"];

async fn store_world(redis: &RedisServer) -> TestWorld {
    let url = redis.url();
    TestWorld::builder()
        .tweak(move |raw| {
            raw.session.store.url = Some(portcullis::secret::SecretString::new(url.clone()));
            raw.session.store.key_prefix = "cmds:".to_owned();
            raw.session.store.local_cache_ttl = Duration::from_secs(LOCAL_CACHE_TTL);
        })
        .start()
        .await
}

/// Commands (other than [`BACKGROUND`]) run between two `INFO commandstats` reads.
fn commands_between(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(name, _)| !BACKGROUND.contains(&name.as_str()))
        .map(|(name, calls)| (name.clone(), calls - before.get(name).copied().unwrap_or(0)))
        .filter(|(_, delta)| *delta > 0)
        .collect()
}

/// Refetches the local copy may legitimately need in `elapsed` of real time: it is
/// trusted for at least `LOCAL_CACHE_TTL - 1` s (the clock counts whole seconds), so
/// none unless the phase outlasts that (a very slow machine).
fn refetches_allowed(elapsed: Duration) -> u64 {
    elapsed.as_secs() / (LOCAL_CACHE_TTL - 1)
}

#[tokio::test]
async fn authenticated_requests_cost_no_redis_command_at_steady_state() {
    let redis = RedisServer::start().await;
    let world = store_world(&redis).await;
    let browser = world.browser();
    browser.login().await;
    let cookie = format!("{}={}", world.session_cookie_name(), browser.session_value());

    // Start every measured phase right after a refetch, so the real-time window is known.
    world.clock.advance(i64::try_from(LOCAL_CACHE_TTL).unwrap());
    let before_refetch = redis.command_calls().await;
    let mut connection = OneConnection::open(&world).await;
    let warm_up = connection.get("/private", &cookie).await;
    assert_eq!(warm_up.status, StatusCode::OK, "{}", warm_up.body);
    let started = Instant::now();
    let refetch = commands_between(&before_refetch, &redis.command_calls().await);
    // Also proves the counts see a request's lookup: the measurement is not blind.
    assert_eq!(
        refetch,
        BTreeMap::from([("mget".to_owned(), 1)]),
        "a request after local_cache_ttl reads the session and its logout records in one MGET"
    );

    let before = redis.command_calls().await;
    for _ in 0..REQUESTS {
        let reply = connection.get("/private", &cookie).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let keep_alive = commands_between(&before, &redis.command_calls().await);

    let before = redis.command_calls().await;
    for _ in 0..REQUESTS {
        // The browser pools no connection: each request opens its own.
        let reply = browser.api_get("/private").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let new_connections = commands_between(&before, &redis.command_calls().await);

    let allowed = refetches_allowed(started.elapsed());
    for (phase, commands) in [("keep-alive", &keep_alive), ("a new connection per request", &new_connections)] {
        let total: u64 = commands.values().sum();
        eprintln!("{REQUESTS} authenticated requests, {phase}: {total} Redis commands besides PING/INFO {commands:?}");
        assert!(
            total <= allowed && commands.keys().all(|name| name == "mget"),
            "{REQUESTS} authenticated requests ({phase}) ran {commands:?} on Redis; at most {allowed} MGET allowed"
        );
    }

    // Crossing the TTL costs exactly one MGET, then the copy serves again.
    world.clock.advance(i64::try_from(LOCAL_CACHE_TTL).unwrap());
    let before = redis.command_calls().await;
    for _ in 0..3 {
        assert_eq!(connection.get("/private", &cookie).await.status, StatusCode::OK);
    }
    let after_ttl = commands_between(&before, &redis.command_calls().await);
    assert_eq!(after_ttl, BTreeMap::from([("mget".to_owned(), 1)]), "one MGET per session per local_cache_ttl");
}

/// Two sessions each need their own read after the TTL, not one per request.
#[tokio::test]
async fn each_session_is_read_once_per_local_cache_ttl() {
    let redis = RedisServer::start().await;
    let world = store_world(&redis).await;
    let alice = world.browser();
    alice.login().await;
    let again = world.browser();
    again.login().await;
    let sessions: Vec<Browser> = vec![alice, again];

    world.clock.advance(i64::try_from(LOCAL_CACHE_TTL).unwrap());
    let before = redis.command_calls().await;
    for _ in 0..10 {
        for browser in &sessions {
            assert_eq!(browser.api_get("/private").await.status, StatusCode::OK);
        }
    }
    let commands = commands_between(&before, &redis.command_calls().await);
    assert_eq!(commands, BTreeMap::from([("mget".to_owned(), 2)]), "one MGET per session, not per request");
}
