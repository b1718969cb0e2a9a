//! Cookie names, attributes and parsing for the gateway's own cookies.
//!
//! Over https every cookie gets `Secure` and the `__Host-` prefix (host-only,
//! `Path=/`, cannot be set by a sibling subdomain); always `HttpOnly` and
//! `SameSite=Lax`, so the login redirect back from the provider carries them.

use std::time::Duration;

use cookie::{Cookie, SameSite};
use http::{HeaderMap, HeaderValue, header};

/// Names and attributes of the gateway's cookies.
#[derive(Clone, Debug)]
pub struct CookieJarSpec {
    session_name: String,
    flow_prefix: String,
    secure: bool,
}

impl CookieJarSpec {
    /// `base_name` as configured (`session.cookie_name`); `secure` when the
    /// public URL is https.
    pub fn new(base_name: &str, secure: bool) -> Self {
        let prefix = if secure { "__Host-" } else { "" };
        Self { session_name: format!("{prefix}{base_name}"), flow_prefix: format!("{prefix}{base_name}_flow_"), secure }
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

    /// Whether a cookie belongs to the gateway (never forwarded upstream).
    pub fn is_ours(&self, name: &str) -> bool {
        name == self.session_name || name.starts_with(&self.flow_prefix)
    }

    /// `Set-Cookie` for a new value, valid for `max_age`.
    pub fn set(&self, name: &str, value: &str, max_age: Duration) -> Option<HeaderValue> {
        let max_age = cookie::time::Duration::seconds(i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX));
        let cookie = self.base(name, value).max_age(max_age).build();
        HeaderValue::try_from(cookie.to_string()).ok()
    }

    /// `Set-Cookie` that deletes a cookie, with the attributes it was set with.
    pub fn clear(&self, name: &str) -> Option<HeaderValue> {
        let cookie = self
            .base(name, "")
            .max_age(cookie::time::Duration::ZERO)
            .expires(cookie::time::OffsetDateTime::UNIX_EPOCH)
            .build();
        HeaderValue::try_from(cookie.to_string()).ok()
    }

    fn base<'a>(&self, name: &str, value: &str) -> cookie::CookieBuilder<'a> {
        Cookie::build((name.to_owned(), value.to_owned()))
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
    }
}

/// Every value of the cookie `name` in the request (there may be several:
/// HTTP/2 splits `Cookie`, and attackers send duplicates).
pub fn request_cookie_values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(move |pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value.trim_matches('"'))
        })
}

/// The single value of cookie `name`; `None` when absent or ambiguous
/// (several different values: a tossed cookie must not pick the session).
pub fn single_cookie_value<'a>(headers: &'a HeaderMap, name: &'a str) -> Option<&'a str> {
    let mut values = request_cookie_values(headers, name);
    let first = values.next()?;
    if values.any(|other| other != first) {
        tracing::warn!(cookie = name, "several different values for one gateway cookie; ignoring them");
        return None;
    }
    Some(first)
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
    #![allow(clippy::unwrap_used)]
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
