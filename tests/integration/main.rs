//! End-to-end tests of the gateway: a real development provider, a real
//! upstream and the real gateway on loopback TCP, driven by a scripted browser.
//! One module per feature or threat; the harness is in [`support`].
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "clippy.toml's allow-*-in-tests covers #[test] functions only, not this crate's helpers: a failed step is a failed test"
)]

mod support;

mod api_clients;
mod attack_cookie_tampering;
mod attack_header_spoofing;
mod attack_open_redirect;
mod attack_request_smuggling;
mod attack_slow_clients;
mod attack_tokens;
mod authz;
mod authz_encoding;
mod bearer;
mod callback_failures;
mod cli;
mod config_reload;
mod connection_session;
mod ext_authz_grpc;
mod faults_idp;
mod faults_upstream;
mod forward_auth;
mod fuzz_regressions;
mod graceful_shutdown;
mod happy_path;
mod host_authority;
mod introspection;
mod limits_http2;
mod log_hygiene;
mod multi_provider;
mod open_redirects;
mod otlp_traces;
mod provider_chooser;
mod provider_operations;
mod provider_outage;
mod session_lifecycle;
mod sessions;
mod shared_store;
mod sign_out;
mod spoofing;
mod store_cluster;
mod store_commands;
mod store_failover;
mod store_tls;
mod subdomain_sso;
mod third_party_provider;
mod tls_handshake_warnings;
mod tls_listener;
mod tls_resumption;
mod tls_upstream;
mod token_rules;
mod tunnel_limits;
mod upstream;
mod upstream_pool;
mod upstream_routing;
mod userinfo;
mod vouched_headers;
