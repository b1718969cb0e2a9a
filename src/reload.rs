//! Configuration reload without a restart: on SIGHUP, and (with
//! `server.watch_config`) when the file's content changes, the same sources
//! (the file and the `PORTCULLIS_*` environment) are read through the same
//! loader and checked exactly as `portcullis check-config` checks them.
//!
//! An invalid configuration changes nothing: the error (naming the key,
//! never a value) is logged and `portcullis_config_reloads_total{result="rejected"}`
//! counted. A valid one is applied by the services that own each part
//! ([`Gateway::apply_reload`]: rules, upstreams, redirect hosts, session
//! keys); every other key that changed keeps its running value until a
//! restart, and is named in a warning at each reload until then.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::gateway::Gateway;

/// The keys (paths in the effective configuration, as `check-config` prints
/// it) a reload applies; every other key needs a restart.
const RELOADABLE: &[&str] = &[
    "upstream",
    "upstreams",
    "allowed_redirect_hosts",
    "authz",
    "session.secret",
    "session.secrets",
    "session.secret_file",
];

/// Keys under a reloadable one that still need a restart: sessions keep the
/// groups claim they were built with.
const RESTART_ONLY_WITHIN: &[&str] = &["authz.groups_claim"];

/// Reloads one gateway's configuration from where it was loaded at start.
#[derive(Debug)]
pub struct Reloader {
    gateway: Arc<Gateway>,
    path: Option<PathBuf>,
    /// The effective configuration at start: what keys needing a restart still run with.
    running: serde_json::Value,
}

impl Reloader {
    /// A reloader for `gateway`, started from the configuration file at
    /// `path` (if any) whose effective form (see
    /// [`Config::load_with_effective`]) was `running`.
    pub fn new(gateway: Arc<Gateway>, path: Option<PathBuf>, running: serde_json::Value) -> Self {
        gateway.metrics().config_loaded(gateway.clock().now());
        Self { gateway, path, running }
    }

    /// Reads, checks and applies the configuration once; `true` when applied.
    /// `trigger` says why (`signal`, `watch`) in the log.
    pub async fn reload(&self, trigger: &'static str) -> bool {
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || Config::load_checked(path.as_deref())).await;
        let (config, effective) = match loaded {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(error)) => {
                tracing::error!(trigger, %error, "configuration reload rejected: invalid configuration; the running configuration stays");
                self.gateway.metrics().config_reload(false);
                return false;
            }
            Err(error) => {
                tracing::error!(trigger, %error, "configuration reload failed; the running configuration stays");
                self.gateway.metrics().config_reload(false);
                return false;
            }
        };
        if let Err(error) = self.gateway.apply_reload(&config) {
            tracing::error!(trigger, %error, "configuration reload rejected; the running configuration stays");
            self.gateway.metrics().config_reload(false);
            return false;
        }
        let needing_restart = restart_only_changes(&self.running, &effective);
        for key in &needing_restart {
            tracing::warn!(trigger, %key, "configuration key changed but needs a restart: its running value stays");
        }
        self.gateway.metrics().config_reload(true);
        self.gateway.metrics().config_loaded(self.gateway.clock().now());
        tracing::info!(
            trigger,
            restart_pending = needing_restart.len(),
            "configuration reloaded: rules, upstreams, redirect hosts and session keys applied"
        );
        true
    }

    /// Reloads on every SIGHUP and, when `watch` is set, whenever the
    /// configuration file's content changes (read at that interval). SIGHUP
    /// is taken over when this is called (from then on it no longer ends the
    /// process), within a Tokio runtime; the future runs until dropped (abort
    /// its task at shutdown).
    pub fn serve(self, watch: Option<Duration>) -> impl std::future::Future<Output = ()> + Send {
        #[cfg(unix)]
        let hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP: configuration reload by signal unavailable");
                None
            }
        };
        #[cfg(not(unix))]
        let hangup: Option<()> = None;
        self.serve_from(hangup, watch)
    }

    async fn serve_from(
        self,
        #[cfg(unix)] mut hangup: Option<tokio::signal::unix::Signal>,
        #[cfg(not(unix))] _hangup: Option<()>,
        watch: Option<Duration>,
    ) {
        let watched = match (watch, &self.path) {
            (Some(interval), Some(path)) => Some((interval, path.clone())),
            (Some(_), None) => {
                tracing::warn!("server.watch_config is set but no configuration file was given: nothing to watch");
                None
            }
            (None, _) => None,
        };
        let mut last_seen = watched.as_ref().and_then(|(_, path)| content_hash(path));
        let mut ticker = watched.as_ref().map(|(interval, _)| {
            let mut ticker = tokio::time::interval(*interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker
        });
        loop {
            #[cfg(unix)]
            let signalled = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let signalled = std::future::pending::<Option<()>>();
            let ticked = async {
                match ticker.as_mut() {
                    Some(ticker) => ticker.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = signalled => {
                    if received.is_none() {
                        return;
                    }
                    tracing::info!("SIGHUP received: reloading the configuration");
                    // A later watch tick must not reload the same content again.
                    if let Some((_, path)) = &watched {
                        last_seen = content_hash(path);
                    }
                    self.reload("signal").await;
                }
                _ = ticked => {
                    let Some((_, path)) = &watched else { continue };
                    let now = content_hash(path);
                    // An unreadable file (mid-replacement, say) is not a change; the next tick looks again.
                    if now.is_some() && now != last_seen {
                        last_seen = now;
                        tracing::info!("configuration file changed: reloading");
                        self.reload("watch").await;
                    }
                }
            }
        }
    }
}

/// The SHA-256 of the file's content; `None` when it cannot be read.
fn content_hash(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|content| Sha256::digest(content).into())
}

