//! The HTTP/1 framing guard: follows the request stream of one connection
//! (heads, then bodies, keep-alive and pipelining) and refuses a request head
//! that carries both `Transfer-Encoding` and `Content-Length` (the classic
//! request-smuggling ambiguity, RFC 9112 §6.1) before hyper acts on it.
//!
//! hyper alone would read such a request as chunked, drop the length and close
//! afterwards; we want it refused with `400`. hyper offers no hook between
//! parsing a head and dispatching it, so the guard sits under hyper on the
//! byte stream. It parses heads with `httparse`, hyper's own parser with
//! hyper's (default) configuration, so both agree on where every head ends
//! (the common head with neither framing header is only scanned for its end
//! and header names, which is where and how httparse reads it; see
//! [`fast_head_scan`]), and follows chunked bodies with a copy of hyper's
//! chunked-decoder state machine, so both agree on where every body ends. On a refused head it rewrites the
//! head's final line feed into bytes hyper's parser rejects (see
//! [`REFUSAL_MARK`]): hyper answers `400 Bad Request` itself and closes.
//!
//! The guard is never stricter than hyper: whatever it cannot follow (not
//! HTTP/1, a head it cannot parse, a malformed length or chunk, a head larger
//! than hyper would buffer) makes it pass every later byte through untouched;
//! hyper then refuses or serves that as it always did.
//!
//! The same wrapper also bounds the wait for a connection's first byte (see
//! `Http1FramingGuard::new`), so every accepted connection is read through
//! one wrapper.

use std::future::Future as _;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What replaces the final `\n` of a refused head. `\0` where hyper expects
/// `\n` or the next header name is a parse error (`400 Bad Request`) whether
/// the head ends in `\r\n\r\n` or bare `\n`s; the trailing `\n\n` is there
/// because hyper only re-parses a head split across reads once it sees an
/// end-of-head sequence (`\n\n`, `\n\r\n`), and would otherwise wait for more.
pub const REFUSAL_MARK: &[u8] = b"\0\n\n";

/// Pieces of a split head shorter than this are parsed only once they bring
/// an end-of-head sequence.
const GATED_PIECE: usize = 1024;

/// Header slots for one head: more than hyper's own limit (100), so a head
/// hyper accepts always fits; a head with more makes the guard pass through
/// (hyper answers `431` to it).
const MAX_HEADERS: usize = 128;

/// Where in the request stream the guard is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a request head (its first bytes may be in `partial`).
    Head,
    /// Inside a `Content-Length` body.
    Body { remaining: u64 },
    /// Inside a chunked body.
    Chunked(Chunk),
    /// Not following the stream any more: every byte passes untouched.
    PassThrough,
    /// A head was refused: nothing after it is delivered.
    Refused,
}

/// hyper's chunked-decoder states (`proto/h1/decode.rs`), byte for byte: the
/// chunk-size line is `HEX [SP|HT]* [; anything but LF]* CR LF`, then the data,
/// then `CR LF`; after the zero chunk, trailer lines until an empty `CR LF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Start,
    Size(u64),
    SizeLws(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
}

/// How the body after one complete head is framed.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    /// Both `Transfer-Encoding` and `Content-Length`: refuse.
    Ambiguous,
    /// A length hyper will refuse itself; the guard stops following.
    Unknown,
}

/// The guard's scanner, without any I/O: feed it the connection's bytes in
/// order, in pieces of any size.
#[doc(hidden)]
pub struct FramingScanner {
    state: State,
    /// The start of a head that did not complete in the bytes seen so far.
    partial: Vec<u8>,
    partial_limit: usize,
}

impl std::fmt::Debug for FramingScanner {
    // Never the buffered bytes: they hold cookies.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramingScanner")
            .field("state", &self.state)
            .field("partial_len", &self.partial.len())
            .finish_non_exhaustive()
    }
}

impl FramingScanner {
    /// A scanner at the start of a connection that keeps at most
    /// `partial_limit` bytes of a head split across reads (past that it
    /// passes through).
    pub fn new(partial_limit: usize) -> Self {
        Self { state: State::Head, partial: Vec::new(), partial_limit }
    }

    /// The limit for a server whose hyper read buffer is at most
    /// `max_buf_size`: hyper can complete a head in a read that lands beyond
    /// its limit, in spare buffer capacity (which `BytesMut` may have doubled),
    /// so keep up to four times as much before giving up.
    pub fn limit_for_hyper_buffer(max_buf_size: usize) -> usize {
        max_buf_size.max(8192).saturating_mul(4)
    }

