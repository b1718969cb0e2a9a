//! A warning any TLS client can make rustls raise (here: an IP address sent as
//! SNI, as wrk and many health checkers do) is counted in a metric and logged
//! at debug level only, never once per handshake at warn: the real
//! `portcullis` binary with `[tls]` and its own logging set-up, a hand-built
//! ClientHello over TCP, its stderr read after a graceful exit.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use portcullis_devkit::devidp::{DevProvider, DevProviderConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::support::http::EXCHANGE_TIMEOUT;
use crate::support::pki::Pki;
use crate::support::{CLIENT_ID, eventually, random_session_secret, raw_exchange};

/// Handshakes per run: enough to tell one line per handshake from a one-off.
const HANDSHAKES: usize = 12;

/// A TLS 1.2 ClientHello as a client that puts an IP address in SNI sends it:
/// test data (RFC 5246 §7.4.1.2, RFC 6066 §3), not a TLS implementation.
fn client_hello_with_ip_sni(ip: &str) -> Vec<u8> {
    fn u16_prefixed(bytes: &[u8]) -> Vec<u8> {
        let mut out = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
        out.extend_from_slice(bytes);
        out
    }
    fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend(u16_prefixed(data));
        out
    }
    let mut host_name = vec![0x00]; // name_type host_name
    host_name.extend(u16_prefixed(ip.as_bytes()));
    let extensions = [
        extension(0x0000, &u16_prefixed(&host_name)),                // server_name
        extension(0x000a, &u16_prefixed(&[0x00, 0x1d, 0x00, 0x17])), // supported_groups: x25519, secp256r1
        extension(0x000b, &[0x01, 0x00]),                            // ec_point_formats: uncompressed
        extension(0x000d, &u16_prefixed(&[0x04, 0x03, 0x08, 0x04, 0x04, 0x01])), // signature_algorithms
        extension(0x0017, &[]),                                      // extended_master_secret
    ]
    .concat();
    let mut body = vec![0x03, 0x03]; // TLS 1.2
    body.extend([0x5a; 32]); // random
    body.push(0x00); // no session id
    body.extend(u16_prefixed(&[0xc0, 0x2b, 0xc0, 0x2f])); // ECDHE-ECDSA/RSA-AES128-GCM-SHA256
    body.extend([0x01, 0x00]); // compression: null only
    body.extend(u16_prefixed(&extensions));
    let mut handshake = vec![0x01]; // client_hello
    handshake.extend(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01]; // handshake record
    record.extend(u16_prefixed(&handshake));
    record
}

/// Sends the ClientHello and waits for the server's answer, which comes after
/// rustls parsed (and warned about) the SNI; returns the first bytes answered.
async fn hello_with_ip_sni(addr: SocketAddr) -> [u8; 6] {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect to the gateway");
        stream.write_all(&client_hello_with_ip_sni("127.0.0.1")).await.expect("send the ClientHello");
        let mut answer = [0u8; 6];
        stream.read_exact(&mut answer).await.expect("the server answers the ClientHello");
        answer
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await.expect("answered in time")
}

/// The `portcullis` binary serving TLS, with a development provider and its
/// metrics listener; stderr goes to a file read after it exits.
struct TlsDeployment {
    _provider: DevProvider,
    _pki: Pki,
    dir: tempfile::TempDir,
    child: tokio::process::Child,
    listen: SocketAddr,
    metrics: SocketAddr,
}

impl TlsDeployment {
    /// Starts it with `RUST_LOG` set to `rust_log`, or unset; retries with
    /// fresh ports if one was taken between probing and binding.
    async fn start(rust_log: Option<&str>) -> Self {
        for _ in 0..3 {
            if let Some(deployment) = Self::try_start(rust_log).await {
                return deployment;
            }
        }
        panic!("the gateway did not start with TLS");
    }

