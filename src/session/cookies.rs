//! Cookie names, attributes and parsing for the gateway's own cookies.
//!
//! Over https every cookie gets `Secure` and the `__Host-` prefix (host-only,
//! `Path=/`, cannot be set by a sibling subdomain); always `HttpOnly` and
//! `SameSite=Lax`, so the login redirect back from the provider carries them.
//!
//! With `session.cookie_domain` (single sign-on across subdomains) they carry
//! `Domain` and the `__Secure-` prefix instead, since a `__Host-` cookie cannot
//! have a `Domain`. Either way the name under the other prefix is still ours:
//! never forwarded upstream nor settable by it, and cleared with the rest (a
//! cookie left from before the operator switched modes, or one tossed by a
//! sibling subdomain).

use std::time::Duration;

use cookie::{Cookie, SameSite};
use http::{HeaderMap, HeaderValue, header};

/// Names and attributes of the gateway's cookies.
#[derive(Clone, Debug)]
pub struct CookieJarSpec {
    session_name: String,
    flow_prefix: String,
    secure: bool,
    /// The `Domain` of every cookie not named `__Host-`; `None`: host-only cookies.
    domain: Option<String>,
    /// The session cookie's name under the other prefix (see the module doc).
    other_session_name: Option<String>,
}

const HOST_PREFIX: &str = "__Host-";
const SECURE_PREFIX: &str = "__Secure-";

impl CookieJarSpec {
    /// `base_name` as configured (`session.cookie_name`); `secure` when the
    /// public URL is https. Host-only cookies.
    pub fn new(base_name: &str, secure: bool) -> Self {
        let prefix = if secure { HOST_PREFIX } else { "" };
        Self {
            session_name: format!("{prefix}{base_name}"),
            flow_prefix: format!("{prefix}{base_name}_flow_"),
            secure,
            domain: None,
            other_session_name: secure.then(|| format!("{SECURE_PREFIX}{base_name}")),
        }
    }

    /// Cookies shared with every subdomain of `domain` (`session.cookie_domain`,
    /// validated: https only): `__Secure-` names, `Domain={domain}`.
    pub fn shared(base_name: &str, domain: &str) -> Self {
        Self {
            session_name: format!("{SECURE_PREFIX}{base_name}"),
            flow_prefix: format!("{SECURE_PREFIX}{base_name}_flow_"),
            secure: true,
            domain: Some(domain.to_owned()),
            other_session_name: Some(format!("{HOST_PREFIX}{base_name}")),
        }
    }

    /// The cookies `[session]` configures: shared with `cookie_domain` when set, else host-only.
    pub fn configured(base_name: &str, secure: bool, cookie_domain: Option<&str>) -> Self {
        match cookie_domain {
            Some(domain) => Self::shared(base_name, domain),
            None => Self::new(base_name, secure),
        }
    }

    /// The session cookie's name.
    pub fn session_name(&self) -> &str {
        &self.session_name
    }

    /// The flow cookie's name for a login attempt, derived from its `state`
    /// so several tabs can log in at once.
    pub fn flow_name(&self, state: &str) -> String {
        format!("{}{state}", self.flow_prefix)
    }

    /// Whether a cookie belongs to the gateway (never forwarded upstream):
    /// the session cookie, its numbered parts and the flow cookies.
    pub fn is_ours(&self, name: &str) -> bool {
        is_named_after(name, &self.session_name)
            || self.other_session_name.as_deref().is_some_and(|other| is_named_after(name, other))
    }

    /// The name of part `index` of a split session cookie (part 0 is the session cookie itself).
    pub fn part_name(&self, index: usize) -> String {
        if index == 0 { self.session_name.clone() } else { format!("{}_{index}", self.session_name) }
    }

