//! Load-benchmark fixture for `bench/proxy.sh`: starts the development
//! provider and the gateway (loopback only) in front of a given upstream, logs
//! alice in over HTTP exactly as a browser would, pads the ID token so the
//! session cookie is about 4 KB, prints `COOKIE <name=value; ...>` and
//! `STARTUP_MS <ms>` on stdout, then serves until SIGTERM / Ctrl-C.
//!
//! With a fourth argument N it instead measures memory: a separate load
//! process (this binary with `--load`) sends N sessions (copies of alice's
//! with fresh ids, sealed with the gateway's key) once each through the
//! gateway, so the real request path fills the session cache; this process
//! prints its own `RSS_BEFORE_KB`, `RSS_AFTER_KB`, `CACHED_SESSIONS` and
//! `CACHE_BYTES`, then exits.
//!
//! Usage: `bench_gateway <listen 127.0.0.1:PORT> <upstream http://127.0.0.1:PORT/> [padding bytes] [sessions]`
//!
//! The log level is `info` (one JSON access line per request); `BENCH_LOG_LEVEL=warn`
//! turns the access log off, to measure what it costs.

#![allow(clippy::print_stdout, reason = "the fixture's output is the cookie the load generator sends")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis::clock::Clock;
use portcullis::config::{Config, LogFormat, RawConfig};
use portcullis_devkit::devidp::{DevProvider, DevProviderConfig};
use tokio::net::TcpListener;

type Failure = Box<dyn std::error::Error + Send + Sync>;

const CLIENT_ID: &str = "portcullis-bench";

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench_gateway: runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut args = std::env::args().skip(1);
    let outcome = if args.next().as_deref() == Some("--load") {
        let (url, count, cookie_name) = (args.next(), args.next(), args.next());
        match (url, count.and_then(|count| count.parse().ok()), cookie_name) {
            (Some(url), Some(count), Some(cookie_name)) => runtime.block_on(load_sessions(url, count, cookie_name)),
            _ => Err("usage: bench_gateway --load <url> <count> <cookie name>".into()),
        }
    } else {
        runtime.block_on(run())
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench_gateway: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Failure> {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args.next().ok_or("missing listen address")?.parse()?;
    let upstream = args.next().ok_or("missing upstream URL")?;
    let padding: usize = args.next().map_or(Ok(1500), |text| text.parse())?;
    let sessions: usize = args.next().map_or(Ok(0), |text| text.parse())?;
    if !listen.ip().is_loopback() {
        return Err("loopback addresses only".into());
    }
    // Logging as the Kubernetes manifests in deploy/ configure it: one JSON access line per request.
    portcullis::telemetry::init(LogFormat::Json, &std::env::var("BENCH_LOG_LEVEL").unwrap_or_else(|_| "info".into()));

    let public_url = format!("http://{listen}");
    let mut provider_config = DevProviderConfig::demo(CLIENT_ID, format!("{public_url}/oauth2/callback"));
    // Long-lived tokens: no refresh happens during a benchmark run.
    provider_config.access_token_ttl = Duration::from_secs(3600);
    provider_config.id_token_ttl = Duration::from_secs(3600);
    let provider = DevProvider::start(TcpListener::bind("127.0.0.1:0").await?, provider_config).await?;
    provider.faults().id_token_padding.set(Some(&"p".repeat(padding)));

    let gateway_listener = TcpListener::bind(listen).await?;
    let mut raw = RawConfig {
        listen: listen.to_string(),
        public_url: Some(public_url.clone()),
        upstream: Some(upstream),
        ..RawConfig::default()
    };
    raw.oidc.issuer = Some(provider.issuer().to_owned());
    raw.oidc.client_id = Some(CLIENT_ID.to_owned());
    let secret = portcullis::random::bytes::<32>()?;
    raw.session.secret = Some(portcullis::secret::SecretString::new(STANDARD.encode(secret)));
    let config = Config::from_raw(raw)?;

    // Start-up to ready: configuration built → provider metadata and keys loaded.
    let started = Instant::now();
    let gateway = portcullis::start(config, Clock::system()).await?;
    let startup = started.elapsed();
    if !gateway.is_ready() {
        return Err("gateway not ready after start".into());
    }
    let serving = tokio::spawn(portcullis::run(Arc::clone(&gateway), gateway_listener, async {
        let _ = tokio::signal::ctrl_c().await;
    }));

    let cookie = login(&public_url, provider.issuer()).await?;
    if sessions > 0 {
        return fill_cache(&gateway, &public_url, &cookie, &secret, sessions).await;
    }
    println!("STARTUP_MS {:.3}", startup.as_secs_f64() * 1000.0);
    println!("COOKIE {cookie}");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        result = serving => { result??; }
    }
    provider.shutdown();
    Ok(())
}

