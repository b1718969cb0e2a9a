//! Micro-benchmarks of the per-request and per-login work: sealing/opening a
//! ~4 KB session cookie, PKCE, the request-header rewrite, redirect
//! sanitising, the HTTP/1 framing guard's head scan, path normalisation and
//! authorization-rule matching, and the whole cache-hit authentication. Figures are recorded
//! in `docs/benchmarks.md`; none of this is a test assertion.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, header};
use portcullis::authz::Principal;
use portcullis::authz::path::normalise;
use portcullis::config::compile_policy;
use portcullis::config::raw::{RawAuthz, RawRule};
use portcullis::http1_guard::FramingScanner;
use portcullis::oidc::pkce::PkceVerifier;
use portcullis::proxy::IdentityHeaders;
use portcullis::proxy::headers::{self, Forwarding};
use portcullis::redirect::RedirectPolicy;
use portcullis::secret::SecretBytes;
use portcullis::session::cache::{ActiveSession, SessionCache};
use portcullis::session::cookies::CookieJarSpec;
use portcullis::session::data::{SESSION_FORMAT, SessionData};
use portcullis::session::seal::{KeyRing, Purpose};
use portcullis::session::view::SessionView;

const NOW: i64 = 1_900_000_000;

/// A JWT-shaped token of about `len` characters.
fn token(len: usize, seed: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(seed.repeat(len * 3 / 4 / seed.len() + 1));
    let signature = URL_SAFE_NO_PAD.encode([7u8; 256]);
    let mut text = format!("{header}.{body}.{signature}");
    text.truncate(len);
    text
}

/// A session as a real login stores it; sealed it is about 4 KB.
fn session() -> SessionData {
    SessionData {
        v: SESSION_FORMAT,
        id: URL_SAFE_NO_PAD.encode([42u8; 32]),
        provider: "default".to_owned(),
        iss: "https://login.example.com/realms/main".to_owned(),
        sub: "f3b1c2d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d".to_owned(),
        email: Some("alice@example.com".to_owned()),
        email_verified: Some(true),
        name: Some("Alice Example".to_owned()),
        preferred_username: Some("alice".to_owned()),
        sid: Some("a1b2c3d4-e5f6-7890-abcd-ef0123456789".to_owned()),
        created_at: NOW - 600,
        last_seen_at: NOW - 10,
        expires_at: NOW + 36_000,
        access_token: token(1100, "access-claims"),
        access_expires_at: NOW + 3000,
        access_issued_at: 0,
        refresh_token: Some(token(500, "refresh")),
        id_token: Some(token(1100, "id-claims")),
        roles: (0..12).map(|index| format!("team-{index:02}-engineering")).collect(),
    }
}

fn key_ring() -> KeyRing {
    KeyRing::new(&[SecretBytes::new(vec![9u8; 32])]).unwrap()
}

fn identity(data: &SessionData) -> IdentityHeaders {
    IdentityHeaders::new(
        &data.sub,
        data.email.as_deref(),
        data.preferred_username.as_deref(),
        &data.roles,
        Some(&data.access_token),
    )
    .unwrap()
}

