//! The switches of a provider built without the `faults` feature: always off,
//! and nothing can turn them on.

/// A fault that is never on.
#[derive(Debug, Default)]
pub(crate) struct FaultFlag;

impl FaultFlag {
    pub(crate) const fn get(&self) -> bool {
        false
    }
}

/// A fault carrying an OAuth error code, never on.
#[derive(Debug, Default)]
pub(crate) struct FaultText;

impl FaultText {
    pub(crate) const fn get(&self) -> Option<String> {
        None
    }
}

/// A fault carrying JWT claims, never on.
#[derive(Debug, Default)]
pub(crate) struct FaultClaims;

impl FaultClaims {
    pub(crate) const fn get(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        None
    }
}

/// A fault carrying a duration, never on.
#[derive(Debug, Default)]
pub(crate) struct FaultDuration;

impl FaultDuration {
    pub(crate) const fn get(&self) -> Option<std::time::Duration> {
        None
    }
}

/// A gate that is always open.
#[derive(Debug, Default)]
pub(crate) struct FaultGate;

impl FaultGate {
    pub(crate) async fn pass(&self) {}
}
