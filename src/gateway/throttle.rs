//! Budgets for the provider calls that anonymous requests cause and that come
//! to nothing: an opaque bearer token introspection finds inactive or not
//! ours, a callback whose code the token endpoint refuses (a refused ID token
//! needs a code the provider issued, so a real sign-in). Each call is
//! client-authenticated and costs the provider; a client address that has
//! spent its budget gets no such call until its window ends (429 instead).
//! Memory is bounded: at most [`MAX_CLIENTS`] addresses are tracked.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A client's budget is counted from its first failure, for this long.
pub(super) const WINDOW: Duration = Duration::from_secs(60);
/// Introspections per client address and window that may find a token inactive or not ours.
pub(super) const INACTIVE_TOKENS_PER_CLIENT: u32 = 10;
/// Code exchanges the token endpoint refuses, per client address and window.
pub(super) const FAILED_CALLBACKS_PER_CLIENT: u32 = 10;
/// Addresses tracked at most per budget (least recently used go first).
const MAX_CLIENTS: u64 = 100_000;

/// How many fruitless provider calls each client address caused in its window.
#[derive(Debug)]
pub(super) struct FailureBudget {
    limit: u32,
    spent: moka::future::Cache<IpAddr, Arc<AtomicU32>>,
}

impl FailureBudget {
    /// A budget of `limit` failures per client address and [`WINDOW`].
    pub(super) fn new(limit: u32) -> Self {
        Self { limit, spent: moka::future::Cache::builder().max_capacity(MAX_CLIENTS).time_to_live(WINDOW).build() }
    }

    /// Whether `client` has no failure left in its window.
    pub(super) async fn exhausted(&self, client: IpAddr) -> bool {
        self.spent.get(&client_key(client)).await.is_some_and(|spent| spent.load(Ordering::Relaxed) >= self.limit)
    }

    /// Counts one failure against `client`.
    pub(super) async fn spend(&self, client: IpAddr) {
        let spent = self.spent.get_with(client_key(client), async { Arc::new(AtomicU32::new(0)) }).await;
        spent.fetch_add(1, Ordering::Relaxed);
    }
}

/// The address a client is counted under: IPv6 clients by their /64, which
/// one host usually holds whole and could otherwise rotate through freely.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[tokio::test]
    async fn a_budget_is_per_client_and_ipv6_clients_count_by_their_64() {
        let budget = FailureBudget::new(2);
        let one: IpAddr = Ipv4Addr::new(192, 0, 2, 1).into();
        let other: IpAddr = Ipv4Addr::new(192, 0, 2, 2).into();
        budget.spend(one).await;
        assert!(!budget.exhausted(one).await);
        budget.spend(one).await;
        assert!(budget.exhausted(one).await);
        assert!(!budget.exhausted(other).await);

        let host: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1).into();
        let same_64: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0xffff, 0, 0, 9).into();
        let next_64: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1).into();
        budget.spend(host).await;
        budget.spend(same_64).await;
        assert!(budget.exhausted(host).await);
        assert!(!budget.exhausted(next_64).await);
        // IPv4-mapped IPv6 is the IPv4 client.
        assert!(budget.exhausted(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped().into()).await);
    }
}
