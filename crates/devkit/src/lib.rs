//! Development tools for Portcullis, kept out of the product library: a
//! loopback OpenID provider ([`devidp`]) and an echo upstream ([`echo`]),
//! used by `portcullis demo` and by the tests, benches and examples.

mod body;
pub mod devidp;
pub mod echo;
mod html;
