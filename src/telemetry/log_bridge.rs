//! The bridge from the `log` crate (which rustls logs through) to `tracing`.
//!
//! rustls logs at warn level what a peer did wrong — an IP address sent as SNI
//! (wrk, many health checkers), a warning alert, an unexpected message — once
//! per connection, so any client could make the gateway write a line per
//! handshake. Those records are counted (`portcullis_tls_warnings_total{kind}`)
//! and passed on at debug level; rustls' errors and every other crate's
//! records keep their level.
//!
//! Re-levelled here rather than capped by a log-filter directive: a filter can
//! only drop an event or keep it at its level (`RUST_LOG=rustls=debug` would
//! show warnings again, and a dropped event is counted nowhere), and a
//! `tracing` layer cannot change an event's level for the others. The `log`
//! record can be changed once, before it becomes an event, for every layer.

use std::fmt::Write as _;

use tracing_log::log::{self, Level, LevelFilter, Log, Metadata, Record};
use tracing_log::{AsLog as _, LogTracer};

use super::metrics::{self, TlsWarning};

/// Installs the bridge as the process's `log` logger. Call it once the global
/// `tracing` subscriber is set: it takes that subscriber's level hint (and at
/// least warn, so rustls' warnings are counted whatever the log level).
pub fn install() {
    if log::set_boxed_logger(Box::new(RelevellingBridge(LogTracer::new()))).is_ok() {
        let hint = tracing::level_filters::LevelFilter::current().as_log();
        log::set_max_level(hint.max(LevelFilter::Warn));
    }
}

/// `LogTracer`, except that rustls' warnings about peers are counted and become debug events.
struct RelevellingBridge(LogTracer);

impl std::fmt::Debug for RelevellingBridge {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("RelevellingBridge")
    }
}

impl Log for RelevellingBridge {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        is_rustls_peer_warning(metadata) || self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !is_rustls_peer_warning(record.metadata()) {
            return self.0.log(record);
        }
        metrics::tls_warning(classify(record));
        self.0.log(
            &Record::builder()
                .level(Level::Debug)
                .target(record.target())
                .args(*record.args())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {}
}

/// rustls logs what a peer did at warn (and nothing at info); its errors are
/// about this side (e.g. exhausted traffic keys) and keep their level.
fn is_rustls_peer_warning(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    matches!(metadata.level(), Level::Warn | Level::Info)
        && (target == "rustls" || target.strip_prefix("rustls").is_some_and(|rest| rest.starts_with("::")))
}

/// The kind of a rustls warning, from the start of its message (an unknown
/// message, e.g. after a rustls upgrade, still counts, as `other`).
fn classify(record: &Record<'_>) -> TlsWarning {
    let mut start = MessageStart::default();
    let _ = write!(start, "{}", record.args());
    let start = start.as_bytes();
    if start.starts_with(b"Illegal SNI") {
        TlsWarning::IllegalSni
    } else if start.starts_with(b"TLS alert warning received") {
        TlsWarning::AlertReceived
    } else if start.starts_with(b"Sending warning alert") {
        TlsWarning::AlertSent
    } else if start.starts_with(b"Received a ") {
        TlsWarning::UnexpectedMessage
    } else {
        TlsWarning::Other
    }
}

/// The first bytes of a message, kept without allocating (the rest is dropped).
#[derive(Default)]
struct MessageStart {
    bytes: [u8; 32],
    len: usize,
}

impl MessageStart {
    fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

impl std::fmt::Write for MessageStart {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let room = self.bytes.len() - self.len;
        let taken = text.len().min(room);
        if let (Some(to), Some(from)) = (self.bytes.get_mut(self.len..self.len + taken), text.as_bytes().get(..taken)) {
            to.copy_from_slice(from);
            self.len += taken;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a record is one of rustls' warnings about peers, and its kind.
    fn judge(level: Level, target: &str, message: &str) -> (bool, TlsWarning) {
        let judge = |record: &Record<'_>| (is_rustls_peer_warning(record.metadata()), classify(record));
        judge(&Record::builder().level(level).target(target).args(format_args!("{message}")).build())
    }

    #[test]
    fn rustls_warnings_about_peers_are_told_apart_from_everything_else() {
        let cases = [
            (
                "Illegal SNI extension: ignoring IP address presented as hostname (3132372e302e302e31)",
                TlsWarning::IllegalSni,
            ),
            ("Illegal SNI hostname received \"a_b\"", TlsWarning::IllegalSni),
            ("TLS alert warning received: AlertMessagePayload { .. }", TlsWarning::AlertReceived),
            ("Sending warning alert NoRenegotiation", TlsWarning::AlertSent),
            ("Received a Finished handshake message while expecting [ClientHello]", TlsWarning::UnexpectedMessage),
            ("something new in a later rustls", TlsWarning::Other),
        ];
        for (message, kind) in cases {
            assert_eq!(judge(Level::Warn, "rustls::msgs::handshake", message), (true, kind), "{message}");
        }
        for (level, target) in [
            (Level::Error, "rustls::common_state"),
            (Level::Debug, "rustls::server::hs"),
            (Level::Warn, "rustls_pki_types"),
            (Level::Warn, "hyper_util::client"),
        ] {
            assert!(!judge(level, target, "Illegal SNI").0, "{level} {target}");
        }
    }

    #[test]
    fn a_long_message_keeps_only_its_start() {
        let mut start = MessageStart::default();
        let (head, tail) = ("x".repeat(30), "yyyy");
        let _ = write!(start, "{head}{tail}");
        assert_eq!(start.as_bytes(), b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxyy");
    }
}
