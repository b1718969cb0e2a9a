//! TLS session resumption across replicas: two gateways with the same
//! configuration (session keys) resume each other's TLS 1.3 and 1.2 sessions
//! from stateless tickets, over real TCP, for rustls clients and for the
//! `openssl s_client` CLI; other key material, tickets switched off or two
//! rotation periods gone by all mean a full handshake, and nothing breaks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use portcullis::secret::SecretString;
use rustls::HandshakeKind;
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::support::http::EXCHANGE_TIMEOUT;
use crate::support::pki::Pki;
use crate::support::replicas::Replica;
use crate::support::{TestWorld, random_session_secret};

const TLS13: &rustls::SupportedProtocolVersion = &rustls::version::TLS13;
const TLS12: &rustls::SupportedProtocolVersion = &rustls::version::TLS12;
/// The default `tls.ticket_rotation`, in seconds.
const ROTATION: i64 = 6 * 3600;

async fn tls_world(pki: &Pki, session_tickets: bool) -> TestWorld {
    let (cert, key) = pki.write(&pki.server(), "server");
    TestWorld::builder()
        .tweak(move |raw| {
            raw.tls.cert_file = Some(cert.clone());
            raw.tls.key_file = Some(key.clone());
            raw.tls.session_tickets = session_tickets;
        })
        .start()
        .await
}

/// One connection to `addr` with the client configuration `client` (whose
/// session cache is shared by every connection made with it): the handshake,
/// then one request answered, so the TLS 1.3 tickets sent after the handshake
/// have reached the client. Returns how the handshake went.
async fn connect_and_request(addr: SocketAddr, client: &Arc<rustls::ClientConfig>) -> HandshakeKind {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("a name");
    let stream = tokio::time::timeout(EXCHANGE_TIMEOUT, TlsConnector::from(Arc::clone(client)).connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("a TLS handshake");
    let kind = stream.get_ref().1.handshake_kind().expect("a completed handshake");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("h1");
    let driver = tokio::spawn(connection);
    let request = Request::get("/ping").header("host", "localhost").body(Empty::<Bytes>::new()).unwrap();
    let response = tokio::time::timeout(EXCHANGE_TIMEOUT, sender.send_request(request)).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK, "served after a {kind:?} handshake");
    let _ = response.into_body().collect().await;
    drop(sender);
    let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, driver).await;
    kind
}

