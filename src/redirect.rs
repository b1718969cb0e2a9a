//! Validation of post-login and post-logout redirect targets.
//!
//! Only a same-origin path, or an absolute URL to an allow-listed host, is ever
//! used; everything else falls back to `/`. Protocol-relative (`//x`, `/\x`),
//! encoded variants, schemes, userinfo and control characters are refused.
//! The allowed hosts are `allowed_redirect_hosts` and the hosts of
//! `[[upstreams]]` entries (the gateway serves them itself).

use percent_encoding::percent_decode_str;
use url::Url;

/// `allowed_redirect_hosts` and the hosts the `[[upstreams]]` of `config` are chosen by.
fn allowed_hosts(config: &crate::config::Config) -> Vec<String> {
    let mut allowed_hosts = config.allowed_redirect_hosts.clone();
    for host in config.upstreams.iter().filter_map(|upstream| upstream.host.as_deref()) {
        let host = host.to_ascii_lowercase();
        if !allowed_hosts.contains(&host) {
            allowed_hosts.push(host);
        }
    }
    allowed_hosts
}

/// Where a user is sent when a requested target is refused.
pub const FALLBACK: &str = "/";
const MAX_TARGET_LEN: usize = 2048;

/// The policy: our own origin plus any allow-listed hosts (which a
/// configuration reload replaces, see [`RedirectPolicy::reload`]).
#[derive(Debug)]
pub struct RedirectPolicy {
    origin: Url,
    allowed_hosts: arc_swap::ArcSwap<Vec<String>>,
}

impl Clone for RedirectPolicy {
    fn clone(&self) -> Self {
        Self { origin: self.origin.clone(), allowed_hosts: arc_swap::ArcSwap::new(self.allowed_hosts.load_full()) }
    }
}

impl RedirectPolicy {
    /// A policy for `public_url` (an origin) and extra allowed host names.
    pub fn new(public_url: Url, allowed_hosts: Vec<String>) -> Self {
        Self { origin: public_url, allowed_hosts: arc_swap::ArcSwap::from_pointee(allowed_hosts) }
    }

    /// The policy of `config`: its public URL, `allowed_redirect_hosts` and the
    /// hosts its `[[upstreams]]` entries are chosen by.
    pub fn for_config(config: &crate::config::Config) -> Self {
        Self::new(config.public_url.clone(), allowed_hosts(config))
    }

    /// Takes the allowed hosts of a reloaded `config` (`allowed_redirect_hosts`
    /// and the `[[upstreams]]` hosts); the origin stays the one the policy was
    /// made for (`public_url` needs a restart).
    pub fn reload(&self, config: &crate::config::Config) {
        self.allowed_hosts.store(std::sync::Arc::new(allowed_hosts(config)));
    }

    /// The safe target for `requested`, or [`FALLBACK`].
    pub fn sanitise(&self, requested: &str) -> String {
        self.check(requested).unwrap_or_else(|| FALLBACK.to_owned())
    }

    /// The safe target for `requested` by a request to `request_origin`, as an
    /// absolute URL, or [`FALLBACK`]. For single sign-on across subdomains,
    /// where every login ends at one callback origin: a path is resolved on
    /// the request's own origin, which must be ours or an allowed host's;
    /// an absolute target is judged as [`Self::sanitise`] judges it.
    pub fn sanitise_on(&self, requested: &str, request_origin: &Url) -> String {
        let absolute = match self.check(requested) {
            Some(path) if path.starts_with('/') => {
                // `check` resolved the path on our origin: it stays on whichever origin it is joined to.
                self.may_target(request_origin).then(|| request_origin.join(&path).ok()).flatten()
            }
            Some(absolute) => Url::parse(&absolute).ok(),
            None => None,
        };
        // The joined URL is judged again as a whole, so no path can lead elsewhere.
        absolute.and_then(|url| self.check(url.as_str())).unwrap_or_else(|| FALLBACK.to_owned())
    }

    /// Whether an absolute `url` (without userinfo) may be redirected to: our
    /// origin, or an allowed host over https (or over our own scheme).
    fn may_target(&self, url: &Url) -> bool {
        if url.origin() == self.origin.origin() {
            return true;
        }
        let scheme_ok = url.scheme() == "https" || url.scheme() == self.origin.scheme();
        scheme_ok && url.host_str().is_some_and(|host| self.allowed_hosts.load().contains(&host.to_ascii_lowercase()))
    }

