use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::JsonFields;

use super::*;
use crate::clock;

/// An in-memory log sink for one test's subscriber.
#[derive(Clone, Default)]
pub(in crate::telemetry) struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    pub(in crate::telemetry) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// What `emit` logs through [`JsonLine`], set up as `telemetry::init` does.
fn new_format(emit: impl Fn()) -> String {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .fmt_fields(JsonFields::new())
        .event_format(JsonLine)
        .finish();
    tracing::subscriber::with_default(subscriber, emit);
    capture.text()
}

/// What `emit` logged through the format this one replaces.
fn old_format(emit: impl Fn()) -> String {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .json()
        .flatten_event(true)
        .finish();
    tracing::subscriber::with_default(subscriber, emit);
    capture.text()
}

/// A line's timestamp and the line with the timestamp blanked.
fn split_timestamp(line: &str) -> (String, String) {
    let rest = line.strip_prefix("{\"timestamp\":\"").unwrap_or_else(|| panic!("no timestamp first: {line}"));
    let end = rest.find('"').unwrap();
    (rest[..end].to_owned(), format!("{{\"timestamp\":\"\"{}", &rest[end + 1..]))
}

fn timestamp_of(time: SystemTime) -> String {
    let mut text = String::new();
    write_timestamp(&mut text, time).unwrap();
    text
}

fn escaped(text: &str) -> String {
    let mut out = String::new();
    write_escaped(&mut out, text).unwrap();
    out
}

#[derive(Debug)]
struct Failure(&'static str);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "failed: {}", self.0)
    }
}

impl std::error::Error for Failure {}

/// A `Debug` value that writes in several pieces, one of them a newline.
struct Pieces;

impl std::fmt::Debug for Pieces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("first\n")?;
        f.write_str("\"second\"")
    }
}

/// Events with every kind of field tracing records, inside and outside spans.
pub(in crate::telemetry) fn every_kind_of_event() {
    let error = Failure("upstream \"x\"");
    let bytes: &[u8] = b"\x00\xffab";
    tracing::info!(target: "portcullis::access", request_id = %"id-1", method = %http::Method::GET,
        path = %"/a b", status = 200u16, latency_ms = 1.234_567, user = "alice", "request");
    tracing::warn!(negative = -42i64, max = u64::MAX, min = i64::MIN, yes = true, no = false, "numbers {}", 7);
    tracing::error!(
        half = 0.5,
        tiny = 1e-7,
        huge = 1e21,
        whole = 3.0,
        nan = f64::NAN,
        inf = f64::INFINITY,
        negative_zero = -0.0,
        "floats"
    );
    tracing::debug!(error = &error as &(dyn std::error::Error + 'static), debug = ?Pieces, opt = ?Some("x"),
        wide = 1i128 << 100, unsigned_wide = u128::MAX, bytes, "kinds");
    tracing::trace!(r#type = "raw", dotted.name = "d", message_like = "m");
    tracing::info!("control \u{1} \u{1f} \u{7f} \u{2028} é 😀 \\ \" \t\r\n end");
    tracing::info!(path = "/x\"},\"injected\":{\"a\":\"\n{\"forged\":1}");
    let outer = tracing::info_span!("outer", id = 7, name_in_span = "v\"q", flag = true);
    let _outer = outer.enter();
    let inner = tracing::debug_span!("inner");
    let _inner = inner.enter();
    tracing::info!(inside = 1, "in spans");
    let detached = tracing::info_span!("detached", late = tracing::field::Empty);
    detached.record("late", "recorded later");
    tracing::info!(parent: &detached, "explicit parent");
}

#[test]
fn lines_are_the_old_json_lines_byte_for_byte_but_for_the_timestamp() {
    let before = timestamp_of(clock::system_time());
    let old = old_format(every_kind_of_event);
    let new = new_format(every_kind_of_event);
    let after = timestamp_of(clock::system_time());
    let (old_lines, new_lines): (Vec<_>, Vec<_>) = (old.lines().collect(), new.lines().collect());
    assert_eq!(old_lines.len(), 9, "{old}");
    assert_eq!(new_lines.len(), old_lines.len(), "{new}");
    for (old_line, new_line) in old_lines.iter().zip(&new_lines) {
        let (old_time, old_rest) = split_timestamp(old_line);
        let (new_time, new_rest) = split_timestamp(new_line);
        assert_eq!(new_rest, old_rest);
        // Fixed-width RFC 3339 UTC stamps order as text: both were taken between `before` and `after`.
        for stamp in [&old_time, &new_time] {
            assert!(before <= *stamp && *stamp <= after, "{before} <= {stamp} <= {after}");
        }
    }
}

#[test]
fn every_line_is_one_line_of_valid_json() {
    let text = new_format(every_kind_of_event);
    assert!(text.ends_with('\n'));
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"));
        assert!(value.is_object(), "{line}");
        assert!(line.chars().all(|c| c >= ' '), "control characters are escaped: {line:?}");
    }
}

#[test]
fn values_from_requests_cannot_break_or_add_lines() {
    let hostile = [
        "/a\"b\\c\nd\re\u{0}f\u{1b}[31m\u{7f}",
        "\"}\n{\"level\":\"ERROR\",\"message\":\"forged\"}",
        "/caf\u{e9}/\u{1f600}/\u{2028}\u{2029}",
        "\\",
        "",
    ];
    for value in hostile {
        let text = new_format(|| {
            tracing::info!(target: "portcullis::access", request_id = %value, method = %"GET", path = %value,
                status = 400u16, latency_ms = 0.25, user = value, "request");
        });
        assert_eq!(text.matches('\n').count(), 1, "one line: {text:?}");
        let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        for key in ["request_id", "path", "user"] {
            assert_eq!(line[key], value, "{key} round-trips: {text:?}");
        }
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "request");
        assert_eq!(line["target"], "portcullis::access");
        assert_eq!(line["status"], 400);
        assert_eq!(line["latency_ms"], 0.25);
        assert_eq!(line.as_object().unwrap().len(), 10, "no injected keys: {text}");
    }
}

