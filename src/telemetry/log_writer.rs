//! Where log lines go: standard error, without std's process-wide lock on it,
//! and on the serving workers a few lines per `write`.
//!
//! `std::io::stderr()` serialises writers with a lock held across the `write`
//! system call. With one serving thread per core, each writing an access line
//! per request, that lock was contended about every other request (`strace -c
//! -f -e futex`: 9,411 waits and wakes in a 3 s run, none with the access log
//! off). Lines are written to a duplicate of the descriptor instead.
//!
//! A thread that calls [`hold_lines_on_this_thread`] (each serving worker)
//! keeps its lines and writes them together: when they would pass
//! [`ATOMIC_WRITE`] bytes, when [`write_held_lines`] is called (the workers
//! call it four times a second), at a warning or an error (after the lines
//! held before it), and when the thread ends. Under load that is one `write`
//! per about sixteen access lines instead of one each (a `write` to a file cost
//! about 6 % of the CPU of a proxied request); an access line waits at most a
//! quarter of a second, as Envoy's access log waits up to a second. Every
//! `write` ends at a line end and is at most [`ATOMIC_WRITE`] bytes (a longer
//! line is written alone): to a file each lands whole after what is there, and
//! to a pipe (a container runtime's log) writes up to that size are never
//! interleaved with another thread's.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd as _;
use std::sync::Arc;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// The most bytes written at once: `PIPE_BUF` on Linux, the size up to which
/// writes to a pipe are atomic.
pub const ATOMIC_WRITE: usize = 4096;

thread_local! {
    /// Whether this thread holds its lines until [`write_held_lines`].
    static HOLDING: Cell<bool> = const { Cell::new(false) };
    /// The lines this thread holds, and where they go.
    static HELD: RefCell<HeldLines> = const { RefCell::new(HeldLines { to: None, bytes: Vec::new() }) };
}

/// From now on this thread's lines are held until [`write_held_lines`] (or
/// until a warning, a full `ATOMIC_WRITE` or the thread's end).
pub fn hold_lines_on_this_thread() {
    HOLDING.with(|holding| holding.set(true));
}

/// Writes the lines this thread holds, if any.
pub fn write_held_lines() {
    let _ = HELD.try_with(|held| {
        if let Ok(mut held) = held.try_borrow_mut() {
            held.write_out();
        }
    });
}

struct HeldLines {
    to: Option<Arc<File>>,
    bytes: Vec<u8>,
}

impl HeldLines {
    /// Adds `line` for `to`, writing out first what it would not fit with.
    fn hold(&mut self, to: &Arc<File>, line: &[u8], urgent: bool) -> io::Result<()> {
        let same_file = self.to.as_ref().is_some_and(|held_for| Arc::ptr_eq(held_for, to));
        if !same_file || self.bytes.len() + line.len() > ATOMIC_WRITE {
            self.write_out();
            self.to = Some(Arc::clone(to));
        }
        if line.len() > ATOMIC_WRITE {
            return (&**to).write_all(line);
        }
        self.bytes.extend_from_slice(line);
        if urgent {
            self.write_out();
        }
        Ok(())
    }

    /// Writes the held bytes; on an error they are dropped, as an unheld
    /// line would be (a log line is never worth failing a request for).
    fn write_out(&mut self) {
        if self.bytes.is_empty() {
            return;
        }
        if let Some(to) = &self.to {
            let _ = (&**to).write_all(&self.bytes);
        }
        self.bytes.clear();
    }
}

impl Drop for HeldLines {
    fn drop(&mut self) {
        self.write_out();
    }
}

/// Standard error for log lines, written without a lock.
#[derive(Debug)]
pub struct StderrLines {
    /// A duplicate of descriptor 2; `None` if it could not be duplicated
    /// (then std's locked handle is used, and nothing is held).
    file: Option<Arc<File>>,
}

impl StderrLines {
    /// Duplicates standard error for unlocked line writes.
    pub fn new() -> Self {
        let file = io::stderr().as_fd().try_clone_to_owned().ok().map(|fd| Arc::new(File::from(fd)));
        Self { file }
    }

    fn writer(&self, urgent: bool) -> LineWriter<'_> {
        match &self.file {
            Some(file) if HOLDING.with(Cell::get) => LineWriter::Held { file, urgent },
            Some(file) => LineWriter::Direct(file),
            None => LineWriter::Locked(io::stderr()),
        }
    }
}

impl Default for StderrLines {
    fn default() -> Self {
        Self::new()
    }
}

/// One log line's writer.
#[derive(Debug)]
pub enum LineWriter<'a> {
    Direct(&'a File),
    /// Kept in the thread's held lines; `urgent` lines are written at once.
    Held {
        file: &'a Arc<File>,
        urgent: bool,
    },
    Locked(io::Stderr),
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Direct(file) => file.write(buf),
            Self::Held { .. } => self.write_all(buf).map(|()| buf.len()),
            Self::Locked(stderr) => stderr.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Direct(file) => file.write_all(buf),
            Self::Held { file, urgent } => {
                let held = HELD.try_with(|held| held.try_borrow_mut().map(|mut held| held.hold(file, buf, *urgent)));
                match held {
                    Ok(Ok(result)) => result,
                    // The thread is ending, or (never expected) a line is
                    // written while held lines are: write it directly.
                    _ => (&***file).write_all(buf),
                }
            }
            Self::Locked(stderr) => stderr.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Direct(file) => file.flush(),
            Self::Held { .. } => Ok(()),
            Self::Locked(stderr) => stderr.flush(),
        }
    }
}

