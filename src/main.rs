//! The `portcullis` command: parses the CLI, loads configuration, sets up
//! logging and hands over to the library. No logic lives here.

#[cfg(feature = "demo")]
mod demo;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::{Parser, Subcommand};
use portcullis::clock::Clock;
use portcullis::config::Config;

/// Portcullis: an OpenID Connect authentication gateway in front of your service.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
struct Cli {
    /// Configuration file (TOML); PORTCULLIS_* environment variables override it.
    #[arg(long, global = true, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the gateway (the default).
    Run,
    /// Try the whole login locally: a development provider, an echo upstream and the gateway, on loopback
    /// (in builds with the default `demo` feature).
    Demo {
        /// Where the demo gateway listens (loopback only).
        #[arg(long, default_value = "127.0.0.1:4180")]
        listen: SocketAddr,
    },
    /// Validate the configuration and exit, without serving.
    CheckConfig,
    /// Print a fresh random session key (base64 of 32 bytes).
    Secret,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("portcullis: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Secret => print_secret(),
        Command::CheckConfig => check_config(cli.config),
        Command::Demo { listen } => runtime.block_on(run_demo(listen)),
        Command::Run => runtime.block_on(run(cli.config)),
    }
}

fn load(config: Option<&std::path::Path>) -> Result<(Config, serde_json::Value), ExitCode> {
    Config::load_with_effective(config).map_err(|error| {
        eprintln!("portcullis: invalid configuration: {error}");
        ExitCode::from(2)
    })
}