    /// Scans the next bytes of the connection; returns the index in `data` of
    /// the final byte (a `\n`) of a refused head. After a refusal, or once
    /// passing through, it returns `None` for everything.
    pub fn scan(&mut self, data: &[u8]) -> Option<usize> {
        let mut at = 0;
        // Every round consumes at least one byte or returns.
        while let Some(rest) = data.get(at..).filter(|rest| !rest.is_empty()) {
            match self.state {
                State::PassThrough | State::Refused => return None,
                State::Head => match self.scan_head(rest) {
                    HeadStep::Incomplete => return None,
                    HeadStep::Consumed(len) => at += len,
                    HeadStep::Refused(last) => return Some(at + last),
                },
                State::Body { remaining } => {
                    let available = u64::try_from(rest.len()).unwrap_or(u64::MAX);
                    let taken = remaining.min(available);
                    let left = remaining - taken;
                    self.state = if left == 0 { State::Head } else { State::Body { remaining: left } };
                    // `taken` is at most `rest.len()`, so it fits a usize.
                    at += usize::try_from(taken).unwrap_or(rest.len());
                }
                State::Chunked(chunk) => at += self.scan_chunked(chunk, rest),
            }
        }
        None
    }

    /// Whether the scanner has stopped following the stream (every later byte
    /// passes untouched).
    pub fn is_passing_through(&self) -> bool {
        self.state == State::PassThrough
    }

    /// Whether a head was refused.
    pub fn is_refused(&self) -> bool {
        self.state == State::Refused
    }

    fn pass_through(&mut self) -> HeadStep {
        self.state = State::PassThrough;
        self.partial = Vec::new();
        HeadStep::Incomplete
    }

    /// `rest` starts where a head starts (or continues, with `partial`).
    fn scan_head(&mut self, rest: &[u8]) -> HeadStep {
        if self.partial.is_empty() {
            // The hot path: the head is parsed where it lies, no copy.
            return match parse_head(rest) {
                Parsed::Complete { len, framing } => self.after_head(framing, len),
                Parsed::Partial if rest.len() <= self.partial_limit => {
                    self.partial.extend_from_slice(rest);
                    HeadStep::Incomplete
                }
                Parsed::Partial | Parsed::Invalid => self.pass_through(),
            };
        }
        let old = self.partial.len();
        let room = self.partial_limit.saturating_sub(old);
        let taken = rest.get(..room).unwrap_or(rest);
        self.partial.extend_from_slice(taken);
        let hit_limit = taken.len() < rest.len();
        // Like hyper, re-parse a small piece only once an end-of-head sequence
        // has arrived: a head trickling in byte by byte costs one parse, not
        // one per byte. A large piece is parsed at once (httparse is faster
        // than this byte-wise check), which bounds the parses per head by
        // `partial_limit / GATED_PIECE`.
        let window = self.partial.get(old.saturating_sub(2)..).unwrap_or_default();
        if taken.len() < GATED_PIECE && !contains_head_end(window) {
            return if hit_limit { self.pass_through() } else { HeadStep::Incomplete };
        }
        match parse_head(&self.partial) {
            // The head did not end within the old bytes (it would have parsed
            // then), so it ends inside `taken`.
            Parsed::Complete { len, framing } if len > old => {
                self.partial.clear();
                if self.partial.capacity() > 16 * 1024 {
                    self.partial = Vec::new();
                }
                self.after_head(framing, len - old)
            }
            Parsed::Partial if !hit_limit => HeadStep::Incomplete,
            _ => self.pass_through(),
        }
    }

    /// A head ended after `consumed` bytes of the current piece.
    fn after_head(&mut self, framing: Framing, consumed: usize) -> HeadStep {
        if consumed == 0 {
            // Cannot happen (a head has a request line); never loop on it.
            return self.pass_through();
        }
        self.state = match framing {
            Framing::Length(0) => State::Head,
            Framing::Length(remaining) => State::Body { remaining },
            Framing::Chunked => State::Chunked(Chunk::Start),
            Framing::Unknown => return self.pass_through(),
            Framing::Ambiguous => {
                self.partial = Vec::new();
                self.state = State::Refused;
                return HeadStep::Refused(consumed - 1);
            }
        };
        HeadStep::Consumed(consumed)
    }

