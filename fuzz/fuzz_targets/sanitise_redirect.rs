//! Fuzz target: see `checks::sanitise_redirect`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::sanitise_redirect(data));
