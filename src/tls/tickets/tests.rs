use super::*;

const HOUR: Duration = Duration::from_secs(3600);
/// A moment exactly at the start of a one-hour period.
const PERIOD_START: UnixSeconds = 1_800_000_000 / 3600 * 3600;
const SKEW: i64 = 300;

fn secret(fill: u8) -> SecretBytes {
    SecretBytes::new((0..32u8).map(|n| n.wrapping_mul(7).wrapping_add(fill)).collect())
}

fn keys(secrets: &[SecretBytes]) -> TicketKeys {
    TicketKeys::new(secrets, HOUR, Clock::system()).unwrap()
}

const STATE: &[u8] = b"rustls resumption state: version, suite, secret, sni, alpn";

#[test]
fn a_ticket_opens_through_the_current_and_the_next_period_then_never() {
    let keys = keys(&[secret(1)]);
    for sealed_at in [PERIOD_START, PERIOD_START + 1800, PERIOD_START + 3599] {
        let ticket = keys.seal_at(sealed_at, STATE).unwrap();
        for now in [sealed_at, PERIOD_START + 3599, PERIOD_START + 3600, PERIOD_START + 2 * 3600 - 1] {
            assert_eq!(keys.open_at(now, &ticket).as_deref(), Some(STATE), "sealed {sealed_at}, opened {now}");
        }
        // Two periods on, the key is no longer used: full handshake.
        assert_eq!(keys.open_at(PERIOD_START + 2 * 3600, &ticket), None, "sealed {sealed_at}");
        assert_eq!(keys.open_at(PERIOD_START + 30 * 3600, &ticket), None);
    }
}

#[test]
fn a_replica_whose_clock_runs_ahead_by_less_than_the_skew_is_accepted_early() {
    let keys = keys(&[secret(1)]);
    // The other replica is already in the next period (its clock 4 minutes ahead).
    let ahead = keys.seal_at(PERIOD_START + 3600, STATE).unwrap();
    assert_eq!(keys.open_at(PERIOD_START + 3600 - SKEW, &ahead).as_deref(), Some(STATE), "at the skew limit");
    assert_eq!(keys.open_at(PERIOD_START + 3600 - 240, &ahead).as_deref(), Some(STATE));
    // Beyond the allowance, or a period further ahead: refused.
    assert_eq!(keys.open_at(PERIOD_START + 3600 - SKEW - 1, &ahead), None);
    let far_ahead = keys.seal_at(PERIOD_START + 2 * 3600, STATE).unwrap();
    assert_eq!(keys.open_at(PERIOD_START + 3599, &far_ahead), None);
}

#[test]
fn the_injected_clock_rotates_the_keys() {
    let clock = Clock::system();
    let sealer = TicketKeys::new(&[secret(1)], HOUR, clock.clone()).unwrap();
    let ticket = sealer.encrypt(STATE).unwrap();
    assert_eq!(sealer.decrypt(&ticket).as_deref(), Some(STATE));
    // A replica with the same keys and its own clock opens it too.
    let replica = TicketKeys::new(&[secret(1)], HOUR, Clock::system()).unwrap();
    assert_eq!(replica.decrypt(&ticket).as_deref(), Some(STATE));
    clock.advance(3600);
    assert_eq!(sealer.decrypt(&ticket).as_deref(), Some(STATE), "the previous period is still accepted");
    let newer = sealer.encrypt(STATE).unwrap();
    assert_ne!(newer.get(1..17), ticket.get(1..17), "a new period in the header");
    clock.advance(3600);
    assert_eq!(sealer.decrypt(&ticket), None, "two periods on");
    assert_eq!(sealer.decrypt(&newer).as_deref(), Some(STATE));
    assert_eq!(sealer.lifetime(), 3600);
    assert!(sealer.enabled());
}

#[test]
fn other_key_material_never_opens_a_ticket() {
    let ours = keys(&[secret(1)]);
    let theirs = keys(&[secret(2)]);
    let ticket = ours.seal_at(PERIOD_START, STATE).unwrap();
    assert_eq!(theirs.open_at(PERIOD_START, &ticket), None);
    // Not even when it claims to be sealed with their key id.
    let mut renamed = ticket.clone();
    renamed.splice(1..9, theirs.roots.first().unwrap().id);
    assert_eq!(theirs.open_at(PERIOD_START, &renamed), None);
}

