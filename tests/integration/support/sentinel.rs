//! A Redis Sentinel group on loopback, all real processes killed on drop: a
//! primary, one replica and three `redis-sentinel`s (quorum 2) that notice a
//! dead primary after a second, so a failover takes a few seconds. Plaintext,
//! or every process TLS-only ([`SentinelGroup::start_tls`]).

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::eventually;
use super::redis::{RedisServer, RedisTls, free_port, ping_as};

/// The monitored group's name.
pub const MASTER_NAME: &str = "portcullis";

/// A primary, its replica and three sentinels watching them.
pub struct SentinelGroup {
    pub primary: RedisServer,
    pub replica: RedisServer,
    sentinels: Vec<Sentinel>,
    /// The sentinels' `requirepass`, if any.
    sentinel_password: Option<String>,
    /// The sentinels' TLS files, when TLS-only.
    sentinel_tls: Option<RedisTls>,
    _dir: tempfile::TempDir,
}

struct Sentinel {
    port: u16,
    child: Child,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SentinelGroup {
    /// Starts the group and waits (at most 30 s) until the replica is in sync
    /// and every sentinel knows the replica and the two other sentinels, so
    /// that a failover can be agreed on.
    pub async fn start() -> SentinelGroup {
        Self::start_with(&[]).await
    }

    /// [`SentinelGroup::start`] with extra options for the primary and the replica (ACL users).
    pub async fn start_with(data_node_options: &[&str]) -> SentinelGroup {
        Self::start_with_sentinel_password(data_node_options, None).await
    }

    /// [`SentinelGroup::start_with`], the sentinels requiring `sentinel_password` (`requirepass`,
    /// and `sentinel sentinel-pass` among themselves).
    pub async fn start_with_sentinel_password(
        data_node_options: &[&str],
        sentinel_password: Option<&str>,
    ) -> SentinelGroup {
        Self::start_all(data_node_options, sentinel_password, None).await
    }

    /// Every process TLS-only (replication and the sentinels' links too): the
    /// sentinels with `sentinels`' certificate, the primary and the replica
    /// with `data_nodes`'.
    pub async fn start_tls(sentinels: &RedisTls, data_nodes: &RedisTls) -> SentinelGroup {
        Self::start_all(&[], None, Some((sentinels, data_nodes))).await
    }

    async fn start_all(
        data_node_options: &[&str],
        sentinel_password: Option<&str>,
        tls: Option<(&RedisTls, &RedisTls)>,
    ) -> SentinelGroup {
        let data_tls = tls.map(|(_, data_nodes)| data_nodes);
        let primary = RedisServer::start_as(data_tls, data_node_options).await;
        let primary_port = primary.port().to_string();
        let mut replica_options = vec!["--replicaof", "127.0.0.1", &primary_port];
        replica_options.extend_from_slice(data_node_options);
        let replica = RedisServer::start_as(data_tls, &replica_options).await;
        let linked = eventually(Duration::from_secs(30), || async {
            query_node::<String>(&replica, redis::cmd("INFO").arg("replication").clone())
                .await
                .is_some_and(|info| info.contains("master_link_status:up"))
        })
        .await;
        assert!(linked, "the replica did not sync with the primary");

        let dir = tempfile::tempdir().expect("a directory for the sentinels' files");
        let mut sentinels = Vec::new();
        let sentinel_tls = tls.map(|(sentinels, _)| sentinels.clone());
        for index in 0..3 {
            sentinels.push(start_sentinel(&dir, index, primary.port(), sentinel_password, sentinel_tls.as_ref()).await);
        }
        let sentinel_password = sentinel_password.map(str::to_owned);
        let group = SentinelGroup { primary, replica, sentinels, sentinel_password, sentinel_tls, _dir: dir };
        let agreed = eventually(Duration::from_secs(30), || async {
            for sentinel in &group.sentinels {
                let Some(master) = query_tls::<HashMap<String, String>>(
                    sentinel.port,
                    group.sentinel_tls.as_ref(),
                    group.sentinel_password.as_deref(),
                    redis::cmd("SENTINEL").arg("MASTER").arg(MASTER_NAME).clone(),
                )
                .await
                else {
                    return false;
                };
                let count = |field: &str| master.get(field).and_then(|value| value.parse::<u32>().ok()).unwrap_or(0);
                if count("num-other-sentinels") < 2 || count("num-slaves") < 1 {
                    return false;
                }
            }
            true
        })
        .await;
        assert!(agreed, "the sentinels did not discover each other and the replica within 30 s");
        group
    }

    /// `redis+sentinel://127.0.0.1:A,127.0.0.1:B,127.0.0.1:C/portcullis` (`rediss+sentinel://` when TLS-only).
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.sentinels.iter().map(|sentinel| format!("127.0.0.1:{}", sentinel.port)).collect();
        let scheme = if self.sentinel_tls.is_some() { "rediss+sentinel" } else { "redis+sentinel" };
        format!("{scheme}://{}/{MASTER_NAME}", nodes.join(","))
    }