impl<'a> MakeWriter<'a> for StderrLines {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        self.writer(true)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        // Levels order by verbosity: WARN and ERROR are the ones not above WARN.
        self.writer(*meta.level() <= Level::WARN)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use std::io::{Read as _, Seek as _};

    use super::*;

    #[test]
    fn lines_from_many_threads_arrive_whole() {
        for hold in [false, true] {
            let (sink, mut log) = sink_to_scratch_file();
            let sink = Arc::new(sink);
            let threads: Vec<_> = (0..8)
                .map(|thread| {
                    let sink = Arc::clone(&sink);
                    std::thread::spawn(move || {
                        if hold {
                            hold_lines_on_this_thread();
                        }
                        for line in 0..500 {
                            // Sizes from 60 bytes to over ATOMIC_WRITE, so some lines are written alone.
                            let pad = "x".repeat((line * 37) % 5000);
                            let text = format!("{{\"thread\":{thread},\"line\":{line},\"pad\":\"{pad}\"}}\n");
                            sink.writer(line % 50 == 0).write_all(text.as_bytes()).unwrap();
                            if line % 7 == 0 {
                                write_held_lines();
                            }
                        }
                        // Lines still held are written as the thread ends (before `join` returns).
                    })
                })
                .collect();
            for thread in threads {
                thread.join().unwrap();
            }
            let written = read_all(&mut log);
            let mut next_line = [0_u64; 8];
            for line in written.lines() {
                let parsed: serde_json::Value = serde_json::from_str(line).expect("a whole JSON line");
                let thread = usize::try_from(parsed["thread"].as_u64().unwrap()).unwrap();
                assert_eq!(parsed["line"].as_u64().unwrap(), next_line[thread], "one thread's lines stay in order");
                next_line[thread] += 1;
            }
            assert_eq!(next_line, [500; 8], "every line arrives (holding: {hold})");
        }
    }

    #[test]
    fn held_lines_wait_for_write_held_lines_and_a_warning_takes_them_along() {
        let (sink, mut log) = sink_to_scratch_file();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                hold_lines_on_this_thread();
                sink.writer(false).write_all(b"first\n").unwrap();
                sink.writer(false).write_all(b"second\n").unwrap();
                assert_eq!(read_all(&mut log), "", "held lines are not written yet");
                write_held_lines();
                assert_eq!(read_all(&mut log), "first\nsecond\n");
                sink.writer(false).write_all(b"third\n").unwrap();
                sink.writer(true).write_all(b"a warning\n").unwrap();
                assert_eq!(
                    read_all(&mut log),
                    "first\nsecond\nthird\na warning\n",
                    "a warning is written at once, in order"
                );
                write_held_lines();
                assert_eq!(read_all(&mut log), "first\nsecond\nthird\na warning\n", "nothing was left held");
            });
        });
    }

    #[test]
    fn held_lines_are_written_before_they_pass_one_atomic_write() {
        let (sink, mut log) = sink_to_scratch_file();
        let line = format!("{}\n", "y".repeat(999));
        std::thread::scope(|scope| {
            scope.spawn(|| {
                hold_lines_on_this_thread();
                for _ in 0..4 {
                    sink.writer(false).write_all(line.as_bytes()).unwrap();
                }
                assert_eq!(read_all(&mut log), "", "4,000 bytes fit in one write");
                sink.writer(false).write_all(line.as_bytes()).unwrap();
                assert_eq!(read_all(&mut log), line.repeat(4), "the fifth line would not fit: the four are written");
                let long = format!("{}\n", "z".repeat(ATOMIC_WRITE));
                sink.writer(false).write_all(long.as_bytes()).unwrap();
                assert_eq!(
                    read_all(&mut log),
                    line.repeat(5) + &long,
                    "a line over the limit is written alone, in order"
                );
            });
        });
    }

    #[test]
    fn threads_that_do_not_hold_write_each_line_at_once() {
        let (sink, mut log) = sink_to_scratch_file();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                sink.writer(false).write_all(b"at once\n").unwrap();
                assert_eq!(read_all(&mut log), "at once\n");
            });
        });
    }

    fn read_all(log: &mut File) -> String {
        log.rewind().unwrap();
        let mut written = String::new();
        log.read_to_string(&mut written).unwrap();
        written
    }

    /// A sink writing to a fresh, empty file, already unlinked (gone when closed).
    fn sink_to_scratch_file() -> (StderrLines, File) {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("portcullis-log-writer-{}-{unique}", std::process::id()));
        let file = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let sink = StderrLines { file: Some(Arc::new(file.try_clone().unwrap())) };
        (sink, file)
    }
}
