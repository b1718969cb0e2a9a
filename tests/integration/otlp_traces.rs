//! OpenTelemetry traces as an operator turns them on: the real `portcullis`
//! binary (its own global subscriber, its shutdown flush) with `[tracing]`
//! pointed at an OTLP/HTTP receiver in this test, decoded with
//! `opentelemetry-proto`. A whole login and proxied requests must yield the
//! request, upstream and IdP spans, W3C trace context in and out, and no secret
//! anywhere in the exported data; with `[tracing]` absent nothing is exported
//! (even with the generic `OTEL_*` variables set) and no `traceparent` is added.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use portcullis::secret::SecretBytes;
use portcullis::session::data::SessionData;
use portcullis::session::flow::LoginFlow;
use portcullis::session::seal::{KeyRing, Purpose};
use portcullis_devkit::devidp::{DevProvider, DevProviderConfig};
use prost::Message as _;
use rustls::pki_types::pem::PemObject as _;
use tokio::net::TcpListener;

use crate::support::pki::Pki;
use crate::support::upstreams::RecordingUpstream;
use crate::support::{Browser, CLIENT_ID, eventually, query_params, random_session_secret};

const COOKIE: &str = "_portcullis";

/// Each export request: its `x-api-key` header and its body.
type Posts = Arc<Mutex<Vec<(Option<String>, Bytes)>>>;

