//! Prometheus metrics: what the gateway decided and how long its neighbours
//! took. Labels are small fixed sets (route class, status class, reason
//! codes), never users, paths or anything secret.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels2 = [(&'static str, &'static str); 2];
type Labels1 = [(&'static str, &'static str); 1];
type LatencyFamily = Family<Labels1, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric the gateway exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels2, Counter>,
    auth_decisions: Family<Labels2, Counter>,
    logins: Family<Labels2, Counter>,
    refreshes: Family<Labels1, Counter>,
    idp_latency: LatencyFamily,
    upstream_latency: Histogram,
    open_connections: Gauge,
    cached_sessions: Gauge<u64, AtomicU64>,
    session_cache_bytes: Gauge<u64, AtomicU64>,
    cache_lookups: Family<Labels1, Counter>,
    panics: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let requests = Family::<Labels2, Counter>::default();
        registry.register("requests", "Requests answered, by route class and status class", requests.clone());
        let auth_decisions = Family::<Labels2, Counter>::default();
        registry.register("auth_decisions", "Authentication decisions, by outcome and reason", auth_decisions.clone());
        let logins = Family::<Labels2, Counter>::default();
        registry.register("logins", "Login flow events, by stage and reason", logins.clone());
        let refreshes = Family::<Labels1, Counter>::default();
        registry.register("token_refreshes", "Access-token refreshes, by result", refreshes.clone());
        let idp_latency = LatencyFamily::new_with_constructor(latency_histogram);
        registry.register("idp_request_seconds", "Latency of calls to the identity provider", idp_latency.clone());
        let upstream_latency = latency_histogram();
        registry.register(
            "upstream_response_seconds",
            "Time until the upstream's response headers",
            upstream_latency.clone(),
        );
        let open_connections = Gauge::default();
        registry.register("open_connections", "Client connections open now", open_connections.clone());
        let cached_sessions = Gauge::<u64, AtomicU64>::default();
        registry.register("cached_sessions", "Sessions in the in-memory token cache", cached_sessions.clone());
        let session_cache_bytes = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "session_cache_bytes",
            "Approximate bytes held by the in-memory session cache (its byte cap is session.cache_max_bytes)",
            session_cache_bytes.clone(),
        );
        let cache_lookups = Family::<Labels1, Counter>::default();
        registry.register("session_cache_lookups", "Token-cache lookups, by hit or miss", cache_lookups.clone());
        let panics = Counter::default();
        registry.register("handler_panics", "Requests whose handler panicked (answered 500)", panics.clone());
        Self {
            panics,
            registry,
            requests,
            auth_decisions,
            logins,
            refreshes,
            idp_latency,
            upstream_latency,
            open_connections,
            cached_sessions,
            session_cache_bytes,
            cache_lookups,
        }
    }

    /// One answered request.
    pub fn request(&self, route: &'static str, status: http::StatusCode) {
        let class = match status.as_u16() {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests.get_or_create(&[("route", route), ("status", class)]).inc();
    }

    /// One authentication decision.
    pub fn auth_decision(&self, outcome: &'static str, reason: &'static str) {
        self.auth_decisions.get_or_create(&[("outcome", outcome), ("reason", reason)]).inc();
    }

    /// One login event (`started`, `succeeded`, `failed`).
    pub fn login(&self, stage: &'static str, reason: &'static str) {
        self.logins.get_or_create(&[("stage", stage), ("reason", reason)]).inc();
    }

    /// One refresh attempt's result.
    pub fn refresh(&self, result: &'static str) {
        self.refreshes.get_or_create(&[("result", result)]).inc();
    }

    /// The latency of one provider call.
    pub fn idp_call(&self, operation: &'static str, seconds: f64) {
        self.idp_latency.get_or_create(&[("operation", operation)]).observe(seconds);
    }

    /// The time until the upstream's response headers.
    pub fn upstream_response(&self, seconds: f64) {
        self.upstream_latency.observe(seconds);
    }

    /// A session-cache lookup.
    pub fn cache_lookup(&self, hit: bool) {
        self.cache_lookups.get_or_create(&[("result", if hit { "hit" } else { "miss" })]).inc();
    }

    /// A request handler panicked.
    pub fn panic(&self) {
        self.panics.inc();
    }

    /// A client connection opened; the gauge goes down when the guard drops.
    pub fn connection_opened(&self) -> ConnectionGuard {
        self.open_connections.inc();
        ConnectionGuard(self.open_connections.clone())
    }

    /// The text exposition, with the session-cache gauges set to `cache_entries` and `cache_bytes`.
    pub fn render(&self, cache_entries: u64, cache_bytes: u64) -> String {
        self.cached_sessions.set(cache_entries);
        self.session_cache_bytes.set(cache_bytes);
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

/// Decrements the open-connections gauge when dropped.
#[derive(Debug)]
pub struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_counted() {
        let metrics = Metrics::new();
        metrics.request("proxy", http::StatusCode::OK);
        metrics.login("failed", "state_mismatch");
        let guard = metrics.connection_opened();
        let text = metrics.render(3, 1500);
        assert!(text.contains("portcullis_requests_total{route=\"proxy\",status=\"2xx\"} 1"), "{text}");
        assert!(text.contains("portcullis_logins_total{stage=\"failed\",reason=\"state_mismatch\"} 1"));
        assert!(text.contains("portcullis_open_connections 1"));
        assert!(text.contains("portcullis_cached_sessions 3"));
        assert!(text.contains("portcullis_session_cache_bytes 1500"));
        drop(guard);
        assert!(metrics.render(0, 0).contains("portcullis_open_connections 0"));
    }
}