/// The keys that differ between two effective configurations and that a
/// reload does not apply, as dotted paths with indexes
/// (`oidc.providers[1].issuer`, `server.worker_threads`). Secrets are shown
/// redacted in both, so a changed secret that needs a restart is not named.
pub fn restart_only_changes(running: &serde_json::Value, reloaded: &serde_json::Value) -> Vec<String> {
    let mut changed = Vec::new();
    differing_keys(String::new(), running, reloaded, &mut changed);
    changed.retain(|key| !is_reloadable(key));
    changed
}

fn is_reloadable(key: &str) -> bool {
    let under = |prefix: &str| {
        key.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
    };
    RELOADABLE.iter().any(|prefix| under(prefix)) && !RESTART_ONLY_WITHIN.iter().any(|prefix| under(prefix))
}

/// Appends to `out` the paths under `at` where `a` and `b` differ: objects key
/// by key, arrays of one length element by element, anything else as a whole.
fn differing_keys(at: String, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let path = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
                let null = Value::Null;
                differing_keys(path, a.get(key).unwrap_or(&null), b.get(key).unwrap_or(&null), out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (index, (a, b)) in a.iter().zip(b).enumerate() {
                differing_keys(format!("{at}[{index}]"), a, b, out);
            }
        }
        (a, b) if a != b => out.push(at),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_only_the_changed_keys_that_need_a_restart() {
        let running = serde_json::json!({
            "listen": "127.0.0.1:4180",
            "upstream": "http://a",
            "authz": {"default": "authenticated", "groups_claim": "groups", "rules": [{"path": "/a"}]},
            "server": {"worker_threads": 0},
            "session": {"secret": "<redacted>", "cookie_name": "_p"},
            "oidc": {"providers": [{"issuer": "https://one"}, {"issuer": "https://two"}]},
            "upstreams": []
        });
        let reloaded = serde_json::json!({
            "listen": "127.0.0.1:4181",
            "upstream": "http://b",
            "authz": {"default": "deny", "groups_claim": "roles", "rules": [{"path": "/b"}, {"path": "/c"}]},
            "server": {"worker_threads": 2},
            "session": {"secret": "<redacted>", "secrets": ["<redacted>"], "cookie_name": "_p"},
            "oidc": {"providers": [{"issuer": "https://one"}, {"issuer": "https://three"}]},
            "upstreams": [{"name": "x"}]
        });
        assert_eq!(
            restart_only_changes(&running, &reloaded),
            ["authz.groups_claim", "listen", "oidc.providers[1].issuer", "server.worker_threads"]
        );
        assert!(restart_only_changes(&running, &running).is_empty());
    }

    #[test]
    fn a_key_is_reloadable_by_its_whole_name() {
        assert!(is_reloadable("upstream"));
        assert!(is_reloadable("upstreams[0].url"));
        assert!(is_reloadable("authz.rules[2].allow"));
        assert!(!is_reloadable("upstream_extra"));
        assert!(!is_reloadable("authz.groups_claim"));
        assert!(!is_reloadable("session.cookie_name"));
    }
}
