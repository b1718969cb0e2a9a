//! The JSON log line: one event as one line of JSON, composed by hand. It
//! prints exactly what `fmt().json().flatten_event(true)` printed (same keys,
//! order, escaping and number forms) without serde's map machinery and
//! tracing-serde's visitor, which cost about 16,700 instructions per access
//! line; this costs about 4,100.
//!
//! Values from requests (paths, request ids, users) pass through [`write_escaped`],
//! so no client can end the string or the line.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::ser::{CompactFormatter, Formatter as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use crate::clock;

/// Formats every event as one flattened JSON object on one line:
/// `timestamp`, `level`, the event's fields (with `message`), `target`, and,
/// inside spans, `span` and `spans`. Span fields must be recorded by
/// `tracing_subscriber::fmt::format::JsonFields`.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        with_line_buffer(|line| write_line(ctx, line, event).and_then(|()| writer.write_str(line)))
    }
}

/// Runs `compose` with an empty line buffer: the one this thread keeps, or,
/// when that one is in use (an event logged while a line is being composed),
/// a fresh one. A line is composed in a `String` of our own and handed over
/// in one piece: many small writes through `Writer`'s `dyn fmt::Write` cost
/// more than the copy; keeping the buffer saves an allocation per line.
pub(super) fn with_line_buffer<R>(compose: impl FnOnce(&mut String) -> Result<R, fmt::Error>) -> Result<R, fmt::Error> {
    let mut compose = Some(compose);
    let kept = LINE.try_with(|kept| {
        let mut line = kept.try_borrow_mut().ok()?;
        line.clear();
        let composed = compose.take()?(&mut line);
        if line.capacity() > MAX_KEPT_CAPACITY {
            *line = String::with_capacity(LINE_CAPACITY);
        }
        Some(composed)
    });
    match (kept, compose) {
        (Ok(Some(composed)), _) => composed,
        (_, Some(compose)) => compose(&mut String::with_capacity(LINE_CAPACITY)),
        (_, None) => Err(fmt::Error),
    }
}

/// Room for a typical access line, so composing it does not reallocate.
const LINE_CAPACITY: usize = 384;

/// A thread keeps its line buffer only up to this size (a rare huge event does
/// not pin its memory).
const MAX_KEPT_CAPACITY: usize = 16 * 1024;

thread_local! {
    /// The buffer this thread composes its log lines in.
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(LINE_CAPACITY));
}

/// Writes `event` as one JSON object and a newline.
fn write_line<S, N>(ctx: &FmtContext<'_, S, N>, out: &mut String, event: &Event<'_>) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    let meta = event.metadata();
    out.push_str("{\"timestamp\":\"");
    write_timestamp(out, clock::system_time())?;
    out.push_str("\",\"level\":\"");
    out.push_str(meta.level().as_str());
    out.push('"');

    let mut fields = FieldWriter { out: &mut *out, result: Ok(()), log_target: None, is_log: is_log_event(meta) };
    event.record(&mut fields);
    let FieldWriter { result, log_target, .. } = fields;
    result?;

    out.push_str(",\"target\":\"");
    write_escaped(out, log_target.as_deref().unwrap_or(meta.target()))?;
    out.push('"');

    // As tracing-subscriber's JSON: `span` is the event's parent (or the
    // current span), `spans` the current scope from the root.
    let current = event.parent().and_then(|id| ctx.span(id)).or_else(|| ctx.lookup_current());
    if let Some(span) = current {
        out.push_str(",\"span\":");
        write_span::<S, N>(out, &span)?;
        out.push_str(",\"spans\":[");
        if let Some(leaf) = ctx.lookup_current() {
            for (position, span) in leaf.scope().from_root().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                write_span::<S, N>(out, &span)?;
            }
        }
        out.push(']');
    }
    out.push_str("}\n");
    Ok(())
}

/// Events bridged from the `log` crate: their real target is the `log.target`
/// field (what `tracing_log::NormalizeEvent` reports), not `log`.
pub(super) fn is_log_event(meta: &Metadata<'_>) -> bool {
    meta.target() == "log" && meta.name() == "log event"
}

/// One span as `{<its fields>,"name":"<name>"}`.
fn write_span<S, N>(out: &mut String, span: &SpanRef<'_, S>) -> fmt::Result
where
    S: for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    let extensions = span.extensions();
    let recorded = extensions.get::<FormattedFields<N>>().map(|fields| fields.fields.as_str());
    write_span_object(out, span.metadata().name(), recorded)
}