/// Walks the login (protected page → provider form → POST → callback) and
/// returns the `Cookie` header value holding the session.
async fn login(gateway: &str, issuer: &str) -> Result<String, Failure> {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut jar: BTreeMap<String, String> = BTreeMap::new();
    let start = send(&client, &mut jar, gateway, Method::GET, &format!("{gateway}/"), None).await?;
    let authorize = location(&start)?;
    let page = send(&client, &mut jar, gateway, Method::GET, &authorize, None).await?;
    let mut form = hidden_fields(&String::from_utf8_lossy(&page.1));
    form.push(("username".to_owned(), "alice".to_owned()));
    form.push(("password".to_owned(), "alice".to_owned()));
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&form).finish();
    let posted = send(&client, &mut jar, gateway, Method::POST, &format!("{issuer}/authorize"), Some(body)).await?;
    let callback = location(&posted)?;
    let done = send(&client, &mut jar, gateway, Method::GET, &callback, None).await?;
    if !done.0.status().is_redirection() {
        return Err(format!("callback answered {}", done.0.status()).into());
    }
    let cookies: Vec<String> = jar
        .iter()
        .filter(|(name, _)| !name.contains("_flow_"))
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    if cookies.is_empty() {
        return Err("no session cookie after login".into());
    }
    Ok(cookies.join("; "))
}

/// Has `count` distinct sessions sent through the gateway once each, by a
/// separate load process (this binary with `--load`), and reports this
/// process's resident memory before and after: the gateway's cost alone.
async fn fill_cache(
    gateway: &Arc<portcullis::gateway::Gateway>,
    public_url: &str,
    cookie: &str,
    secret: &[u8; 32],
    count: usize,
) -> Result<(), Failure> {
    let rss_before = rss_kb();
    let status = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--load")
        .arg(format!("{public_url}/small"))
        .arg(count.to_string())
        .arg(&gateway.config().session.cookie_name)
        .env("BENCH_SEALING_KEY", STANDARD.encode(secret))
        .env("BENCH_COOKIE", cookie)
        .status()
        .await?;
    if !status.success() {
        return Err(format!("the load process failed: {status}").into());
    }
    gateway.sync_caches().await;
    let metrics = gateway.render_metrics();
    let gauge = |name: &str| {
        metrics
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .unwrap_or("?")
    };
    println!("RSS_BEFORE_KB {rss_before}");
    println!("CACHED_SESSIONS {}", gauge("portcullis_cached_sessions"));
    println!("CACHE_BYTES {}", gauge("portcullis_session_cache_bytes"));
    println!("RSS_AFTER_KB {}", rss_kb());
    Ok(())
}

