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

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, IntoConnectionInfo};
use serde::{Deserialize, Serialize};

use crate::clock::UnixSeconds;
use crate::config::StoreConfig;
use crate::session::data::SessionData;
use crate::session::ended::issued_by;
use crate::session::seal::{KeyRing, Purpose};

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

/// A connection to the shared store; cheap to share behind an `Arc`.
pub struct SessionStore {
    client: redis::Client,
    connection: RwLock<Option<ConnectionManager>>,
    connect: tokio::sync::Mutex<()>,
    healthy: AtomicBool,
    prefix: String,
    timeout: Duration,
    lifetime: Duration,
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
        let mut info = config
            .url
            .expose()
            .into_connection_info()
            .map_err(|_| StoreError("session.store.url is not a usable Redis URL".to_owned()))?;
        if let Some(password) = &config.password {
            info.redis.password = Some(password.expose().to_owned());
        }
        let client = redis::Client::open(info).map_err(StoreError::from)?;
        Ok(Self {
            client,
            connection: RwLock::new(None),
            connect: tokio::sync::Mutex::new(()),
            healthy: AtomicBool::new(false),
            prefix: config.key_prefix.clone(),
            timeout: config.timeout,
            lifetime,
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

    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        if let Some(connection) = self.connection.read().ok().and_then(|slot| slot.clone()) {
            return Ok(connection);
        }
        // One connect attempt at a time; the manager reconnects by itself afterwards.
        let _guard = self.connect.lock().await;
        if let Some(connection) = self.connection.read().ok().and_then(|slot| slot.clone()) {
            return Ok(connection);
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1)
            .set_max_delay(200);
        let connection = self.client.get_connection_manager_with_config(config).await.inspect_err(|_| {
            self.healthy.store(false, Ordering::Relaxed);
        })?;
        if let Ok(mut slot) = self.connection.write() {
            *slot = Some(connection.clone());
        }
        Ok(connection)
    }

    /// Runs one operation, recording whether the store answered.
    async fn run<T, F, Fut>(&self, operation: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let connection = self.connection().await?;
        let result = tokio::time::timeout(self.timeout, operation(connection)).await;
        let result = match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(StoreError::from(error)),
            Err(_) => Err(StoreError("timed out".to_owned())),
        };
        self.healthy.store(result.is_ok(), Ordering::Relaxed);
        result
    }

    /// PINGs the store, updating [`SessionStore::is_healthy`].
    pub async fn check(&self) -> Result<(), StoreError> {
        self.run(|mut connection| async move { redis::cmd("PING").query_async::<String>(&mut connection).await })
            .await
            .map(|_| ())
    }

    /// Writes a session record, sealed and bound to its key, expiring with the session.
    pub async fn save(&self, keys: &KeyRing, data: &SessionData, now: UnixSeconds) -> Result<(), StoreError> {
        let key = self.session_key(&data.id);
        let json = serde_json::to_vec(data).map_err(|_| StoreError("cannot encode a session".to_owned()))?;
        let sealed = keys.seal(Purpose::Stored, &key, &json).map_err(|_| StoreError("cannot seal".to_owned()))?;
        let ttl_ms = u64::try_from(data.expires_at.saturating_sub(now)).unwrap_or(0).saturating_mul(1000).max(1000);
        self.run(|mut connection| async move { connection.pset_ex::<_, _, ()>(key, sealed, ttl_ms).await }).await
    }

    /// Overwrites the existing record of `data`'s session (new tokens after a
    /// refresh); `Ok(false)` when there is none: a session signed out while
    /// it was being refreshed stays signed out, it is not written back.
    pub async fn replace(&self, keys: &KeyRing, data: &SessionData, now: UnixSeconds) -> Result<bool, StoreError> {
        let key = self.session_key(&data.id);
        let json = serde_json::to_vec(data).map_err(|_| StoreError("cannot encode a session".to_owned()))?;
        let sealed = keys.seal(Purpose::Stored, &key, &json).map_err(|_| StoreError("cannot seal".to_owned()))?;
        let ttl_ms = u64::try_from(data.expires_at.saturating_sub(now)).unwrap_or(0).saturating_mul(1000).max(1000);
        let replaced: Option<String> = self
            .run(|mut connection| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(sealed)
                    .arg("PX")
                    .arg(ttl_ms)
                    .arg("XX")
                    .query_async(&mut connection)
                    .await
            })
            .await?;
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

    /// Deletes a session record (sign-out, refused refresh).
    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let key = self.session_key(id);
        self.run(|mut connection| async move { connection.del::<_, ()>(key).await }).await
    }

    /// Records a back-channel logout so replicas that missed the broadcast still see it.
    pub async fn record_logout(&self, event: &StoreEvent) -> Result<(), StoreError> {
        let (key, at) = match event {
            StoreEvent::Session { id } => return self.delete(id).await,
            StoreEvent::Subject { iss, sub, at } => (self.subject_key(iss, sub), *at),
            StoreEvent::ProviderSession { iss, sid, at } => (self.provider_session_key(iss, sid), *at),
        };
        let ttl = self.lifetime.as_secs().max(1);
        self.run(|mut connection| async move { connection.set_ex::<_, _, ()>(key, at, ttl).await }).await
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

    /// Subscribes to the event channel: a stream of [`StoreEvent`]s that ends
    /// when the connection is lost (events may then have been missed).
    pub async fn subscribe(&self) -> Result<impl futures_util::Stream<Item = StoreEvent> + Send + use<>, StoreError> {
        use futures_util::StreamExt;
        let channel = self.channel();
        let subscribed = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub =
            tokio::time::timeout(self.timeout, subscribed).await.map_err(|_| StoreError("timed out".to_owned()))??;
        Ok(pubsub.into_on_message().filter_map(|message| async move {
            let payload = message.get_payload::<String>().ok()?;
            let event = serde_json::from_str::<StoreEvent>(&payload).ok();
            if event.is_none() {
                tracing::warn!("ignoring an unreadable session-store event");
            }
            event
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretString;

    fn config(url: &str) -> StoreConfig {
        StoreConfig {
            url: SecretString::new(url.to_owned()),
            password: Some(SecretString::new("from-file".to_owned())),
            key_prefix: "p:".to_owned(),
            local_cache_ttl: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
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
    fn events_have_a_stable_wire_format() {
        let event = StoreEvent::ProviderSession { iss: "https://idp".to_owned(), sid: "s1".to_owned(), at: 7 };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(json, r#"{"kind":"provider_session","iss":"https://idp","sid":"s1","at":7}"#);
        assert_eq!(serde_json::from_str::<StoreEvent>(&json).unwrap(), event);
    }
}