/// Writes `{<fields>,"name":"<name>"}`, splicing in the JSON object text that
/// `JsonFields` recorded for the span (its keys already sorted and escaped),
/// without parsing it again.
fn write_span_object(out: &mut impl fmt::Write, name: &str, recorded: Option<&str>) -> fmt::Result {
    out.write_char('{')?;
    match recorded.map(str::trim) {
        Some(object) if object.starts_with('{') && object.ends_with('}') => {
            let inner = object.get(1..object.len().saturating_sub(1)).unwrap_or_default().trim();
            if !inner.is_empty() {
                out.write_str(inner)?;
                out.write_char(',')?;
            }
        }
        Some("") | None => {}
        Some(_) => out.write_str("\"field_error\":\"field was no a valid object\",")?,
    }
    out.write_str("\"name\":\"")?;
    write_escaped(out, name)?;
    out.write_str("\"}")
}

/// Writes each field as `,"name":value`, in the event's field order. Numbers
/// and booleans are JSON numbers and booleans (non-finite floats are `null`);
/// everything else is the escaped `Debug` text, as `tracing_serde` wrote it.
struct FieldWriter<'a> {
    out: &'a mut String,
    result: fmt::Result,
    /// The `log.target` of an event from the `log` crate.
    log_target: Option<String>,
    is_log: bool,
}

impl FieldWriter<'_> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        self.out.push_str(",\"");
        write_escaped(self.out, field.name())?;
        self.out.push_str("\":");
        Ok(())
    }

    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut String) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| value(self.out));
        }
    }
}

impl Visit for FieldWriter<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.entry(field, |out| write_f64(out, value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |out| write_number(out, |bytes| CompactFormatter.write_i64(bytes, value)));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |out| write_number(out, |bytes| CompactFormatter.write_u64(bytes, value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |out| {
            out.push_str(if value { "true" } else { "false" });
            Ok(())
        });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if self.is_log && field.name() == "log.target" {
            self.log_target = Some(value.to_owned());
        }
        self.entry(field, |out| {
            out.push('"');
            write_escaped(out, value)?;
            out.push('"');
            Ok(())
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, |out| {
            out.push('"');
            write!(Escaping(out), "{value:?}")?;
            out.push('"');
            Ok(())
        });
    }
}

/// A `fmt::Write` that escapes everything written through it for the inside
/// of a JSON string.
struct Escaping<'a, W>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        write_escaped(self.0, text)
    }
}

/// Writes `value` as serde_json writes it: a JSON number in its shortest
/// round-trip form, or `null` when it is not finite.
pub fn write_f64(out: &mut impl fmt::Write, value: f64) -> fmt::Result {
    if value.is_finite() {
        write_number(out, |bytes| CompactFormatter.write_f64(bytes, value))
    } else {
        out.write_str("null")
    }
}

/// Writes the number that serde_json's own formatter `format` puts into a
/// stack buffer, so numbers read exactly as they did through serde.
fn write_number(out: &mut impl fmt::Write, format: impl FnOnce(&mut &mut [u8]) -> std::io::Result<()>) -> fmt::Result {
    // The longest f64 is 24 bytes, the longest i64 20.
    const CAPACITY: usize = 32;
    let mut buffer = [0u8; CAPACITY];
    let mut unused = buffer.as_mut_slice();
    format(&mut unused).map_err(|_| fmt::Error)?;
    let written = CAPACITY - unused.len();
    let text = buffer.get(..written).and_then(|bytes| std::str::from_utf8(bytes).ok()).ok_or(fmt::Error)?;
    out.write_str(text)
}

/// Writes `text` escaped for the inside of a JSON string, exactly as serde_json
/// escapes: `"` and `\`, the short forms `\b \f \n \r \t`, other control
/// characters as `\u00XX`; everything else (non-ASCII too) as it is.
pub fn write_escaped(out: &mut (impl fmt::Write + ?Sized), text: &str) -> fmt::Result {
    let bytes = text.as_bytes();
    let mut unwritten = 0;
    while let Some(found) = bytes.get(unwritten..).and_then(first_to_escape) {
        let index = unwritten + found;
        // Escaped bytes are ASCII, so `index` is a char boundary.
        out.write_str(text.get(unwritten..index).unwrap_or_default())?;
        unwritten = index + 1;
        let byte = bytes.get(index).copied().unwrap_or_default();
        let short = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            _ => "",
        };
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.write_str("\\u00")?;
            out.write_char(char::from(*HEX.get(usize::from(byte >> 4)).unwrap_or(&b'0')))?;
            out.write_char(char::from(*HEX.get(usize::from(byte & 0xf)).unwrap_or(&b'0')))?;
        } else {
            out.write_str(short)?;
        }
    }
    out.write_str(text.get(unwritten..).unwrap_or_default())
}