#[test]
fn the_access_line_has_its_keys_in_order_and_latency_as_a_number() {
    let text = new_format(|| {
        tracing::info!(target: "portcullis::access", request_id = %"r-1", method = %"GET", path = %"/p",
            status = 200u16, latency_ms = 12.5, user = "-", "request");
    });
    let (_, rest) = split_timestamp(text.trim_end());
    assert_eq!(
        rest,
        "{\"timestamp\":\"\",\"level\":\"INFO\",\"message\":\"request\",\"request_id\":\"r-1\",\"method\":\"GET\",\
         \"path\":\"/p\",\"status\":200,\"latency_ms\":12.5,\"user\":\"-\",\"target\":\"portcullis::access\"}"
    );
}

#[test]
fn escaping_is_serde_jsons() {
    let mut samples: Vec<String> = (0u8..=0x7f).map(|byte| format!("a{}b", char::from(byte))).collect();
    samples.extend(
        ["", "plain", "\u{e9}\u{20ac}\u{1f600}", "\u{2028}\u{2029}\u{feff}", "\"\"\\\\", "\n\n", "end\\"]
            .map(String::from),
    );
    samples.push((0u8..=0x7f).map(char::from).chain(['\u{80}', '\u{ff}', '\u{10ffff}']).collect());
    for sample in samples {
        let serde = serde_json::to_string(&sample).unwrap();
        assert_eq!(format!("\"{}\"", escaped(&sample)), serde, "{sample:?}");
    }
    assert_eq!(escaped("\u{1}\u{1f}"), "\\u0001\\u001f");
    assert_eq!(escaped("\u{8}\u{c}\t\r\n"), "\\b\\f\\t\\r\\n");
}

