//! Runtime fault switches that make the provider misbehave on purpose (for tests).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

/// A fault that is either on or off; changed through a shared reference.
#[derive(Debug, Default)]
pub struct FaultFlag(AtomicBool);

impl FaultFlag {
    /// Turns the fault on (`true`) or off.
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::SeqCst);
    }

    /// Whether the fault is on.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A fault carrying an OAuth error code; `None` means off.
#[derive(Debug, Default)]
pub struct FaultText(Mutex<Option<String>>);

impl FaultText {
    /// Sets the error code to answer with, or `None` to turn the fault off.
    pub fn set(&self, value: Option<&str>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = value.map(str::to_owned);
    }

    /// The current error code, if the fault is on.
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// A fault carrying JWT claims (or JOSE header members) to put in place of
/// the minted ones; `None` means off.
#[derive(Debug, Default)]
pub struct FaultClaims(Mutex<Option<serde_json::Map<String, serde_json::Value>>>);

impl FaultClaims {
    /// Sets the members to override, or `None` to turn the fault off.
    pub fn set(&self, value: Option<serde_json::Value>) {
        let members = value.and_then(|value| match value {
            serde_json::Value::Object(members) => Some(members),
            _ => None,
        });
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = members;
    }

    /// The members to override, if the fault is on.
    pub fn get(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// A fault carrying a duration; `None` means off.
#[derive(Debug, Default)]
pub struct FaultDuration(Mutex<Option<std::time::Duration>>);

impl FaultDuration {
    /// Sets the duration, or `None` to turn the fault off.
    pub fn set(&self, value: Option<std::time::Duration>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = value;
    }

    /// The current duration, if the fault is on.
    pub fn get(&self) -> Option<std::time::Duration> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Holds token-endpoint requests until opened, for tests of concurrent
/// refreshes: the test closes it, sees the request waiting, checks what it
/// must, then lets it go. Open by default.
#[derive(Debug)]
pub struct FaultGate {
    open: tokio::sync::watch::Sender<bool>,
    waiting: tokio::sync::watch::Sender<usize>,
}

impl Default for FaultGate {
    fn default() -> Self {
        Self { open: tokio::sync::watch::Sender::new(true), waiting: tokio::sync::watch::Sender::new(0) }
    }
}

impl FaultGate {
    /// Holds requests from now on.
    pub fn close(&self) {
        self.open.send_replace(false);
    }

    /// Lets held and new requests through.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// Requests being held now.
    pub fn waiting(&self) -> usize {
        *self.waiting.borrow()
    }

    /// Completes once at least `count` requests are held.
    pub async fn until_waiting(&self, count: usize) {
        let _ = self.waiting.subscribe().wait_for(|waiting| *waiting >= count).await;
    }

    /// Returns at once while open; otherwise waits until opened.
    pub async fn pass(&self) {
        let mut open = self.open.subscribe();
        if *open.borrow_and_update() {
            return;
        }
        self.waiting.send_modify(|waiting| *waiting += 1);
        let _ = open.wait_for(|open| *open).await;
        self.waiting.send_modify(|waiting| *waiting = waiting.saturating_sub(1));
    }
}

/// Every fault the development provider can simulate; all off by default.
#[derive(Debug, Default)]
pub struct Faults {
    /// ID tokens carry a nonce other than the one sent at authorize.
    pub id_token_wrong_nonce: FaultFlag,
    /// ID tokens are issued for another audience.
    pub id_token_wrong_audience: FaultFlag,
    /// ID tokens name another issuer.
    pub id_token_wrong_issuer: FaultFlag,
    /// ID tokens are signed with a key absent from the JWKS, under the published `kid`.
    pub id_token_bad_signature: FaultFlag,
    /// ID tokens are already expired when issued.
    pub id_token_expired: FaultFlag,
    /// ID tokens are unsigned (`alg: none`).
    pub id_token_alg_none: FaultFlag,
    /// Access tokens live this long instead of the configured `access_token_ttl`
    /// (not a defect: several providers issue 30-60 s tokens).
    pub access_token_lifetime: FaultDuration,
    /// The token endpoint answers 400 `{"error": <this>}`.
    pub token_endpoint_error: FaultText,
    /// The token endpoint answers 429 Too Many Requests with no OAuth error, as a rate limiter in front of it would.
    pub token_endpoint_rate_limited: FaultFlag,
    /// The authorize endpoint redirects back with `error=<this>&state=...`.
    pub authorize_error: FaultText,
    /// Every endpoint answers 503, as in an outage.
    pub unavailable: FaultFlag,
    /// Discovery advertises only `plain` as a code challenge method.
    pub omit_s256: FaultFlag,
    /// Authorization responses lack the RFC 9207 `iss` parameter.
    pub omit_iss_parameter: FaultFlag,
    /// ID tokens name another user (`sub`), e.g. a refresh answering for the wrong account.
    pub id_token_other_subject: FaultFlag,
    /// ID tokens carry these groups (comma-separated) instead of the user's, as after a change at the provider.
    pub id_token_groups: FaultText,
    /// ID tokens carry a `padding` claim of this text, to make them as large as
    /// some providers' (e.g. many group claims); not a defect, a size knob.
    pub id_token_padding: FaultText,
    /// ID tokens are signed with the current key but name this `kid` (unknown or hostile).
    pub id_token_kid: FaultText,
    /// ID tokens lack the claim of this name (e.g. `exp`, `aud`, `iss`).
    pub id_token_omit_claim: FaultText,
    /// ID tokens are HS256 MACs keyed with the published public key (algorithm confusion).
    pub id_token_hmac_with_public_key: FaultFlag,
    /// ID tokens carry these claims in place of the minted ones (an unverified
    /// email, an empty `sub`, a future `nbf`, an extra audience...).
    pub id_token_claims: FaultClaims,
    /// ID tokens' JOSE header lists this name in `crit` (an extension nobody understands).
    pub id_token_critical: FaultText,
    /// Back-channel logout tokens lack their `jti`.
    pub logout_token_without_jti: FaultFlag,
    /// How the back-channel endpoints (discovery, JWKS, token) misbehave; the
    /// browser-facing authorize endpoint is unaffected.
    pub back_channel: FaultMode,
    /// Token-endpoint requests wait here while it is closed.
    pub token_gate: FaultGate,
}

/// A way of misbehaving at the HTTP level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Accept the request and never answer.
    Hang,
    /// Answer 200 `application/json` with bytes that are not JSON.
    Garbage,
    /// Answer 200 with a 10 MB body.
    Huge,
}

/// A fault carrying a [`Misbehaviour`]; `None` means off.
#[derive(Debug, Default)]
pub struct FaultMode(Mutex<Option<Misbehaviour>>);

impl FaultMode {
    /// Sets the misbehaviour, or `None` to behave.
    pub fn set(&self, value: Option<Misbehaviour>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = value;
    }

    /// The current misbehaviour, if any.
    pub fn get(&self) -> Option<Misbehaviour> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
