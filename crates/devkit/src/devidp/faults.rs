//! Fault switches that make the provider misbehave on purpose, for tests.
//!
//! With the `faults` feature (the product's dev-dependency turns it on) every
//! switch can be set at runtime. Without it (`portcullis demo`) every switch is
//! a constant "off", so the compiler drops each fault branch: the demo binary
//! carries no fault injection.

#[cfg(not(feature = "faults"))]
mod off;
#[cfg(feature = "faults")]
mod switches;

#[cfg(not(feature = "faults"))]
use off::{FaultClaims, FaultDuration, FaultFlag, FaultGate, FaultText};
#[cfg(feature = "faults")]
pub use switches::{FaultClaims, FaultDuration, FaultFlag, FaultGate, FaultMode, FaultText};

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
    #[cfg(feature = "faults")]
    pub back_channel: FaultMode,
    /// Token-endpoint requests wait here while it is closed.
    pub token_gate: FaultGate,
}

/// A way of misbehaving at the HTTP level.
#[cfg(feature = "faults")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Accept the request and never answer.
    Hang,
    /// Answer 200 `application/json` with bytes that are not JSON.
    Garbage,
    /// Answer 200 with a 10 MB body.
    Huge,
}
