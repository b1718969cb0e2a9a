//! Identity-header spoofing: whatever identity, forwarding, client-address,
//! URL-rewrite, method-override or authorization headers a client sends, in
//! whatever spelling, the upstream only ever sees the gateway's own. Sent over a raw socket so the spellings are exact.

use http::StatusCode;

use crate::support::{TestWorld, raw_exchange};

/// Header lines a hostile client adds, each carrying the marker `SPOOF`.
const SPOOFED: &[&str] = &[
    "X-Forwarded-User: SPOOF-user",
    "x-forwarded-user: SPOOF-user-2",
    "X-FORWARDED-USER: SPOOF-user-3",
    "x_forwarded_user: SPOOF-underscore",
    "X_Forwarded_Email: SPOOF@evil.example",
    "x-forwarded-email: SPOOF@evil.example",
    "X-Forwarded-Groups: SPOOF-admins",
    "x_forwarded_groups: SPOOF-admins",
    "X-Forwarded-Preferred-Username: SPOOF-root",
    "X-Forwarded-Access-Token: SPOOF-token",
    "X-AUTH-REQUEST-USER: SPOOF-auth-request",
    "X-Auth-Request-Email: SPOOF@evil.example",
    "x_auth_request_groups: SPOOF-admins",
    "X-Auth-Request-Access-Token: SPOOF-token",
    "X-Remote-User: SPOOF-remote",
    "Remote-User: SPOOF-remote",
    "remote_user: SPOOF-remote",
    "Authorization: Bearer SPOOF-bearer",
    "X-Forwarded-For: 203.0.113.66, SPOOF",
    "x_forwarded_for: SPOOF",
    "X-Forwarded-Proto: SPOOF",
    "X-Forwarded-Host: SPOOF.evil.example",
    "Forwarded: for=SPOOF;host=evil.example",
    "X-Real-IP: SPOOF-203.0.113.9",
    "x_real_ip: SPOOF-203.0.113.9",
    "True-Client-IP: SPOOF-203.0.113.9",
    "X-Original-URL: /SPOOF/admin",
    "X-Rewrite-URL: /SPOOF/admin",
    "X-HTTP-Method-Override: SPOOF-DELETE",
];

#[tokio::test]
async fn client_identity_headers_never_reach_the_upstream() {
    let world = TestWorld::start().await;
    let browser = world.browser();
    browser.login_at("/", "bob", "bob").await;
    let session = world.open_session(&browser.session_value());

    let mut request = format!(
        "GET /spoof HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nCookie: {}={}; app=1\r\n",
        world.gateway_addr,
        world.session_cookie_name(),
        browser.session_value()
    );
    for line in SPOOFED {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("Connection: close\r\n\r\n");
    let reply = raw_exchange(world.gateway_addr, &request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    let echoed = reply.json();
    let headers = echoed["headers"].as_object().expect("headers");
    for (name, values) in headers {
        assert!(!values.to_string().contains("SPOOF"), "{name}: {values} reached the upstream");
        assert!(!name.contains('_'), "{name} (an underscore spelling) reached the upstream");
    }
    let one = |name: &str| {
        let values = headers.get(name).unwrap_or_else(|| panic!("{name} missing: {echoed}"));
        assert_eq!(values.as_array().map(Vec::len), Some(1), "{name}: {values}");
        values[0].as_str().expect("text").to_owned()
    };
    assert_eq!(one("x-forwarded-user"), session.sub);
    assert_eq!(one("x-forwarded-email"), "bob@example.test");
    assert_eq!(one("x-forwarded-groups"), "staff");
    assert_eq!(one("x-forwarded-preferred-username"), "bob");
    assert_eq!(one("authorization"), format!("Bearer {}", session.access_token));
    assert_eq!(one("x-forwarded-for"), "127.0.0.1");
    assert_eq!(one("x-forwarded-proto"), "http");
    assert_eq!(one("x-forwarded-host"), world.gateway_addr.to_string());
    assert_eq!(one("cookie"), "app=1");
    for absent in [
        "forwarded",
        "x-remote-user",
        "remote-user",
        "x-forwarded-access-token",
        "x-auth-request-user",
        "x-real-ip",
        "true-client-ip",
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
    ] {
        assert!(!headers.contains_key(absent), "{absent} reached the upstream");
    }
}

#[tokio::test]
async fn spoofed_identity_without_a_session_is_not_authentication() {
    let world = TestWorld::start().await;
    let mut request = format!("GET /spoof HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n", world.gateway_addr);
    for line in SPOOFED {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("Connection: close\r\n\r\n");
    let reply = raw_exchange(world.gateway_addr, &request).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
}