    /// The sealed session from the request, in its parts. `None` when
    /// absent, ambiguous, or over the part limit.
    ///
    /// Read as bytes: the values are checked by the base64 decoder when they
    /// are opened, and a text check of the ~5 KB header cost more per request
    /// than the rest of this function.
    pub fn read_session<'a>(&self, headers: &'a HeaderMap) -> Option<SessionCookie<'a>> {
        // One pass over the Cookie header(s) for every part: slot i holds part i,
        // slot MAX_SESSION_PARTS marks a browser holding too many.
        let mut slots: [Option<&'a [u8]>; MAX_SESSION_PARTS + 1] = [None; MAX_SESSION_PARTS + 1];
        // Any non-empty pair that is not a session part (or is not a plain `name=value`).
        let mut holds_others = false;
        for value in headers.get_all(header::COOKIE) {
            for pair in crate::proxy::split_cookie_pairs(value.as_bytes()) {
                let pair = pair.trim_ascii();
                let named =
                    memchr::memchr(b'=', pair).and_then(|equals| Some((pair.get(..equals)?, pair.get(equals + 1..)?)));
                let Some((name, value)) = named else {
                    holds_others |= !pair.is_empty();
                    continue;
                };
                let Some(slot) = self.part_index(name).and_then(|index| slots.get_mut(index)) else {
                    holds_others = true;
                    continue;
                };
                let value = trim_quotes(value);
                match slot {
                    Some(first) if *first != value => {
                        let name = String::from_utf8_lossy(name);
                        tracing::warn!(cookie = %name, "several different values for one gateway cookie; ignoring them");
                        return None;
                    }
                    _ => *slot = Some(value),
                }
            }
        }
        let mut parts = [&[][..]; MAX_SESSION_PARTS];
        let mut count = 0;
        for (part, slot) in parts.iter_mut().zip(slots.iter().map_while(|slot| *slot)) {
            *part = slot;
            count += 1;
        }
        let over_limit = slots.get(count).is_some_and(Option::is_some);
        if count == 0 || over_limit {
            return None;
        }
        Some(SessionCookie { parts, count, holds_only_session: !holds_others })
    }

    /// The part index a cookie name stands for: 0 for the session cookie,
    /// `n` for `{session}_{n}` (canonical digits only).
    fn part_index(&self, name: &[u8]) -> Option<usize> {
        let rest = name.strip_prefix(self.session_name.as_bytes())?;
        match rest {
            [] => Some(0),
            [b'_', digit @ b'1'..=b'9'] => Some(usize::from(digit - b'0')),
            [b'_', tens @ b'1'..=b'9', units @ b'0'..=b'9'] => {
                Some(usize::from(tens - b'0') * 10 + usize::from(units - b'0'))
            }
            _ => None,
        }
    }

    /// `Set-Cookie` headers storing `sealed`, split into parts that each fit a
    /// browser's per-cookie limit; parts the browser holds beyond the new count are cleared.
    pub fn set_session(&self, sealed: &str, max_age: Duration, held_parts: usize) -> Option<Vec<HeaderValue>> {
        let chunks: Vec<&str> = split_str(sealed, SESSION_PART_BYTES);
        if chunks.len() > MAX_SESSION_PARTS {
            return None;
        }
        let mut headers = Vec::with_capacity(chunks.len().max(held_parts));
        for (index, chunk) in chunks.iter().enumerate() {
            headers.push(self.set(&self.part_name(index), chunk, max_age)?);
        }
        for index in chunks.len()..held_parts {
            headers.push(self.clear(&self.part_name(index))?);
        }
        Some(headers)
    }

    /// Removes `Set-Cookie` headers from an upstream response that would set one
    /// of the gateway's cookies: an upstream must not be able to plant or
    /// overwrite a session (fixation) or a login flow.
    pub fn drop_upstream_set_cookies(&self, headers: &mut HeaderMap) {
        let planted = headers.get_all(header::SET_COOKIE).iter().any(|value| self.sets_ours(value));
        if !planted {
            return;
        }
        let kept: Vec<HeaderValue> =
            headers.get_all(header::SET_COOKIE).iter().filter(|value| !self.sets_ours(value)).cloned().collect();
        headers.remove(header::SET_COOKIE);
        for value in kept {
            headers.append(header::SET_COOKIE, value);
        }
        tracing::warn!("the upstream tried to set a gateway cookie; removed");
    }

    fn sets_ours(&self, value: &HeaderValue) -> bool {
        let name = value.as_bytes().split(|b| *b == b'=').next().unwrap_or_default();
        std::str::from_utf8(name).is_ok_and(|name| self.is_ours(name.trim()))
    }

    /// `Set-Cookie` headers deleting the session cookie and any parts the
    /// request carries, under either prefix (flows stay).
    pub fn clear_session(&self, headers: &HeaderMap) -> Vec<HeaderValue> {
        let mut names: Vec<String> = vec![self.session_name.clone()];
        let is_part_of = |name: &str, session: &str| {
            name.strip_prefix(session).is_some_and(|rest| {
                rest.is_empty()
                    || rest
                        .strip_prefix('_')
                        .is_some_and(|index| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()))
            })
        };
        for name in cookie_names(headers) {
            let is_part = is_part_of(name, &self.session_name)
                || self.other_session_name.as_deref().is_some_and(|other| is_part_of(name, other));
            if is_part && !names.iter().any(|known| known == name) {
                names.push(name.to_owned());
            }
        }
        names.iter().filter_map(|name| self.clear(name)).collect()
    }

    /// `Set-Cookie` headers deleting the session cookie and every part and flow cookie the request carries.
    pub fn clear_all(&self, headers: &HeaderMap) -> Vec<HeaderValue> {
        let mut names: Vec<String> = vec![self.session_name.clone()];
        for name in cookie_names(headers) {
            if self.is_ours(name) && !names.iter().any(|known| known == name) {
                names.push(name.to_owned());
            }
        }
        names.iter().filter_map(|name| self.clear(name)).collect()
    }

    /// `Set-Cookie` for a new value, valid for `max_age`.
    pub fn set(&self, name: &str, value: &str, max_age: Duration) -> Option<HeaderValue> {
        let max_age = cookie::time::Duration::seconds(i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX));
        let cookie = self.base(name, value).max_age(max_age).build();
        HeaderValue::try_from(cookie.to_string()).ok()
    }

    /// `Set-Cookie` that deletes a cookie, with the attributes it was set with
    /// (the same `Domain`: a browser keeps a cookie a deletion does not match).
    pub fn clear(&self, name: &str) -> Option<HeaderValue> {
        let cookie = self
            .base(name, "")
            .max_age(cookie::time::Duration::ZERO)
            .expires(cookie::time::OffsetDateTime::UNIX_EPOCH)
            .build();
        HeaderValue::try_from(cookie.to_string()).ok()
    }

    fn base<'a>(&self, name: &str, value: &str) -> cookie::CookieBuilder<'a> {
        let builder = Cookie::build((name.to_owned(), value.to_owned()))
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax);
        match &self.domain {
            // A `__Host-` cookie (one left from host-only mode, being cleared) never has a Domain.
            Some(domain) if !name.starts_with(HOST_PREFIX) => builder.domain(domain.clone()),
            _ => builder,
        }
    }
}

