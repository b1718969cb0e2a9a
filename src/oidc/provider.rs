//! The identity provider as the gateway sees it: metadata and keys, loaded at
//! start and retried in the background with backoff while the provider is
//! unreachable. Until loaded, the gateway is not ready and new logins get 503.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::discovery::{self, DiscoveryError, ProviderMetadata};
use super::http_client::IdpHttpClient;
use super::jwks::{Jwks, JwksError};

/// Metadata and keys of a provider that answered.
#[derive(Debug)]
pub struct LoadedProvider {
    pub metadata: ProviderMetadata,
    pub jwks: Jwks,
}

/// Loading the provider failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error(transparent)]
    Jwks(#[from] JwksError),
}

impl ProviderError {
    /// A misconfiguration that retrying cannot fix.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ProviderError::Discovery(error) if error.is_fatal())
    }
}

/// The provider handle shared by all requests.
#[derive(Debug)]
pub struct Provider {
    issuer: String,
    client: IdpHttpClient,
    loaded: RwLock<Option<Arc<LoadedProvider>>>,
    jwks_refetch_interval: Duration,
}

impl Provider {
    /// A provider that is not loaded yet.
    pub fn new(issuer: String, client: IdpHttpClient, jwks_refetch_interval: Duration) -> Self {
        Self { issuer, client, loaded: RwLock::new(None), jwks_refetch_interval }
    }

    /// The loaded metadata and keys, or `None` while the provider has not answered.
    pub fn current(&self) -> Option<Arc<LoadedProvider>> {
        self.loaded.read().ok().and_then(|guard| guard.clone())
    }

    /// The HTTP client used for this provider.
    pub fn client(&self) -> &IdpHttpClient {
        &self.client
    }

    /// One attempt at discovery and JWKS.
    pub async fn load(&self) -> Result<(), ProviderError> {
        let metadata = discovery::discover(&self.client, &self.issuer).await?;
        let jwks = Jwks::fetch(self.client.clone(), metadata.jwks_uri.clone(), self.jwks_refetch_interval).await?;
        if let Ok(mut guard) = self.loaded.write() {
            *guard = Some(Arc::new(LoadedProvider { metadata, jwks }));
        }
        Ok(())
    }
}