#[test]
fn floats_are_serde_json_numbers_and_non_finite_ones_null() {
    let mut values = vec![0.0, -0.0, 1.0, 0.1, 0.3, 12.5, 1.234_567_89, 1e-7, 1e15, 1e16, 1e21, 123_456.789, 5e-324];
    values.extend([f64::MAX, f64::MIN_POSITIVE, f64::EPSILON, std::f64::consts::PI]);
    values.extend((1..2000).map(|step| f64::from(step) * 0.0137));
    for value in values {
        let mut text = String::new();
        write_f64(&mut text, value).unwrap();
        assert_eq!(text, serde_json::to_string(&value).unwrap());
        assert_eq!(text.parse::<f64>().unwrap(), value, "round-trips");
    }
    for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut text = String::new();
        write_f64(&mut text, value).unwrap();
        assert_eq!(text, "null");
    }
}

#[test]
fn timestamps_are_rfc3339_utc_with_microseconds() {
    let at = |seconds: u64, nanos: u32| timestamp_of(UNIX_EPOCH + Duration::new(seconds, nanos));
    assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
    assert_eq!(at(951_782_400, 999), "2000-02-29T00:00:00.000000Z");
    assert_eq!(at(1_709_251_199, 123_456_789), "2024-02-29T23:59:59.123456Z");
    assert_eq!(at(1_795_575_795, 5_000), "2026-11-25T03:03:15.000005Z");
    assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
    assert_eq!(at(253_402_300_799, 999_999_999), "9999-12-31T23:59:59.999999Z");
    assert_eq!(at(253_402_300_800, 0), "+10000-01-01T00:00:00.000000Z");
    let before = |seconds: u64, nanos: u32| timestamp_of(UNIX_EPOCH - Duration::new(seconds, nanos));
    assert_eq!(before(0, 1), "1969-12-31T23:59:59.999999Z");
    assert_eq!(before(1, 0), "1969-12-31T23:59:59.000000Z");
    assert_eq!(before(62_167_219_200, 0), "0000-01-01T00:00:00.000000Z");
    assert_eq!(before(62_167_219_201, 0), "-0001-12-31T23:59:59.000000Z");

    let now = timestamp_of(clock::system_time());
    let shape = now.bytes().enumerate().all(|(index, byte)| match index {
        4 | 7 => byte == b'-',
        10 => byte == b'T',
        13 | 16 => byte == b':',
        19 => byte == b'.',
        26 => byte == b'Z',
        _ => byte.is_ascii_digit(),
    });
    assert!(shape && now.len() == 27, "{now}");
}

