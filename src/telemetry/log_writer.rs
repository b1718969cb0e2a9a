//! Where log lines go: standard error, each line handed to the kernel in one
//! `write` without std's process-wide lock on standard error.
//!
//! `std::io::stderr()` serialises writers with a lock held across the `write`
//! system call. With one serving thread per core, each writing an access line
//! per request, that lock was contended about every other request: a `futex`
//! wait and wake each (`strace -c -f -e futex`: 9,411 in a 3 s run, none with
//! the access log off). tracing formats a whole line before writing it, so a
//! line is one `write` of a duplicate of the descriptor: to a file each
//! `write` lands whole at the end of what is there, and to a pipe (a
//! container runtime's log) a line up to 4,096 bytes is never interleaved.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd as _;

use tracing_subscriber::fmt::MakeWriter;

/// Standard error for log lines, written without a lock.
#[derive(Debug)]
pub struct StderrLines {
    /// A duplicate of descriptor 2; `None` if it could not be duplicated
    /// (then std's locked handle is used).
    file: Option<File>,
}

impl StderrLines {
    /// Duplicates standard error for unlocked line writes.
    pub fn new() -> Self {
        let file = io::stderr().as_fd().try_clone_to_owned().ok().map(File::from);
        Self { file }
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
    Locked(io::Stderr),
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Direct(file) => file.write(buf),
            Self::Locked(stderr) => stderr.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Direct(file) => file.write_all(buf),
            Self::Locked(stderr) => stderr.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Direct(file) => file.flush(),
            Self::Locked(stderr) => stderr.flush(),
        }
    }
}

impl<'a> MakeWriter<'a> for StderrLines {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        match &self.file {
            Some(file) => LineWriter::Direct(file),
            None => LineWriter::Locked(io::stderr()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use std::io::{Read as _, Seek as _};

    use super::*;

    #[test]
    fn lines_from_many_threads_arrive_whole() {
        let mut log = scratch_file();
        let sink = StderrLines { file: Some(log.try_clone().unwrap()) };
        std::thread::scope(|scope| {
            for thread in 0..8 {
                let sink = &sink;
                scope.spawn(move || {
                    for line in 0..500 {
                        let text = format!("{{\"thread\":{thread},\"line\":{line},\"pad\":\"{}\"}}\n", "x".repeat(200));
                        sink.make_writer().write_all(text.as_bytes()).unwrap();
                    }
                });
            }
        });
        log.rewind().unwrap();
        let mut written = String::new();
        log.read_to_string(&mut written).unwrap();
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines.len(), 8 * 500);
        for line in lines {
            let parsed: serde_json::Value = serde_json::from_str(line).expect("a whole JSON line");
            assert_eq!(parsed["pad"].as_str().unwrap().len(), 200);
        }
    }

    /// A fresh, empty file, already unlinked (gone when closed).
    fn scratch_file() -> File {
        let path = std::env::temp_dir().join(format!("portcullis-log-writer-{}", std::process::id()));
        let file = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        file
    }
}