/// Whether `name` is `session_name` or starts with `{session_name}_` (its parts and flows).
fn is_named_after(name: &str, session_name: &str) -> bool {
    name.strip_prefix(session_name).is_some_and(|rest| rest.is_empty() || rest.starts_with('_'))
}

/// Session cookies larger than this are split (browsers keep at least 4096
/// bytes per cookie, name and attributes included: RFC 6265 §6.1).
pub const SESSION_PART_BYTES: usize = 3800;
/// At most this many parts (about 30 KB of session).
pub const MAX_SESSION_PARTS: usize = 8;

/// A sealed session as the browser sent it, possibly in several parts.
pub struct SessionCookie<'a> {
    /// The first `count` are the parts, in order.
    parts: [&'a [u8]; MAX_SESSION_PARTS],
    count: usize,
    /// Whether the `Cookie` headers held nothing but this session's parts
    /// (every non-empty pair a part), so the upstream gets no `Cookie` at all.
    holds_only_session: bool,
}

impl SessionCookie<'_> {
    /// The sealed value, reassembled.
    pub fn sealed(&self) -> std::borrow::Cow<'_, [u8]> {
        match self.parts() {
            [single] => std::borrow::Cow::Borrowed(single),
            parts => std::borrow::Cow::Owned(parts.concat()),
        }
    }

    /// The parts, in order (at least one).
    pub fn parts(&self) -> &[&[u8]] {
        self.parts.get(..self.count).unwrap_or_default()
    }

    /// How many parts the browser holds.
    pub fn part_count(&self) -> usize {
        self.count
    }

    /// Whether the request's `Cookie` headers held this session's parts and
    /// nothing else: removing them all is then what removing the gateway's
    /// cookies comes to.
    pub fn holds_only_session(&self) -> bool {
        self.holds_only_session
    }
}

