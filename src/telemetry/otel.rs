//! OpenTelemetry traces over OTLP/HTTP, built only when `[tracing]` sets an
//! endpoint: the tracer provider (batch export, parent-based ratio sampling),
//! the `tracing` layer that turns the gateway's trace spans into OTel spans,
//! and W3C trace-context propagation in and out.
//!
//! Only spans with the target [`SPAN_TARGET`] are exported, with the fields
//! their call sites chose (never a token, code, cookie or query); ordinary log
//! events never reach the exporter.

use std::collections::HashMap;
use std::time::Duration;

use http::HeaderMap;
use opentelemetry::KeyValue;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use tracing::Span;
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
use tracing_subscriber::registry::LookupSpan;

use super::otlp_client::OtlpHttpClient;
use crate::config::TracingConfig;

/// The `tracing` target of every span meant for export. Logs never show these
/// spans, and with tracing off they are disabled outright (near-zero cost).
pub const SPAN_TARGET: &str = "portcullis::otel_span";

/// The running exporter. Call [`TracerGuard::shutdown`] after the server has
/// drained, so the last spans are sent.
#[derive(Debug)]
pub struct TracerGuard {
    provider: SdkTracerProvider,
}

impl TracerGuard {
    /// Exports every span still queued and stops the exporter, waiting at most `limit`.
    pub async fn shutdown(self, limit: Duration) {
        let provider = self.provider;
        // Shutdown blocks until the export thread is done, and that export runs on this runtime.
        let finished = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(limit)).await;
        match finished {
            Ok(Ok(())) => tracing::debug!("trace exporter flushed and stopped"),
            Ok(Err(error)) => tracing::warn!(%error, "trace exporter did not shut down cleanly"),
            Err(_) => tracing::warn!("trace exporter shutdown was interrupted"),
        }
    }
}

/// Builds the exporter and the layer for `config`; must be called inside a tokio runtime.
pub fn layer<S>(config: &TracingConfig) -> Result<(OpenTelemetryLayer<S, SdkTracer>, TracerGuard), String>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let client = OtlpHttpClient::new(config.timeout, &config.tls)?;
    let headers: HashMap<String, String> =
        config.headers.iter().map(|(name, value)| (name.as_str().to_owned(), value.expose().to_owned())).collect();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(config.otlp_endpoint.as_str())
        .with_timeout(config.timeout)
        .with_headers(headers)
        .build()
        .map_err(|error| format!("cannot build the OTLP exporter: {error}"))?;
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio))))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("portcullis");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false);
    Ok((layer, TracerGuard { provider }))
}

/// Makes a client's W3C `traceparent` (and `tracestate`) the parent of `span`,
/// so the gateway joins the caller's trace. Does nothing when `span` is not
/// exported or the header is absent or malformed.
pub fn adopt_remote_parent(span: &Span, headers: &HeaderMap) {
    if span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        // Fails only if the span has already started, which a fresh span has not.
        let _ = span.set_parent(parent);
    }
}

/// Writes `span`'s W3C `traceparent`/`tracestate` into `headers` (replacing
/// any the client sent), so the upstream's own spans join the trace. Does
/// nothing when `span` is not exported.
pub fn inject_context(span: &Span, headers: &mut HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let context = span.context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
    }
}
