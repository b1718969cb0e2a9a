//! Forwarding to the upstream: header hygiene, pooled client, streaming, upgrades.