    /// Follows a chunked body through `rest`; returns the bytes consumed
    /// (all of `rest`, or up to the end of the body).
    fn scan_chunked(&mut self, mut chunk: Chunk, rest: &[u8]) -> usize {
        let mut at = 0;
        while let Some(&byte) = rest.get(at) {
            if let Chunk::Data(remaining) = chunk {
                // Chunk data is skipped in bulk, never looked at.
                let available = u64::try_from(rest.len() - at).unwrap_or(u64::MAX);
                let taken = remaining.min(available);
                at += usize::try_from(taken).unwrap_or(rest.len() - at);
                chunk = if remaining == taken { Chunk::DataCr } else { Chunk::Data(remaining - taken) };
                continue;
            }
            at += 1;
            chunk = match step_chunk(chunk, byte) {
                Some(Some(next)) => next,
                Some(None) => {
                    self.state = State::Head;
                    return at;
                }
                None => {
                    self.pass_through();
                    return rest.len();
                }
            };
        }
        self.state = State::Chunked(chunk);
        at
    }
}

/// What one call of `scan_head` did.
enum HeadStep {
    /// Everything was taken (kept as a partial head, or passing through).
    Incomplete,
    /// A head ended after this many bytes; framing follows.
    Consumed(usize),
    /// A head is refused; the index of its final byte.
    Refused(usize),
}

/// What a head parser says about bytes that start where a head starts.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The head is the first `len` bytes; its body is framed by `framing`.
    Complete { len: usize, framing: Framing },
    /// The head has not ended yet.
    Partial,
    /// Not a head hyper accepts.
    Invalid,
}

/// Where a head ends and how its body is framed: the fast scan's answer when
/// it has one, else `httparse`'s.
fn parse_head(bytes: &[u8]) -> Parsed {
    fast_head_scan(bytes).unwrap_or_else(|| parse_head_with_httparse(bytes))
}

/// The common case without a full parse. A head that starts with a letter,
/// whose request line httparse accepts, whose lines up to its end (its first
/// `\n` followed by `\n` or `\r\n`) each start with a header name (a token
/// and `:`), at most [`MAX_HEADERS`] of them, neither `Content-Length` nor
/// `Transfer-Encoding` (any case), is `Complete` up to that end with no body;
/// bytes that so far fit that shape but have no end yet are `Partial`;
/// anything else is `None` ("don't know"). Header values are not looked at.
///
/// Whenever it answers, [`parse_head_with_httparse`] answers the same or
/// `Invalid` (never another end or framing, never `Partial` where it answers
/// `Complete` nor the reverse):
/// `Invalid` only for a control byte in a header value after an HTTP/1
/// request line, which hyper refuses with `400` and closes, so where the
/// guard thought the head ended no longer matters. Answering `Partial` where
/// httparse already sees such a byte keeps the guard's verdict independent
/// of how the head is split into reads: it waits for the end and answers as
/// it would have for the whole head. And its `None` is final: more bytes
/// never turn it into an answer, unless the request line has not ended.
///
/// Why that holds: httparse meets every `\n` of a head it accepts as a line
/// end (no token, URI, version or header value may hold one) and, after each,
/// ends the head on `\n` or `\r\n`, or fails; so it either fails before this
/// end or ends exactly here, with these header names, so with the framing of
/// a head without either header. The request line goes through httparse
/// itself (it is short; the cookie-sized header values are what is skipped):
/// a first line that is not HTTP/1 is not refused by hyper but, as the
/// HTTP/2 preface `PRI * HTTP/2.0`, served as HTTP/2, which the guard must
/// pass through. A head starting with anything but a letter may begin with
/// empty lines httparse skips, so it is left to httparse.
#[doc(hidden)]
pub fn fast_head_scan(bytes: &[u8]) -> Option<Parsed> {
    if !bytes.first()?.is_ascii_alphabetic() {
        return None;
    }
    let mut line_ends = memchr::memchr_iter(b'\n', bytes);
    // Until the request line ends, httparse's verdict on it stands.
    let request_line_end = line_ends.next()?;
    // A valid request line alone is a head still waiting for its headers.
    if parse_head_with_httparse(bytes.get(..=request_line_end)?) != Parsed::Partial {
        return None;
    }
    let mut line_start = request_line_end + 1;
    let mut header_lines = 0;
    loop {
        let line = bytes.get(line_start..).unwrap_or_default();
        match line {
            [b'\n', ..] => return Some(Parsed::Complete { len: line_start + 1, framing: Framing::Length(0) }),
            [b'\r', b'\n', ..] => return Some(Parsed::Complete { len: line_start + 2, framing: Framing::Length(0) }),
            [] | [b'\r'] => return Some(Parsed::Partial),
            _ => {}
        }
        header_lines += 1;
        if header_lines > MAX_HEADERS {
            return None;
        }
        match header_name(line) {
            HeaderName::Other => {}
            HeaderName::Unfinished => return Some(Parsed::Partial),
            HeaderName::FramesBody | HeaderName::Invalid => return None,
        }
        // The `\n` that ends this header line (the name held none).
        let Some(line_end) = line_ends.next() else { return Some(Parsed::Partial) };
        line_start = line_end + 1;
    }
}

