//! Fuzz target: see `checks::header_hygiene`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::header_hygiene(data));
