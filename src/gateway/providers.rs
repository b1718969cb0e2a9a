//! The `Providers` service: the identity provider (discovery, JWKS, its HTTP
//! client), the other issuers bearer tokens may come from, and the budget of
//! refused code exchanges per client address. Multi-provider support grows
//! here (one `Provider` per configured id).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::bearer::ExtraIssuers;
use super::throttle::{FAILED_CALLBACKS_PER_CLIENT, FailureBudget};
use crate::config::Config;
use crate::oidc::http_client::IdpHttpClient;
use crate::oidc::provider::{LoadedProvider, Provider};

/// The providers the gateway asks, and what it remembers of their refusals.
#[derive(Debug)]
pub(super) struct Providers {
    /// Shared with `Sessions` (refresh, revocation).
    provider: Arc<Provider>,
    extra_issuers: ExtraIssuers,
    /// Refused code exchanges per client address (see `throttle`).
    failed_callbacks: FailureBudget,
}

impl Providers {
    /// Handles for the configured provider and issuers; nothing is fetched yet.
    pub(super) fn new(config: &Config) -> Result<Self, std::io::Error> {
        let client = IdpHttpClient::new(config.oidc.http_timeout, &config.oidc.tls)?;
        let extra_issuers = ExtraIssuers::new(&config.bearer.issuers, &client);
        let provider = Arc::new(Provider::new(config.oidc.issuer.clone(), client, Duration::from_secs(10)));
        Ok(Self { provider, extra_issuers, failed_callbacks: FailureBudget::new(FAILED_CALLBACKS_PER_CLIENT) })
    }

    /// The identity provider's handle (loaded before or while serving).
    pub(super) fn provider(&self) -> &Arc<Provider> {
        &self.provider
    }

    /// The identity provider's metadata and keys, once loaded.
    pub(super) fn current(&self) -> Option<Arc<LoadedProvider>> {
        self.provider.current()
    }

    /// Whether the identity provider is loaded (the gateway can log users in).
    pub(super) fn is_ready(&self) -> bool {
        self.provider.current().is_some()
    }

    /// The HTTP client provider calls go through.
    pub(super) fn client(&self) -> &IdpHttpClient {
        self.provider.client()
    }

    /// The other bearer-token issuers and the introspection caches.
    pub(super) fn extra_issuers(&self) -> &ExtraIssuers {
        &self.extra_issuers
    }

    /// Whether `client` has spent its budget of refused code exchanges.
    pub(super) async fn callbacks_exhausted(&self, client: IpAddr) -> bool {
        self.failed_callbacks.exhausted(client).await
    }

    /// Counts a code exchange the token endpoint refused for `client`.
    pub(super) async fn callback_failed(&self, client: IpAddr) {
        self.failed_callbacks.spend(client).await;
    }
}
