//! Development tools for Portcullis, kept out of the product library: a
//! loopback OpenID provider ([`devidp`]) and an echo upstream ([`echo`]),
//! used by `portcullis demo` and by the tests, benches and examples.
//!
//! The `faults` feature (tests only) adds runtime switches that make the
//! provider misbehave; without it every fault is a constant "off".

mod body;
pub mod devidp;
pub mod echo;
mod html;
