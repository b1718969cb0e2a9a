//! Prometheus metrics: what the gateway decided and how long its neighbours
//! took. Labels are small fixed sets (route class, status class, reason
//! codes), never users, paths or anything secret.

use std::sync::atomic::AtomicU64;
use std::sync::{LazyLock, OnceLock};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels2 = [(&'static str, &'static str); 2];
type Labels1 = [(&'static str, &'static str); 1];
type LatencyFamily = Family<IdpCallLabels, Histogram, fn() -> Histogram>;
/// A provider call: its operation and the provider's id (owned: configured, from a small validated alphabet).
type IdpCallLabels = [(&'static str, String); 2];
/// A provider's id: configured, so owned, but from a small validated alphabet.
type ProviderLabel = [(&'static str, String); 1];

/// What a peer did that rustls warned about: a small fixed set of labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsWarning {
    /// An IP address or malformed name sent as SNI.
    IllegalSni,
    /// A warning alert from the peer.
    AlertReceived,
    /// A warning alert sent to the peer.
    AlertSent,
    /// A message where the protocol expects another.
    UnexpectedMessage,
    Other,
}

impl TlsWarning {
    const ALL: [Self; 5] =
        [Self::IllegalSni, Self::AlertReceived, Self::AlertSent, Self::UnexpectedMessage, Self::Other];

    fn label(self) -> &'static str {
        match self {
            Self::IllegalSni => "illegal_sni",
            Self::AlertReceived => "alert_received",
            Self::AlertSent => "alert_sent",
            Self::UnexpectedMessage => "unexpected_message",
            Self::Other => "other",
        }
    }
}

/// rustls' warnings, counted for the whole process: rustls logs through the
/// process's one `log` logger (see `telemetry::log_bridge`), which knows no
/// gateway; every [`Metrics`] exports this one family.
static TLS_WARNINGS: LazyLock<Family<Labels1, Counter>> = LazyLock::new(|| {
    let family = Family::default();
    for kind in TlsWarning::ALL {
        drop(family.get_or_create(&[("kind", kind.label())]));
    }
    family
});

/// One warning rustls logged about a peer.
pub fn tls_warning(kind: TlsWarning) {
    TLS_WARNINGS.get_or_create(&[("kind", kind.label())]).inc();
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric the gateway exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: StaticCounters<2>,
    auth_decisions: StaticCounters<2>,
    logins: Family<Labels2, Counter>,
    refreshes: Family<Labels1, Counter>,
    idp_latency: LatencyFamily,
    upstream_latency: Histogram,
    open_connections: Gauge,
    provider_ready: Family<ProviderLabel, Gauge>,
    cached_sessions: Gauge<u64, AtomicU64>,
    session_cache_bytes: Gauge<u64, AtomicU64>,
    cache_lookups: StaticCounters<1>,
    session_cookies: StaticCounters<1>,
    tls_handshakes: StaticCounters<2>,
    panics: Counter,
    ended_sessions_overflows: Counter,
    used_logout_tokens_overflows: Counter,
    config_reloads: Family<Labels1, Counter>,
    config_last_reload: Gauge,
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
        let requests = StaticCounters::new(["route", "status"]);
        registry.register("requests", "Requests answered, by route class and status class", requests.family.clone());
        let auth_decisions = StaticCounters::new(["outcome", "reason"]);
        registry.register(
            "auth_decisions",
            "Authentication decisions, by outcome and reason",
            auth_decisions.family.clone(),
        );
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
        let provider_ready = Family::<ProviderLabel, Gauge>::default();
        registry.register(
            "provider_ready",
            "Whether each identity provider's metadata and keys are loaded (1) or not yet (0), by provider id",
            provider_ready.clone(),
        );
        let cached_sessions = Gauge::<u64, AtomicU64>::default();
        registry.register("cached_sessions", "Sessions in the in-memory token cache", cached_sessions.clone());
        let session_cache_bytes = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "session_cache_bytes",
            "Approximate bytes held by the in-memory session cache (its byte cap is session.cache_max_bytes)",
            session_cache_bytes.clone(),
        );
        let cache_lookups = StaticCounters::new(["result"]);
        registry.register("session_cache_lookups", "Token-cache lookups, by hit or miss", cache_lookups.family.clone());
        let session_cookies = StaticCounters::new(["how"]);
        registry.register(
            "session_cookies",
            "Session cookies authenticated: opened, or reused as the connection last opened it",
            session_cookies.family.clone(),
        );
        registry.register(
            "tls_warnings",
            "Warnings rustls raised about TLS peers of this process (clients, upstreams, providers), by kind; \
             logged at debug level only, as any client can cause one per connection",
            TLS_WARNINGS.clone(),
        );
        let tls_handshakes = StaticCounters::new(["version", "resumed"]);
        for version in ["1.2", "1.3"] {
            for resumed in ["true", "false"] {
                drop(tls_handshakes.counter([version, resumed]));
            }
        }
        registry.register(
            "tls_handshakes",
            "Completed TLS handshakes of client connections, by protocol version and whether a session was resumed \
             (from a ticket any replica with the same session keys sealed, or this process's memory)",
            tls_handshakes.family.clone(),
        );
        let panics = Counter::default();
        registry.register("handler_panics", "Requests whose handler panicked (answered 500)", panics.clone());
        let ended_sessions_overflows = Counter::default();
        registry.register(
            "ended_sessions_overflows",
            "Times the records of ended sessions reached session.ended_max_entries and every session created until \
             then was ended (fail closed)",
            ended_sessions_overflows.clone(),
        );
        let used_logout_tokens_overflows = Counter::default();
        registry.register(
            "used_logout_tokens_overflows",
            "Back-channel logout tokens refused (503) because the used ones still remembered reached \
             session.ended_max_entries",
            used_logout_tokens_overflows.clone(),
        );
        let config_reloads = Family::<Labels1, Counter>::default();
        for result in ["applied", "rejected"] {
            drop(config_reloads.get_or_create(&[("result", result)]));
        }
        registry.register(
            "config_reloads",
            "Configuration reloads (SIGHUP or the file watch): applied, or rejected as invalid (the running \
             configuration kept)",
            config_reloads.clone(),
        );
        let config_last_reload = Gauge::default();
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "When the running configuration was loaded (at start, then at each applied reload), in Unix seconds",
            config_last_reload.clone(),
        );
        Self {
            config_reloads,
            config_last_reload,
            panics,
            ended_sessions_overflows,
            used_logout_tokens_overflows,
            registry,
            requests,
            auth_decisions,
            logins,
            refreshes,
            idp_latency,
            upstream_latency,
            open_connections,
            provider_ready,
            cached_sessions,
            session_cache_bytes,
            cache_lookups,
            session_cookies,
            tls_handshakes,
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
        self.requests.inc([route, class]);
    }

    /// One authentication decision.
    pub fn auth_decision(&self, outcome: &'static str, reason: &'static str) {
        self.auth_decisions.inc([outcome, reason]);
    }

    /// One login event (`started`, `succeeded`, `failed`).
    pub fn login(&self, stage: &'static str, reason: &'static str) {
        self.logins.get_or_create(&[("stage", stage), ("reason", reason)]).inc();
    }

    /// The counter of [`crate::session::ended::EndedSessions`] overflows, for the records to count with.
    pub fn ended_sessions_overflows(&self) -> Counter {
        self.ended_sessions_overflows.clone()
    }

    /// The counter of back-channel logout tokens refused because the used ones filled their memory.
    pub fn used_logout_tokens_overflows(&self) -> Counter {
        self.used_logout_tokens_overflows.clone()
    }

    /// One refresh attempt's result.
    pub fn refresh(&self, result: &'static str) {
        self.refreshes.get_or_create(&[("result", result)]).inc();
    }

    /// The latency of one call to the provider `provider` (its id). Not on the
    /// hot path: each is a round trip to the provider.
    pub fn idp_call(&self, operation: &'static str, provider: &str, seconds: f64) {
        let labels = [("operation", operation.to_owned()), ("provider", provider.to_owned())];
        self.idp_latency.get_or_create(&labels).observe(seconds);
    }

    /// The time until the upstream's response headers.
    pub fn upstream_response(&self, seconds: f64) {
        self.upstream_latency.observe(seconds);
    }

    /// A session-cache lookup.
    pub fn cache_lookup(&self, hit: bool) {
        self.cache_lookups.inc([if hit { "hit" } else { "miss" }]);
    }

    /// A session cookie was read: opened (`reused` false), or found equal to
    /// the one its connection last opened.
    pub fn session_cookie(&self, reused: bool) {
        self.session_cookies.inc([if reused { "reused" } else { "opened" }]);
    }

    /// A client's TLS handshake completed (once per connection, never per request).
    pub fn tls_handshake(&self, tls13: bool, resumed: bool) {
        self.tls_handshakes.inc([if tls13 { "1.3" } else { "1.2" }, if resumed { "true" } else { "false" }]);
    }

    /// A request handler panicked.
    pub fn panic(&self) {
        self.panics.inc();
    }

    /// A configuration reload was applied or rejected.
    pub fn config_reload(&self, applied: bool) {
        self.config_reloads.get_or_create(&[("result", if applied { "applied" } else { "rejected" })]).inc();
    }

    /// The running configuration was loaded at `unix_seconds` (at start or by a reload).
    pub fn config_loaded(&self, unix_seconds: i64) {
        self.config_last_reload.set(unix_seconds);
    }

    /// A client connection opened; the gauge goes down when the guard drops.
    pub fn connection_opened(&self) -> ConnectionGuard {
        self.open_connections.inc();
        ConnectionGuard(self.open_connections.clone())
    }

    /// Records whether the provider `id` is loaded; the gateway sets it for
    /// every provider before each rendering, so it is never stale.
    pub fn provider_ready(&self, id: &str, ready: bool) {
        self.provider_ready.get_or_create(&[("provider", id.to_owned())]).set(i64::from(ready));
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

/// Slots for remembered label sets; more distinct sets than this still count,
/// through the family's own lookup.
const REMEMBERED_SLOTS: usize = 64;

/// A counter family whose label values are static strings, remembering each
/// label set's counter after its first use: a per-request count is then one
/// atomic add instead of the family's lock and a SipHash of the labels.
#[derive(Debug)]
struct StaticCounters<const N: usize> {
    names: [&'static str; N],
    family: Family<[(&'static str, &'static str); N], Counter>,
    remembered: [OnceLock<([&'static str; N], Counter)>; REMEMBERED_SLOTS],
}

impl<const N: usize> StaticCounters<N> {
    fn new(names: [&'static str; N]) -> Self {
        Self { names, family: Family::default(), remembered: std::array::from_fn(|_| OnceLock::new()) }
    }

    /// Adds one to the counter labelled `values` (in the order of the label names).
    fn inc(&self, values: [&'static str; N]) {
        let Some(slot) = self.remembered.get(slot_of(&values)) else { return };
        let (remembered_values, counter) = slot.get_or_init(|| (values, self.counter(values)));
        if *remembered_values == values {
            counter.inc();
        } else {
            // Another label set took this slot first.
            self.counter(values).inc();
        }
    }

    fn counter(&self, values: [&'static str; N]) -> Counter {
        let labels: [(&'static str, &'static str); N] = std::array::from_fn(|index| {
            (self.names.get(index).copied().unwrap_or_default(), values.get(index).copied().unwrap_or_default())
        });
        self.family.get_or_create(&labels).clone()
    }
}

/// A slot for a label set: FNV-1a over the values (short, fixed strings).
fn slot_of(values: &[&str]) -> usize {
    let hash = values
        .iter()
        .flat_map(|value| value.bytes().chain(std::iter::once(0xff)))
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    usize::try_from(hash % REMEMBERED_SLOTS as u64).unwrap_or(0)
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
        metrics.provider_ready("staff", true);
        metrics.provider_ready("partners", false);
        metrics.idp_call("refresh", "partners", 0.25);
        let text = metrics.render(0, 0);
        assert!(text.contains("portcullis_provider_ready{provider=\"staff\"} 1"), "{text}");
        assert!(
            text.contains("portcullis_idp_request_seconds_count{operation=\"refresh\",provider=\"partners\"} 1"),
            "{text}"
        );
        assert!(text.contains("portcullis_provider_ready{provider=\"partners\"} 0"), "{text}");
        for kind in ["illegal_sni", "alert_received", "alert_sent", "unexpected_message", "other"] {
            let prefix = format!("portcullis_tls_warnings_total{{kind=\"{kind}\"}} ");
            assert!(text.lines().any(|line| line.starts_with(&prefix)), "every kind from the start: {text}");
        }
        metrics.tls_handshake(true, true);
        let text = metrics.render(0, 0);
        assert!(text.contains("portcullis_tls_handshakes_total{version=\"1.3\",resumed=\"true\"} 1"), "{text}");
        assert!(text.contains("portcullis_tls_handshakes_total{version=\"1.2\",resumed=\"false\"} 0"), "{text}");
        metrics.provider_ready("partners", true);
        assert!(metrics.render(0, 0).contains("portcullis_provider_ready{provider=\"partners\"} 1"));
    }

    #[test]
    fn remembered_counters_count_every_label_set_even_when_slots_collide() {
        let counters = StaticCounters::new(["a", "b"]);
        // Far more label sets than slots, so some share a slot and go through the family.
        let values: Vec<&'static str> = (0..200).map(|n| &*format!("v{n}").leak()).collect();
        for (round, value) in values.iter().enumerate() {
            for _ in 0..=(round % 3) {
                counters.inc([value, "x"]);
            }
        }
        let mut registry = Registry::default();
        registry.register("c", "test", counters.family.clone());
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for (round, value) in values.iter().enumerate() {
            let line = format!("c_total{{a=\"{value}\",b=\"x\"}} {}", round % 3 + 1);
            assert!(text.lines().any(|l| l == line), "missing {line}");
        }
    }
}
