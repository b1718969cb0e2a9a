//! The optional shared session store (Redis or Valkey): session records
//! sealed with the key ring, refresh leases, records of ended sessions and the
//! pub/sub channel that tells every replica about sign-outs at once.
//!
//! Keys (all under the configured prefix `P`):
//! - `P` `session:` id: the sealed [`SessionData`], TTL = the session's absolute expiry;
//! - `P` `lease:` id: the refresh lease (`SET NX PX`), a random owner token;
//! - `P` `ended:sub:` sub / `P` `ended:sid:` sid: the time of a back-channel logout, TTL = the session lifetime;
//! - `P` `jti:` jti: a used back-channel logout token (replay refusal on every replica), TTL 10 minutes;
//! - channel `P` `events`: [`StoreEvent`]s as JSON.

mod connection;
mod sentinel;

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManagerConfig;
use redis::{AsyncCommands, FromRedisValue, IntoConnectionInfo};
use serde::{Deserialize, Serialize};

use self::connection::StoreConnection;
use self::sentinel::Sentinels;
use crate::clock::UnixSeconds;
use crate::config::{StoreConfig, StoreEndpoint};
use crate::session::data::SessionData;
use crate::session::ended::issued_by;
use crate::session::seal::{KeyRing, Purpose};

/// After a failed attempt to (re)connect, the next one waits this long: however
/// many requests fail at once, the primary is looked up at most this often.
const RECONNECT_INTERVAL: Duration = Duration::from_millis(100);

/// The store could not be used: unreachable, timed out, or an answer it
/// cannot read. Never carries a key, value or password.
#[derive(Debug, thiserror::Error)]
#[error("session store unavailable: {0}")]
pub struct StoreError(String);

impl From<redis::RedisError> for StoreError {
    fn from(error: redis::RedisError) -> Self {
        // The error's category only: its detail can quote a reply or the URL.
        Self(format!("{:?}", error.kind()))
    }
}

/// A sign-out or back-channel logout, published to every replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoreEvent {
    /// One session ended (sign-out, or its refresh token was refused).
    Session { id: String },
    /// Every session of `iss`'s `sub` created up to `at` ended.
    Subject { iss: String, sub: String, at: UnixSeconds },
    /// Every session of `iss`'s provider session `sid` created up to `at` ended.
    ProviderSession { iss: String, sid: String, at: UnixSeconds },
}

/// What the store holds about one session, read in one round trip.
#[derive(Debug)]
pub struct StoredLookup {
    /// The session record; `None` when it was deleted or never existed.
    pub data: Option<SessionData>,
    /// When `sub` was last logged out by the provider, if ever.
    pub subject_ended_at: Option<UnixSeconds>,
    /// When `sid` was last logged out by the provider, if ever.
    pub provider_session_ended_at: Option<UnixSeconds>,
}

/// How the store's primary is found.
enum Endpoint {
    /// One address (a standalone Redis, or a proxy in front of several); the
    /// connection manager reconnects to it by itself.
    Single(redis::Client),
    /// The primary Redis Sentinel names, looked up again when it stops being one.
    Sentinel(Sentinels),
    /// A Redis Cluster: its connection routes each key to its shard and follows
    /// the slot map by itself. Pub/sub goes to one node (classic pub/sub
    /// reaches every node of a cluster), the next one at each resubscription.
    Cluster { client: redis::cluster::ClusterClient, nodes: Vec<std::sync::Arc<redis::Client>> },
}

/// The connections to the current primary.
#[derive(Clone)]
struct Connected {
    /// Which lookup of the primary this is (1, 2, ...).
    generation: u64,
    /// For the pub/sub connection (shared: cloning a client copies its address and credentials).
    client: std::sync::Arc<redis::Client>,
    /// Reads and most writes: the hot path's lookups go here.
    commands: StoreConnection,
    /// Writes followed by `WAIT` (`min_replica_acks` > 0). `WAIT` blocks the
    /// connection it is sent on until the replicas answer; on a connection of
    /// its own it never delays a lookup.
    durable: Option<StoreConnection>,
}