    async fn try_start(rust_log: Option<&str>) -> Option<Self> {
        let free_port = || {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe a port");
            probe.local_addr().expect("probe address")
        };
        let (listen, metrics) = (free_port(), free_port());
        let public_url = format!("https://localhost:{}", listen.port());
        let provider_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the provider");
        let provider_config = DevProviderConfig::demo(CLIENT_ID, format!("{public_url}/oauth2/callback"));
        let provider = DevProvider::start(provider_listener, provider_config).await.expect("start the provider");
        let pki = Pki::new();
        let (cert, key) = pki.write(&pki.server(), "server");
        let dir = tempfile::tempdir().expect("a temp dir");
        let config = dir.path().join("portcullis.toml");
        let text = format!(
            "listen = \"{listen}\"\npublic_url = \"{public_url}\"\nupstream = \"http://127.0.0.1:9\"\n\
             [oidc]\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\n\
             [session]\nsecret = \"{}\"\n[metrics]\nlisten = \"{metrics}\"\n\
             [tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
             [server]\nshutdown_grace = \"0s\"\ndrain_timeout = \"5s\"\n",
            provider.issuer(),
            random_session_secret(),
            cert.display(),
            key.display(),
        );
        std::fs::write(&config, text).expect("write the config");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("a log file");
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
        for (name, _) in std::env::vars() {
            if name.starts_with("PORTCULLIS_") || name.starts_with("OTEL_") || name == "RUST_LOG" {
                command.env_remove(name);
            }
        }
        if let Some(rust_log) = rust_log {
            command.env("RUST_LOG", rust_log);
        }
        command
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn portcullis");
        let mut exited = false;
        // The metrics listener is bound once the gateway started, after its TLS port.
        let up = eventually(Duration::from_secs(20), || {
            let gone = matches!(child.try_wait(), Ok(Some(_)));
            exited |= gone;
            async move { gone || TcpStream::connect(metrics).await.is_ok() }
        })
        .await;
        if exited || !up {
            let _ = child.kill().await;
            return None;
        }
        Some(Self { _provider: provider, _pki: pki, dir, child, listen, metrics })
    }

    async fn scrape_metrics(&self) -> String {
        raw_exchange(self.metrics, "GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n").await.body
    }

    /// SIGTERM, then its whole log (the workers write held lines when they stop).
    async fn stop_and_read_log(mut self) -> String {
        let pid = self.child.id().expect("the gateway is running");
        let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill");
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
        let exit = exit.expect("the gateway exits after SIGTERM").expect("its status");
        let log = std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        assert!(exit.success(), "the gateway exited with {exit}; log: {log}");
        log
    }
}

/// The value of the sample `name` (with its labels) in a Prometheus text exposition.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The lines rustls wrote at a level above debug.
fn rustls_lines_above_debug(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains("rustls"))
        .filter(|line| [" ERROR ", " WARN ", " INFO "].iter().any(|level| line.contains(level)))
        .collect()
}

#[tokio::test]
async fn an_ip_address_as_sni_is_counted_and_logged_only_at_debug() {
    let gateway = TlsDeployment::start(None).await;
    for _ in 0..HANDSHAKES {
        let answer = hello_with_ip_sni(gateway.listen).await;
        // A handshake record holding a ServerHello: the IP address was ignored, the handshake went on.
        assert_eq!((answer[0], answer[5]), (0x16, 0x02), "answered {answer:?}");
    }
    let metrics = gateway.scrape_metrics().await;
    let counted = sample(&metrics, "portcullis_tls_warnings_total{kind=\"illegal_sni\"}");
    let log = gateway.stop_and_read_log().await;
    assert!(log.contains("portcullis starting"), "the log was captured: {log}");
    let above_debug = rustls_lines_above_debug(&log);
    assert!(above_debug.is_empty(), "rustls logged above debug level: {above_debug:#?}");
    assert_eq!(counted, Some(HANDSHAKES as f64), "{metrics}");

    // An operator who asks for rustls' debug lines sees each warning there.
    let gateway = TlsDeployment::start(Some("info,rustls=debug")).await;
    hello_with_ip_sni(gateway.listen).await;
    let log = gateway.stop_and_read_log().await;
    let illegal_sni = log.lines().filter(|line| line.contains("Illegal SNI")).collect::<Vec<_>>();
    assert_eq!(illegal_sni.len(), 1, "{log}");
    assert!(illegal_sni[0].contains(" DEBUG rustls"), "{}", illegal_sni[0]);
    assert!(rustls_lines_above_debug(&log).is_empty(), "{log}");
}
