//! Fuzz target: see `checks::open_cookie`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::open_cookie(data));
