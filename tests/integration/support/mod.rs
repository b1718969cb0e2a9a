//! The test harness: a loopback deployment ([`world`]), a scripted browser
//! ([`browser`]), HTTP helpers ([`http`]), extra upstreams ([`upstreams`]) and
//! log capture ([`logs`]).

pub mod browser;
pub mod cluster;
pub mod connection;
pub mod front_proxies;
pub mod guarded;
pub mod http;
pub mod logs;
pub mod multi;
pub mod nginx;
pub mod pki;
pub mod redis;
pub mod replicas;
pub mod sentinel;
pub mod upstreams;
pub mod world;

use std::future::Future;
use std::time::Duration;

pub use self::browser::{Browser, query_params, with_param};
pub use self::guarded::Guarded;
pub use self::http::{Reply, raw_exchange};
pub use self::world::{CLIENT_ID, TestWorld, random_session_secret};

/// Polls `condition` every 50 ms until it holds or `limit` passes; returns
/// whether it held. For waiting on background work the test cannot join.
pub async fn eventually<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut ticks = tokio::time::interval(Duration::from_millis(50));
    loop {
        ticks.tick().await;
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
    }
}
