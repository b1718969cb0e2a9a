//! Logging setup: text or JSON lines (see [`JsonLine`]) via `tracing`, and — only when
//! `[tracing]` is configured — an OpenTelemetry layer beside it (see [`otel`]).
//! What is logged or exported is decided at the call sites, which never pass
//! tokens, codes, verifiers or cookies.

use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::{Layer as _, fmt};

use crate::config::{LogFormat, TracingConfig};

pub use self::json_format::JsonLine;
pub use self::log_writer::{StderrLines, hold_lines_on_this_thread, write_held_lines};
pub use self::otel::{SPAN_TARGET, TracerGuard};
pub use self::text_format::TextLine;

/// Installs the global subscriber, and the `log` bridge that re-levels rustls'
/// warnings about peers (see `telemetry/log_bridge.rs`). `RUST_LOG` overrides `level` when set.
pub fn init(format: LogFormat, level: &str) {
    let builder = fmt().with_env_filter(log_filter(level)).with_writer(StderrLines::new());
    let installed = match format {
        LogFormat::Text => {
            tracing::subscriber::set_global_default(builder.with_ansi(false).event_format(TextLine::default()).finish())
        }
        LogFormat::Json => tracing::subscriber::set_global_default(
            builder.fmt_fields(JsonFields::new()).event_format(JsonLine).finish(),
        ),
    };
    if installed.is_ok() {
        log_bridge::install();
    }
}

/// Installs the global subscriber as [`init`] does and, when `tracing` is
/// given, the OTLP exporter and its layer too; the log lines are the same
/// either way. Must be called inside a tokio runtime. The returned guard
/// flushes the exporter on shutdown.
pub fn init_with_tracing(
    format: LogFormat,
    level: &str,
    tracing: Option<&TracingConfig>,
) -> Result<Option<TracerGuard>, String> {
    let Some(config) = tracing else {
        init(format, level);
        return Ok(None);
    };
    let (otel_layer, guard) = otel::layer(config)?;
    // Per-layer filters: the log lines never show trace spans, and the exporter
    // sees only trace spans (no log events, whatever they carry).
    let logs = match format {
        LogFormat::Text => {
            let text = fmt::layer().with_ansi(false).event_format(TextLine::default());
            text.with_writer(StderrLines::new()).with_filter(log_filter(level)).boxed()
        }
        LogFormat::Json => {
            let json = fmt::layer().fmt_fields(JsonFields::new()).event_format(JsonLine);
            json.with_writer(StderrLines::new()).with_filter(log_filter(level)).boxed()
        }
    };
    let traces = otel_layer.with_filter(Targets::new().with_target(SPAN_TARGET, Level::TRACE));
    if tracing::subscriber::set_global_default(tracing_subscriber::registry().with(logs).with(traces)).is_ok() {
        log_bridge::install();
    }
    Ok(Some(guard))
}

/// The log filter: `RUST_LOG` or `level`, never the export-only trace spans.
fn log_filter(level: &str) -> EnvFilter {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    match format!("{SPAN_TARGET}=off").parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

mod json_format;
mod log_bridge;
mod log_writer;
pub mod metrics;
pub mod otel;
mod otlp_client;
mod text_format;
