//! The login flow: the secrets of one login attempt, sealed into a
//! short-lived cookie named after its `state`.

use serde::{Deserialize, Serialize};

use crate::clock::UnixSeconds;

/// The current flow payload format.
pub const FLOW_FORMAT: u8 = 1;

/// One login attempt.
#[derive(Serialize, Deserialize)]
pub struct LoginFlow {
    pub v: u8,
    /// The id of the provider the login was started at: the callback redeems the code there only.
    #[serde(default = "default_provider")]
    pub provider: String,
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
    /// Validated same-origin (or allow-listed) target after login.
    pub return_to: String,
    pub expires_at: UnixSeconds,
}

fn default_provider() -> String {
    crate::config::DEFAULT_PROVIDER_ID.to_owned()
}

impl std::fmt::Debug for LoginFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginFlow").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}
