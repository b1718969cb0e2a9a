//! The provider's signing keys (JWKS): fetched at start, refetched when a
//! token names an unknown `kid` — at most once per interval, so forged `kid`s
//! cannot make the gateway hammer the provider.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::{Mutex, RwLock};

use super::http_client::{IdpCall, IdpHttpClient, IdpHttpError};

/// A usable verification key.
#[derive(Clone)]
pub struct VerificationKey {
    pub key: Arc<DecodingKey>,
    /// The key's declared algorithm, when the JWK names one.
    pub algorithm: Option<Algorithm>,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey").field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

/// Keys by `kid`; keys without a `kid` are kept under the empty string.
#[derive(Debug, Default)]
struct KeySet {
    by_kid: HashMap<String, Vec<VerificationKey>>,
}

/// Fetching or parsing the JWKS failed.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS request failed: {0}")]
    Http(#[from] IdpHttpError),
    #[error("JWKS answered HTTP {0}")]
    Status(u16),
    #[error("JWKS is not a valid key set: {0}")]
    Json(String),
}

/// The cached key set of one provider.
#[derive(Debug)]
pub struct Jwks {
    uri: String,
    client: IdpHttpClient,
    keys: RwLock<Arc<KeySet>>,
    last_refetch: Mutex<Option<Instant>>,
    min_refetch_interval: Duration,
}

impl Jwks {
    /// Fetches the key set once; fails if it cannot be fetched.
    pub async fn fetch(client: IdpHttpClient, uri: String, min_refetch_interval: Duration) -> Result<Self, JwksError> {
        let keys = load(&client, &uri).await?;
        Ok(Self {
            uri,
            client,
            keys: RwLock::new(Arc::new(keys)),
            last_refetch: Mutex::new(None),
            min_refetch_interval,
        })
    }

    /// The keys that may have signed a token with this `kid` (and alg). On an
    /// unknown `kid`, refetches once (rate-limited, single-flight) and looks again.
    pub async fn keys_for(&self, kid: Option<&str>) -> Vec<VerificationKey> {
        let found = self.lookup(kid).await;
        if !found.is_empty() {
            return found;
        }
        {
            // Holding the lock across the fetch makes concurrent misses wait for
            // one refetch instead of each starting their own.
            let mut last = self.last_refetch.lock().await;
            let found = self.lookup(kid).await;
            if !found.is_empty() {
                return found;
            }
            let allowed = last.is_none_or(|at| at.elapsed() >= self.min_refetch_interval);
            if !allowed {
                return Vec::new();
            }
            *last = Some(Instant::now());
            match load(&self.client, &self.uri).await {
                Ok(keys) => *self.keys.write().await = Arc::new(keys),
                Err(error) => tracing::warn!(%error, "refetching the provider's keys failed"),
            }
        }
        self.lookup(kid).await
    }

    async fn lookup(&self, kid: Option<&str>) -> Vec<VerificationKey> {
        let keys = Arc::clone(&*self.keys.read().await);
        match kid {
            Some(kid) => keys.by_kid.get(kid).cloned().unwrap_or_default(),
            // A token without a kid may be verified by any key (single-key providers).
            None => keys.by_kid.values().flatten().cloned().collect(),
        }
    }
}

async fn load(client: &IdpHttpClient, uri: &str) -> Result<KeySet, JwksError> {
    let response = client.get(IdpCall::Jwks, uri).await?;
    if !response.status.is_success() {
        return Err(JwksError::Status(response.status.as_u16()));
    }
    let set: JwkSet = serde_json::from_slice(&response.body).map_err(|error| JwksError::Json(error.to_string()))?;
    Ok(index(set))
}

fn index(set: JwkSet) -> KeySet {
    let mut by_kid: HashMap<String, Vec<VerificationKey>> = HashMap::new();
    for jwk in set.keys {
        // Encryption keys and symmetric keys never verify signatures here.
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        if matches!(jwk.algorithm, jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)) {
            continue;
        }
        let Some(key) = decoding_key(&jwk) else { continue };
        let algorithm = jwk.common.key_algorithm.and_then(|alg| alg.to_string().parse::<Algorithm>().ok());
        by_kid
            .entry(jwk.common.key_id.clone().unwrap_or_default())
            .or_default()
            .push(VerificationKey { key: Arc::new(key), algorithm });
    }
    KeySet { by_kid }
}

fn decoding_key(jwk: &Jwk) -> Option<DecodingKey> {
    DecodingKey::from_jwk(jwk).ok()
}