/// The load process of the memory mode: re-seals the logged-in session
/// (`BENCH_COOKIE`, opened with `BENCH_SEALING_KEY`) under `count` fresh ids
/// and sends each once to `url`. Fails if any request is not answered 2xx.
async fn load_sessions(url: String, count: usize, cookie_name: String) -> Result<(), Failure> {
    use portcullis::session::cookies::CookieJarSpec;
    use portcullis::session::data::SessionData;
    use portcullis::session::seal::{KeyRing, Purpose};

    let secret = STANDARD.decode(std::env::var("BENCH_SEALING_KEY")?)?;
    let cookie = std::env::var("BENCH_COOKIE")?;
    let keys = Arc::new(KeyRing::new(&[portcullis::secret::SecretBytes::new(secret)])?);
    let spec = Arc::new(CookieJarSpec::new(&cookie_name, false));
    let mut headers = http::HeaderMap::new();
    headers.insert(header::COOKIE, http::HeaderValue::from_str(&cookie)?);
    let sealed = spec.read_session(&headers).ok_or("no session in the cookie")?.sealed().into_owned();
    let (json, _) = keys.open(Purpose::Session, spec.session_name(), &sealed).map_err(|_| "cannot open")?;
    let template: Arc<SessionData> = Arc::new(serde_json::from_slice(&json)?);

    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let workers = 32;
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let (keys, spec, template, client, url) =
            (Arc::clone(&keys), Arc::clone(&spec), Arc::clone(&template), client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut failures = 0usize;
            for _ in (worker..count).step_by(workers) {
                let mut data = SessionData::clone(&template);
                data.id = URL_SAFE_NO_PAD.encode(portcullis::random::bytes::<32>()?);
                let sealed = keys.seal(Purpose::Session, spec.session_name(), &serde_json::to_vec(&data)?)?;
                let set = spec.set_session(&sealed, Duration::from_secs(3600), 0).ok_or("session too large")?;
                let pairs: Vec<&str> = set.iter().filter_map(|value| value.to_str().ok()?.split(';').next()).collect();
                let request =
                    Request::get(&url).header(header::COOKIE, pairs.join("; ")).body(Full::new(Bytes::new()))?;
                let response = client.request(request).await?;
                if !response.status().is_success() {
                    failures += 1;
                }
                response.into_body().collect().await?;
            }
            Ok::<usize, Failure>(failures)
        }));
    }
    let mut failures = 0;
    for task in tasks {
        failures += task.await??;
    }
    if failures > 0 {
        return Err(format!("{failures} of {count} requests were not answered 2xx").into());
    }
    Ok(())
}

/// Resident set size of this process, from `/proc/self/status`.
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.split_whitespace().next().and_then(|kb| kb.parse().ok()))
        })
        .unwrap_or(0)
}

type Reply = (http::Response<()>, Bytes);

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    jar: &mut BTreeMap<String, String>,
    gateway: &str,
    method: Method,
    url: &str,
    form: Option<String>,
) -> Result<Reply, Failure> {
    let to_gateway = url.starts_with(gateway);
    let mut request = Request::builder().method(method).uri(url).header(header::ACCEPT, "text/html");
    if to_gateway && !jar.is_empty() {
        let cookies: Vec<String> = jar.iter().map(|(name, value)| format!("{name}={value}")).collect();
        request = request.header(header::COOKIE, cookies.join("; "));
    }
    if form.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let request = request.body(Full::new(Bytes::from(form.unwrap_or_default())))?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request)).await??;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    if to_gateway {
        for value in parts.headers.get_all(header::SET_COOKIE) {
            let text = value.to_str()?;
            let pair = text.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() || text.contains("Max-Age=0") {
                    jar.remove(name);
                } else {
                    jar.insert(name.to_owned(), value.to_owned());
                }
            }
        }
    }
    Ok((http::Response::from_parts(parts, ()), body))
}

fn location(reply: &Reply) -> Result<String, Failure> {
    Ok(reply.0.headers().get(header::LOCATION).ok_or("expected a redirect")?.to_str()?.to_owned())
}

/// The `(name, value)` of every hidden input of the provider's login form.
fn hidden_fields(page: &str) -> Vec<(String, String)> {
    const MARKER: &str = "<input type=\"hidden\" name=\"";
    let mut fields = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find(MARKER) {
        rest = rest.get(start + MARKER.len()..).unwrap_or_default();
        let Some((name, after)) = rest.split_once('"') else { break };
        let Some(after) = after.strip_prefix(" value=\"") else { break };
        let Some((value, after)) = after.split_once('"') else { break };
        fields.push((unescape(name), unescape(value)));
        rest = after;
    }
    fields
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}
