//! Applying a reloaded configuration to a running gateway: the routes and
//! rules (`[authz]`, `upstream`, `[[upstreams]]`), the allowed redirect hosts
//! and the session keys. Each service swaps its own part; requests in flight
//! keep the routes they started with (see `upstreams`). Everything fallible
//! is prepared before anything is swapped, so an error changes nothing.
//! Which other keys need a restart is the caller's to say (`crate::reload`).

use super::Gateway;
use crate::config::{Config, TokenChoice};

/// A validated configuration could not be applied; the running one is kept.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("session.keys: {0}")]
    Keys(crate::sessions::SessionsError),
    #[error("upstreams: {0}")]
    Upstream(#[from] crate::proxy::ProxyError),
}

impl Gateway {
    /// Makes the reloadable part of `config` (validated) the running one:
    /// new requests use its rules, upstreams and redirect hosts, and its first
    /// session key seals from now on while every key it lists opens. Parts
    /// needing a restart are left as they are.
    pub fn apply_reload(&self, config: &Config) -> Result<(), ApplyError> {
        let routes = self.upstreams.prepare(config)?;
        if routes.sends_id_token() && !self.upstreams.sends_id_token() {
            // Sessions made since start did not keep the ID token's header ready.
            for (index, _) in config.upstreams.iter().enumerate().filter(|(_, entry)| entry.token == TokenChoice::Id) {
                tracing::warn!(
                    key = %format_args!("upstreams[{index}].token"),
                    "\"id\" takes effect after a restart: until then this upstream receives no Authorization header"
                );
            }
        }
        // Replacing the key ring is the last fallible step, and is whole or nothing.
        self.sessions.replace_keys(&config.session.keys).map_err(ApplyError::Keys)?;
        let tickets = self.config.tls.as_ref().is_some_and(|tls| tls.ticket_rotation.is_some());
        if tickets && !same_keys(&self.config.session.keys, &config.session.keys) {
            tracing::warn!(
                key = "session.secret",
                "TLS session ticket keys are derived from the session keys at start: they follow the new keys after a restart"
            );
        }
        self.upstreams.install(routes);
        self.redirects.reload(config);
        Ok(())
    }
}

/// Whether two key lists are the same keys in the same order (constant time
/// per key: they are secrets, even if only compared with each other).
fn same_keys(a: &[crate::secret::SecretBytes], b: &[crate::secret::SecretBytes]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| bool::from(a.expose().ct_eq(b.expose())))
}
