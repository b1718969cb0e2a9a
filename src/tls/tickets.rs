//! Stateless TLS session tickets (TLS 1.3 and 1.2) that every replica can open:
//! their keys are derived from the session key ring, which replicas sharing
//! sessions already share, and rotate on a wall-clock schedule, so a client
//! resumes its TLS session on whichever replica its next connection reaches,
//! and no replica keeps any state per ticket.
//!
//! Period `N = floor(unix_time / rotation)` has its own key, derived with
//! HKDF-SHA256 from the ring's first (sealing) key; a ticket is opened with
//! the ring key it names, so a session key rotation (a new key first, the old
//! ones kept) does not cost the tickets sealed before it. A ticket is accepted
//! while its period is the current or the previous one, or the next one when
//! it starts within [`CLOCK_SKEW`] (a replica whose clock runs a little ahead
//! sealed it): every ticket stays usable at least `rotation` after it was
//! sealed (less the skew between replicas), and at most twice that.
//!
//! Format: `version ‖ key id (8) ‖ period (i64, big-endian) ‖ nonce (12) ‖
//! AES-256-GCM-SIV(rustls' resumption state) ‖ tag`, the first three fields
//! being the associated data.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM_SIV, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use rustls::server::ProducesTickets;

use crate::clock::{Clock, UnixSeconds};
use crate::random;
use crate::secret::SecretBytes;

/// How far ahead of this replica's clock another replica's may run and still
/// have the tickets it sealed in its new period accepted here. NTP keeps
/// replicas within milliseconds; five minutes covers a replica that lost its
/// time source for a while, and accepting a period key this much early gives
/// nothing away (it is derived either way; only its use starts earlier).
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
/// The shortest rotation period: longer than the skew allowance, so a ticket
/// is only ever accepted for the current, previous or next period.
pub const MIN_ROTATION: Duration = Duration::from_secs(10 * 60);
/// The longest rotation period: a ticket is accepted for up to twice this.
pub const MAX_ROTATION: Duration = Duration::from_secs(24 * 60 * 60);

const FORMAT_VERSION: u8 = 1;
const KEY_ID_LEN: usize = 8;
const PERIOD_LEN: usize = 8;
const AAD_LEN: usize = 1 + KEY_ID_LEN + PERIOD_LEN;
const HEADER_LEN: usize = AAD_LEN + NONCE_LEN;
const TAG_LEN: usize = 16;
/// rustls' resumption state is about a hundred bytes (no client certificates
/// here); anything much longer is not a ticket of ours and is refused unread.
const MAX_TICKET_LEN: usize = 2048;

/// HKDF-Extract salt: separates ticket keys from every other key derived from
/// the same session secrets (the cookie keys use their own salt).
const SALT: &[u8] = b"portcullis tls session tickets v1";
const KEY_ID_INFO: &[u8] = b"ticket key id";
const PERIOD_KEY_INFO: &[u8] = b"aes-256-gcm-siv period key";

/// The ticket keys could not be derived (no session key, or the provider refused).
#[derive(Debug, thiserror::Error)]
#[error("cannot derive TLS session ticket keys")]
pub struct TicketKeyError;

/// One session key of the ring, ready to derive period keys.
struct RootKey {
    /// Names the ring key in its tickets. Public (it is in every ticket), so
    /// compared with `==`: it says which key to try, the AEAD decides.
    id: [u8; KEY_ID_LEN],
    prk: hkdf::Prk,
}

/// Seals and opens session tickets with keys derived from the session key
/// ring for the period `clock` is in. rustls calls it once per ticket it
/// issues (two per TLS 1.3 handshake, one per TLS 1.2 handshake) and once per
/// ticket a client offers; never per request.
pub struct TicketKeys {
    /// The ring's keys in configuration order: the first seals, any opens.
    roots: Vec<RootKey>,
    rotation: i64,
    clock: Clock,
    /// The first ring key's period keys derived last, by period: the ones
    /// nearly every ticket is sealed or opened with (at most [`CACHED_PERIODS`]).
    recent: RwLock<Vec<(i64, Arc<LessSafeKey>)>>,
}

/// The previous, current and next period.
const CACHED_PERIODS: usize = 3;

impl std::fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKeys").field("keys", &self.roots.len()).field("rotation", &self.rotation).finish()
    }
}

