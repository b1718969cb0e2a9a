//! Finding the store's primary through Redis Sentinel, the way the Sentinel
//! client guidelines (redis.io, "Sentinel client spec") describe: ask the
//! sentinels in turn `SENTINEL GET-MASTER-ADDR-BY-NAME`, connect to the
//! address one answers and confirm with `ROLE` that it is a primary; the
//! sentinel that answered is asked first next time.
//!
//! Not `redis::sentinel`: in redis 0.32 its async discovery has no connect or
//! response timeout, so one unreachable (blackholed) sentinel stalls it until
//! the caller's deadline and the others are never asked. Here each step has the
//! store's timeout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, RedisConnectionInfo, Role, TlsCertificates};

use super::{StoreError, node_client};
use crate::config::SentinelConfig;

/// The sentinels of one monitored group and how to reach the data nodes they name.
pub(super) struct Sentinels {
    /// One client per sentinel, in the configured order.
    sentinels: Vec<redis::Client>,
    master_name: String,
    /// TLS to the data nodes.
    tls: bool,
    /// Database and ACL credentials on the data nodes.
    data: RedisConnectionInfo,
    /// The CAs trusted instead of the system roots (`session.store.ca_file`), for TLS.
    certificates: Option<TlsCertificates>,
    /// The sentinel asked first: the last one that answered.
    first: AtomicUsize,
}

impl Sentinels {
    /// The sentinels of `config`; `data` is what the data nodes need (db, user, password).
    pub(super) fn new(
        config: &SentinelConfig,
        data: RedisConnectionInfo,
        certificates: Option<TlsCertificates>,
    ) -> Result<Self, StoreError> {
        let credentials = RedisConnectionInfo {
            username: config.username.clone(),
            password: config.password.as_ref().map(|password| password.expose().to_owned()),
            ..RedisConnectionInfo::default()
        };
        let sentinels = config
            .nodes
            .iter()
            .map(|(host, port)| {
                let info = ConnectionInfo { addr: address(host, *port, config.tls), redis: credentials.clone() };
                node_client(info, certificates.as_ref())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            sentinels,
            master_name: config.master_name.clone(),
            tls: config.tls,
            data,
            certificates,
            first: AtomicUsize::new(0),
        })
    }

    /// A client for the group's current primary. Asks the sentinels in turn
    /// (each within `timeout`) until one names the primary, then confirms with
    /// `ROLE` at that address; `Err` when none answers or the named node is not
    /// (yet) a primary, as while a failover is under way.
    pub(super) async fn primary(&self, timeout: Duration) -> Result<redis::Client, StoreError> {
        let count = self.sentinels.len();
        let start = self.first.load(Ordering::Relaxed);
        let mut last = StoreError("no sentinel answered".to_owned());
        for offset in 0..count {
            let index = (start + offset) % count;
            let Some(sentinel) = self.sentinels.get(index) else { continue };
            let named = match tokio::time::timeout(timeout, self.ask(sentinel, timeout)).await {
                Ok(Ok(Some(named))) => named,
                Ok(Ok(None)) => {
                    last = StoreError("a sentinel does not know the master name".to_owned());
                    continue;
                }
                Ok(Err(error)) => {
                    last = error;
                    continue;
                }
                Err(_) => {
                    last = StoreError("a sentinel timed out".to_owned());
                    continue;
                }
            };
            self.first.store(index, Ordering::Relaxed);
            let info = ConnectionInfo { addr: address(&named.0, named.1, self.tls), redis: self.data.clone() };
            // Verified against the address the sentinel named (see `node_client`).
            let client = node_client(info, self.certificates.as_ref())?;
            // The sentinels agree on one address at a time: asking the next one
            // would name the same node, so its answer decides this attempt.
            return match tokio::time::timeout(timeout, role(&client, timeout)).await {
                Ok(Ok(Role::Primary { .. })) => Ok(client),
                Ok(Ok(_)) => Err(StoreError("the node the sentinels name is not a primary yet".to_owned())),
                Ok(Err(error)) => Err(error),
                Err(_) => Err(StoreError("the primary the sentinels name timed out".to_owned())),
            };
        }
        Err(last)
    }

    /// `SENTINEL GET-MASTER-ADDR-BY-NAME`: `(host, port)`, or `None` for an unknown name.
    async fn ask(&self, sentinel: &redis::Client, timeout: Duration) -> Result<Option<(String, u16)>, StoreError> {
        let mut connection = sentinel.get_multiplexed_async_connection_with_config(&settings(timeout)).await?;
        let named: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.master_name)
            .query_async(&mut connection)
            .await?;
        let Some((host, port)) = named else { return Ok(None) };
        let port = port.parse::<u16>().map_err(|_| StoreError("a sentinel named an unreadable port".to_owned()))?;
        if host.is_empty() || port == 0 {
            return Err(StoreError("a sentinel named an unusable address".to_owned()));
        }
        Ok(Some((host, port)))
    }
}

/// The `ROLE` of the node behind `client`.
pub(super) async fn role(client: &redis::Client, timeout: Duration) -> Result<Role, StoreError> {
    let mut connection = client.get_multiplexed_async_connection_with_config(&settings(timeout)).await?;
    Ok(redis::cmd("ROLE").query_async(&mut connection).await?)
}

fn settings(timeout: Duration) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new().set_connection_timeout(timeout).set_response_timeout(timeout)
}

fn address(host: &str, port: u16, tls: bool) -> ConnectionAddr {
    if tls {
        ConnectionAddr::TcpTls { host: host.to_owned(), port, insecure: false, tls_params: None }
    } else {
        ConnectionAddr::Tcp(host.to_owned(), port)
    }
}
