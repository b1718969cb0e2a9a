//! TLS from the gateway to an https upstream with a private CA that demands a
//! client certificate (mTLS): `proxy.ca_file`, `proxy.client_cert_file` /
//! `client_key_file`, `proxy.dangerous_skip_tls_verify` (with its warning), and
//! configuration errors that name the key. Also the provider-side keys.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis::config::{Config, RawConfig};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpListener;

use crate::support::pki::Pki;
use crate::support::{TestWorld, logs};

/// An https upstream on loopback that requires a client certificate from `pki`.
async fn mtls_upstream(pki: &Pki) -> String {
    let leaf = pki.server();
    let chain = vec![leaf.der.clone()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pki.ca_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
        .build()
        .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://localhost:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else { return };
                let service = service_fn(|_request| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"mutual TLS ok"))))
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    url
}

async fn status_through(world: &TestWorld) -> (StatusCode, String) {
    let browser = world.browser();
    browser.login().await;
    let reply = browser.api_get("/through-tls").await;
    (reply.status, reply.body)
}

#[tokio::test]
async fn an_https_upstream_with_a_private_ca_and_mtls_is_reached() {
    let pki = Pki::new();
    let upstream = mtls_upstream(&pki).await;
    let ca = pki.ca_file();
    let (cert, key) = pki.write(&pki.client(), "client");

    let world = TestWorld::builder()
        .upstream(upstream.clone())
        .tweak({
            let (ca, cert, key) = (ca.clone(), cert.clone(), key.clone());
            move |raw| {
                raw.proxy.ca_file = Some(ca.clone());
                raw.proxy.client_cert_file = Some(cert.clone());
                raw.proxy.client_key_file = Some(key.clone());
            }
        })
        .start()
        .await;
    let (status, body) = status_through(&world).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "mutual TLS ok");

    // Without the client certificate the upstream refuses the handshake.
    let world = TestWorld::builder()
        .upstream(upstream.clone())
        .tweak({
            let ca = ca.clone();
            move |raw| raw.proxy.ca_file = Some(ca.clone())
        })
        .start()
        .await;
    assert_eq!(status_through(&world).await.0, StatusCode::BAD_GATEWAY);

    // Without the CA (system roots only) the upstream's certificate is not trusted.
    let world = TestWorld::builder()
        .upstream(upstream.clone())
        .tweak({
            let (cert, key) = (cert.clone(), key.clone());
            move |raw| {
                raw.proxy.client_cert_file = Some(cert.clone());
                raw.proxy.client_key_file = Some(key.clone());
            }
        })
        .start()
        .await;
    assert_eq!(status_through(&world).await.0, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn skipping_verification_works_and_is_warned_about_at_start() {
    let pki = Pki::new();
    let upstream = mtls_upstream(&pki).await;
    let (cert, key) = pki.write(&pki.client(), "client");
    let world = TestWorld::builder()
        .upstream(upstream)
        .tweak(move |raw| {
            raw.proxy.dangerous_skip_tls_verify = true;
            raw.proxy.client_cert_file = Some(cert.clone());
            raw.proxy.client_key_file = Some(key.clone());
            raw.oidc.dangerous_skip_tls_verify = true;
        })
        .start()
        .await;
    assert_eq!(status_through(&world).await.0, StatusCode::OK);
    let captured = logs::captured();
    assert!(captured.contains("TLS certificate verification is OFF for the upstream"), "warned for the upstream");
    assert!(
        captured.contains("TLS certificate verification is OFF for the identity provider"),
        "warned for the provider"
    );
}

fn base_raw() -> RawConfig {
    let mut raw = RawConfig {
        public_url: Some("https://app.example.com".to_owned()),
        upstream: Some("https://upstream.example.com".to_owned()),
        ..RawConfig::default()
    };
    raw.oidc.issuer = Some("https://idp.example.com".to_owned());
    raw.oidc.client_id = Some("app".to_owned());
    raw.session.secret = Some(portcullis::secret::SecretString::new(crate::support::random_session_secret()));
    raw
}

/// A change to a raw configuration.
type Adjust = Box<dyn FnOnce(&mut RawConfig)>;

fn error_of(adjust: impl FnOnce(&mut RawConfig)) -> String {
    let mut raw = base_raw();
    adjust(&mut raw);
    Config::from_raw(raw).expect_err("an invalid configuration").to_string()
}

#[tokio::test]
async fn client_tls_configuration_errors_name_the_key() {
    let pki = Pki::new();
    let (cert, key) = pki.write(&pki.client(), "client");
    let (_, other_key) = pki.write(&pki.client(), "other");
    let missing = pki.dir.path().join("missing.pem");
    let not_pem = pki.dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();

    let cases: Vec<(&str, Adjust)> = vec![
        (
            "proxy.ca_file",
            Box::new({
                let m = missing.clone();
                move |raw: &mut RawConfig| raw.proxy.ca_file = Some(m)
            }),
        ),
        (
            "proxy.ca_file",
            Box::new({
                let n = not_pem.clone();
                move |raw: &mut RawConfig| raw.proxy.ca_file = Some(n)
            }),
        ),
        (
            "oidc.ca_file",
            Box::new({
                let n = not_pem.clone();
                move |raw: &mut RawConfig| raw.oidc.ca_file = Some(n)
            }),
        ),
        (
            "proxy.client_key_file",
            Box::new({
                let c = cert.clone();
                move |raw: &mut RawConfig| raw.proxy.client_cert_file = Some(c)
            }),
        ),
        (
            "proxy.client_cert_file",
            Box::new({
                let k = key.clone();
                move |raw: &mut RawConfig| raw.proxy.client_key_file = Some(k)
            }),
        ),
        (
            "proxy.client_key_file",
            Box::new({
                let (c, k) = (cert.clone(), other_key.clone());
                move |raw: &mut RawConfig| {
                    raw.proxy.client_cert_file = Some(c);
                    raw.proxy.client_key_file = Some(k);
                }
            }),
        ),
        (
            "proxy.dangerous_skip_tls_verify",
            Box::new({
                let c = pki.ca_file();
                move |raw: &mut RawConfig| {
                    raw.proxy.ca_file = Some(c);
                    raw.proxy.dangerous_skip_tls_verify = true;
                }
            }),
        ),
    ];
    for (key, adjust) in cases {
        let error = error_of(adjust);
        assert!(error.starts_with(key), "expected an error about {key}, got {error}");
    }
    // And a good pair is accepted.
    let mut raw = base_raw();
    raw.proxy.ca_file = Some(pki.ca_file());
    raw.proxy.client_cert_file = Some(cert);
    raw.proxy.client_key_file = Some(key);
    raw.oidc.ca_file = Some(pki.ca_file());
    let config = Config::from_raw(raw).unwrap();
    assert!(config.proxy.tls.identity.is_some() && config.providers[0].tls.roots.is_some());
}
