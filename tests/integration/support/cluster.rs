//! A three-shard Redis Cluster on loopback: three real `redis-server
//! --cluster-enabled yes` (masters, no replicas) joined with `redis-cli
//! --cluster create`; killed on drop. Plaintext, or TLS-only
//! ([`RedisCluster::start_tls`]: clients, cluster bus and `redis-cli`).

use std::time::Duration;

use super::eventually;
use super::redis::{RedisServer, RedisTls};
use super::sentinel::query_node;

/// Three masters sharing the 16384 slots.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the nodes, creates the cluster and waits (at most 30 s) until every node says it is ok.
    pub async fn start() -> RedisCluster {
        Self::start_as(None).await
    }

    /// [`RedisCluster::start`], every node TLS-only (the cluster bus too).
    pub async fn start_tls(tls: &RedisTls) -> RedisCluster {
        Self::start_as(Some(tls)).await
    }

    async fn start_as(tls: Option<&RedisTls>) -> RedisCluster {
        let options = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"];
        let mut nodes = Vec::new();
        for _ in 0..3 {
            // Each server has its own working directory, so its nodes.conf too.
            nodes.push(RedisServer::start_as(tls, &options).await);
        }
        let addresses: Vec<String> = nodes.iter().map(|node| format!("127.0.0.1:{}", node.port())).collect();
        let mut command = tokio::process::Command::new("redis-cli");
        if let Some(tls) = tls {
            command.arg("--tls").arg("--cacert").arg(&tls.ca);
        }
        let created = tokio::time::timeout(
            Duration::from_secs(60),
            command
                .arg("--cluster")
                .arg("create")
                .args(&addresses)
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .output(),
        )
        .await
        .expect("redis-cli --cluster create finishes within 60 s")
        .expect("run redis-cli (Debian package redis-tools, installed with redis-server)");
        assert!(created.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&created.stdout));
        let cluster = RedisCluster { nodes };
        let ok = eventually(Duration::from_secs(30), || async {
            for node in &cluster.nodes {
                let info: Option<String> = query_node(node, redis::cmd("CLUSTER").arg("INFO").clone()).await;
                if !info.is_some_and(|info| info.contains("cluster_state:ok")) {
                    return false;
                }
            }
            true
        })
        .await;
        assert!(ok, "the cluster did not become ok within 30 s");
        cluster
    }

    /// `redis+cluster://127.0.0.1:A,127.0.0.1:B,127.0.0.1:C` (`rediss+cluster://` when TLS-only).
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.nodes.iter().map(|node| format!("127.0.0.1:{}", node.port())).collect();
        let scheme =
            if self.nodes.iter().any(|node| node.tls().is_some()) { "rediss+cluster" } else { "redis+cluster" };
        format!("{scheme}://{}", nodes.join(","))
    }

    /// How many keys matching `pattern` each node holds.
    pub async fn keys_per_node(&self, pattern: &str) -> Vec<usize> {
        let mut counts = Vec::new();
        for node in &self.nodes {
            let keys: Vec<String> =
                query_node(node, redis::cmd("KEYS").arg(pattern).clone()).await.expect("KEYS on a cluster node");
            counts.push(keys.len());
        }
        counts
    }
}