fn handshakes(metrics: &str, version: &str, resumed: bool) -> u64 {
    let prefix = format!("portcullis_tls_handshakes_total{{version=\"{version}\",resumed=\"{resumed}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|count| count.trim().parse().expect("a count"))
        .unwrap_or_else(|| panic!("no {prefix} in {metrics}"))
}

#[tokio::test]
async fn replicas_with_the_same_configuration_resume_each_others_tls_1_3_sessions() {
    let pki = Pki::new();
    let world = tls_world(&pki, true).await;
    let replica = Replica::start(&world).await;
    let client = pki.client_config(&[TLS13], &[b"http/1.1"]);

    assert_eq!(connect_and_request(world.gateway_addr, &client).await, HandshakeKind::Full);
    assert_eq!(connect_and_request(replica.addr, &client).await, HandshakeKind::Resumed, "A's ticket resumes on B");
    assert_eq!(connect_and_request(world.gateway_addr, &client).await, HandshakeKind::Resumed, "and B's on A");

    assert_eq!(handshakes(&replica.metrics(), "1.3", true), 1, "counted as resumed");
    assert_eq!(handshakes(&replica.metrics(), "1.3", false), 0);
    assert_eq!(handshakes(&world.metrics(), "1.3", false), 1);
    assert_eq!(handshakes(&world.metrics(), "1.3", true), 1);
}

#[tokio::test]
async fn replicas_with_the_same_configuration_resume_each_others_tls_1_2_sessions() {
    let pki = Pki::new();
    let world = tls_world(&pki, true).await;
    let replica = Replica::start(&world).await;
    let client = pki.client_config(&[TLS12], &[b"http/1.1"]);

    assert_eq!(connect_and_request(world.gateway_addr, &client).await, HandshakeKind::Full);
    assert_eq!(connect_and_request(replica.addr, &client).await, HandshakeKind::Resumed, "A's ticket resumes on B");
    assert_eq!(handshakes(&replica.metrics(), "1.2", true), 1);
    assert_eq!(handshakes(&world.metrics(), "1.2", false), 1);
}

#[tokio::test]
async fn a_replica_with_other_session_keys_makes_a_full_handshake() {
    let pki = Pki::new();
    let world = tls_world(&pki, true).await;
    let stranger = Replica::start_with(&world, |raw| {
        raw.session.secrets = None;
        raw.session.secret = Some(SecretString::new(random_session_secret()));
    })
    .await;
    for version in [TLS13, TLS12] {
        let client = pki.client_config(&[version], &[b"http/1.1"]);
        assert_eq!(connect_and_request(world.gateway_addr, &client).await, HandshakeKind::Full);
        assert_eq!(
            connect_and_request(stranger.addr, &client).await,
            HandshakeKind::Full,
            "{:?}: a ticket sealed with other keys is not accepted",
            version.version
        );
        // The stranger's own tickets work for it.
        assert_eq!(connect_and_request(stranger.addr, &client).await, HandshakeKind::Resumed);
    }
}

#[tokio::test]
async fn a_replica_that_rotated_its_session_key_still_resumes_tickets_of_the_old_one() {
    let pki = Pki::new();
    let world = tls_world(&pki, true).await;
    let old_key = world.session_secret();
    // The operator's rotation: a new key first, the old one kept to open what it sealed.
    let rotated = Replica::start_with(&world, move |raw| {
        raw.session.secret = None;
        raw.session.secrets =
            Some(vec![SecretString::new(random_session_secret()), SecretString::new(old_key.clone())]);
    })
    .await;
    let client = pki.client_config(&[TLS13], &[b"http/1.1"]);
    assert_eq!(connect_and_request(world.gateway_addr, &client).await, HandshakeKind::Full);
    assert_eq!(connect_and_request(rotated.addr, &client).await, HandshakeKind::Resumed);
    // Its new tickets are sealed with the new key, which the not-yet-rotated replica lacks.
    let fresh = pki.client_config(&[TLS13], &[b"http/1.1"]);
    assert_eq!(connect_and_request(rotated.addr, &fresh).await, HandshakeKind::Full);
    assert_eq!(connect_and_request(world.gateway_addr, &fresh).await, HandshakeKind::Full);
}

#[tokio::test]
async fn tickets_are_accepted_for_one_more_rotation_period_then_refused() {
    let pki = Pki::new();
    let world = tls_world(&pki, true).await;
    let replica = Replica::start(&world).await;

    let client = pki.client_config(&[TLS13], &[b"http/1.1"]);
    assert_eq!(connect_and_request(world.gateway_addr, &client).await, HandshakeKind::Full);
    world.clock.advance(ROTATION);
    assert_eq!(connect_and_request(replica.addr, &client).await, HandshakeKind::Resumed, "the previous period");

    let client = pki.client_config(&[TLS13], &[b"http/1.1"]);
    assert_eq!(connect_and_request(world.gateway_addr, &client).await, HandshakeKind::Full);
    world.clock.advance(2 * ROTATION);
    assert_eq!(connect_and_request(replica.addr, &client).await, HandshakeKind::Full, "two periods on");
}

#[tokio::test]
async fn without_session_tickets_only_the_same_process_resumes() {
    let pki = Pki::new();
    let world = tls_world(&pki, false).await;
    let replica = Replica::start(&world).await;
    for version in [TLS13, TLS12] {
        let client = pki.client_config(&[version], &[b"http/1.1"]);
        assert_eq!(connect_and_request(world.gateway_addr, &client).await, HandshakeKind::Full);
        // Each process still resumes the sessions it remembers,
        assert_eq!(connect_and_request(world.gateway_addr, &client).await, HandshakeKind::Resumed);
        // but no other process can.
        assert_eq!(
            connect_and_request(replica.addr, &client).await,
            HandshakeKind::Full,
            "{:?}: no ticket another process can open",
            version.version
        );
    }
}

/// Runs `openssl s_client` against `addr` with one request on stdin and the
/// connection closed after the answer; returns its standard output.
async fn s_client(pki: &Pki, addr: SocketAddr, version_flag: &str, session: (&str, &PathBuf)) -> String {
    let mut child = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), version_flag, "-ign_eof", "-CAfile"])
        .arg(pki.ca_file())
        .arg(session.0)
        .arg(session.1)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl s_client runs (tests/run-all.sh installs openssl)");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.expect("request");
    drop(stdin);
    let output = tokio::time::timeout(EXCHANGE_TIMEOUT, child.wait_with_output())
        .await
        .expect("s_client finishes once the gateway closes the connection")
        .expect("s_client output");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn openssl_s_client_reuses_a_session_of_one_replica_on_the_other() {
    let pki = Pki::new();
    let world = tls_world(&pki, true).await;
    let replica = Replica::start(&world).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (flag, version) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let session = dir.path().join(format!("{version}.pem"));
        let first = s_client(&pki, world.gateway_addr, flag, ("-sess_out", &session)).await;
        assert!(first.contains(&format!("New, {version}")), "{first}");
        assert!(first.contains("HTTP/1.1 200"), "{first}");
        let second = s_client(&pki, replica.addr, flag, ("-sess_in", &session)).await;
        assert!(second.contains(&format!("Reused, {version}")), "{version} on the other replica: {second}");
        assert!(second.contains("HTTP/1.1 200"), "{second}");
    }
}