/// The position of the first byte JSON must escape: a control character, `"` or `\`.
fn first_to_escape(bytes: &[u8]) -> Option<usize> {
    let needs_escape = |byte: u8| byte < 0x20 || byte == b'"' || byte == b'\\';
    // Eight bytes per step: log values are mostly plain text with nothing to escape.
    let mut clean = 0;
    for chunk in bytes.chunks_exact(8) {
        let word = chunk.try_into().map_or(u64::MAX, u64::from_le_bytes);
        if word_needs_escape(word) {
            break;
        }
        clean += 8;
    }
    bytes.get(clean..)?.iter().position(|&byte| needs_escape(byte)).map(|position| clean + position)
}

/// Whether any byte of `word` is below 0x20, `"` or `\` (the classic
/// "has a byte less than n" and "has a zero byte" bit tricks; exact as a yes/no).
const fn word_needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const fn has_zero_byte(word: u64) -> u64 {
        word.wrapping_sub(ONES) & !word & HIGHS
    }
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    let quote = has_zero_byte(word ^ (ONES * b'"' as u64));
    let backslash = has_zero_byte(word ^ (ONES * b'\\' as u64));
    below_space | quote | backslash != 0
}

/// Writes `time` as RFC 3339 in UTC with microseconds, e.g.
/// `2026-11-25T03:03:15.123456Z`: the text tracing-subscriber's `SystemTime`
/// timer printed (years past 9999 as `+10000`, before year 0 as `-0001`).
pub fn write_timestamp(out: &mut impl fmt::Write, time: SystemTime) -> fmt::Result {
    let (seconds, nanos) = match time.duration_since(UNIX_EPOCH) {
        Ok(since) => (i64::try_from(since.as_secs()).unwrap_or(i64::MAX), since.subsec_nanos()),
        Err(error) => {
            let before = error.duration();
            let seconds = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            match before.subsec_nanos() {
                0 => (-seconds, 0),
                nanos => (-seconds - 1, 1_000_000_000 - nanos),
            }
        }
    };
    // The date and time of day change once a second: each thread keeps the
    // text of the last second it logged in, and writes only the fraction anew.
    let cached = LAST_SECOND.try_with(|last| {
        let mut last = last.try_borrow_mut().ok()?;
        let (cached_seconds, text) = &mut *last;
        if *cached_seconds != Some(seconds) {
            text.clear();
            write_date_time(text, seconds).ok()?;
            *cached_seconds = Some(seconds);
        }
        Some(out.write_str(text))
    });
    match cached {
        Ok(Some(written)) => written?,
        _ => write_date_time(out, seconds)?,
    }
    let mut fraction = *b".000000Z";
    put_digits(fraction.get_mut(1..7), u64::from(nanos / 1_000));
    out.write_str(std::str::from_utf8(&fraction).map_err(|_| fmt::Error)?)
}

thread_local! {
    /// The second (since the epoch) this thread last logged in, and its
    /// `YYYY-MM-DDTHH:MM:SS` text.
    static LAST_SECOND: RefCell<(Option<i64>, String)> = const { RefCell::new((None, String::new())) };
}

/// Writes the `YYYY-MM-DDTHH:MM:SS` of `seconds` since the epoch (UTC).
fn write_date_time(out: &mut (impl fmt::Write + ?Sized), seconds: i64) -> fmt::Result {
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (second_of_day / 3600, second_of_day / 60 % 60, second_of_day % 60);
    if !(0..=9999).contains(&year) {
        // Outside four-digit years: rare enough for `write!`.
        if year > 9999 {
            write!(out, "+{year}")?;
        } else {
            write!(out, "{year:05}")?;
        }
        return write!(out, "-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
    }
    let mut text = *b"0000-00-00T00:00:00";
    put_digits(text.get_mut(0..4), year.unsigned_abs());
    put_digits(text.get_mut(5..7), u64::from(month));
    put_digits(text.get_mut(8..10), u64::from(day));
    put_digits(text.get_mut(11..13), hour.unsigned_abs());
    put_digits(text.get_mut(14..16), minute.unsigned_abs());
    put_digits(text.get_mut(17..19), second.unsigned_abs());
    out.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
}

/// Fills `slot` with the low decimal digits of `value`, zero-padded.
fn put_digits(slot: Option<&mut [u8]>, mut value: u64) {
    for digit in slot.into_iter().flatten().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days.saturating_add(719_468);
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
pub(super) mod tests;