#[test]
fn every_day_from_year_0_to_9999_has_its_calendar_date() {
    let (mut year, mut month, mut day) = (0i64, 1u32, 1u32);
    let leap = |year: i64| year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    for days in -719_528..=2_932_896 {
        assert_eq!(civil_from_days(days), (year, month, day), "day {days}");
        let length = match month {
            2 if leap(year) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        day += 1;
        if day > length {
            (day, month) = (1, month + 1);
            if month > 12 {
                (month, year) = (1, year + 1);
            }
        }
    }
    assert_eq!((year, month, day), (10_000, 1, 1));
}

#[test]
fn span_fields_are_spliced_with_the_name_last() {
    let object = |recorded: Option<&str>| {
        let mut out = String::new();
        write_span_object(&mut out, "sp\"an", recorded).unwrap();
        out
    };
    assert_eq!(object(Some("{\"a\":1,\"b\":\"x\"}")), "{\"a\":1,\"b\":\"x\",\"name\":\"sp\\\"an\"}");
    assert_eq!(object(Some("{}")), "{\"name\":\"sp\\\"an\"}");
    assert_eq!(object(Some("")), "{\"name\":\"sp\\\"an\"}");
    assert_eq!(object(None), "{\"name\":\"sp\\\"an\"}");
    let broken = object(Some("not json"));
    assert!(serde_json::from_str::<serde_json::Value>(&broken).is_ok(), "{broken}");
}

#[test]
fn events_from_the_log_crate_show_their_own_target() {
    // The shape tracing-log gives `log` records: name "log event", target "log", the real target a field.
    let text = new_format(|| {
        tracing::event!(name: "log event", target: "log", tracing::Level::WARN, log.target = "rustls::conn",
            log.module_path = "rustls::conn", "peer closed");
    });
    let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(line["target"], "rustls::conn", "{text}");
    assert_eq!(line["log.target"], "rustls::conn", "{text}");
    assert_eq!(line["level"], "WARN");
    let plain = new_format(|| tracing::event!(target: "log", tracing::Level::WARN, log.target = "not::bridged", "x"));
    assert!(plain.contains("\"target\":\"log\""), "only bridged events are renamed: {plain}");
}

#[test]
fn the_word_at_a_time_scan_finds_the_first_byte_to_escape() {
    for special in (0u8..0x20).chain([b'"', b'\\']) {
        for position in 0..20 {
            let mut bytes = vec![b'a'; 20];
            bytes[position] = special;
            assert_eq!(first_to_escape(&bytes), Some(position), "{special:#x} at {position}");
        }
    }
    // Bytes just around the special ones, and all non-ASCII, need nothing.
    let clean: Vec<u8> = (0x20u8..=0xff).filter(|byte| ![b'"', b'\\'].contains(byte)).collect();
    assert_eq!(first_to_escape(&clean), None);
    assert_eq!(first_to_escape(b""), None);
}

#[test]
fn integers_are_written_in_full() {
    let text = new_format(|| {
        tracing::info!(min = i64::MIN, minus = -404i64, zero = 0i64, status = 200u64, max = u64::MAX, "n");
    });
    let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(line["min"], i64::MIN);
    assert_eq!(line["minus"], -404);
    assert_eq!(line["zero"], 0);
    assert_eq!(line["status"], 200);
    assert_eq!(line["max"], u64::MAX);
    assert!(text.contains("\"min\":-9223372036854775808,") && text.contains("\"max\":18446744073709551615,"));
}

#[test]
fn the_cached_second_changes_with_the_second() {
    // Same thread, consecutive instants across second, day and year boundaries, and back.
    let at = |seconds: u64, nanos: u32| timestamp_of(UNIX_EPOCH + Duration::new(seconds, nanos));
    assert_eq!(at(1_767_225_599, 999_999_000), "2025-12-31T23:59:59.999999Z");
    assert_eq!(at(1_767_225_599, 1_000), "2025-12-31T23:59:59.000001Z");
    assert_eq!(at(1_767_225_600, 0), "2026-01-01T00:00:00.000000Z");
    assert_eq!(at(1_767_225_599, 0), "2025-12-31T23:59:59.000000Z");
    assert_eq!(at(1_767_225_600, 500_000), "2026-01-01T00:00:00.000500Z");
    // A thread that never logged before.
    let fresh = std::thread::spawn(move || timestamp_of(UNIX_EPOCH + Duration::new(1_767_225_600, 0)));
    assert_eq!(fresh.join().unwrap(), "2026-01-01T00:00:00.000000Z");
}

#[test]
fn spans_the_log_filter_hides_are_not_printed() {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    // As `init_with_tracing` sets it up: a per-layer filter that turns the export-only spans off.
    let capture = Capture::default();
    let filter = tracing_subscriber::EnvFilter::new(format!("trace,{}=off", crate::telemetry::SPAN_TARGET));
    let layer = tracing_subscriber::fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(JsonLine)
        .with_writer(capture.clone())
        .with_filter(filter);
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let hidden = tracing::info_span!(target: crate::telemetry::SPAN_TARGET, "request", url.path = "/x");
        let _hidden = hidden.enter();
        tracing::info!(target: "portcullis::access", status = 200u16, "request");
        let shown = tracing::info_span!("shown", n = 1);
        let _shown = shown.enter();
        tracing::info!("inside");
    });
    let text = capture.text();
    let lines: Vec<serde_json::Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].get("span").is_none() && lines[0].get("spans").is_none(), "{text}");
    assert_eq!(lines[1]["span"], serde_json::json!({"n": 1, "name": "shown"}), "{text}");
    assert_eq!(lines[1]["spans"], serde_json::json!([{"n": 1, "name": "shown"}]), "{text}");
}