/// How a header line starts, read as httparse reads a request's header
/// name: one or more token bytes directly followed by `:`.
enum HeaderName {
    /// A name that does not frame a body.
    Other,
    /// `Content-Length` or `Transfer-Encoding`, in any case.
    FramesBody,
    /// Token bytes up to the end of the bytes seen: more may follow.
    Unfinished,
    /// Not a header name, whatever follows.
    Invalid,
}

/// How `line`, a header line up to the end of the bytes seen, starts.
fn header_name(line: &[u8]) -> HeaderName {
    let Some(name_len) = line.iter().position(|&byte| !is_token(byte)) else {
        return HeaderName::Unfinished;
    };
    match (line.get(..name_len), line.get(name_len)) {
        (Some(name), Some(b':')) if !name.is_empty() => {
            if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"transfer-encoding") {
                HeaderName::FramesBody
            } else {
                HeaderName::Other
            }
        }
        _ => HeaderName::Invalid,
    }
}

/// Whether `byte` is an RFC 9110 token byte (what httparse allows in a
/// header name).
fn is_token(byte: u8) -> bool {
    TOKEN_BYTES.get(usize::from(byte)) == Some(&true)
}

/// The token bytes by byte value: one load per byte of a header name.
const TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut rest: &mut [bool] = &mut table;
    let mut byte: u8 = 0;
    while let Some((slot, tail)) = rest.split_first_mut() {
        *slot = byte.is_ascii_alphanumeric()
            || matches!(byte, b'!' | b'#'..=b'\'' | b'*' | b'+' | b'-' | b'.' | b'^'..=b'`' | b'|' | b'~');
        rest = tail;
        byte = byte.wrapping_add(1);
    }
    table
};

/// One `httparse` pass over a head (hyper's parser, hyper's default
/// configuration), with the header slots left uninitialised as hyper does
/// (zeroing 4 KB per request would cost more than it protects).
#[doc(hidden)]
pub fn parse_head_with_httparse(bytes: &[u8]) -> Parsed {
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(bytes, &mut slots) {
        Ok(httparse::Status::Complete(len)) => Parsed::Complete { len, framing: framing(request.headers) },
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(_) => Parsed::Invalid,
    }
}

/// The body framing hyper will use, or `Ambiguous` for both headers in any
/// case, order and count.
fn framing(headers: &[httparse::Header<'_>]) -> Framing {
    let mut chunked = false;
    let mut length: Option<Option<u64>> = None;
    for header in headers {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        } else if header.name.eq_ignore_ascii_case("content-length") {
            // hyper: digits only, and every copy the same.
            let value = decimal(header.value);
            length = Some(match length {
                None => value,
                Some(previous) if previous == value => value,
                Some(_) => None,
            });
        }
    }
    match (chunked, length) {
        (true, Some(_)) => Framing::Ambiguous,
        (true, None) => Framing::Chunked,
        (false, Some(Some(length))) => Framing::Length(length),
        (false, Some(None)) => Framing::Unknown,
        (false, None) => Framing::Length(0),
    }
}

/// A `Content-Length` value as hyper reads it: ASCII digits only, no sign,
/// no spaces, no overflow.
fn decimal(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |value, &byte| {
        let digit = byte.is_ascii_digit().then(|| u64::from(byte - b'0'))?;
        value.checked_mul(10)?.checked_add(digit)
    })
}

/// Whether `bytes` holds an end-of-head sequence (`\n\n` or `\n\r\n`).
fn contains_head_end(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|pair| pair == b"\n\n") || bytes.windows(3).any(|triple| triple == b"\n\r\n")
}

fn hex_digit(byte: u8) -> Option<u64> {
    char::from(byte).to_digit(16).map(u64::from)
}