/// Which connection an operation uses.
#[derive(Clone, Copy)]
enum Lane {
    Commands,
    Durable,
}

/// A connection to the shared store; cheap to share behind an `Arc`.
pub struct SessionStore {
    endpoint: Endpoint,
    connected: RwLock<Option<Connected>>,
    /// Serialises connecting; holds when the last attempt failed.
    connect: tokio::sync::Mutex<Option<tokio::time::Instant>>,
    generations: AtomicU64,
    /// Cluster: which node the next subscription goes to.
    subscriptions: AtomicU64,
    /// The generation of the primary in use, for the pub/sub follower.
    primary_changes: tokio::sync::watch::Sender<u64>,
    healthy: AtomicBool,
    prefix: String,
    timeout: Duration,
    lifetime: Duration,
    min_replica_acks: u32,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl SessionStore {
    /// A store for `config`; does not connect yet (see [`SessionStore::check`]).
    /// `lifetime` is the session lifetime, the TTL of logout records.
    pub fn new(config: &StoreConfig, lifetime: Duration) -> Result<Self, StoreError> {
        let certificates =
            config.ca_pem.as_ref().map(|pem| redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) });
        let endpoint = match &config.endpoint {
            StoreEndpoint::Url(url) => {
                let mut info = url
                    .expose()
                    .into_connection_info()
                    .map_err(|_| StoreError("session.store.url is not a usable Redis URL".to_owned()))?;
                if let Some(username) = &config.username {
                    info.redis.username = Some(username.clone());
                }
                if let Some(password) = &config.password {
                    info.redis.password = Some(password.expose().to_owned());
                }
                Endpoint::Single(node_client(info, certificates.as_ref())?)
            }
            StoreEndpoint::Cluster { nodes, tls } => {
                let infos: Vec<redis::ConnectionInfo> = nodes
                    .iter()
                    .map(|(host, port)| redis::ConnectionInfo {
                        addr: if *tls {
                            redis::ConnectionAddr::TcpTls {
                                host: host.clone(),
                                port: *port,
                                insecure: false,
                                tls_params: None,
                            }
                        } else {
                            redis::ConnectionAddr::Tcp(host.clone(), *port)
                        },
                        redis: redis::RedisConnectionInfo {
                            username: config.username.clone(),
                            password: config.password.as_ref().map(|password| password.expose().to_owned()),
                            ..redis::RedisConnectionInfo::default()
                        },
                    })
                    .collect();
                let mut builder = redis::cluster::ClusterClientBuilder::new(infos.clone())
                    .connection_timeout(config.timeout)
                    .response_timeout(config.timeout)
                    .retries(2);
                if let Some(certificates) = &certificates {
                    // For the nodes of the URL and every node the slot map names.
                    builder = builder.certs(certificates.clone());
                }
                let client = builder.build().map_err(StoreError::from)?;
                let nodes = infos
                    .into_iter()
                    .map(|info| node_client(info, certificates.as_ref()).map(std::sync::Arc::new))
                    .collect::<Result<Vec<_>, _>>()?;
                Endpoint::Cluster { client, nodes }
            }
            StoreEndpoint::Sentinel(sentinel) => {
                let data = redis::RedisConnectionInfo {
                    db: sentinel.db,
                    username: config.username.clone(),
                    password: config.password.as_ref().map(|password| password.expose().to_owned()),
                    ..redis::RedisConnectionInfo::default()
                };
                Endpoint::Sentinel(Sentinels::new(sentinel, data, certificates)?)
            }
        };
        Ok(Self {
            endpoint,
            connected: RwLock::new(None),
            connect: tokio::sync::Mutex::new(None),
            generations: AtomicU64::new(0),
            subscriptions: AtomicU64::new(0),
            primary_changes: tokio::sync::watch::Sender::new(0),
            healthy: AtomicBool::new(false),
            prefix: config.key_prefix.clone(),
            timeout: config.timeout,
            lifetime,
            min_replica_acks: config.min_replica_acks,
        })
    }

    /// Whether the last operation (or health check) reached the store.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// The key of a session record; also the name its sealed value is bound to.
    pub fn session_key(&self, id: &str) -> String {
        format!("{}session:{id}", self.prefix)
    }

    fn lease_key(&self, id: &str) -> String {
        format!("{}lease:{id}", self.prefix)
    }

    fn subject_key(&self, iss: &str, sub: &str) -> String {
        format!("{}ended:sub:{}", self.prefix, issued_by(iss, sub))
    }

    fn provider_session_key(&self, iss: &str, sid: &str) -> String {
        format!("{}ended:sid:{}", self.prefix, issued_by(iss, sid))
    }

    /// The pub/sub channel of [`StoreEvent`]s.
    pub fn channel(&self) -> String {
        format!("{}events", self.prefix)
    }

    fn current(&self) -> Option<Connected> {
        self.connected.read().ok().and_then(|slot| slot.clone())
    }

    /// The connections to the primary, connecting (and, with Sentinel, finding
    /// it) first when there are none: one attempt at a time, at most one every
    /// [`RECONNECT_INTERVAL`] after a failure; the others fail at once.
    async fn connected(&self) -> Result<Connected, StoreError> {
        if let Some(connected) = self.current() {
            return Ok(connected);
        }
        let mut last_failure = self.connect.lock().await;
        if let Some(connected) = self.current() {
            return Ok(connected);
        }
        if last_failure.is_some_and(|at| at.elapsed() < RECONNECT_INTERVAL) {
            return Err(StoreError("reconnecting".to_owned()));
        }
        // Boxed: connecting is rare, and erasing its future's type keeps the
        // request future's type (checked for `Send` at every spawn) shallow.
        let opening: std::pin::Pin<Box<dyn std::future::Future<Output = Result<Connected, StoreError>> + Send + '_>> =
            Box::pin(self.open());
        match opening.await {
            Ok(connected) => {
                *last_failure = None;
                if let Ok(mut slot) = self.connected.write() {
                    *slot = Some(connected.clone());
                }
                if connected.generation > 1 {
                    tracing::warn!(generation = connected.generation, "session store: connected to a new primary");
                    self.primary_changes.send_replace(connected.generation);
                }
                Ok(connected)
            }
            Err(error) => {
                *last_failure = Some(tokio::time::Instant::now());
                self.healthy.store(false, Ordering::Relaxed);
                Err(error)
            }
        }
    }

    async fn open(&self) -> Result<Connected, StoreError> {
        let client = match &self.endpoint {
            Endpoint::Single(client) => client.clone(),
            Endpoint::Sentinel(sentinels) => sentinels.primary(self.timeout).await?,
            Endpoint::Cluster { client, nodes } => {
                let commands = StoreConnection::Cluster(client.get_async_connection().await?);
                // Not used: subscriptions pick their node themselves (see `subscribe`).
                let pubsub = nodes.first().cloned().ok_or_else(|| StoreError("no cluster node".to_owned()))?;
                let generation = self.generations.fetch_add(1, Ordering::Relaxed).saturating_add(1);
                return Ok(Connected { generation, client: pubsub, commands, durable: None });
            }
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1)
            .set_max_delay(200);
        let commands = StoreConnection::Node(client.get_connection_manager_with_config(config.clone()).await?);
        let durable = if self.min_replica_acks > 0 {
            Some(StoreConnection::Node(client.get_connection_manager_with_config(config).await?))
        } else {
            None
        };
        let generation = self.generations.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        Ok(Connected { generation, client: std::sync::Arc::new(client), commands, durable })
    }

    /// After a failed operation on `generation`: with Sentinel, an error that
    /// says the node is gone or no longer the primary drops the connections,
    /// so the next operation asks the sentinels again.
    fn failed(&self, generation: u64, error: Option<&redis::RedisError>) {
        if !matches!(self.endpoint, Endpoint::Sentinel(_)) {
            return; // the connection manager reconnects to the one address by itself
        }
        if !error.is_none_or(leaves_the_primary) {
            return;
        }
        if let Ok(mut slot) = self.connected.write()
            && slot.as_ref().is_some_and(|connected| connected.generation == generation)
        {
            *slot = None;
        }
    }

    /// Runs one operation, recording whether the store answered.
    async fn run<T, F, Fut>(&self, operation: F) -> Result<T, StoreError>
    where
        F: FnOnce(StoreConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.run_on(Lane::Commands, operation).await
    }

    async fn run_on<T, F, Fut>(&self, lane: Lane, operation: F) -> Result<T, StoreError>
    where
        F: FnOnce(StoreConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let connected = self.connected().await?;
        let connection = match (lane, &connected.durable) {
            (Lane::Durable, Some(durable)) => durable.clone(),
            _ => connected.commands.clone(),
        };
        let result = match tokio::time::timeout(self.timeout, operation(connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                self.failed(connected.generation, Some(&error));
                Err(StoreError::from(error))
            }
            Err(_) => {
                self.failed(connected.generation, None);
                Err(StoreError("timed out".to_owned()))
            }
        };
        self.healthy.store(result.is_ok(), Ordering::Relaxed);
        result
    }

    /// Runs a write; with `min_replica_acks` set, followed by `WAIT` for that
    /// many replicas (at most half the store timeout). When fewer acknowledge,
    /// `Err` if `must_replicate`, else a warning: the write itself was done.
    async fn write<T: FromRedisValue + Send + 'static>(
        &self,
        command: redis::Cmd,
        must_replicate: bool,
    ) -> Result<T, StoreError> {
        if self.min_replica_acks == 0 {
            return self.run(|mut connection| async move { command.query_async(&mut connection).await }).await;
        }
        let wait_ms = u64::try_from(self.timeout.as_millis() / 2).unwrap_or(u64::MAX).max(1);
        let wanted = self.min_replica_acks;
        let (value, acknowledged): (T, u32) = self
            .run_on(Lane::Durable, |mut connection| async move {
                redis::pipe()
                    .add_command(command)
                    .cmd("WAIT")
                    .arg(wanted)
                    .arg(wait_ms)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        if acknowledged < wanted {
            if must_replicate {
                return Err(StoreError(format!("{acknowledged} of {wanted} replicas acknowledged a write")));
            }
            tracing::warn!(acknowledged, wanted, "session store: a write was not acknowledged by enough replicas");
        }
        Ok(value)
    }

    /// Checks that the store answers (with Sentinel: that the node in use is
    /// still the primary), updating [`SessionStore::is_healthy`].
    pub async fn check(&self) -> Result<(), StoreError> {
        if matches!(self.endpoint, Endpoint::Sentinel(_)) {
            let role =
                self.run(|mut connection| async move {
                    redis::cmd("ROLE").query_async::<redis::Role>(&mut connection).await
                })
                .await?;
            if !matches!(role, redis::Role::Primary { .. }) {
                // Demoted (an old primary back as a replica): find the new one.
                if let Some(connected) = self.current() {
                    self.failed(connected.generation, None);
                }
                self.healthy.store(false, Ordering::Relaxed);
                return Err(StoreError("the node in use is no longer the primary".to_owned()));
            }
            return Ok(());
        }
        self.run(|mut connection| async move { redis::cmd("PING").query_async::<String>(&mut connection).await })
            .await
            .map(|_| ())
    }

    /// Writes a session record, sealed and bound to its key, expiring with the
    /// session; with `min_replica_acks`, only done once replicated.
    pub async fn save(&self, keys: &KeyRing, data: &SessionData, now: UnixSeconds) -> Result<(), StoreError> {
        let key = self.session_key(&data.id);
        let json = serde_json::to_vec(data).map_err(|_| StoreError("cannot encode a session".to_owned()))?;
        let sealed = keys.seal(Purpose::Stored, &key, &json).map_err(|_| StoreError("cannot seal".to_owned()))?;
        let ttl_ms = u64::try_from(data.expires_at.saturating_sub(now)).unwrap_or(0).saturating_mul(1000).max(1000);
        let mut command = redis::cmd("SET");
        command.arg(key).arg(sealed).arg("PX").arg(ttl_ms);
        self.write::<()>(command, true).await
    }

    /// Overwrites the existing record of `data`'s session (new tokens after a
    /// refresh); `Ok(false)` when there is none: a session signed out while
    /// it was being refreshed stays signed out, it is not written back. Too few
    /// replica acknowledgements are a warning only: the tokens were written and
    /// the provider may already have rotated the old ones.
    pub async fn replace(&self, keys: &KeyRing, data: &SessionData, now: UnixSeconds) -> Result<bool, StoreError> {
        let key = self.session_key(&data.id);
        let json = serde_json::to_vec(data).map_err(|_| StoreError("cannot encode a session".to_owned()))?;
        let sealed = keys.seal(Purpose::Stored, &key, &json).map_err(|_| StoreError("cannot seal".to_owned()))?;
        let ttl_ms = u64::try_from(data.expires_at.saturating_sub(now)).unwrap_or(0).saturating_mul(1000).max(1000);
        let mut command = redis::cmd("SET");
        command.arg(key).arg(sealed).arg("PX").arg(ttl_ms).arg("XX");
        let replaced: Option<String> = self.write(command, false).await?;
        Ok(replaced.is_some())
    }

    /// The session record and the logout records that apply to it, in one round trip.
    pub async fn lookup(
        &self,
        keys: &KeyRing,
        id: &str,
        iss: &str,
        sub: &str,
        sid: Option<&str>,
    ) -> Result<StoredLookup, StoreError> {
        let key = self.session_key(id);
        let subject_key = self.subject_key(iss, sub);
        let sid_key = self.provider_session_key(iss, sid.unwrap_or_default());
        let names = [key.clone(), subject_key, sid_key];
        let (record, subject_ended_at, sid_ended_at): (Option<String>, Option<i64>, Option<i64>) = self
            .run(|mut connection| async move { redis::cmd("MGET").arg(&names).query_async(&mut connection).await })
            .await?;
        let data = record.and_then(|sealed| {
            let (json, _) = keys.open(Purpose::Stored, &key, &sealed).ok()?;
            serde_json::from_slice::<SessionData>(&json).ok()
        });
        Ok(StoredLookup { data, subject_ended_at, provider_session_ended_at: sid.and(sid_ended_at) })
    }

    /// Deletes a session record (sign-out, refused refresh). With
    /// `min_replica_acks`, waits for the replicas but does not fail for want
    /// of them: a sign-out refused is worse than one a later failover might undo.
    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let mut command = redis::cmd("DEL");
        command.arg(self.session_key(id));
        self.write::<()>(command, false).await
    }

    /// Records a back-channel logout so replicas that missed the broadcast
    /// still see it (replicated like [`SessionStore::delete`]).
    pub async fn record_logout(&self, event: &StoreEvent) -> Result<(), StoreError> {
        let (key, at) = match event {
            StoreEvent::Session { id } => return self.delete(id).await,
            StoreEvent::Subject { iss, sub, at } => (self.subject_key(iss, sub), *at),
            StoreEvent::ProviderSession { iss, sid, at } => (self.provider_session_key(iss, sid), *at),
        };
        let ttl = self.lifetime.as_secs().max(1);
        let mut command = redis::cmd("SET");
        command.arg(key).arg(at).arg("EX").arg(ttl);
        self.write::<()>(command, false).await
    }

    /// Publishes an event to every replica (including this one).
    pub async fn publish(&self, event: &StoreEvent) -> Result<(), StoreError> {
        let payload = serde_json::to_string(event).map_err(|_| StoreError("cannot encode an event".to_owned()))?;
        let channel = self.channel();
        self.run(|mut connection| async move { connection.publish::<_, _, ()>(channel, payload).await }).await
    }

    /// Claims a back-channel logout token's `jti` for `ttl`: `true` the first
    /// time on any replica, `false` for a replay.
    pub async fn claim_once(&self, jti: &str, ttl: Duration) -> Result<bool, StoreError> {
        let key = format!("{}jti:{jti}", self.prefix);
        let ttl = ttl.as_secs().max(1);
        let set: Option<String> = self
            .run(|mut connection| async move {
                redis::cmd("SET").arg(key).arg(1).arg("NX").arg("EX").arg(ttl).query_async(&mut connection).await
            })
            .await?;
        Ok(set.is_some())
    }

    /// Takes the refresh lease of session `id` for `lease`, returning its owner
    /// token when this caller won it and `None` when another holds it.
    pub async fn try_lease(&self, id: &str, lease: Duration) -> Result<Option<String>, StoreError> {
        let key = self.lease_key(id);
        let owner = crate::random::token::<16>().map_err(|_| StoreError("no randomness".to_owned()))?;
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        let value = owner.clone();
        let won: Option<String> = self
            .run(|mut connection| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(lease_ms)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        Ok(won.map(|_| owner))
    }

    /// Whether someone holds the refresh lease of session `id`.
    pub async fn lease_held(&self, id: &str) -> Result<bool, StoreError> {
        let key = self.lease_key(id);
        self.run(|mut connection| async move { connection.exists::<_, bool>(key).await }).await
    }

    /// Releases a lease this caller owns (never someone else's that replaced an expired one).
    pub async fn release_lease(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        const RELEASE: &str =
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
        let key = self.lease_key(id);
        let owner = owner.to_owned();
        self.run(|mut connection| async move {
            redis::cmd("EVAL").arg(RELEASE).arg(1).arg(key).arg(owner).query_async::<i64>(&mut connection).await
        })
        .await
        .map(|_| ())
    }

    /// Subscribes to the event channel on the primary: a stream of
    /// [`StoreEvent`]s that ends when the connection is lost or another primary
    /// is in use (events may then have been missed).
    pub async fn subscribe(&self) -> Result<impl futures_util::Stream<Item = StoreEvent> + Send + use<>, StoreError> {
        use futures_util::StreamExt;
        let channel = self.channel();
        // Before connecting, so that a primary change from now on ends the stream.
        let mut changes = self.primary_changes.subscribe();
        let client = match &self.endpoint {
            Endpoint::Cluster { nodes, .. } => {
                let next = self.subscriptions.fetch_add(1, Ordering::Relaxed);
                let index = usize::try_from(next).unwrap_or(0) % nodes.len().max(1);
                nodes.get(index).cloned().ok_or_else(|| StoreError("no cluster node".to_owned()))?
            }
            Endpoint::Single(_) | Endpoint::Sentinel(_) => self.connected().await?.client,
        };
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub =
            tokio::time::timeout(self.timeout, subscribed).await.map_err(|_| StoreError("timed out".to_owned()))??;
        let primary_changed = async move {
            let _ = changes.changed().await;
        };
        Ok(pubsub.into_on_message().take_until(primary_changed).filter_map(|message| async move {
            let payload = message.get_payload::<String>().ok()?;
            let event = serde_json::from_str::<StoreEvent>(&payload).ok();
            if event.is_none() {
                tracing::warn!("ignoring an unreadable session-store event");
            }
            event
        }))
    }
}

/// A client for `info`; a TLS address trusts `certificates` (the CAs of
/// `session.store.ca_file`) instead of the system roots. TLS addresses verify
/// the node's certificate against the host they connect to, as given in the
/// URL or as a sentinel or the cluster's slot map names it (an IP address must
/// be an IP SAN). There is no fallback to plaintext.
fn node_client(
    info: redis::ConnectionInfo,
    certificates: Option<&redis::TlsCertificates>,
) -> Result<redis::Client, StoreError> {
    match certificates {
        Some(certificates) if matches!(info.addr, redis::ConnectionAddr::TcpTls { .. }) => {
            redis::Client::build_with_tls(info, certificates.clone())
        }
        _ => redis::Client::open(info),
    }
    .map_err(StoreError::from)
}

/// Whether an error says the node in use is gone or no longer the primary
/// (then, with Sentinel, the primary is looked up again); a refused command
/// (a wrong type, a script error) says nothing about the node.
fn leaves_the_primary(error: &redis::RedisError) -> bool {
    error.kind() == redis::ErrorKind::ReadOnly
        || error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretString;

    fn config(url: &str) -> StoreConfig {
        StoreConfig {
            endpoint: StoreEndpoint::Url(SecretString::new(url.to_owned())),
            username: None,
            password: Some(SecretString::new("from-file".to_owned())),
            ca_pem: None,
            key_prefix: "p:".to_owned(),
            local_cache_ttl: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            min_replica_acks: 0,
        }
    }

    #[test]
    fn tls_urls_build_a_client_with_the_one_crypto_provider() {
        let store = SessionStore::new(&config("rediss://redis.example:6380/0"), Duration::from_secs(60)).unwrap();
        assert!(!store.is_healthy(), "not healthy before it has answered");
        assert_eq!(store.session_key("abc"), "p:session:abc");
        assert_eq!(store.channel(), "p:events");
        assert!(!format!("{store:?}").contains("from-file"));
    }

    #[test]
    fn sentinel_and_cluster_endpoints_build_without_connecting() {
        let sentinel = crate::config::SentinelConfig {
            nodes: vec![("s1.example".to_owned(), 26379), ("s2.example".to_owned(), 26380)],
            master_name: "portcullis".to_owned(),
            db: 1,
            tls: true,
            username: Some("watcher".to_owned()),
            password: Some(SecretString::new("sentinel-secret".to_owned())),
        };
        let cluster = StoreEndpoint::Cluster { nodes: vec![("n1.example".to_owned(), 6380)], tls: true };
        for endpoint in [StoreEndpoint::Sentinel(sentinel), cluster] {
            let store =
                SessionStore::new(&StoreConfig { endpoint, ..config("redis://unused") }, Duration::from_secs(60))
                    .expect("a store");
            assert!(!store.is_healthy());
            let shown = format!("{store:?}");
            assert!(!shown.contains("secret") && !shown.contains("from-file"), "{shown}");
        }
    }

    #[test]
    fn a_demoted_or_unreachable_node_is_left_and_a_refused_command_is_not() {
        use redis::{ErrorKind, RedisError};
        let io = |kind| RedisError::from(std::io::Error::from(kind));
        assert!(leaves_the_primary(&RedisError::from((ErrorKind::ReadOnly, "replica"))));
        assert!(leaves_the_primary(&io(std::io::ErrorKind::ConnectionRefused)));
        assert!(leaves_the_primary(&io(std::io::ErrorKind::ConnectionReset)));
        assert!(leaves_the_primary(&io(std::io::ErrorKind::TimedOut)));
        assert!(!leaves_the_primary(&RedisError::from((ErrorKind::TypeError, "wrong type"))));
        assert!(!leaves_the_primary(&RedisError::from((ErrorKind::ResponseError, "ERR"))));
    }

    #[test]
    fn events_have_a_stable_wire_format() {
        let event = StoreEvent::ProviderSession { iss: "https://idp".to_owned(), sid: "s1".to_owned(), at: 7 };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(json, r#"{"kind":"provider_session","iss":"https://idp","sid":"s1","at":7}"#);
        assert_eq!(serde_json::from_str::<StoreEvent>(&json).unwrap(), event);
    }
}
