//! The development provider in its own process, for benchmarks (`bench/logins.sh`):
//! serves it on a given loopback address for one client (public, PKCE) whose
//! redirect URI is given, with the demo users alice/alice and bob/bob, tokens
//! valid for an hour (no refresh during a run). Prints `ISSUER <url>` once
//! serving, then serves until killed.
//!
//! Usage: `devidp <listen 127.0.0.1:PORT> <client id> <redirect URI>`

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a command-line tool: its output is the issuer line")]

use std::io::Write as _;
use std::time::Duration;

use portcullis_devkit::devidp::{DevProvider, DevProviderConfig};
use tokio::net::TcpListener;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, client_id, redirect_uri] = args.as_slice() else {
        eprintln!("usage: devidp <listen 127.0.0.1:PORT> <client id> <redirect URI>");
        return std::process::ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("devidp: runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(async {
        let listener = TcpListener::bind(listen.as_str()).await?;
        let mut config = DevProviderConfig::demo(client_id.as_str(), redirect_uri.clone());
        config.access_token_ttl = Duration::from_secs(3600);
        config.id_token_ttl = Duration::from_secs(3600);
        let provider = DevProvider::start(listener, config).await?;
        let mut stdout = std::io::stdout();
        writeln!(stdout, "ISSUER {}", provider.issuer())?;
        stdout.flush()?;
        // Serves until the process is killed.
        std::future::pending::<()>().await;
        Ok::<(), std::io::Error>(())
    });
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("devidp: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
