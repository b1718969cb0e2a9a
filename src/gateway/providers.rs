//! The `Providers` service: one identity provider per configured id
//! (discovery, JWKS, its HTTP client), the other issuers bearer tokens may
//! come from, and the budget of refused code exchanges per client address.
//! A provider is known by its index (its place in `Config::providers`, and in
//! every `ProviderSet`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::bearer::ExtraIssuers;
use super::throttle::{FAILED_CALLBACKS_PER_CLIENT, FailureBudget};
use crate::authz::ProviderSet;
use crate::config::{Config, OidcConfig};
use crate::oidc::http_client::IdpHttpClient;
use crate::oidc::provider::{LoadedProvider, Provider};

/// One configured provider: its settings and its handle.
#[derive(Debug)]
pub(super) struct IdentityProvider {
    pub config: OidcConfig,
    /// Shared with `Sessions` (refresh, revocation).
    pub handle: Arc<Provider>,
}

impl IdentityProvider {
    /// Its metadata and keys, once loaded.
    pub(super) fn current(&self) -> Option<Arc<LoadedProvider>> {
        self.handle.current()
    }

    /// The HTTP client calls to it go through.
    pub(super) fn client(&self) -> &IdpHttpClient {
        self.handle.client()
    }
}

/// The providers the gateway asks, and what it remembers of their refusals.
#[derive(Debug)]
pub(super) struct Providers {
    /// By index (configuration order).
    entries: Vec<IdentityProvider>,
    /// The same handles, as `Sessions` and the start-up code take them.
    handles: Vec<Arc<Provider>>,
    extra_issuers: ExtraIssuers,
    /// Refused code exchanges per client address (see `throttle`).
    failed_callbacks: FailureBudget,
}

impl Providers {
    /// Handles for the configured providers and issuers; nothing is fetched yet.
    pub(super) fn new(config: &Config) -> Result<Self, std::io::Error> {
        let mut entries = Vec::with_capacity(config.providers.len());
        for provider in &config.providers {
            let client = IdpHttpClient::new(provider.http_timeout, &provider.tls, config.server.worker_threads)?;
            let handle = Arc::new(Provider::new(provider.issuer.clone(), client, Duration::from_secs(10)));
            entries.push(IdentityProvider { config: provider.clone(), handle });
        }
        let handles: Vec<Arc<Provider>> = entries.iter().map(|entry| Arc::clone(&entry.handle)).collect();
        // The extra issuers' calls share the first provider's client settings, as before.
        let extra_issuers = match entries.first() {
            Some(first) => ExtraIssuers::new(&config.bearer.issuers, first.client()),
            None => ExtraIssuers::new(
                &[],
                &IdpHttpClient::new(Duration::from_secs(10), &Default::default(), config.server.worker_threads)?,
            ),
        };
        Ok(Self { entries, handles, extra_issuers, failed_callbacks: FailureBudget::new(FAILED_CALLBACKS_PER_CLIENT) })
    }

    /// Every provider's handle, by index.
    pub(super) fn handles(&self) -> &[Arc<Provider>] {
        &self.handles
    }

    /// The provider at `index`.
    pub(super) fn get(&self, index: usize) -> Option<&IdentityProvider> {
        self.entries.get(index)
    }

    /// The provider with this id, and its index.
    pub(super) fn by_id(&self, id: &str) -> Option<(usize, &IdentityProvider)> {
        self.entries.iter().enumerate().find(|(_, provider)| provider.config.id == id)
    }

    /// The `accepted` providers, with their indices, in configuration order.
    pub(super) fn accepted(&self, accepted: ProviderSet) -> impl Iterator<Item = (usize, &IdentityProvider)> {
        self.entries.iter().enumerate().filter(move |(index, _)| accepted.contains(*index))
    }

    /// The providers among `accepted` whose issuer is `issuer` (several clients may share one).
    pub(super) fn with_issuer<'a>(
        &'a self,
        accepted: ProviderSet,
        issuer: &'a str,
    ) -> impl Iterator<Item = (usize, &'a IdentityProvider)> + 'a {
        self.accepted(accepted).filter(move |(_, provider)| provider.config.issuer == issuer)
    }

    /// Whether some provider is loaded: one provider down never stops the others.
    pub(super) fn is_ready(&self) -> bool {
        self.entries.iter().any(|provider| provider.current().is_some())
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
