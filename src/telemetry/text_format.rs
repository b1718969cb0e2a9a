//! The text log line, the binary's default (`[log] format = "text"`): the same
//! bytes as tracing-subscriber's `Full` format without ANSI colours, composed
//! in one buffer. The `Full` format writes each piece through `Writer`'s
//! `dyn fmt::Write`, wraps each in (colourless) ANSI styles and formats the
//! level with padding: about 11,600 instructions per access line, a sixth of
//! an authenticated request's (docs/benchmarks.md, "The binary operators
//! run"); this costs about 4,000.
//!
//! Events inside spans, from the `log` crate or carrying an error field take
//! the `Full` format itself: none is on the hot path, and its output for them
//! is then the reference by construction.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::time::SystemTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::json_format::{is_log_event, with_line_buffer, write_timestamp};
use crate::clock;

/// Formats every event as tracing-subscriber's default `Full` text format
/// with ANSI colours off: `<timestamp> <LEVEL> <target>: <message> <name>=<value> ...`.
#[derive(Debug, Default)]
pub struct TextLine {
    /// The format this one reproduces, for the events it leaves to it.
    reference: Format<Full, SystemTime>,
}

impl<S, N> FormatEvent<S, N> for TextLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        if writer.has_ansi_escapes() || is_log_event(event.metadata()) || ctx.event_scope().is_some() {
            return self.reference.format_event(ctx, writer, event);
        }
        let composed = with_line_buffer(|line| {
            let complete = write_line(line, event, writer.sanitizes_ansi_escapes())?;
            Ok(complete.then(|| writer.write_str(line)))
        })?;
        match composed {
            Some(written) => written,
            None => self.reference.format_event(ctx, writer, event),
        }
    }
}

/// Writes `event` as its `Full` line, or returns `false` (with `out` to be
/// discarded) for an event whose fields it leaves to the reference format.
fn write_line(out: &mut String, event: &Event<'_>, sanitize: bool) -> Result<bool, fmt::Error> {
    let meta = event.metadata();
    write_timestamp(out, clock::system_time())?;
    out.push(' ');
    // `Full` pads the level to five characters.
    out.push_str(match *meta.level() {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        Level::ERROR => "ERROR",
    });
    out.push(' ');
    out.push_str(meta.target());
    out.push_str(": ");
    let mut fields = TextFields { out: &mut *out, result: Ok(()), empty: true, unsupported: false, sanitize };
    event.record(&mut fields);
    let TextFields { result, unsupported, .. } = fields;
    result?;
    out.push('\n');
    Ok(!unsupported)
}

/// tracing-subscriber's `DefaultVisitor` without colours: fields separated by
/// one space, the message first as its text, every other field `name=<Debug>`.
struct TextFields<'a> {
    out: &'a mut String,
    result: fmt::Result,
    empty: bool,
    /// An error field (its text and sources are left to the reference format).
    unsupported: bool,
    /// Whether the message's terminal control characters are escaped (the writer's setting).
    sanitize: bool,
}

impl Visit for TextFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, _field: &Field, _value: &(dyn std::error::Error + 'static)) {
        self.unsupported = true;
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        if self.empty {
            self.empty = false;
        } else {
            self.out.push(' ');
        }
        self.result = match name {
            "message" if self.sanitize => write!(Sanitizing(&mut *self.out), "{value:?}"),
            "message" => write!(self.out, "{value:?}"),
            name => {
                self.out.push_str(name.strip_prefix("r#").unwrap_or(name));
                self.out.push('=');
                write!(self.out, "{value:?}")
            }
        };
    }
}

/// Writes through it what tracing-subscriber's `EscapeGuard` writes: terminal
/// control characters (ESC, BEL, BS, FF, DEL and the C1 range) as escapes.
struct Sanitizing<'a>(&'a mut String);

impl fmt::Write for Sanitizing<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let risky = |c: char| matches!(c, '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' | '\u{80}'..='\u{9f}');
        let mut rest = text;
        while let Some(index) = rest.find(risky) {
            self.0.push_str(rest.get(..index).unwrap_or_default());
            let c = rest.get(index..).and_then(|tail| tail.chars().next()).unwrap_or_default();
            match c {
                '\x1b' => self.0.push_str("\\x1b"),
                '\x07' => self.0.push_str("\\x07"),
                '\x08' => self.0.push_str("\\x08"),
                '\x0c' => self.0.push_str("\\x0c"),
                '\x7f' => self.0.push_str("\\x7f"),
                c => write!(self.0, "\\u{{{:x}}}", u32::from(c))?,
            }
            rest = rest.get(index + c.len_utf8()..).unwrap_or_default();
        }
        self.0.push_str(rest);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
