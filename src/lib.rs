//! Portcullis: a reverse-proxy authentication gateway.
//!
//! Every request passes one decision (see `gateway`): protected requests need a
//! session made by an OpenID Connect login with PKCE; authenticated requests are
//! forwarded to the upstream with a bearer token and trusted identity headers.

pub mod body;
pub mod clock;
pub mod devidp;
pub mod echo;
pub mod proxy;
pub mod secret;