#[test]
fn tickets_sealed_before_a_session_key_rotation_still_open() {
    let (old, new) = (secret(1), secret(2));
    let before = keys(std::slice::from_ref(&old));
    let during = keys(&[new.clone(), old.clone()]);
    let ticket = before.seal_at(PERIOD_START, STATE).unwrap();
    assert_eq!(during.open_at(PERIOD_START + 10, &ticket).as_deref(), Some(STATE), "an older ring key opens");
    let fresh = during.seal_at(PERIOD_START, STATE).unwrap();
    assert_eq!(keys(&[new]).open_at(PERIOD_START, &fresh).as_deref(), Some(STATE), "the first key seals");
    assert_eq!(before.open_at(PERIOD_START, &fresh), None, "a replica not yet given the new key: full handshake");
}

#[test]
fn every_changed_byte_truncation_or_extension_is_refused() {
    let keys = keys(&[secret(1)]);
    let ticket = keys.seal_at(PERIOD_START, STATE).unwrap();
    assert_eq!(ticket.len(), HEADER_LEN + STATE.len() + TAG_LEN);
    for index in 0..ticket.len() {
        for flip in [0x01u8, 0x80] {
            let mut forged = ticket.clone();
            forged[index] ^= flip;
            assert_eq!(keys.open_at(PERIOD_START, &forged), None, "byte {index} ^ {flip:#x}");
        }
    }
    for length in 0..ticket.len() {
        assert_eq!(keys.open_at(PERIOD_START, &ticket[..length]), None, "truncated to {length}");
    }
    let mut longer = ticket.clone();
    longer.push(0);
    assert_eq!(keys.open_at(PERIOD_START, &longer), None);
    assert_eq!(keys.open_at(PERIOD_START, &vec![0u8; MAX_TICKET_LEN + 1]), None);
    assert_eq!(keys.open_at(PERIOD_START, &[]), None);
}

#[test]
fn nonces_are_fresh_and_the_state_is_hidden() {
    let keys = keys(&[secret(1)]);
    let first = keys.seal_at(PERIOD_START, STATE).unwrap();
    let second = keys.seal_at(PERIOD_START, STATE).unwrap();
    assert_ne!(first, second);
    assert_ne!(first.get(AAD_LEN..HEADER_LEN), second.get(AAD_LEN..HEADER_LEN), "a new nonce per ticket");
    assert!(!first.windows(8).any(|window| STATE.windows(8).any(|plain| plain == window)));
}

#[test]
fn rotation_is_held_within_its_bounds_and_no_ring_is_refused() {
    let short = TicketKeys::new(&[secret(1)], Duration::from_secs(1), Clock::system()).unwrap();
    assert_eq!(short.lifetime(), 600);
    let long = TicketKeys::new(&[secret(1)], Duration::from_secs(30 * 86_400), Clock::system()).unwrap();
    assert_eq!(long.lifetime(), 86_400);
    assert!(TicketKeys::new(&[], HOUR, Clock::system()).is_err());
    assert_eq!(format!("{long:?}"), "TicketKeys { keys: 1, rotation: 86400 }", "Debug shows no key material");
}

#[test]
fn the_kept_period_keys_are_the_derived_ones_and_stay_few() {
    let keys = keys(&[secret(1), secret(2)]);
    for period in (0..10).chain([3, 9, 2, 11, 10]) {
        let kept = keys.period_key(0, period).unwrap();
        let derived = TicketKeys::derive(keys.roots.first().unwrap(), period).unwrap();
        let mut sealed = STATE.to_vec();
        kept.seal_in_place_append_tag(Nonce::assume_unique_for_key([1; 12]), Aad::from([0u8; 3]), &mut sealed).unwrap();
        let opened = derived.open_in_place(Nonce::assume_unique_for_key([1; 12]), Aad::from([0u8; 3]), &mut sealed);
        assert_eq!(opened.unwrap(), STATE, "period {period}");
        assert!(keys.recent.read().unwrap().len() <= CACHED_PERIODS);
    }
    let periods: Vec<i64> = keys.recent.read().unwrap().iter().map(|(period, _)| *period).collect();
    assert!(periods.contains(&10) && periods.contains(&11), "the newest are kept: {periods:?}");
    // An older ring key's period keys are not kept.
    assert!(keys.period_key(1, 11).is_some());
    assert!(keys.period_key(2, 11).is_none(), "no such ring key");
    assert!(keys.recent.read().unwrap().len() <= CACHED_PERIODS);
}
