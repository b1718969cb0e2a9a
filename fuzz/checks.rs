//! The properties the fuzz targets check, shared with the regression test
//! (`tests/integration/fuzz_regressions.rs`) so every kept crash input is
//! replayed by a plain `cargo test`. Each function panics when the property fails.

use http::{HeaderMap, HeaderName, HeaderValue};
use portcullis::config::{Config, RawConfig};
use portcullis::redirect::RedirectPolicy;
use portcullis::secret::SecretBytes;
use portcullis::session::data::SessionData;
use portcullis::session::flow::LoginFlow;
use portcullis::session::seal::{KeyRing, Purpose};
use url::Url;

const ORIGIN: &str = "https://app.example.com";
const ALLOWED_HOST: &str = "docs.example.com";

fn key_ring() -> KeyRing {
    KeyRing::new(&[SecretBytes::new(vec![7u8; 32]), SecretBytes::new(vec![9u8; 32])]).expect("a key ring")
}

/// Opening any bytes as a session or flow cookie never panics; whatever opens
/// is parsed as JSON without panicking; a sealed value opens to itself.
pub fn open_cookie(input: &[u8]) {
    let keys = key_ring();
    for purpose in [Purpose::Session, Purpose::Flow] {
        if let Ok((plaintext, _)) = keys.open(purpose, "_portcullis", input) {
            let _ = serde_json::from_slice::<SessionData>(&plaintext);
            let _ = serde_json::from_slice::<LoginFlow>(&plaintext);
        }
    }
    if input.len() <= 4096 {
        let sealed = keys.seal(Purpose::Session, "_portcullis", input).expect("sealing works");
        let (opened, _) = keys.open(Purpose::Session, "_portcullis", &sealed).expect("a sealed value opens");
        assert_eq!(opened, input);
        assert!(keys.open(Purpose::Flow, "_portcullis", &sealed).is_err(), "purposes are separate");
        assert!(keys.open(Purpose::Session, "_other", &sealed).is_err(), "cookie names are bound");
    }
}

/// Whatever is asked for, the sanitised return target resolves, the way a
/// browser resolves it, to our origin or an allow-listed host, with no
/// control characters or userinfo.
pub fn sanitise_redirect(input: &[u8]) {
    let origin = Url::parse(ORIGIN).expect("origin");
    let policy = RedirectPolicy::new(origin.clone(), vec![ALLOWED_HOST.to_owned()]);
    let requested = String::from_utf8_lossy(input);
    let target = policy.sanitise(&requested);
    assert!(!target.chars().any(char::is_control), "{requested:?} → {target:?} has a control character");
    let resolved = origin.join(&target).unwrap_or_else(|error| panic!("{requested:?} → {target:?}: {error}"));
    let same_origin = resolved.origin() == origin.origin();
    let allowed = resolved.host_str() == Some(ALLOWED_HOST) && matches!(resolved.scheme(), "https");
    assert!(same_origin || allowed, "{requested:?} → {target:?} resolves to {resolved}");
    assert!(resolved.username().is_empty() && resolved.password().is_none(), "{requested:?} → {target:?} has userinfo");
}

