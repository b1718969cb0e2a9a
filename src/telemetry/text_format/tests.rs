use super::*;
use crate::telemetry::json_format::tests::{Capture, every_kind_of_event};

/// What `emit` logs through [`TextLine`], set up as `telemetry::init` does.
fn new_format(emit: impl Fn()) -> String {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .event_format(TextLine::default())
        .finish();
    tracing::subscriber::with_default(subscriber, emit);
    capture.text()
}

/// What `emit` logged through the format this one reproduces.
fn old_format(emit: impl Fn()) -> String {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, emit);
    capture.text()
}

/// Events the fast path writes itself: outside spans, no error fields, and
/// messages and values with every character the sanitiser or `Debug` escapes.
fn events_outside_spans() {
    tracing::info!(target: "portcullis::access", request_id = %"id-1", method = %http::Method::GET,
        path = %"/a b", status = 200u16, latency_ms = 1.234_567, user = "alice", "request");
    tracing::warn!(negative = -42i64, max = u64::MAX, yes = true, half = 0.5, nan = f64::NAN, "numbers {}", 7);
    tracing::trace!(r#type = "raw", dotted.name = "d", message_like = "m");
    tracing::debug!(opt = ?Some("x\u{1b}[31m"), text = "q\"\u{1b}\u{85}\n", "kinds");
    tracing::error!("terminal \u{1b}[2J \u{7} \u{8} \u{c} \u{7f} \u{85} \u{9f} \u{a0} é 😀 \\ \" \t\r\n end");
    tracing::info!(value = %"\u{1b}]0;title\u{7}", "display values are written as they are");
    tracing::info!(only = 1);
}

/// The lines of `text` with each line's timestamp (up to its first space) cut off.
fn without_timestamps(text: &str) -> Vec<String> {
    text.split_inclusive('\n').map(|line| line.split_once(' ').map_or(line, |(_, rest)| rest).to_owned()).collect()
}

#[test]
fn lines_are_the_full_formats_byte_for_byte_but_for_the_timestamp() {
    for emit in [events_outside_spans as fn(), every_kind_of_event] {
        let (old, new) = (old_format(emit), new_format(emit));
        assert!(old.lines().count() >= 7, "{old}");
        assert_eq!(without_timestamps(&new), without_timestamps(&old));
        for (old_line, new_line) in old.split_inclusive('\n').zip(new.split_inclusive('\n')) {
            let stamp = |line: &str| line.split_once(' ').map(|(stamp, _)| stamp.len());
            assert_eq!(stamp(new_line), stamp(old_line), "{new_line}");
        }
    }
}

#[test]
fn the_access_line_reads_as_before() {
    let text = new_format(|| {
        tracing::info!(target: "portcullis::access", request_id = %"r-1", method = %http::Method::GET,
            path = %"/small", status = 200u16, latency_ms = 1.5, "request");
    });
    let (stamp, rest) = text.split_once(' ').unwrap();
    assert_eq!(stamp.len(), "2026-12-08T01:44:26.488340Z".len(), "{text}");
    assert!(stamp.ends_with('Z'), "{text}");
    assert_eq!(
        rest,
        " INFO portcullis::access: request request_id=r-1 method=GET path=/small status=200 latency_ms=1.5\n"
    );
}