    /// The primary's port as every sentinel names it; `None` while they disagree or cannot answer.
    pub async fn named_primary_port(&self) -> Option<u16> {
        let mut named = None;
        for sentinel in &self.sentinels {
            let command = redis::cmd("SENTINEL").arg("GET-MASTER-ADDR-BY-NAME").arg(MASTER_NAME).clone();
            let (_, port) = query_tls::<(String, u16)>(
                sentinel.port,
                self.sentinel_tls.as_ref(),
                self.sentinel_password.as_deref(),
                command,
            )
            .await?;
            if named.is_some_and(|named| named != port) {
                return None;
            }
            named = Some(port);
        }
        named
    }
}

async fn start_sentinel(
    dir: &tempfile::TempDir,
    index: usize,
    primary_port: u16,
    password: Option<&str>,
    tls: Option<&RedisTls>,
) -> Sentinel {
    for _attempt in 0..2 {
        let port = free_port();
        let config = dir.path().join(format!("sentinel-{index}.conf"));
        let listen = tls.map_or(format!("port {port}\n"), |tls| tls.config_lines(port));
        let text = format!(
            "{listen}bind 127.0.0.1\ndaemonize no\nlogfile \"\"\ndir {dir}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} 5000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            dir = dir.path().display()
        );
        let auth = password
            .map_or(String::new(), |password| format!("requirepass {password}\nsentinel sentinel-pass {password}\n"));
        std::fs::write(&config, text + &auth).expect("write a sentinel's configuration");
        let spawned = Command::new("redis-sentinel").arg(&config).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-sentinel is not installed: the failover tests need it. tests/run-all.sh installs it \
                 (Debian package redis-sentinel), or run: apt-get install redis-sentinel"
            ),
            Err(error) => panic!("cannot run redis-sentinel: {error}"),
        };
        let mut sentinel = Sentinel { port, child };
        let up = eventually(Duration::from_secs(10), || async {
            match password {
                None => ping_as(port, tls).await,
                Some(_) => query_tls::<String>(port, tls, password, redis::cmd("PING")).await.is_some(),
            }
        })
        .await;
        if up && matches!(sentinel.child.try_wait(), Ok(None)) {
            return sentinel;
        }
        eprintln!("redis-sentinel did not come up on port {port}; retrying on another port");
        let _ = sentinel.child.kill();
    }
    panic!("redis-sentinel did not start twice in a row");
}

/// One command to the server on `port`, within 2 s; `None` on any failure.
pub async fn query<T: redis::FromRedisValue>(port: u16, command: redis::Cmd) -> Option<T> {
    query_as(port, None, command).await
}

/// [`query`] with a password (the default user's).
pub async fn query_as<T: redis::FromRedisValue>(port: u16, password: Option<&str>, command: redis::Cmd) -> Option<T> {
    query_tls(port, None, password, command).await
}

/// [`query`] to `server`, over TLS when it is TLS-only.
pub async fn query_node<T: redis::FromRedisValue>(server: &RedisServer, command: redis::Cmd) -> Option<T> {
    query_tls(server.port(), server.tls(), None, command).await
}

/// [`query_as`] over TLS when `tls` is set.
pub async fn query_tls<T: redis::FromRedisValue>(
    port: u16,
    tls: Option<&RedisTls>,
    password: Option<&str>,
    command: redis::Cmd,
) -> Option<T> {
    let exchange = async {
        let auth = password.map_or(String::new(), |password| format!(":{password}@"));
        let client = match tls {
            Some(tls) => tls.client(port, password)?,
            None => redis::Client::open(format!("redis://{auth}127.0.0.1:{port}/")).ok()?,
        };
        let mut connection = client.get_multiplexed_async_connection().await.ok()?;
        command.query_async::<T>(&mut connection).await.ok()
    };
    tokio::time::timeout(Duration::from_secs(2), exchange).await.ok().flatten()
}