impl TicketKeys {
    /// Ticket keys for the session key ring `secrets` (the first seals),
    /// rotating every `rotation` (validated by `config` to lie between
    /// [`MIN_ROTATION`] and [`MAX_ROTATION`]) by the wall-clock time of `clock`.
    pub fn new(secrets: &[SecretBytes], rotation: Duration, clock: Clock) -> Result<Self, TicketKeyError> {
        if secrets.is_empty() {
            return Err(TicketKeyError);
        }
        let rotation = crate::clock::seconds(rotation.clamp(MIN_ROTATION, MAX_ROTATION));
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT);
        let mut roots = Vec::with_capacity(secrets.len());
        for secret in secrets {
            let prk = salt.extract(secret.expose());
            let mut id = [0u8; KEY_ID_LEN];
            prk.expand(&[KEY_ID_INFO], IdLen).and_then(|okm| okm.fill(&mut id)).map_err(|_| TicketKeyError)?;
            roots.push(RootKey { id, prk });
        }
        Ok(Self { roots, rotation, clock, recent: RwLock::new(Vec::with_capacity(CACHED_PERIODS + 1)) })
    }

    /// The period `now` falls in.
    fn period(&self, now: UnixSeconds) -> i64 {
        now.div_euclid(self.rotation)
    }

    /// Whether a ticket sealed in `period` may be opened at `now`: the current
    /// or previous period, or the next one if it starts within [`CLOCK_SKEW`].
    fn accepts(&self, period: i64, now: UnixSeconds) -> bool {
        let current = self.period(now);
        let ahead = self.period(now.saturating_add(crate::clock::seconds(CLOCK_SKEW)));
        (current.saturating_sub(1)..=ahead).contains(&period)
    }

    /// The AEAD key of `root` for `period`.
    fn derive(root: &RootKey, period: i64) -> Option<LessSafeKey> {
        let period = period.to_be_bytes();
        let info = [PERIOD_KEY_INFO, &period];
        let okm = root.prk.expand(&info, &AES_256_GCM_SIV).ok()?;
        Some(LessSafeKey::new(UnboundKey::from(okm)))
    }

    /// The AEAD key of the ring key at `index` for `period`. The first ring
    /// key's are kept for the last few periods: deriving one (HKDF-Expand and
    /// the AES-GCM-SIV key schedule) cost about as much as sealing a ticket
    /// with it, and a resumed handshake seals two tickets and opens one: a
    /// seal and an open went from 9-17 µs to 6 µs with the keys kept (unit
    /// loop, debug build, on a loaded two-core machine). Older ring keys
    /// (during a session key rotation only) derive theirs each time.
    fn period_key(&self, index: usize, period: i64) -> Option<Arc<LessSafeKey>> {
        let root = self.roots.get(index)?;
        if index != 0 {
            return Self::derive(root, period).map(Arc::new);
        }
        let cached = |recent: &Vec<(i64, Arc<LessSafeKey>)>| {
            recent.iter().find(|(known, _)| *known == period).map(|(_, key)| Arc::clone(key))
        };
        if let Some(key) = self.recent.read().ok().and_then(|recent| cached(&recent)) {
            return Some(key);
        }
        let key = Arc::new(Self::derive(root, period)?);
        if let Ok(mut recent) = self.recent.write() {
            if cached(&recent).is_none() {
                recent.push((period, Arc::clone(&key)));
            }
            if recent.len() > CACHED_PERIODS {
                // Forget the oldest period: time moves forward.
                if let Some(oldest) = recent.iter().enumerate().min_by_key(|(_, (known, _))| *known).map(|(at, _)| at) {
                    recent.swap_remove(oldest);
                }
            }
        }
        Some(key)
    }

    /// A ticket holding `plain`, sealed at `now` with the first ring key.
    ///
    /// Nonces are random. AES-256-GCM-SIV rather than GCM because every replica
    /// seals with the same period key: a fleet issuing thousands of tickets a
    /// second reaches GCM's 2^32 random-nonce bound within a period, and a
    /// repeated GCM nonce gives away the authentication key (forged tickets).
    /// A repeated GCM-SIV nonce only shows whether two tickets hold the same
    /// state, which never happens (each holds a fresh secret).
    pub fn seal_at(&self, now: UnixSeconds, plain: &[u8]) -> Option<Vec<u8>> {
        let root = self.roots.first()?;
        let period = self.period(now);
        let key = self.period_key(0, period)?;
        let nonce = random::bytes::<NONCE_LEN>().ok()?;
        let mut ticket = Vec::with_capacity(HEADER_LEN + plain.len() + TAG_LEN);
        ticket.push(FORMAT_VERSION);
        ticket.extend_from_slice(&root.id);
        ticket.extend_from_slice(&period.to_be_bytes());
        let aad: [u8; AAD_LEN] = ticket.as_slice().try_into().ok()?;
        ticket.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut sealed).ok()?;
        ticket.extend_from_slice(&sealed);
        (ticket.len() <= MAX_TICKET_LEN).then_some(ticket)
    }

    /// The state a ticket sealed by any replica with a key of this ring holds,
    /// if it is authentic and its period is accepted at `now`. `ticket` comes
    /// from the client: every failure is `None`, nothing panics.
    pub fn open_at(&self, now: UnixSeconds, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() > MAX_TICKET_LEN || ticket.len() < HEADER_LEN + TAG_LEN {
            return None;
        }
        let (header, sealed) = ticket.split_at(HEADER_LEN);
        let (aad, nonce) = header.split_at(AAD_LEN);
        let (version, rest) = aad.split_first()?;
        let (id, period) = rest.split_at(KEY_ID_LEN);
        if *version != FORMAT_VERSION {
            return None;
        }
        let period = i64::from_be_bytes(period.try_into().ok()?);
        if !self.accepts(period, now) {
            return None;
        }
        let index = self.roots.iter().position(|root| root.id == id)?;
        let key = self.period_key(index, period)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = sealed.to_vec();
        let plain = key.open_in_place(nonce, Aad::from(aad), &mut in_out).ok()?;
        Some(plain.to_vec())
    }
}

impl ProducesTickets for TicketKeys {
    fn enabled(&self) -> bool {
        true
    }

    /// The shortest time a ticket stays accepted (a ticket sealed at the end
    /// of a period is accepted through the next one).
    fn lifetime(&self) -> u32 {
        u32::try_from(self.rotation).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal_at(self.clock.now(), plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open_at(self.clock.now(), cipher)
    }
}

struct IdLen;
impl hkdf::KeyType for IdLen {
    fn len(&self) -> usize {
        KEY_ID_LEN
    }
}

#[cfg(test)]
mod tests;
