//! A session store that survives a failover: a gateway on a Redis Sentinel
//! group (real `redis-server` primary and replica, three real
//! `redis-sentinel`s) with `min_replica_acks = 1`. The primary is killed
//! (SIGKILL) while authenticated requests and logins run; the gateway follows
//! the promotion, every session written before (and every login answered
//! during) the failover still works afterwards, and the requests in the gap get
//! the documented 503, never a 500, a 401 or a redirect to the login.
//!
//! The figures in docs/sessions.md come from this test:
//! `cargo test --test integration store_failover -- --nocapture`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::support::replicas::Replica;
use crate::support::sentinel::{SentinelGroup, query};
use crate::support::{Browser, TestWorld, eventually};

const PREFIX: &str = "itest-failover:";

/// Browsers logged in before the failover, each sending authenticated requests.
const SESSIONS: usize = 12;
/// Concurrent request loops, and login loops, while the primary dies.
const REQUEST_LOOPS: usize = 4;
const LOGIN_LOOPS: usize = 2;
/// Each loop stops after this many attempts even if the test never says stop.
const MAX_ATTEMPTS: usize = 4000;
/// Pacing of each loop (a bounded load, not a synchronisation).
const PACE: Duration = Duration::from_millis(5);

#[derive(Debug)]
struct Attempt {
    /// Since the primary was killed (negative: before).
    at_ms: i64,
    status: StatusCode,
    /// The JSON `error` of a 503 (API requests ask for JSON; logins are pages).
    error: Option<String>,
    retry_after: Option<String>,
}

async fn world_on(group: &SentinelGroup) -> TestWorld {
    let url = group.url();
    TestWorld::builder()
        .tweak(move |raw| {
            raw.session.store.url = Some(portcullis::secret::SecretString::new(url.clone()));
            raw.session.store.key_prefix = PREFIX.to_owned();
            raw.session.store.min_replica_acks = 1;
            // Long enough that only pub/sub explains a sign-out reaching another replica quickly.
            raw.session.store.local_cache_ttl = Duration::from_secs(60);
        })
        .start()
        .await
}

fn millis_since(origin: Instant, at: Instant) -> i64 {
    if at >= origin {
        i64::try_from(at.duration_since(origin).as_millis()).unwrap_or(i64::MAX)
    } else {
        -i64::try_from(origin.duration_since(at).as_millis()).unwrap_or(i64::MAX)
    }
}

fn attempt(reply: &crate::support::Reply, at_ms: i64) -> Attempt {
    let error = (reply.status == StatusCode::SERVICE_UNAVAILABLE)
        .then(|| serde_json::from_str::<serde_json::Value>(&reply.body).ok())
        .flatten()
        .and_then(|json| json["error"].as_str().map(str::to_owned));
    Attempt { at_ms, status: reply.status, error, retry_after: reply.header("retry-after") }
}