    fn check(&self, requested: &str) -> Option<String> {
        if requested.is_empty() || requested.len() > MAX_TARGET_LEN || has_forbidden_chars(requested) {
            return None;
        }
        // The path (not the query, which may legitimately encode anything) is
        // decoded a few times: a target may be double-encoded to slip `//` or `\`
        // past one decode.
        let raw_path = requested.split(['?', '#']).next().unwrap_or_default();
        let mut decoded = raw_path.to_owned();
        for _ in 0..3 {
            let next = percent_decode_str(&decoded).decode_utf8().ok()?.into_owned();
            if has_forbidden_chars(&next) || is_protocol_relative(&next) {
                return None;
            }
            if next == decoded {
                break;
            }
            decoded = next;
        }

        if requested.starts_with('/') {
            if is_protocol_relative(requested) {
                return None;
            }
            let resolved = self.origin.join(requested).ok()?;
            // Dot segments can collapse into `//host` (`/.//evil`): check the result too.
            if resolved.origin() != self.origin.origin() || is_protocol_relative(resolved.path()) {
                return None;
            }
            let mut path = resolved.path().to_owned();
            if let Some(query) = resolved.query() {
                path.push('?');
                path.push_str(query);
            }
            return Some(path);
        }

        let absolute = Url::parse(requested).ok()?;
        if !absolute.username().is_empty() || absolute.password().is_some() || is_protocol_relative(absolute.path()) {
            return None;
        }
        self.may_target(&absolute).then(|| absolute.to_string())
    }
}

fn has_forbidden_chars(text: &str) -> bool {
    text.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\')
}

fn is_protocol_relative(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next() == Some('/') && matches!(chars.next(), Some('/' | '\\'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RedirectPolicy {
        RedirectPolicy::new(Url::parse("https://app.example.com").unwrap(), vec!["docs.example.com".to_owned()])
    }

    #[test]
    fn same_origin_paths_pass() {
        let policy = policy();
        assert_eq!(policy.sanitise("/"), "/");
        assert_eq!(policy.sanitise("/a/b?c=d&e=%2F"), "/a/b?c=d&e=%2F");
        assert_eq!(policy.sanitise("https://app.example.com/x"), "https://app.example.com/x");
        assert_eq!(policy.sanitise("https://docs.example.com/guide"), "https://docs.example.com/guide");
    }

    #[test]
    fn escapes_fall_back() {
        let policy = policy();
        for target in [
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/%2Fevil.example",
            "/%2fevil.example",
            "/%5Cevil.example",
            "/%252F%252Fevil.example",
            "https://evil.example/",
            "http://app.example.com.evil.example/",
            "https://app.example.com@evil.example/",
            "https://user:pass@app.example.com/",
            "javascript:alert(1)",
            "data:text/html,hi",
            "/ok\r\nSet-Cookie: x=y",
            "/%0d%0aLocation:%20https://evil.example",
            "/\tab",
            "evil.example",
            "",
            "https://evil.docs.example.com/",
        ] {
            assert_eq!(policy.sanitise(target), FALLBACK, "{target:?} was accepted");
        }
    }

    #[test]
    fn dot_segments_stay_on_our_origin() {
        let policy = policy();
        assert_eq!(policy.sanitise("/a/../../b"), "/b");
        for target in ["/.//evil.example", "/..//evil.example", "/a/..//evil.example/x", "/%2e//evil.example"] {
            assert_eq!(policy.sanitise(target), FALLBACK, "{target:?} collapsed into a protocol-relative path");
        }
    }

    #[test]
    fn on_a_request_origin_paths_become_absolute_there_only_when_it_is_allowed() {
        let policy = policy();
        let origin = |text: &str| Url::parse(text).unwrap();
        let docs = origin("https://docs.example.com:8443");
        assert_eq!(policy.sanitise_on("/guide?x=1", &docs), "https://docs.example.com:8443/guide?x=1");
        assert_eq!(policy.sanitise_on("/", &origin("https://app.example.com")), "https://app.example.com/");
        assert_eq!(policy.sanitise_on("/a/../b", &docs), "https://docs.example.com:8443/b");
        // Absolute targets are judged as sanitise judges them, whatever the request's origin.
        assert_eq!(policy.sanitise_on("https://app.example.com/x", &docs), "https://app.example.com/x");
        for (target, request_origin) in [
            ("/x", "https://evil.example"),
            ("/x", "https://evil.docs.example.com"),
            ("/x", "https://app.example.com.evil.example"),
            ("//evil.example/x", "https://docs.example.com"),
            ("/.//evil.example", "https://docs.example.com"),
            ("/%2F%2Fevil.example", "https://docs.example.com"),
            ("https://evil.example/", "https://docs.example.com"),
            ("/x", "http://docs.example.com"),
        ] {
            assert_eq!(policy.sanitise_on(target, &origin(request_origin)), FALLBACK, "{target} on {request_origin}");
        }
    }

    #[test]
    fn queries_keep_their_encoded_characters() {
        assert_eq!(policy().sanitise("/search?q=two%20words&p=%5C%09"), "/search?q=two%20words&p=%5C%09");
    }
}
