//! Fuzz target: see `checks::http1_guard`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::http1_guard(data));