/// What Chrome sends on a same-origin navigation, plus the session cookie.
fn browser_headers(cookie: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let pairs = [
        ("host", "app.example.com"),
        ("connection", "keep-alive"),
        ("cache-control", "max-age=0"),
        ("sec-ch-ua", "\"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\""),
        ("sec-ch-ua-mobile", "?0"),
        ("sec-ch-ua-platform", "\"Linux\""),
        ("upgrade-insecure-requests", "1"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        ),
        ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
        ("sec-fetch-site", "same-origin"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-user", "?1"),
        ("sec-fetch-dest", "document"),
        ("referer", "https://app.example.com/dashboard"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("accept-language", "en-GB,en;q=0.9"),
    ];
    for (name, value) in pairs {
        headers.append(name, HeaderValue::from_static(value));
    }
    headers.append(header::COOKIE, HeaderValue::try_from(format!("_ga=GA1.1.123.456; {cookie}; theme=dark")).unwrap());
    headers
}

fn bench_seal_open(c: &mut Criterion) {
    let keys = key_ring();
    let data = session();
    let json = serde_json::to_vec(&data).unwrap();
    let sealed = keys.seal(Purpose::Session, "_portcullis", &json).unwrap();
    eprintln!("session: {} bytes JSON, {} bytes sealed", json.len(), sealed.len());
    c.bench_function("session/seal_4k (JSON + AES-GCM + base64)", |b| {
        b.iter(|| {
            let json = serde_json::to_vec(black_box(&data)).unwrap();
            keys.seal(Purpose::Session, "_portcullis", &json).unwrap()
        });
    });
    c.bench_function("session/open_4k (base64 + AES-GCM)", |b| {
        b.iter(|| keys.open(Purpose::Session, "_portcullis", black_box(&sealed)).unwrap());
    });
    c.bench_function("session/open_4k + JSON parse", |b| {
        b.iter(|| {
            let (json, _) = keys.open(Purpose::Session, "_portcullis", black_box(&sealed)).unwrap();
            serde_json::from_slice::<SessionData>(&json).unwrap()
        });
    });
    c.bench_function("session/open_4k + borrowed view parse (the hot path)", |b| {
        b.iter(|| {
            let (json, _) = keys.open(Purpose::Session, "_portcullis", black_box(&sealed)).unwrap();
            let view = SessionView::parse(&json).unwrap();
            view.into_principal().0
        });
    });
}

fn bench_pkce(c: &mut Criterion) {
    c.bench_function("pkce/generate + S256 challenge", |b| {
        b.iter(|| {
            let verifier = PkceVerifier::generate().unwrap();
            black_box(verifier.challenge());
        });
    });
}

fn bench_header_rewrite(c: &mut Criterion) {
    let keys = key_ring();
    let data = session();
    let sealed = keys.seal(Purpose::Session, "_portcullis", &serde_json::to_vec(&data).unwrap()).unwrap();
    let spec = CookieJarSpec::new("_portcullis", false);
    let template = browser_headers(&format!("{}={sealed}", spec.session_name()));
    let identity = identity(&data);
    let request_id = HeaderValue::from_static("01JD7Q8W0M5G3Y2Z4X6V8B9N1C");
    let is_ours = |name: &str| spec.is_ours(name);
    // Formatted once per connection by the gateway.
    let forwarded_for = headers::ip_header_value(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
    c.bench_function("proxy/request header rewrite (hygiene + identity)", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |headers| {
                headers::remove_hop_by_hop(headers);
                headers::remove_spoofed_identity(headers, identity.has_token());
                headers::remove_gateway_cookies(headers, &is_ours);
                headers::set_forwarding(
                    headers,
                    Forwarding {
                        forwarded_for: forwarded_for.as_ref(),
                        client_scheme: "https",
                        original_host: headers.get(header::HOST).cloned(),
                        request_id: Some(&request_id),
                    },
                );
                identity.apply(headers);
            },
            criterion::BatchSize::SmallInput,
        );
    });
}

/// The two cookie scans of the hot path, alone: finding the session cookie and
/// stripping the gateway's cookies before forwarding.
fn bench_cookie_scans(c: &mut Criterion) {
    let keys = key_ring();
    let sealed = keys.seal(Purpose::Session, "_portcullis", &serde_json::to_vec(&session()).unwrap()).unwrap();
    let spec = CookieJarSpec::new("_portcullis", false);
    let template = browser_headers(&format!("{}={sealed}", spec.session_name()));
    c.bench_function("cookies/read_session (find + reassemble)", |b| {
        b.iter(|| spec.read_session(black_box(&template)).unwrap().part_count());
    });
    let is_ours = |name: &str| spec.is_ours(name);
    c.bench_function("proxy/remove_gateway_cookies (4.9 KB Cookie)", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |headers| headers::remove_gateway_cookies(headers, &is_ours),
            criterion::BatchSize::SmallInput,
        );
    });
}

/// The framing guard's work per request: one `httparse` pass over a browser's
/// ~5 KB head (session cookie included) and the framing decision; and the
/// first head of a connection, which arrives split (hyper-util reads 24 bytes
/// first to tell HTTP/1 from HTTP/2), so it is copied once.
fn bench_http1_guard(c: &mut Criterion) {
    let keys = key_ring();
    let sealed = keys.seal(Purpose::Session, "_portcullis", &serde_json::to_vec(&session()).unwrap()).unwrap();
    let spec = CookieJarSpec::new("_portcullis", false);
    let headers = browser_headers(&format!("{}={sealed}", spec.session_name()));
    let mut head = b"GET /reports/2026/q3?view=summary HTTP/1.1\r\n".to_vec();
    for (name, value) in &headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    eprintln!("http1_guard: {} byte head", head.len());
    let limit = FramingScanner::limit_for_hyper_buffer(32 * 1024);
    c.bench_function("http1_guard/scan a 5 KB request head", |b| {
        b.iter(|| {
            let mut scanner = FramingScanner::new(limit);
            assert_eq!(scanner.scan(black_box(&head)), None);
            scanner
        });
    });
    let (first, rest) = head.split_at(24);
    c.bench_function("http1_guard/scan a 5 KB first head, split after 24 bytes", |b| {
        b.iter(|| {
            let mut scanner = FramingScanner::new(limit);
            assert_eq!(scanner.scan(black_box(first)), None);
            assert_eq!(scanner.scan(black_box(rest)), None);
            scanner
        });
    });
}

fn bench_redirect(c: &mut Criterion) {
    let policy = RedirectPolicy::new("https://app.example.com".parse().unwrap(), vec!["docs.example.com".to_owned()]);
    c.bench_function("redirect/sanitise same-origin path", |b| {
        b.iter(|| policy.sanitise(black_box("/reports/2026/q3?view=summary&sort=desc#top")));
    });
    c.bench_function("redirect/sanitise hostile (double-encoded //)", |b| {
        b.iter(|| policy.sanitise(black_box("/%252F%252Fevil.example/%2e%2e/login")));
    });
}