/// An OTLP/HTTP traces receiver: keeps every POST body and its `x-api-key`.
struct Receiver {
    addr: SocketAddr,
    posts: Posts,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A receiver serving https with a certificate from `pki`.
    async fn start_tls(pki: &Pki) -> Self {
        let leaf = pki.server();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("the key");
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_single_cert(vec![leaf.der.clone()], key)
                .expect("a server config");
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the OTLP receiver");
        let addr = listener.local_addr().expect("receiver address");
        let posts: Posts = Arc::default();
        let record = Arc::clone(&posts);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let record = Arc::clone(&record);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let record = Arc::clone(&record);
                        async move {
                            let accepted = request.method() == Method::POST && request.uri().path() == "/v1/traces";
                            let api_key =
                                request.headers().get("x-api-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
                            let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let mut response = hyper::Response::new(Full::new(Bytes::new()));
                            if accepted {
                                record.lock().expect("lock").push((api_key, body));
                                response
                                    .headers_mut()
                                    .insert("content-type", http::HeaderValue::from_static("application/x-protobuf"));
                            } else {
                                *response.status_mut() = StatusCode::NOT_FOUND;
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else { return };
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Self { addr, posts, task }
    }

    fn endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    fn posts(&self) -> Vec<(Option<String>, Bytes)> {
        self.posts.lock().expect("lock").clone()
    }

    /// Every exported span, decoded by the third-party OTLP types.
    fn spans(&self) -> Vec<Span> {
        self.decoded()
            .into_iter()
            .flat_map(|request| request.resource_spans)
            .flat_map(|resource| resource.scope_spans)
            .flat_map(|scope| scope.spans)
            .collect()
    }

    fn decoded(&self) -> Vec<ExportTraceServiceRequest> {
        self.posts()
            .iter()
            .map(|(_, body)| ExportTraceServiceRequest::decode(body.as_ref()).expect("an OTLP protobuf body"))
            .collect()
    }

    /// Everything exported, as text: raw bodies (strings are plain UTF-8 in
    /// protobuf) and the decoded structure.
    fn everything(&self) -> String {
        let mut text = String::new();
        for (_, body) in self.posts() {
            text.push_str(&String::from_utf8_lossy(&body));
        }
        text.push_str(&format!("{:?}", self.decoded()));
        text
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `portcullis` binary serving on loopback, with a provider and a recording upstream.
struct Deployment {
    provider: DevProvider,
    upstream: RecordingUpstream,
    gateway: String,
    secret: String,
    child: tokio::process::Child,
    dir: tempfile::TempDir,
}

impl Deployment {
    /// Starts the gateway with `tracing_toml` appended to its file and `env` set.
    async fn start(tracing_toml: &str, env: &[(&str, String)]) -> Self {
        // The child binds the port itself: taken from a probe bind, retried if it was lost meanwhile.
        for _ in 0..3 {
            if let Some(deployment) = Self::try_start(tracing_toml, env).await {
                return deployment;
            }
        }
        panic!("the gateway process did not become ready");
    }

    async fn try_start(tracing_toml: &str, env: &[(&str, String)]) -> Option<Self> {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe a port");
        let addr = probe.local_addr().expect("probe address");
        drop(probe);
        let gateway = format!("http://{addr}");
        let provider_config = DevProviderConfig::demo(CLIENT_ID, format!("{gateway}/oauth2/callback"));
        let provider_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the provider");
        let provider = DevProvider::start(provider_listener, provider_config).await.expect("start the provider");
        let upstream = RecordingUpstream::start().await;
        let secret = random_session_secret();
        let dir = tempfile::tempdir().expect("a temp dir");
        let config = dir.path().join("portcullis.toml");
        let text = format!(
            "listen = \"{addr}\"\npublic_url = \"{gateway}\"\nupstream = \"{}\"\n\
             [oidc]\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nhttp_timeout = \"5s\"\n\
             [session]\nsecret = \"{secret}\"\n[metrics]\nenabled = false\n\
             [server]\nshutdown_grace = \"0s\"\ndrain_timeout = \"5s\"\n{tracing_toml}",
            upstream.url,
            provider.issuer()
        );
        std::fs::write(&config, text).expect("write the config");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("a log file");
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
        for (name, _) in std::env::vars() {
            if name.starts_with("PORTCULLIS_") || name.starts_with("OTEL_") || name == "RUST_LOG" {
                command.env_remove(name);
            }
        }
        command
            .arg("--config")
            .arg(&config)
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn portcullis");
        let mut exited = false;
        let ready = eventually(Duration::from_secs(20), || {
            // A child that exited (it lost its port) will never be ready.
            let gone = matches!(child.try_wait(), Ok(Some(_)));
            exited |= gone;
            async move { gone || is_ready(addr).await }
        })
        .await;
        if exited || !ready {
            let _ = child.kill().await;
            return None;
        }
        Some(Deployment { provider, upstream, gateway, secret, child, dir })
    }

    fn browser(&self) -> Browser {
        Browser::new(self.gateway.clone(), self.gateway.clone(), self.provider.issuer().to_owned(), COOKIE.to_owned())
    }

    fn key_ring(&self) -> KeyRing {
        KeyRing::new(&[SecretBytes::new(STANDARD.decode(&self.secret).expect("base64"))]).expect("a key ring")
    }

    /// SIGTERM, as an orchestrator stops it; waits for the graceful exit.
    async fn stop(&mut self) {
        let pid = self.child.id().expect("the gateway is running");
        let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill");
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
        let exit = exit.expect("the gateway exits after SIGTERM").expect("its status");
        assert!(exit.success(), "the gateway exited with {exit}; log: {}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }
}

/// Whether `GET /ready` at `addr` answers 200 (connection errors count as not ready).
async fn is_ready(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await
    else {
        return false;
    };
    let request = format!("GET /ready HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer)).await;
    matches!(read, Ok(Ok(_))) && answer.starts_with(b"HTTP/1.1 200")
}

/// A login through the provider; returns the secrets it produced.
struct LoggedIn {
    code: String,
    flow: LoginFlow,
    session_cookie: String,
    session: SessionData,
}

async fn log_in(deployment: &Deployment, browser: &Browser) -> LoggedIn {
    let pending = browser.start_login("/traced/start").await;
    let (json, _) = deployment
        .key_ring()
        .open(Purpose::Flow, &pending.flow_cookie_name, &pending.flow_cookie_value)
        .expect("a sealed flow");
    let flow: LoginFlow = serde_json::from_slice(&json).expect("flow JSON");
    let callback = browser.sign_in_at_provider(&pending, "alice", "alice").await;
    let code = query_params(&callback)["code"].clone();
    assert_eq!(browser.finish_login(&callback).await.expect_redirect(), "/traced/start");
    let session_cookie = browser.session_value();
    let (json, _) = deployment.key_ring().open(Purpose::Session, COOKIE, &session_cookie).expect("a sealed session");
    let session: SessionData = serde_json::from_slice(&json).expect("session JSON");
    LoggedIn { code, flow, session_cookie, session }
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref())
}

fn string_attribute<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attribute(span, key) {
        Some(Value::StringValue(text)) => Some(text),
        _ => None,
    }
}

fn int_attribute(span: &Span, key: &str) -> Option<i64> {
    match attribute(span, key) {
        Some(Value::IntValue(number)) => Some(*number),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn server_span<'a>(spans: &'a [Span], request_id: &str) -> Option<&'a Span> {
    spans.iter().find(|span| {
        span.kind == SpanKind::Server as i32 && string_attribute(span, "portcullis.request_id") == Some(request_id)
    })
}

/// `traceparent` = version-traceid-parentid-flags.
fn traceparent_parts(value: &str) -> (String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    (parts[1].to_owned(), parts[2].to_owned())
}

#[tokio::test]
async fn traces_reach_the_collector_with_context_propagated_and_no_secrets() {
    let receiver = Receiver::start().await;
    let api_key = format!("itest-api-key-{}", portcullis::random::token::<12>().unwrap());
    let tracing_toml = format!(
        "[tracing]\notlp_endpoint = \"{}\"\nservice_name = \"portcullis-itest\"\nheaders = {{ \"x-api-key\" = \"{api_key}\" }}\n",
        receiver.endpoint()
    );
    // A short batch delay keeps the test fast; the final flush is checked too.
    let mut deployment = Deployment::start(&tracing_toml, &[("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned())]).await;
    let browser = deployment.browser();
    let login = log_in(&deployment, &browser).await;

    let query_value = format!("qs{}", portcullis::random::token::<12>().unwrap());
    let plain_id = format!("itest-otel-{}", portcullis::random::token::<8>().unwrap());
    let reply = browser
        .send(
            Method::GET,
            &format!("/traced/plain?probe={query_value}"),
            &[("accept", "application/json"), ("x-request-id", &plain_id)],
            Bytes::new(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);

    // Exported while serving (the batch delay), found by a bounded poll.
    let arrived = eventually(Duration::from_secs(20), || async {
        let spans = receiver.spans();
        server_span(&spans, &plain_id).is_some()
            && spans.iter().any(|span| string_attribute(span, "portcullis.idp.operation") == Some("token_exchange"))
    })
    .await;
    assert!(arrived, "spans did not arrive; gateway log: {}", deployment.log());

    // A caller's traceparent: its span sent last, before shutdown, so the flush at exit must carry it.
    let client_trace = hex(&portcullis::random::bytes::<16>().unwrap());
    let client_span = hex(&portcullis::random::bytes::<8>().unwrap());
    let joined_id = format!("itest-otel-{}", portcullis::random::token::<8>().unwrap());
    let traceparent = format!("00-{client_trace}-{client_span}-01");
    let reply = browser
        .send(
            Method::GET,
            "/traced/joined",
            &[("accept", "application/json"), ("x-request-id", &joined_id), ("traceparent", &traceparent)],
            Bytes::new(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    deployment.stop().await;

    let spans = receiver.spans();
    // The server span of the proxied request: method, status, request id, path without query, upstream.
    let plain = server_span(&spans, &plain_id).expect("the proxied request's server span");
    assert_eq!(plain.name, "GET proxy");
    assert_eq!(string_attribute(plain, "http.request.method"), Some("GET"));
    assert_eq!(int_attribute(plain, "http.response.status_code"), Some(200), "{plain:?}");
    assert_eq!(string_attribute(plain, "url.path"), Some("/traced/plain"));
    assert_eq!(string_attribute(plain, "portcullis.route"), Some("proxy"));
    assert_eq!(string_attribute(plain, "portcullis.upstream"), Some("default"));
    assert!(plain.parent_span_id.is_empty(), "no traceparent came in, so it is a root span");

    // The upstream forward is its child, and the upstream got that span as its parent.
    let forward = spans
        .iter()
        .find(|span| span.kind == SpanKind::Client as i32 && span.parent_span_id == plain.span_id)
        .expect("the upstream span under the request span");
    assert_eq!(forward.trace_id, plain.trace_id);
    assert_eq!(string_attribute(forward, "url.path"), Some("/traced/plain"));
    assert_eq!(int_attribute(forward, "http.response.status_code"), Some(200));
    let seen = deployment.upstream.seen();
    let upstream_plain = seen.iter().find(|r| r.path == "/traced/plain").expect("the upstream saw the request");
    let sent = upstream_plain.headers.get("traceparent").expect("a traceparent went upstream").to_str().unwrap();
    let (sent_trace, sent_parent) = traceparent_parts(sent);
    assert_eq!(sent_trace, hex(&plain.trace_id), "the upstream joins the exported trace");
    assert_eq!(sent_parent, hex(&forward.span_id), "the upstream's parent is the forward span");

    // The token exchange at the provider, inside the callback request's trace.
    let exchange = spans
        .iter()
        .find(|span| string_attribute(span, "portcullis.idp.operation") == Some("token_exchange"))
        .expect("the token exchange span");
    assert_eq!(exchange.kind, SpanKind::Client as i32);
    assert_eq!(string_attribute(exchange, "http.request.method"), Some("POST"));
    assert_eq!(int_attribute(exchange, "http.response.status_code"), Some(200));
    let callback = spans.iter().find(|span| span.span_id == exchange.parent_span_id).expect("its parent span");
    assert_eq!(string_attribute(callback, "portcullis.route"), Some("callback"));
    assert_eq!(callback.trace_id, exchange.trace_id);
    assert!(spans.iter().any(|span| string_attribute(span, "portcullis.idp.operation") == Some("discovery")));
    assert!(spans.iter().any(|span| string_attribute(span, "portcullis.idp.operation") == Some("jwks")));

    // The caller's trace is joined: same trace id, the caller's span as parent, and upstream too.
    let joined = server_span(&spans, &joined_id).expect("the joined request's span (flushed at shutdown)");
    assert_eq!(hex(&joined.trace_id), client_trace);
    assert_eq!(hex(&joined.parent_span_id), client_span);
    let upstream_joined = seen.iter().find(|r| r.path == "/traced/joined").expect("the upstream saw it");
    let sent = upstream_joined.headers.get("traceparent").expect("traceparent upstream").to_str().unwrap();
    let (sent_trace, sent_parent) = traceparent_parts(sent);
    assert_eq!(sent_trace, client_trace);
    assert_ne!(sent_parent, client_span, "the gateway's own span is the upstream's parent");

    // The resource names the service; the collector got the configured header.
    let resources = receiver.decoded();
    let service_names: Vec<String> = resources
        .iter()
        .flat_map(|request| &request.resource_spans)
        .filter_map(|resource| resource.resource.as_ref())
        .flat_map(|resource| &resource.attributes)
        .filter(|kv| kv.key == "service.name")
        .filter_map(|kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(name)) => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert!(!service_names.is_empty() && service_names.iter().all(|name| name == "portcullis-itest"));
    assert!(receiver.posts().iter().all(|(key, _)| key.as_deref() == Some(api_key.as_str())));

    // Nothing secret anywhere in what was exported.
    let exported = receiver.everything();
    let refresh_token = login.session.refresh_token.clone().expect("a refresh token");
    let mut secrets: Vec<(&str, &str)> = vec![
        ("access token", login.session.access_token.as_str()),
        ("refresh token", refresh_token.as_str()),
        ("authorization code", login.code.as_str()),
        ("code verifier", login.flow.code_verifier.as_str()),
        ("nonce", login.flow.nonce.as_str()),
        ("session cookie", login.session_cookie.as_str()),
        ("query string value", query_value.as_str()),
        ("API key header", api_key.as_str()),
    ];
    if let Some(id_token) = login.session.id_token.as_deref() {
        secrets.push(("ID token", id_token));
    }
    for (what, secret) in secrets {
        assert!(secret.len() >= 12, "{what} is long enough to search for");
        assert!(!exported.contains(secret), "the exported traces contain the {what}");
    }
    assert!(!exported.contains("probe="), "the exported traces contain a query string");
    assert!(!exported.contains("eyJ"), "the exported traces contain something JWT-shaped");
    // And the gateway's own log never printed the collector's API key.
    assert!(!deployment.log().contains(&api_key));
}

#[tokio::test]
async fn without_a_tracing_section_nothing_is_exported_and_no_traceparent_is_added() {
    let receiver = Receiver::start().await;
    // The generic OpenTelemetry variables alone must not switch export on.
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", receiver.addr)),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.endpoint()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ];
    let mut deployment = Deployment::start("", &env).await;
    let browser = deployment.browser();
    log_in(&deployment, &browser).await;
    let reply = browser.send(Method::GET, "/untraced?x=1", &[("accept", "application/json")], Bytes::new()).await;
    assert_eq!(reply.status, StatusCode::OK);
    // A serving worker holds its log lines for at most a quarter of a second:
    // the access line is out while the gateway keeps running, not at exit.
    let request_id = reply.headers.get("x-request-id").expect("a request id").to_str().expect("text").to_owned();
    let logged = eventually(Duration::from_secs(5), || {
        let log = deployment.log();
        let found = log.lines().any(|line| line.contains(&request_id) && line.contains("/untraced"));
        async move { found }
    })
    .await;
    assert!(logged, "no access line for {request_id} while running; log: {}", deployment.log());
    // After a graceful exit any exporter would have flushed: nothing may have arrived.
    deployment.stop().await;

    let seen = deployment.upstream.seen();
    let request = seen.iter().find(|r| r.path == "/untraced").expect("the upstream saw the request");
    assert!(request.headers.get("traceparent").is_none(), "{:?}", request.headers);
    assert!(request.headers.get("tracestate").is_none());
    assert!(receiver.posts().is_empty(), "something was exported with tracing off");
    let headers: HashMap<_, _> = request.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
    assert!(headers.contains_key("x-request-id"), "the ordinary forwarding headers are there");
}

#[tokio::test]
async fn an_https_collector_is_verified_against_the_configured_ca() {
    let pki = Pki::new();
    let receiver = Receiver::start_tls(&pki).await;
    let endpoint = format!("https://localhost:{}/v1/traces", receiver.addr.port());
    let tracing_toml =
        format!("[tracing]\notlp_endpoint = \"{endpoint}\"\nca_file = \"{}\"\n", pki.ca_file().display());
    let mut deployment = Deployment::start(&tracing_toml, &[("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned())]).await;
    let request_id = format!("itest-otel-tls-{}", portcullis::random::token::<8>().unwrap());
    let reply = deployment.browser().send(Method::GET, "/ping", &[("x-request-id", &request_id)], Bytes::new()).await;
    assert_eq!(reply.status, StatusCode::OK);
    let arrived =
        eventually(Duration::from_secs(20), || async { server_span(&receiver.spans(), &request_id).is_some() }).await;
    assert!(arrived, "no span over https; gateway log: {}", deployment.log());
    deployment.stop().await;
    let spans = receiver.spans();
    let ping = server_span(&spans, &request_id).expect("the ping span");
    assert_eq!(string_attribute(ping, "portcullis.route"), Some("ping"));
    assert!(string_attribute(ping, "portcullis.upstream").is_none(), "the gateway answered itself");
}
