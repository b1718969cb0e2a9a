//! Sessions: the sealed cookies (flow and session), what they hold, and the
//! in-memory cache that keeps the authenticated hot path free of token work.

pub mod cache;
pub mod cookies;
pub mod data;
pub mod ended;
pub mod expiring;
pub mod flow;
pub mod seal;
pub mod store;
pub mod view;
