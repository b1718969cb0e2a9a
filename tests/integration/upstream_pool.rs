//! The connections to a plain-http upstream: kept alive and reused, requests
//! in origin form with a `Host`, a connection the upstream closed is replaced
//! without failing a request, and upstreams named by an IPv6 literal or a
//! host name are reached.

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

use crate::support::connection::OneConnection;
use crate::support::http::EXCHANGE_TIMEOUT;
use crate::support::upstreams::{FaultyUpstream, RecordingUpstream, UpstreamFault, read_request_head};
use crate::support::{Browser, TestWorld};

async fn signed_in(world: &TestWorld) -> Browser {
    let browser = world.browser();
    browser.login().await;
    browser
}

#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection_in_origin_form() {
    let upstream = RecordingUpstream::start().await;
    let world = TestWorld::builder().upstream(upstream.url.clone()).start().await;
    let browser = signed_in(&world).await;
    let cookie = format!("{}={}", world.session_cookie_name(), browser.session_value());
    // One client connection: its requests are served by one worker, whose pool it uses.
    let mut connection = OneConnection::open(&world).await;

    for index in 0..10 {
        let reply = connection.get(&format!("/item/{index}?page=2&q=a%2Fb"), &cookie).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let seen = upstream.seen();
    assert_eq!(seen.len(), 10);
    let connections: Vec<usize> = seen.iter().map(|request| request.connection).collect();
    assert!(connections.iter().all(|&connection| connection == connections[0]), "{connections:?}");
    for (index, request) in seen.iter().enumerate() {
        assert_eq!(request.target, format!("/item/{index}?page=2&q=a%2Fb"), "origin form, query untouched");
    }
}

#[tokio::test]
async fn an_http2_request_reaches_the_upstream_as_http1_with_the_clients_host() {
    let upstream = RecordingUpstream::start().await;
    let world = TestWorld::builder().upstream(upstream.url.clone()).start().await;
    let browser = signed_in(&world).await;
    let cookie = format!("{}={}", world.session_cookie_name(), browser.session_value());

    // h2c with prior knowledge: the authority travels as `:authority`, not `Host`.
    let stream = TcpStream::connect(world.gateway_addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.expect("h2 handshake");
    tokio::spawn(connection);
    let request = Request::get(format!("http://{}/over-h2", world.gateway_addr))
        .header(header::COOKIE, cookie)
        .header(header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .expect("a request");
    let exchange = async {
        let response = sender.send_request(request).await.expect("a response");
        let status = response.status();
        let _ = response.into_body().collect().await;
        status
    };
    assert_eq!(tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await.expect("in time"), StatusCode::OK);

    let seen = upstream.seen();
    let request = seen.iter().find(|request| request.path == "/over-h2").expect("forwarded");
    assert_eq!(request.target, "/over-h2");
    // HTTP/1.1 needs a Host: the client's `:authority`, as for an HTTP/1.1 client.
    let authority = world.gateway_addr.to_string();
    assert_eq!(request.headers.get(header::HOST).expect("a Host header"), &authority);
    assert_eq!(request.headers.get("x-forwarded-host").expect("the client's authority"), &authority);
}

#[tokio::test]
async fn an_upstream_that_closes_each_connection_after_answering_fails_no_request() {
    // It answers as if keeping the connection, then closes it: every kept
    // connection is dead by the next request, which must go out on a new one.
    let upstream = FaultyUpstream::start(UpstreamFault::AnswerThenClose).await;
    let world = TestWorld::builder().upstream(upstream.url.clone()).start().await;
    let browser = signed_in(&world).await;

    for index in 0..5 {
        let reply = browser.api_get(&format!("/n{index}")).await;
        assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "ok"), "request {index}");
    }
    assert_eq!(upstream.accepted(), 5, "one connection per answer");
}

#[tokio::test]
async fn upstreams_named_by_ipv6_literal_or_host_name_are_reached() {
    let Ok(listener) = TcpListener::bind("[::1]:0").await else {
        panic!("this test needs IPv6 loopback ([::1])");
    };
    let port = listener.local_addr().expect("address").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(portcullis_devkit::echo::serve_echo(listener, async move {
        let _ = stopped.await;
    }));
    let by_literal = TestWorld::builder().upstream(format!("http://[::1]:{port}")).start().await;
    let reply = signed_in(&by_literal).await.api_get("/v6").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    let recording = RecordingUpstream::start().await;
    let by_name = recording.url.replace("127.0.0.1", "localhost");
    let world = TestWorld::builder().upstream(by_name.clone()).start().await;
    let reply = signed_in(&world).await.api_get("/by-name").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let seen = recording.seen();
    assert_eq!(seen.last().expect("forwarded").target, "/by-name");
    drop(stop);
}

/// A raw upstream that answers every request as soon as its head arrives,
/// with `conn-<n>` (`n` counting its connections from 0), and then only
/// reads: a request body still arriving, or another request sent on the same
/// connection, is never answered.
async fn answers_before_reading_the_body() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the upstream");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        for connection in 0.. {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                if read_request_head(&mut stream).await.is_none() {
                    return;
                }
                let mut buffer = [0u8; 4096];
                let body = format!("conn-{connection}");
                let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                while matches!(stream.read(&mut buffer).await, Ok(read) if read > 0) {}
            });
        }
    });
    url
}

/// Found by this test: the connection went back to the pool when the
/// response ended although the request body was still streaming, and the
/// next request waited on it until the response timeout (504).
#[tokio::test]
async fn a_connection_still_sending_a_request_body_is_not_handed_to_the_next_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = answers_before_reading_the_body().await;
    let world = TestWorld::builder()
        .upstream(upstream)
        .tweak(|raw| {
            // One worker, so both requests share one connection pool.
            raw.server.worker_threads = 1;
            raw.proxy.response_timeout = std::time::Duration::from_secs(3);
        })
        .start()
        .await;
    let browser = signed_in(&world).await;
    let cookie = format!("{}={}", world.session_cookie_name(), browser.session_value());

    // An upload that sends 10 of its 100,000 bytes and then holds: the upstream answers it at once.
    let mut upload = TcpStream::connect(world.gateway_addr).await.expect("connect");
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nAccept: application/json\r\nContent-Length: 100000\r\n\r\n0123456789",
        world.gateway_addr
    );
    upload.write_all(head.as_bytes()).await.expect("send the upload's start");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let read_answer = async {
        while !String::from_utf8_lossy(&answer).contains("conn-0") {
            let read = upload.read(&mut buffer).await.expect("read the upload's answer");
            assert!(read > 0, "the gateway closed the upload: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buffer[..read]);
        }
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, read_answer).await.expect("the upload is answered in time");
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));

    // The upload's upstream connection is still receiving its body: the next
    // request must go out on a fresh connection.
    let reply = crate::support::raw_exchange(
        world.gateway_addr,
        &format!(
            "GET /next HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
            world.gateway_addr
        ),
    )
    .await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "conn-1"));
    drop(upload);
}