impl std::fmt::Debug for SessionCookie<'_> {
    // Never the values: they are the session.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lengths: Vec<usize> = self.parts().iter().map(|part| part.len()).collect();
        f.debug_struct("SessionCookie").field("part_lengths", &lengths).finish()
    }
}

/// A cookie value without the double quotes RFC 6265 allows around it.
fn trim_quotes(value: &[u8]) -> &[u8] {
    let start = value.iter().position(|&byte| byte != b'"').unwrap_or(value.len());
    let end = value.iter().rposition(|&byte| byte != b'"').map_or(start, |last| last + 1);
    value.get(start..end).unwrap_or_default()
}

fn split_str(text: &str, size: usize) -> Vec<&str> {
    // Sealed values are base64url (ASCII), so any byte offset is a char boundary.
    let mut parts = Vec::with_capacity(text.len() / size + 1);
    let mut rest = text;
    while rest.len() > size {
        let (head, tail) = rest.split_at(size);
        parts.push(head);
        rest = tail;
    }
    parts.push(rest);
    parts
}

fn cookie_names(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('=').map(|(name, _)| name))
}

/// The single value of cookie `name`; `None` when absent or ambiguous
/// (several different values: a tossed cookie must not pick the session).
pub fn single_cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut found: Option<&'h str> = None;
    for value in headers.get_all(header::COOKIE).iter().filter_map(|value| value.to_str().ok()) {
        for pair in value.split(';') {
            let Some((key, value)) = pair.trim().split_once('=') else { continue };
            if key != name {
                continue;
            }
            let value = value.trim_matches('"');
            match found {
                Some(first) if first != value => {
                    tracing::warn!(cookie = name, "several different values for one gateway cookie; ignoring them");
                    return None;
                }
                _ => found = Some(value),
            }
        }
    }
    found
}