#[tokio::test]
async fn the_gateway_follows_a_sentinel_failover_under_load_without_losing_a_session() {
    let mut group = SentinelGroup::start().await;
    let old_primary = group.primary.port();
    assert_eq!(group.named_primary_port().await, Some(old_primary));
    let world = world_on(&group).await;
    let other = Replica::start(&world).await;

    let mut before = Vec::new();
    for _ in 0..SESSIONS {
        let browser = world.browser();
        browser.login().await;
        assert_eq!(browser.api_get("/private").await.status, StatusCode::OK);
        before.push(browser);
    }
    // WAIT was used for the session writes (min_replica_acks = 1).
    let calls = group.primary.command_calls().await;
    assert!(calls.get("wait").copied().unwrap_or(0) >= SESSIONS as u64, "{calls:?}");

    let before = Arc::new(before);
    // The load: authenticated requests from the logged-in browsers, and whole logins.
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut request_loops = Vec::new();
    for index in 0..REQUEST_LOOPS {
        let browsers = Arc::clone(&before);
        let stop = Arc::clone(&stop);
        request_loops.push(tokio::spawn(async move {
            let mut attempts = Vec::new();
            let mut pace = tokio::time::interval(PACE);
            for round in 0..MAX_ATTEMPTS {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                pace.tick().await;
                let browser = &browsers[(index + round * REQUEST_LOOPS) % browsers.len()];
                let reply = browser.api_get("/private").await;
                attempts.push((Instant::now(), reply));
            }
            attempts
        }));
    }
    let mut login_loops = Vec::new();
    for _ in 0..LOGIN_LOOPS {
        let stop = Arc::clone(&stop);
        let (gateway, public_url) = (format!("http://{}", world.gateway_addr), world.public_url.clone());
        let (issuer, cookie_name) = (world.provider.issuer().to_owned(), world.session_cookie_name());
        login_loops.push(tokio::spawn(async move {
            let mut logins = Vec::new();
            let mut pace = tokio::time::interval(PACE);
            for _ in 0..MAX_ATTEMPTS / 10 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                pace.tick().await;
                let browser = Browser::new(gateway.clone(), public_url.clone(), issuer.clone(), cookie_name.clone());
                let pending = browser.start_login("/").await;
                let callback = browser.sign_in_at_provider(&pending, "alice", "alice").await;
                let reply = browser.finish_login(&callback).await;
                logins.push((Instant::now(), reply, browser));
            }
            logins
        }));
    }

    // Let the load run on the healthy group first, then kill the primary.
    let warmed =
        eventually(Duration::from_secs(10), || async { started.elapsed() >= Duration::from_millis(300) }).await;
    assert!(warmed);
    let killed_at = Instant::now();
    group.primary.kill();

    // The sentinels promote the replica...
    let promoted = eventually(Duration::from_secs(60), || async {
        group.named_primary_port().await == Some(group.replica.port())
    })
    .await;
    assert!(promoted, "the sentinels did not promote the replica within 60 s");
    let promoted_ms = millis_since(killed_at, Instant::now());
    // ...and the gateway follows: every session from before works again.
    let followed = eventually(Duration::from_secs(30), || async {
        for browser in before.iter() {
            if browser.api_get("/private").await.status != StatusCode::OK {
                return false;
            }
        }
        true
    })
    .await;
    assert!(followed, "the gateway did not follow the promotion within 30 s");
    let followed_ms = millis_since(killed_at, Instant::now());
    // Some more load on the new primary, then stop.
    let more = eventually(Duration::from_secs(10), || async {
        killed_at.elapsed() >= Duration::from_millis(u64::try_from(followed_ms).unwrap_or(0) + 300)
    })
    .await;
    assert!(more);
    stop.store(true, Ordering::Relaxed);

    let mut requests = Vec::new();
    for task in request_loops {
        for (at, reply) in task.await.expect("a request loop") {
            requests.push(attempt(&reply, millis_since(killed_at, at)));
        }
    }
    let mut logins = Vec::new();
    let mut logged_in_during = Vec::new();
    for task in login_loops {
        for (at, reply, browser) in task.await.expect("a login loop") {
            logins.push(attempt(&reply, millis_since(killed_at, at)));
            if reply.status == StatusCode::FOUND {
                assert!(
                    reply.set_cookie(&world.session_cookie_name()).is_some_and(|cookie| !cookie.is_deletion()),
                    "a finished login sets the session cookie"
                );
                logged_in_during.push(browser);
            }
        }
    }

    // Only 200 (or 302 for a finished login) and the documented 503, nothing else.
    for attempt in requests.iter().chain(&logins) {
        let expected_ok = [StatusCode::OK, StatusCode::FOUND];
        assert!(
            expected_ok.contains(&attempt.status) || attempt.status == StatusCode::SERVICE_UNAVAILABLE,
            "unexpected {} at {} ms",
            attempt.status,
            attempt.at_ms
        );
        if attempt.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(attempt.retry_after.as_deref(), Some("5"), "at {} ms", attempt.at_ms);
        }
    }
    for attempt in requests.iter().filter(|attempt| attempt.status == StatusCode::SERVICE_UNAVAILABLE) {
        assert_eq!(attempt.error.as_deref(), Some("session_store_unavailable"), "at {} ms", attempt.at_ms);
    }
    assert!(requests.iter().all(|attempt| attempt.status != StatusCode::FOUND), "a request was sent to the login");
    assert!(logins.iter().all(|attempt| attempt.status != StatusCode::OK));

    // Every session: from before the failover, and every login answered during it, works on a
    // replica started now (nothing cached: each is read from the new primary).
    let fresh = Replica::start(&world).await;
    let name = world.session_cookie_name();
    for browser in before.iter().chain(&logged_in_during) {
        let on_fresh = fresh.browser();
        on_fresh.set_cookie(&name, &browser.session_value());
        let reply = on_fresh.api_get("/private").await;
        assert_eq!(reply.status, StatusCode::OK, "a session was lost: {}", reply.body);
        let id = world.open_handle(&browser.session_value()).id;
        let exists: Option<u32> =
            query(group.replica.port(), redis::cmd("EXISTS").arg(format!("{PREFIX}session:{id}")).clone()).await;
        assert_eq!(exists, Some(1), "the new primary holds every session");
    }

    // The new primary has no replica left: a login now would be a session the next failover
    // could lose, so it is refused (min_replica_acks = 1) until a replica is back.
    let refused = world.browser();
    let pending = refused.start_login("/").await;
    let callback = refused.sign_in_at_provider(&pending, "alice", "alice").await;
    let reply = refused.finish_login(&callback).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.body);
    // The dead node comes back (empty) as a replica of the new primary: logins work again.
    let new_primary = group.replica.port().to_string();
    group.primary.restart_with(&["--replicaof", "127.0.0.1", &new_primary]).await;
    let replicated = eventually(Duration::from_secs(30), || async {
        query::<String>(group.replica.port(), redis::cmd("INFO").arg("replication").clone())
            .await
            .is_some_and(|info| info.contains("connected_slaves:1") && info.contains("state=online"))
    })
    .await;
    if !replicated {
        let info = |port: u16| query::<String>(port, redis::cmd("INFO").arg("replication").clone());
        panic!(
            "the old primary did not rejoin as a replica; promoted: {:?}; restarted: {:?}; sentinels name {:?}",
            info(group.replica.port()).await,
            info(group.primary.port()).await,
            group.named_primary_port().await
        );
    }
    let after = world.browser();
    after.login().await;
    assert_eq!(after.api_get("/private").await.status, StatusCode::OK);

    // Pub/sub follows too: once both replicas are subscribed on the new primary, a
    // sign-out on one ends the session on the other at once (its local copy lives 60 s).
    let channel = format!("{PREFIX}events");
    let subscribed = eventually(Duration::from_secs(20), || async {
        let numsub: Option<(String, u32)> =
            query(group.replica.port(), redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel).clone()).await;
        numsub.is_some_and(|(_, count)| count >= 3)
    })
    .await;
    assert!(subscribed, "the replicas did not subscribe on the new primary");
    let victim = &before[0];
    let on_other = other.browser();
    on_other.set_cookie(&name, &victim.session_value());
    assert_eq!(on_other.api_get("/private").await.status, StatusCode::OK, "the other replica caches it now");
    let copied = victim.session_value();
    assert_eq!(victim.navigate("/oauth2/sign_out").await.expect_redirect(), "/");
    let ended = eventually(Duration::from_secs(3), || async {
        on_other.set_cookie(&name, &copied);
        on_other.api_get("/private").await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(ended, "the sign-out did not reach the other replica through the new primary");

    // The figures for docs/sessions.md.
    let failed: Vec<&Attempt> = requests.iter().filter(|attempt| attempt.status != StatusCode::OK).collect();
    let first_failure = failed.iter().map(|attempt| attempt.at_ms).min().unwrap_or(0);
    let last_failure = failed.iter().map(|attempt| attempt.at_ms).max().unwrap_or(0);
    let after_kill: Vec<&Attempt> = logins.iter().filter(|attempt| attempt.at_ms >= 0).collect();
    let failed_logins = after_kill.iter().filter(|attempt| attempt.status != StatusCode::FOUND).count();
    eprintln!(
        "failover figures: sentinels promoted the replica {promoted_ms} ms after the kill; \
         requests failing (503) from {first_failure} ms to {last_failure} ms (gap {} ms); \
         every old session served again at {followed_ms} ms; \
         requests: {} sent, {} answered 503; logins answered after the kill: {}, of which {} a 503 \
         (min_replica_acks = 1 and the only replica promoted); \
         sessions lost: 0 of {}",
        last_failure - first_failure,
        requests.len(),
        failed.len(),
        after_kill.len(),
        failed_logins,
        before.len() + logged_in_during.len(),
    );
    assert_ne!(group.named_primary_port().await, Some(old_primary));
}

#[tokio::test]
async fn sentinel_mode_signs_in_to_the_data_nodes_as_the_acl_user_from_the_files() {
    // The default user may run commands but touch no session key. `portcullis` has only what
    // docs/sessions.md says the gateway needs, on its own keys and channel.
    let acl = [
        "--user",
        "default",
        "on",
        "nopass",
        "~unrelated:*",
        "&*",
        "+@all", //
        "--user",
        "portcullis",
        "on",
        ">data-s3cret",
        "~itest-failover:*",
        "&itest-failover:*", //
        "+@read",
        "+@write",
        "+@keyspace",
        "+@pubsub",
        "+@connection",
        "+role",
        "+wait",
        "+eval",
    ];
    let group = SentinelGroup::start_with(&acl).await;
    let dir = tempfile::tempdir().expect("a directory for the password file");
    let password_file = dir.path().join("redis-password");
    std::fs::write(&password_file, "data-s3cret\n").expect("write the password file");
    let url = group.url();
    let world = TestWorld::builder()
        .tweak(move |raw| {
            raw.session.store.url = Some(portcullis::secret::SecretString::new(url.clone()));
            raw.session.store.username = Some("portcullis".to_owned());
            raw.session.store.password_file = Some(password_file.clone());
            raw.session.store.key_prefix = PREFIX.to_owned();
            raw.session.store.min_replica_acks = 1;
        })
        .start()
        .await;
    let browser = world.browser();
    browser.login().await;
    assert_eq!(browser.api_get("/private").await.status, StatusCode::OK);
    let clients: Option<String> = query(group.primary.port(), redis::cmd("CLIENT").arg("LIST").clone()).await;
    assert!(clients.is_some_and(|list| list.contains("user=portcullis")), "the gateway is signed in as portcullis");
    assert_eq!(world.ready().await.status, StatusCode::OK);
    // Sign-out (DEL with WAIT, PUBLISH) works under the same rules: a copy of the cookie is refused.
    let copy = world.browser();
    copy.set_cookie(&world.session_cookie_name(), &browser.session_value());
    assert_eq!(browser.navigate("/oauth2/sign_out").await.expect_redirect(), "/");
    assert_eq!(copy.api_get("/private").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sentinels_that_require_a_password_get_it_from_the_sentinel_password_file() {
    let group = SentinelGroup::start_with_sentinel_password(&[], Some("sentinel-s3cret")).await;
    let dir = tempfile::tempdir().expect("a directory for the password file");
    let password_file = dir.path().join("sentinel-password");
    std::fs::write(&password_file, "sentinel-s3cret\n").expect("write the password file");
    let url = group.url();
    let world = TestWorld::builder()
        .tweak(move |raw| {
            raw.session.store.url = Some(portcullis::secret::SecretString::new(url.clone()));
            raw.session.store.sentinel_password_file = Some(password_file.clone());
            raw.session.store.key_prefix = PREFIX.to_owned();
        })
        .start()
        .await;
    assert_eq!(world.ready().await.status, StatusCode::OK);
    let browser = world.browser();
    browser.login().await;
    assert_eq!(browser.api_get("/private").await.status, StatusCode::OK);
}