/// Builds a header map from `name: value` lines (invalid lines are skipped),
/// runs the forwarding hygiene, and checks no identity header, hop-by-hop
/// header or Authorization survives, and gateway cookies are gone.
pub fn header_hygiene(input: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in input.split(|byte| *byte == b'\n') {
        let Some(colon) = line.iter().position(|byte| *byte == b':') else { continue };
        let (name, value) = line.split_at(colon);
        let value = value.get(1..).unwrap_or_default().trim_ascii();
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    portcullis::proxy::remove_hop_by_hop(&mut headers);
    portcullis::proxy::remove_spoofed_identity(&mut headers, true);
    let is_ours = |name: &str| name == "_portcullis" || name.starts_with("_portcullis_");
    portcullis::proxy::remove_gateway_cookies(&mut headers, &is_ours);
    for name in headers.keys() {
        assert!(!portcullis::owned_headers::is_spoofable(name.as_str().as_bytes()), "{name} survived");
        assert!(
            !matches!(
                name.as_str(),
                "connection"
                    | "keep-alive"
                    | "te"
                    | "trailer"
                    | "transfer-encoding"
                    | "upgrade"
                    | "proxy-connection"
                    | "proxy-authorization"
                    | "authorization"
            ),
            "{name} survived"
        );
    }
    for value in headers.get_all(http::header::COOKIE) {
        for pair in value.as_bytes().split(|byte| *byte == b';') {
            let name = pair.split(|byte| *byte == b'=').next().unwrap_or_default().trim_ascii();
            assert!(!std::str::from_utf8(name).is_ok_and(is_ours), "a gateway cookie survived: {value:?}");
        }
    }
}

/// Parsing any TOML into a configuration never panics, and an accepted
/// configuration has the invariants the gateway relies on.
pub fn parse_config(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else { return };
    use figment::providers::{Format, Serialized, Toml};
    let figment = figment::Figment::from(Serialized::defaults(RawConfig::default())).merge(Toml::string(text));
    let Ok(raw) = figment.extract::<RawConfig>() else { return };
    if let Ok(config) = Config::from_raw(raw) {
        assert!(matches!(config.public_url.scheme(), "http" | "https"));
        assert!(!config.session.keys.is_empty());
        assert!(!config.providers.is_empty() && config.providers.len() <= portcullis::config::MAX_PROVIDERS);
        for provider in &config.providers {
            assert!(provider.scopes.iter().any(|scope| scope == "openid"));
        }
        assert!(!config.server.header_read_timeout.is_zero());
    }
}

/// Scanning a connection's bytes for the HTTP/1 framing guard never panics,
/// and its verdict does not depend on how the bytes are split into reads: a
/// refusal lands on the same byte (the final `\n` of a head) whatever the
/// split. Wherever a head may start (the stream's start, after each `\n`),
/// the fast head scan answers what `httparse` answers or nothing, or
/// `httparse` refuses the head. The first four input bytes choose the piece
/// sizes.
pub fn http1_guard(input: &[u8]) {
    use portcullis::http1_guard::{FramingScanner, Parsed, fast_head_scan, parse_head_with_httparse};
    let (sizes, stream) = input.split_at(input.len().min(4));
    let after_line_feeds = stream.iter().enumerate().filter(|(_, byte)| **byte == b'\n').map(|(at, _)| at + 1);
    // Bounded, so a fuzzed stream of line feeds stays linear.
    for start in std::iter::once(0).chain(after_line_feeds).take(64) {
        let head = &stream[start..];
        if let Some(fast) = fast_head_scan(head) {
            let full = parse_head_with_httparse(head);
            assert!(
                full == fast || full == Parsed::Invalid,
                "at {start}: fast scan {fast:?}, httparse {full:?} for {:?}",
                String::from_utf8_lossy(head)
            );
        }
    }
    // Large enough that a split head is never given up on, as in one piece.
    let limit = stream.len() + 1;
    let scan = |piece_sizes: &mut dyn Iterator<Item = usize>| {
        let mut scanner = FramingScanner::new(limit);
        let mut at = 0;
        while at < stream.len() {
            let size = piece_sizes.next().unwrap_or(stream.len()).max(1);
            let piece = &stream[at..(at + size).min(stream.len())];
            if let Some(last) = scanner.scan(piece) {
                assert!(last < piece.len(), "the refused byte is in the piece");
                assert!(scanner.is_refused());
                assert_eq!(scanner.scan(b"GET / HTTP/1.1\r\n\r\n"), None, "nothing after a refusal");
                return Some(at + last);
            }
            at += piece.len();
        }
        None
    };
    let whole = scan(&mut std::iter::empty());
    if let Some(at) = whole {
        assert_eq!(stream[at], b'\n', "a refusal lands on a head's final line feed");
    }
    let mut cycled = sizes.iter().map(|size| usize::from(*size % 64)).cycle();
    assert_eq!(scan(&mut cycled), whole, "split by {sizes:?}");
    assert_eq!(scan(&mut std::iter::repeat(1)), whole, "split byte by byte");
}