/// Names of the flow cookies the request carries.
pub fn flow_cookie_names<'a>(headers: &'a HeaderMap, spec: &'a CookieJarSpec) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(move |pair| {
            let (key, _) = pair.trim().split_once('=')?;
            key.starts_with(&spec.flow_prefix).then_some(key)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_cookies_are_host_prefixed_and_locked_down() {
        let spec = CookieJarSpec::new("_p", true);
        assert_eq!(spec.session_name(), "__Host-_p");
        let set = spec.set(spec.session_name(), "v", Duration::from_secs(60)).unwrap();
        let text = set.to_str().unwrap();
        for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=60"] {
            assert!(text.contains(attribute), "{text} lacks {attribute}");
        }
        assert!(!text.contains("Domain"));
    }

    #[test]
    fn http_cookies_have_no_prefix_or_secure() {
        let spec = CookieJarSpec::new("_p", false);
        let text = spec.clear("_p").unwrap().to_str().unwrap().to_owned();
        assert!(text.starts_with("_p=;"));
        assert!(!text.contains("Secure"));
        assert!(text.contains("Max-Age=0"));
        assert!(spec.is_ours("_p") && spec.is_ours(&spec.flow_name("abc")) && !spec.is_ours("_px"));
        assert!(spec.is_ours("_p_3") && !spec.is_ours("p_3"));
    }

    #[test]
    fn holding_only_the_session_means_the_proxy_would_remove_every_cookie_header() {
        let spec = CookieJarSpec::new("_p", false);
        let is_ours = |name: &str| spec.is_ours(name);
        // (Cookie headers, whether they hold the session's parts and nothing else)
        let cases: &[(&[&str], bool)] = &[
            (&["_p=abc"], true),
            (&["_p=abc; _p_1=def"], true),
            (&["_p=abc;; ; _p_1=def;"], true),
            (&["_p=abc", "_p_1=def"], true),
            (&["  _p=\"abc\"  "], true),
            (&["_p=abc; theme=dark"], false),
            (&["theme=dark; _p=abc"], false),
            (&["_p=abc", "theme=dark"], false),
            (&["_p=abc; junk"], false),
            (&["_p=abc; _p_flow_x=1"], false),
            (&["_p=abc; _p_99=1"], false),
            (&["_p=abc; _p_01=1"], false),
            (&["_p=abc; _p =1"], false),
            (&["_p=abc; =1"], false),
        ];
        for (values, only_session) in cases {
            let mut headers = HeaderMap::new();
            for value in *values {
                headers.append(header::COOKIE, HeaderValue::from_str(value).unwrap());
            }
            let read = spec.read_session(&headers).unwrap();
            assert_eq!(read.holds_only_session(), *only_session, "{values:?}");
            if read.holds_only_session() {
                crate::proxy::headers::remove_gateway_cookies(&mut headers, &is_ours);
                assert!(!headers.contains_key(header::COOKIE), "{values:?}: the proxy would have kept some");
            }
        }
    }

    #[test]
    fn an_upstream_cannot_set_gateway_cookies() {
        let spec = CookieJarSpec::new("_p", true);
        let mut headers = HeaderMap::new();
        headers.append(header::SET_COOKIE, HeaderValue::from_static("app=1; Path=/"));
        headers.append(header::SET_COOKIE, HeaderValue::from_static("__Host-_p=planted; Path=/; Secure"));
        headers.append(header::SET_COOKIE, HeaderValue::from_static("__Host-_p_flow_x=planted"));
        headers.append(header::SET_COOKIE, HeaderValue::from_static("other=2"));
        spec.drop_upstream_set_cookies(&mut headers);
        let left: Vec<&str> = headers.get_all(header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).collect();
        assert_eq!(left, ["app=1; Path=/", "other=2"]);
    }

    #[test]
    fn big_sessions_split_and_reassemble() {
        let spec = CookieJarSpec::new("_p", true);
        let sealed = "x".repeat(SESSION_PART_BYTES * 2 + 10);
        let set = spec.set_session(&sealed, Duration::from_secs(60), 5).unwrap();
        assert_eq!(set.len(), 5, "3 parts plus 2 stale parts cleared");
        let mut headers = HeaderMap::new();
        let pairs: Vec<String> =
            set.iter().take(3).map(|value| value.to_str().unwrap().split(';').next().unwrap().to_owned()).collect();
        headers.insert(header::COOKIE, HeaderValue::try_from(pairs.join("; ")).unwrap());
        let read = spec.read_session(&headers).unwrap();
        assert_eq!(read.part_count(), 3);
        assert_eq!(read.sealed(), sealed.as_bytes());
        assert!(
            spec.set_session(&"y".repeat(SESSION_PART_BYTES * MAX_SESSION_PARTS + 1), Duration::from_secs(1), 0)
                .is_none()
        );
    }

    #[test]
    fn shared_cookies_are_secure_prefixed_and_carry_the_domain_even_when_cleared() {
        let spec = CookieJarSpec::configured("_p", true, Some("example.com"));
        assert_eq!(spec.session_name(), "__Secure-_p");
        assert_eq!(spec.flow_name("abc"), "__Secure-_p_flow_abc");
        let set = spec.set(&spec.flow_name("abc"), "v", Duration::from_secs(60)).unwrap();
        let cleared = spec.clear(spec.session_name()).unwrap();
        for text in [set.to_str().unwrap(), cleared.to_str().unwrap()] {
            for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Domain=example.com"] {
                assert!(text.contains(attribute), "{text} lacks {attribute}");
            }
        }
        // A `__Host-` cookie left from host-only mode is cleared as it was set: without a Domain.
        let leftover = spec.clear("__Host-_p").unwrap();
        assert!(!leftover.to_str().unwrap().contains("Domain"), "{leftover:?}");
        let host_only = CookieJarSpec::configured("_p", true, None);
        assert_eq!(host_only.session_name(), "__Host-_p");
        assert!(!host_only.set("__Host-_p", "v", Duration::from_secs(1)).unwrap().to_str().unwrap().contains("Domain"));
    }

    #[test]
    fn either_prefix_is_ours_over_https_whichever_mode() {
        for spec in [CookieJarSpec::new("_p", true), CookieJarSpec::shared("_p", "example.com")] {
            for name in
                ["__Host-_p", "__Host-_p_1", "__Host-_p_flow_x", "__Secure-_p", "__Secure-_p_2", "__Secure-_p_flow_y"]
            {
                assert!(spec.is_ours(name), "{name}");
            }
            for name in ["_p", "__Secure-_px", "__Host-_px", "__secure-_p", "__Secure-", "app"] {
                assert!(!spec.is_ours(name), "{name}");
            }
            let mut headers = HeaderMap::new();
            headers.append(header::SET_COOKIE, HeaderValue::from_static("__Secure-_p=planted; Domain=example.com"));
            headers.append(header::SET_COOKIE, HeaderValue::from_static("__Host-_p_flow_x=planted"));
            headers.append(header::SET_COOKIE, HeaderValue::from_static("app=1"));
            spec.drop_upstream_set_cookies(&mut headers);
            let left: Vec<&str> = headers.get_all(header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).collect();
            assert_eq!(left, ["app=1"]);
        }
        assert!(!CookieJarSpec::new("_p", false).is_ours("__Secure-_p"), "plain http has no prefixes");
    }

    #[test]
    fn clearing_covers_the_session_under_both_prefixes_and_only_the_active_one_is_read() {
        let spec = CookieJarSpec::shared("_p", "example.com");
        let mut headers = HeaderMap::new();
        headers
            .insert(header::COOKIE, HeaderValue::from_static("__Host-_p=old; __Host-_p_1=old1; __Secure-_p_flow_s=f"));
        assert!(spec.read_session(&headers).is_none(), "a host-only leftover is not the shared session");
        let cleared: Vec<String> =
            spec.clear_session(&headers).iter().map(|value| value.to_str().unwrap().to_owned()).collect();
        let names: Vec<&str> = cleared.iter().map(|text| text.split('=').next().unwrap()).collect();
        assert_eq!(names, ["__Secure-_p", "__Host-_p", "__Host-_p_1"]);
        assert!(cleared[0].contains("Domain=example.com") && !cleared[1].contains("Domain"));
        let all = spec.clear_all(&headers);
        assert_eq!(all.len(), 4, "the flow cookie too: {all:?}");
    }

    #[test]
    fn duplicates_with_different_values_are_ambiguous() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; _p=x"));
        assert_eq!(single_cookie_value(&headers, "_p"), Some("x"));
        headers.append(header::COOKIE, HeaderValue::from_static("_p=y"));
        assert_eq!(single_cookie_value(&headers, "_p"), None);
        assert_eq!(single_cookie_value(&headers, "__host-_p"), None);
    }
}
