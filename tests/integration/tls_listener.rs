//! The TLS listener: TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`, a renewed
//! certificate picked up without a restart (new connections see it, open ones
//! keep working), a broken renewal keeping the old certificate, and the
//! plain-HTTP listener that only redirects to https.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::support::http::EXCHANGE_TIMEOUT;
use crate::support::pki::{Pki, write_replacing};
use crate::support::{TestWorld, eventually, logs, raw_exchange};

async fn tls_connect(addr: std::net::SocketAddr, config: Arc<rustls::ClientConfig>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("a name");
    tokio::time::timeout(EXCHANGE_TIMEOUT, TlsConnector::from(config).connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("a TLS handshake")
}

fn peer_certificate(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().expect("peer certificates")[0].clone().into_owned()
}

type H1 = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn http1(stream: TlsStream<TcpStream>) -> H1 {
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("h1");
    tokio::spawn(connection);
    sender
}

async fn get_h1(sender: &mut H1, path: &str) -> StatusCode {
    let request = Request::get(path).header("host", "localhost").body(Empty::new()).unwrap();
    let response = tokio::time::timeout(EXCHANGE_TIMEOUT, sender.send_request(request)).await.unwrap().unwrap();
    let status = response.status();
    let _ = response.into_body().collect().await;
    status
}

async fn tls_world(pki: &Pki) -> (TestWorld, std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = pki.write(&pki.server(), "server");
    let (cert_file, key_file) = (cert.clone(), key.clone());
    let world = TestWorld::builder()
        .tweak(move |raw| {
            raw.tls.cert_file = Some(cert_file.clone());
            raw.tls.key_file = Some(key_file.clone());
            raw.tls.reload_interval = Duration::from_millis(50);
        })
        .start()
        .await;
    (world, cert, key)
}

#[tokio::test]
async fn tls_1_2_and_1_3_handshakes_succeed_and_serve() {
    let pki = Pki::new();
    let (world, _, _) = tls_world(&pki).await;
    for (version, expected) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let stream = tls_connect(world.gateway_addr, pki.client_config(&[version], &[b"http/1.1"])).await;
        assert_eq!(stream.get_ref().1.protocol_version(), Some(expected));
        let mut sender = http1(stream).await;
        assert_eq!(get_h1(&mut sender, "/ping").await, StatusCode::OK, "{expected:?}");
    }
    // Plain HTTP on the TLS port is not served.
    let plain = crate::support::guarded::raw_bytes(
        world.gateway_addr,
        b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        EXCHANGE_TIMEOUT,
    )
    .await;
    assert!(!plain.starts_with(b"HTTP/1.1 200"), "plain HTTP was served on the TLS port");
}

#[tokio::test]
async fn alpn_h2_and_http1_both_serve() {
    let pki = Pki::new();
    let (world, _, _) = tls_world(&pki).await;
    let all = [&rustls::version::TLS13, &rustls::version::TLS12];

    let stream = tls_connect(world.gateway_addr, pki.client_config(&all, &[b"h2", b"http/1.1"])).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.expect("h2");
    tokio::spawn(connection);
    let request = Request::get("https://localhost/ping").body(Empty::<Bytes>::new()).unwrap();
    let response = tokio::time::timeout(EXCHANGE_TIMEOUT, sender.send_request(request)).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), http::Version::HTTP_2);

    let stream = tls_connect(world.gateway_addr, pki.client_config(&all, &[b"http/1.1"])).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut sender = http1(stream).await;
    assert_eq!(get_h1(&mut sender, "/ping").await, StatusCode::OK);
}

#[tokio::test]
async fn a_renewed_certificate_is_served_to_new_connections_while_open_ones_keep_working() {
    let pki = Pki::new();
    let (world, cert, key) = tls_world(&pki).await;
    let config = pki.client_config(&[&rustls::version::TLS13], &[b"http/1.1"]);
    let old_stream = tls_connect(world.gateway_addr, Arc::clone(&config)).await;
    let old_der = peer_certificate(&old_stream);
    let mut old_connection = http1(old_stream).await;
    assert_eq!(get_h1(&mut old_connection, "/ping").await, StatusCode::OK);

    let renewed = pki.server();
    write_replacing(&key, &renewed.key_pem);
    write_replacing(&cert, &renewed.cert_pem);
    let addr = world.gateway_addr;
    let picked_up = eventually(EXCHANGE_TIMEOUT, || {
        let config = Arc::clone(&config);
        let expected = renewed.der.clone();
        async move { peer_certificate(&tls_connect(addr, config).await) == expected }
    })
    .await;
    assert!(picked_up, "new connections get the renewed certificate");
    assert_ne!(old_der, renewed.der);
    assert_eq!(get_h1(&mut old_connection, "/ping").await, StatusCode::OK, "the open connection keeps working");
}

#[tokio::test]
async fn a_broken_renewal_keeps_the_old_certificate() {
    let pki = Pki::new();
    let (world, cert, _key) = tls_world(&pki).await;
    let config = pki.client_config(&[&rustls::version::TLS13], &[b"http/1.1"]);
    let before = peer_certificate(&tls_connect(world.gateway_addr, Arc::clone(&config)).await);

    write_replacing(&cert, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
    let marker = cert.display().to_string();
    let noticed =
        eventually(EXCHANGE_TIMEOUT, || {
            let marker = marker.clone();
            async move {
                logs::captured().lines().any(|line| line.contains(&marker) && line.contains("unusable certificate"))
            }
        })
        .await;
    assert!(noticed, "the broken renewal is logged with the file name");
    let after = tls_connect(world.gateway_addr, Arc::clone(&config)).await;
    assert_eq!(peer_certificate(&after), before, "still the old certificate");
    let mut sender = http1(after).await;
    assert_eq!(get_h1(&mut sender, "/ping").await, StatusCode::OK);

    // A key that does not match the certificate is refused the same way.
    write_replacing(&cert, &pki.server().cert_pem);
    let mismatch = eventually(EXCHANGE_TIMEOUT, || {
        let marker = marker.clone();
        async move { logs::captured().lines().any(|line| line.contains(&marker) && line.contains("does not match")) }
    })
    .await;
    assert!(mismatch, "a mismatched pair is logged");
    assert_eq!(peer_certificate(&tls_connect(world.gateway_addr, config).await), before);
    // Found by this test: a broken renewal used to be logged again at every
    // check (every reload_interval) until fixed; now once per change.
    let reports =
        logs::captured().lines().filter(|line| line.contains(&marker) && line.contains("unusable certificate")).count();
    assert_eq!(reports, 1, "the broken certificate is reported once");
}

#[tokio::test]
async fn the_redirect_listener_answers_308_to_https() {
    let pki = Pki::new();
    let (cert, key) = pki.write(&pki.server(), "server");
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let redirect_addr = free.local_addr().unwrap();
    drop(free);
    let world = TestWorld::builder()
        .https()
        .tweak(move |raw| {
            raw.tls.cert_file = Some(cert.clone());
            raw.tls.key_file = Some(key.clone());
            raw.tls.redirect_http_listen = Some(redirect_addr.to_string());
        })
        .start()
        .await;
    let reachable =
        eventually(EXCHANGE_TIMEOUT, || async move { TcpStream::connect(redirect_addr).await.is_ok() }).await;
    assert!(reachable);
    let reply = raw_exchange(
        redirect_addr,
        "POST /some/path?x=1 HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(reply.location(), format!("{}/some/path?x=1", world.public_url));
    assert!(world.public_url.starts_with("https://"));
}
