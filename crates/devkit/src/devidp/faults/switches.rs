//! The switches of a provider built with the `faults` feature: each one set at
//! runtime through a shared reference.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use super::Misbehaviour;

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
