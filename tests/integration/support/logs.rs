//! Log capture: one global `tracing` subscriber for the whole test binary that
//! writes every `portcullis` event (TRACE and up) into memory, so tests can
//! search what the gateway logged. Tests run in parallel and share the buffer;
//! searches use values unique to one test.

use std::io;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tracing_subscriber::fmt::MakeWriter;

/// The shared in-memory log buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

/// One writer handed out per event; appends to the shared buffer.
struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl io::Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = CaptureWriter;

    fn make_writer(&'a self) -> Self::Writer {
        CaptureWriter(Arc::clone(&self.0))
    }
}

static CAPTURE: OnceLock<Capture> = OnceLock::new();

/// Installs the capturing subscriber once; every test world calls this first.
pub fn install() {
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            // As in production with `[tracing]` off, the export-only trace spans are disabled.
            .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
                "info,portcullis=trace,{}=off",
                portcullis::telemetry::SPAN_TARGET
            )))
            .with_ansi(false)
            .with_writer(capture.clone())
            .finish();
        // Only this binary installs a global subscriber; failing here means logs are not captured.
        tracing::subscriber::set_global_default(subscriber).expect("the capturing subscriber is the only one");
        capture
    });
}

/// Everything logged so far by every test in this binary.
pub fn captured() -> String {
    install();
    let capture = CAPTURE.get().expect("installed");
    String::from_utf8_lossy(&capture.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
}