/// One byte through hyper's chunked state machine: `Some(Some(next))`,
/// `Some(None)` at the end of the body, `None` where hyper fails.
fn step_chunk(chunk: Chunk, byte: u8) -> Option<Option<Chunk>> {
    let grow = |size: u64, digit: u64| size.checked_mul(16)?.checked_add(digit);
    let next = match (chunk, byte) {
        (Chunk::Start, _) => Chunk::Size(hex_digit(byte)?),
        (Chunk::Size(size) | Chunk::SizeLws(size), b'\t' | b' ') => Chunk::SizeLws(size),
        (Chunk::Size(size) | Chunk::SizeLws(size) | Chunk::Extension(size), b'\r') => Chunk::SizeLf(size),
        (Chunk::Size(size) | Chunk::SizeLws(size), b';') => Chunk::Extension(size),
        (Chunk::Size(size), _) => Chunk::Size(grow(size, hex_digit(byte)?)?),
        (Chunk::Extension(_), b'\n') => return None,
        (Chunk::Extension(size), _) => Chunk::Extension(size),
        (Chunk::SizeLf(0), b'\n') => Chunk::EndCr,
        (Chunk::SizeLf(size), b'\n') => Chunk::Data(size),
        (Chunk::DataCr, b'\r') => Chunk::DataLf,
        (Chunk::DataLf, b'\n') => Chunk::Start,
        (Chunk::Trailer, b'\r') => Chunk::TrailerLf,
        (Chunk::Trailer, _) => Chunk::Trailer,
        (Chunk::TrailerLf, b'\n') => Chunk::EndCr,
        (Chunk::EndCr, b'\r') => Chunk::EndLf,
        (Chunk::EndCr, _) => Chunk::Trailer,
        (Chunk::EndLf, b'\n') => return Some(None),
        _ => return None,
    };
    Some(Some(next))
}

/// An accepted connection (plain TCP or decrypted TLS) seen through the
/// scanner: reads are scanned as they arrive, in hyper's own buffer (no copy
/// unless a head is split across reads); writes pass straight through.
pub(crate) struct Http1FramingGuard<S> {
    inner: S,
    scanner: FramingScanner,
    /// How much of [`REFUSAL_MARK`] has been delivered.
    mark_sent: usize,
    /// Until the first byte arrives: when the connection is cut.
    first_byte_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> std::fmt::Debug for Http1FramingGuard<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1FramingGuard")
            .field("scanner", &self.scanner)
            .field("awaits_first_byte", &self.first_byte_deadline.is_some())
            .finish_non_exhaustive()
    }
}

impl<S> Http1FramingGuard<S> {
    /// Guards `inner` for a server configured with `server.max_header_bytes`
    /// (hyper's HTTP/1 read buffer is that, at least 8 KB; see `server.rs`).
    ///
    /// A read fails with `TimedOut` if no byte has arrived within
    /// `first_byte_timeout` (from now); after the first byte, hyper's own
    /// timeouts take over. hyper's header-read timeout starts only once the
    /// HTTP version is known, and the version is sniffed from the first
    /// bytes: a client that connects and sends nothing would otherwise hold
    /// its connection slot forever.
    pub(crate) fn new(inner: S, max_header_bytes: usize, first_byte_timeout: Duration) -> Self {
        let limit = FramingScanner::limit_for_hyper_buffer(max_header_bytes);
        Self {
            inner,
            scanner: FramingScanner::new(limit),
            mark_sent: 0,
            first_byte_deadline: Some(Box::pin(tokio::time::sleep(first_byte_timeout))),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Http1FramingGuard<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.scanner.is_refused() {
            // The rest of the mark if it did not fit, then end of stream.
            let rest = REFUSAL_MARK.get(this.mark_sent..).unwrap_or_default();
            let sent = rest.get(..buf.remaining()).unwrap_or(rest);
            buf.put_slice(sent);
            this.mark_sent += sent.len();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Some(deadline) = this.first_byte_deadline.as_mut() {
            match polled {
                Poll::Ready(Ok(())) if buf.filled().len() > before => this.first_byte_deadline = None,
                Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                    let error = io::Error::new(io::ErrorKind::TimedOut, "no request within the header read timeout");
                    return Poll::Ready(Err(error));
                }
                _ => {}
            }
        }
        ready!(polled)?;
        if this.scanner.is_passing_through() {
            return Poll::Ready(Ok(()));
        }
        let Some(last) = this.scanner.scan(buf.filled().get(before..).unwrap_or_default()) else {
            return Poll::Ready(Ok(()));
        };
        // The refused head's final byte and everything after it are replaced
        // by the mark; what does not fit now goes out on the next read. At
        // least one byte fits: the buffer held the final byte.
        buf.set_filled(before + last);
        let sent = REFUSAL_MARK.get(..buf.remaining()).unwrap_or(REFUSAL_MARK);
        buf.put_slice(sent);
        this.mark_sent = sent.len();
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Http1FramingGuard<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests;