#[allow(clippy::print_stdout, reason = "the command's output is the key")]
fn print_secret() -> ExitCode {
    match portcullis::random::bytes::<32>() {
        Ok(key) => {
            println!("{}", STANDARD.encode(key));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("portcullis: {error}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout, reason = "the command's output is the verdict")]
fn check_config(path: Option<PathBuf>) -> ExitCode {
    match Config::load_checked(path.as_deref()) {
        Err(error) => {
            eprintln!("portcullis: invalid configuration: {error}");
            ExitCode::from(2)
        }
        Ok((config, effective)) => {
            println!("{}", serde_json::to_string_pretty(&effective).unwrap_or_default());
            println!(
                "configuration is valid: protecting {} at {} with {}",
                config.upstream,
                config.public_url,
                providers_summary(&config)
            );
            ExitCode::SUCCESS
        }
    }
}

async fn run(path: Option<PathBuf>) -> ExitCode {
    let (config, effective) = match load(path.as_deref()) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let tracer =
        match portcullis::telemetry::init_with_tracing(config.log.format, &config.log.level, config.tracing.as_ref()) {
            Ok(tracer) => tracer,
            Err(error) => {
                eprintln!("portcullis: cannot set up tracing: {error}");
                return ExitCode::FAILURE;
            }
        };
    if let Some(tracing) = &config.tracing {
        tracing::info!(
            otlp_endpoint = %tracing.otlp_endpoint, sample_ratio = tracing.sample_ratio,
            "exporting traces over OTLP/HTTP"
        );
    }
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(listen = %config.listen, %error, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        listen = %config.listen, public_url = %config.public_url, upstream = %config.upstream,
        providers = %providers_summary(&config), version = env!("CARGO_PKG_VERSION"),
        "portcullis starting"
    );
    let gateway = match portcullis::start(config, Clock::system()).await {
        Ok(gateway) => gateway,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    if let Some(addr) = gateway.config().metrics_listen {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(metrics_listener) => {
                tracing::info!(listen = %addr, "metrics at /metrics");
                let metrics_gateway = std::sync::Arc::clone(&gateway);
                tokio::spawn(portcullis::server::serve_metrics(
                    metrics_listener,
                    metrics_gateway,
                    std::future::pending(),
                ));
            }
            Err(error) => {
                tracing::error!(listen = %addr, %error, "cannot listen for metrics (set metrics.listen, or metrics.enabled = false)");
                return ExitCode::FAILURE;
            }
        }
    }
    let (stop_ext_authz, ext_authz_stopped) = tokio::sync::oneshot::channel::<()>();
    let stopped = async move {
        let _ = ext_authz_stopped.await;
    };
    let ext_authz = match start_ext_authz(&gateway, stopped).await {
        Ok(ext_authz) => ext_authz,
        Err(code) => return code,
    };
    let reloader = portcullis::reload::Reloader::new(std::sync::Arc::clone(&gateway), path, effective);
    let reloads = tokio::spawn(reloader.serve(gateway.config().server.watch_config));
    let served = portcullis::run(gateway, listener, shutdown_signal()).await;
    reloads.abort();
    // The checks are answered through the main listener's drain, then stop too.
    let _ = stop_ext_authz.send(());
    if let Some(ext_authz) = ext_authz
        && let Ok(Err(error)) = ext_authz.await
    {
        tracing::error!(%error, "cannot serve ext_authz");
    }
    // After the drain, so the spans of the last requests are sent too.
    if let Some(tracer) = tracer {
        tracer.shutdown(std::time::Duration::from_secs(5)).await;
    }
    if let Err(error) = served {
        tracing::error!(%error, "cannot serve");
        return ExitCode::FAILURE;
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Starts the `[ext_authz]` gRPC listener, if configured, until `stopped`;
/// `Err` when its certificate or address cannot be used (logged).
async fn start_ext_authz(
    gateway: &std::sync::Arc<portcullis::gateway::Gateway>,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Option<tokio::task::JoinHandle<Result<(), portcullis::ServeError>>>, ExitCode> {
    let Some(ext_authz) = gateway.config().ext_authz.as_ref() else { return Ok(None) };
    // The certificate is read before anything is served, so a bad file stops the start.
    if let Err(error) = ext_authz.load_files() {
        tracing::error!(%error, "cannot serve ext_authz");
        return Err(ExitCode::FAILURE);
    }
    let addr = ext_authz.grpc_listen;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|error| {
        tracing::error!(listen = %addr, %error, "cannot listen for ext_authz (ext_authz.grpc_listen)");
        ExitCode::FAILURE
    })?;
    tracing::info!(
        listen = %addr, tls = ext_authz.tls.is_some(),
        "Envoy ext_authz over gRPC (envoy.service.auth.v3.Authorization/Check)"
    );
    Ok(Some(tokio::spawn(portcullis::serve_ext_authz(std::sync::Arc::clone(gateway), listener, stopped))))
}

#[cfg(feature = "demo")]
#[allow(clippy::print_stdout, reason = "the demo tells the user where to go")]
async fn run_demo(listen: SocketAddr) -> ExitCode {
    portcullis::telemetry::init(portcullis::config::LogFormat::Text, "info");
    let on_ready = |addresses: &demo::DemoAddresses| {
        let providers: Vec<String> = addresses
            .providers
            .iter()
            .map(|provider| {
                let users: Vec<String> = provider.users.iter().map(|user| format!("{user}/{user}")).collect();
                format!("{} at {} (users {})", provider.display_name, provider.issuer, users.join(" and "))
            })
            .collect();
        println!(
            "portcullis demo: open {} in a browser and sign in with one of two providers: {}; {origin}{} is for Staff only, {origin}{} for Partners only; echo upstream {}",
            addresses.gateway,
            providers.join(", "),
            demo::STAFF_ONLY_PATH,
            demo::PARTNERS_ONLY_PATH,
            addresses.upstream,
            origin = addresses.gateway.trim_end_matches('/'),
        );
    };
    match demo::run(listen, on_ready, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("portcullis demo: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "demo"))]
async fn run_demo(_listen: SocketAddr) -> ExitCode {
    eprintln!("portcullis demo: this build has no demo (built without the `demo` feature)");
    ExitCode::from(2)
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown signal received; draining");
}

/// `provider https://idp` for one provider, `providers staff (https://a), partners (https://b)` for several.
fn providers_summary(config: &portcullis::config::Config) -> String {
    match config.providers.as_slice() {
        [one] => format!("provider {}", one.issuer),
        several => {
            let listed: Vec<String> =
                several.iter().map(|provider| format!("{} ({})", provider.id, provider.issuer)).collect();
            format!("providers {}", listed.join(", "))
        }
    }
}