/// Routing a request through `[authz]`: normalise the path, find the first of
/// twelve rules that matches (prefixes and patterns, some per method), and
/// check the caller against the matched rule and the global allow-lists.
fn bench_authz(c: &mut Criterion) {
    let rule = |prefix: Option<&str>, pattern: Option<&str>, methods: &[&str], allow: &str, groups: &[&str]| RawRule {
        name: Some(format!("rule-{}", prefix.or(pattern).unwrap_or_default())),
        methods: methods.iter().map(|method| (*method).to_owned()).collect(),
        path_prefix: prefix.map(str::to_owned),
        path_pattern: pattern.map(str::to_owned),
        allow: Some(allow.to_owned()),
        groups: groups.iter().map(|group| (*group).to_owned()).collect(),
        ..RawRule::default()
    };
    let raw = RawAuthz {
        allowed_email_domains: vec!["example.com".to_owned()],
        rules: vec![
            rule(Some("/healthz"), None, &[], "public", &[]),
            rule(Some("/static/"), None, &["GET", "HEAD"], "public", &[]),
            rule(Some("/admin"), None, &[], "authenticated", &["admins"]),
            rule(None, Some("/api/v1/users/*/keys"), &["DELETE"], "deny", &[]),
            rule(None, Some("/api/v1/tenants/*/billing/**"), &[], "authenticated", &["finance"]),
            rule(Some("/api/v1/reports"), None, &["POST"], "authenticated", &["analysts"]),
            rule(Some("/internal"), None, &[], "deny", &[]),
            rule(Some("/metrics-proxy"), None, &[], "authenticated", &["ops"]),
            rule(None, Some("/teams/*/settings"), &["PUT", "PATCH"], "authenticated", &["leads"]),
            rule(Some("/uploads"), None, &["POST", "PUT"], "authenticated", &["staff"]),
            rule(Some("/beta"), None, &[], "authenticated", &["beta", "staff"]),
            rule(Some("/app"), None, &[], "authenticated", &[]),
        ],
        ..RawAuthz::default()
    };
    let policy = compile_policy(&raw, &[]).unwrap();
    let principal = Principal {
        subject: "248289761001".to_owned(),
        email: Some("alice@example.com".to_owned()),
        email_verified: true,
        name: Some("Alice Example".to_owned()),
        preferred_username: Some("alice".to_owned()),
        groups: (0..12).map(|index| format!("group-{index}")).chain(["staff".to_owned()]).collect(),
    };
    c.bench_function("authz/normalise + route (12 rules, last matches) + admits", |b| {
        b.iter(|| {
            let path = normalise(black_box("/app/reports/2026/q3")).unwrap();
            let route = policy.route(black_box(&Method::GET), &path.path);
            assert_eq!(route.rule, "rule-/app");
            policy.admits(route.access, black_box(&principal))
        });
    });
    c.bench_function("authz/normalise a path with // and ;params + route", |b| {
        b.iter(|| {
            let path = normalise(black_box("/beta//features;jsessionid=1/list")).unwrap();
            policy.route(black_box(&Method::GET), &path.path).rule.len()
        });
    });
    c.bench_function("authz/normalise a path with escapes (%61, lower-case hex) + route", |b| {
        b.iter(|| {
            let path = normalise(black_box("/%61pp/reports/caf%c3%a9")).unwrap();
            policy.route(black_box(&Method::GET), &path.path).rule.len()
        });
    });
}

/// The work of `Gateway::authenticate` on a cache hit, from public parts: read
/// the cookie, open it, parse the session, check it, look the id up.
fn bench_cache_hit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let keys = key_ring();
    let data = session();
    let sealed = keys.seal(Purpose::Session, "_portcullis", &serde_json::to_vec(&data).unwrap()).unwrap();
    let spec = CookieJarSpec::new("_portcullis", false);
    let headers = browser_headers(&format!("{}={sealed}", spec.session_name()));
    let cache = SessionCache::new(100_000, 64 * 1024 * 1024);
    let active = Arc::new(ActiveSession::from_session(&data).unwrap());
    runtime.block_on(cache.insert(data.id.clone(), active));
    let issuer = data.iss.clone();
    c.bench_function("auth/cache hit (cookie + open + JSON view + checks + cache get)", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let cookie = spec.read_session(black_box(&headers)).unwrap();
                let (json, _) = keys.open(Purpose::Session, spec.session_name(), cookie.sealed()).unwrap();
                let session = SessionView::parse(&json).unwrap();
                assert!(session.v == SESSION_FORMAT && session.iss == issuer && session.expires_at > NOW);
                cache.get(&session.id, session.access_expires_at).await.unwrap()
            })
        });
    });
}

criterion_group!(
    benches,
    bench_seal_open,
    bench_pkce,
    bench_header_rewrite,
    bench_cookie_scans,
    bench_redirect,
    bench_http1_guard,
    bench_authz,
    bench_cache_hit
);
criterion_main!(benches);
