//! The identity headers the gateway injects for an authenticated user.
//!
//! They are validated and built once per session (at login or refresh) so that
//! forwarding a request only clones ready `HeaderValue`s (cheap `Bytes` clones).

use std::fmt;

use http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, InvalidHeaderValue};

use crate::config::IdentitySelection;

/// `X-Forwarded-User`: the user's stable identifier (the `sub` claim or similar).
pub const X_FORWARDED_USER: HeaderName = HeaderName::from_static("x-forwarded-user");
/// `X-Forwarded-Email`: the user's email, when the provider has verified it.
pub const X_FORWARDED_EMAIL: HeaderName = HeaderName::from_static("x-forwarded-email");
/// `X-Forwarded-Preferred-Username`: the user's display login name, when known.
pub const X_FORWARDED_PREFERRED_USERNAME: HeaderName = HeaderName::from_static("x-forwarded-preferred-username");
/// `X-Forwarded-Groups`: the user's groups, comma-joined.
pub const X_FORWARDED_GROUPS: HeaderName = HeaderName::from_static("x-forwarded-groups");

/// Headers injected for an authenticated user, built once per session (at login/refresh) so the hot path only clones.
///
/// `Debug` shows which headers are present but never the bearer token.
#[derive(Clone)]
pub struct IdentityHeaders {
    user: Option<HeaderValue>,
    email: Option<HeaderValue>,
    preferred_username: Option<HeaderValue>,
    groups: Option<HeaderValue>,
    /// `Bearer <token>`, marked sensitive so HPACK never indexes it.
    authorization: Option<HeaderValue>,
}

impl IdentityHeaders {
    /// Validates every value as a header value; fails if any contains bytes a header cannot carry.
    ///
    /// `verified_email` is an address the provider has verified (`email_verified:
    /// true`), or `None`: the upstream takes `X-Forwarded-Email` as vouched for.
    /// Groups are comma-joined; an empty group list sends no `X-Forwarded-Groups`.
    pub fn new(
        user: &str,
        verified_email: Option<&str>,
        preferred_username: Option<&str>,
        groups: &[String],
        access_token: Option<&str>,
    ) -> Result<Self, InvalidHeaderValue> {
        // One buffer holds every value; the headers are slices of it, so a
        // cached identity is two allocations, not one per header (and no more
        // when the headers are cloned for each request).
        let mut buffer = Vec::with_capacity(
            user.len()
                + verified_email.map_or(0, str::len)
                + preferred_username.map_or(0, str::len)
                + groups.iter().map(|group| group.len() + 1).sum::<usize>(),
        );
        let mut push = |text: &str| {
            let start = buffer.len();
            buffer.extend_from_slice(text.as_bytes());
            start..buffer.len()
        };
        let user_range = push(user);
        let email_range = verified_email.map(&mut push);
        let username_range = preferred_username.map(&mut push);
        let groups_range = (!groups.is_empty()).then(|| {
            let start = buffer.len();
            for (index, group) in groups.iter().enumerate() {
                if index > 0 {
                    buffer.push(b',');
                }
                buffer.extend_from_slice(group.as_bytes());
            }
            start..buffer.len()
        });
        let shared = bytes::Bytes::from(buffer);
        let value = |range: std::ops::Range<usize>| HeaderValue::from_maybe_shared(shared.slice(range));
        let authorization = access_token
            .map(|token| {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}"))?;
                value.set_sensitive(true);
                Ok::<_, InvalidHeaderValue>(value)
            })
            .transpose()?;
        Ok(Self {
            user: Some(value(user_range)?),
            email: email_range.map(value).transpose()?,
            preferred_username: username_range.map(value).transpose()?,
            groups: groups_range.map(value).transpose()?,
            authorization,
        })
    }

    /// Bytes held by the header values (what a cache entry costs beyond its fixed size).
    pub fn value_bytes(&self) -> usize {
        [&self.user, &self.email, &self.preferred_username, &self.groups, &self.authorization]
            .into_iter()
            .flatten()
            .map(HeaderValue::len)
            .sum()
    }

    /// Whether an `Authorization: Bearer` header will be injected (so the client's must go).
    pub fn has_token(&self) -> bool {
        self.authorization.is_some()
    }

    /// `Bearer <token>` as a sensitive header value; `None` if the token cannot be one.
    pub fn bearer_value(token: &str) -> Option<HeaderValue> {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// The same identity sending `authorization` (a `Bearer …` value) instead, or no token at all.
    pub fn with_authorization(&self, authorization: Option<HeaderValue>) -> Self {
        Self { authorization, ..self.clone() }
    }

    /// The same identity with only the selected identity headers (the token is kept).
    pub fn select(&self, selection: IdentitySelection) -> Self {
        let keep = |wanted: bool, value: &Option<HeaderValue>| if wanted { value.clone() } else { None };
        Self {
            user: keep(selection.user, &self.user),
            email: keep(selection.email, &self.email),
            preferred_username: keep(selection.preferred_username, &self.preferred_username),
            groups: keep(selection.groups, &self.groups),
            authorization: self.authorization.clone(),
        }
    }

    /// The bearer token alone (without `Bearer `), for `X-Auth-Request-Access-Token`.
    pub fn access_token(&self) -> Option<HeaderValue> {
        let value = self.authorization.as_ref()?;
        let mut token = HeaderValue::from_bytes(value.as_bytes().get(b"Bearer ".len()..)?).ok()?;
        token.set_sensitive(true);
        Some(token)
    }

    /// Inserts the forward-auth answer headers (`X-Auth-Request-User`, `-Email`,
    /// `-Groups`, `-Preferred-Username`, and `-Access-Token` when `with_token`).
    pub fn apply_auth_request(&self, headers: &mut HeaderMap, with_token: bool) {
        let optional = [
            (HeaderName::from_static("x-auth-request-user"), &self.user),
            (HeaderName::from_static("x-auth-request-email"), &self.email),
            (HeaderName::from_static("x-auth-request-preferred-username"), &self.preferred_username),
            (HeaderName::from_static("x-auth-request-groups"), &self.groups),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                headers.insert(name, value.clone());
            }
        }
        if with_token && let Some(token) = self.access_token() {
            headers.insert(HeaderName::from_static("x-auth-request-access-token"), token);
        }
    }

    /// Each identity header [`IdentityHeaders::apply`] sets, with its value if any.
    fn named(&self) -> [(HeaderName, &Option<HeaderValue>); 5] {
        [
            (X_FORWARDED_USER, &self.user),
            (X_FORWARDED_EMAIL, &self.email),
            (X_FORWARDED_PREFERRED_USERNAME, &self.preferred_username),
            (X_FORWARDED_GROUPS, &self.groups),
            (AUTHORIZATION, &self.authorization),
        ]
    }

    /// How many headers [`IdentityHeaders::apply`] inserts.
    pub fn count(&self) -> usize {
        self.named().iter().filter(|(_, value)| value.is_some()).count()
    }

    /// Inserts (replacing) the identity headers into an outgoing request's headers.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in self.named() {
            if let Some(value) = value {
                headers.insert(name, value.clone());
            }
        }
    }
}

impl fmt::Debug for IdentityHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityHeaders")
            .field("user", &self.user)
            .field("email", &self.email)
            .field("preferred_username", &self.preferred_username)
            .field("groups", &self.groups)
            .field("authorization", &self.authorization.as_ref().map(|_| "Bearer <redacted>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn debug_redacts_token() {
        let identity =
            IdentityHeaders::new("u1", Some("u@example.test"), None, &["a".into(), "b".into()], Some("tok-SECRET-123"))
                .unwrap();
        let shown = format!("{identity:?}");
        assert!(!shown.contains("tok-SECRET-123"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn apply_inserts_all_present_headers() {
        let identity =
            IdentityHeaders::new("u1", Some("u@example.test"), Some("jdoe"), &["a".into(), "b c".into()], Some("tok"))
                .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_USER, HeaderValue::from_static("old"));
        identity.apply(&mut headers);
        assert_eq!(identity.count(), 5);
        assert_eq!(headers.len(), 5, "the old X-Forwarded-User was replaced");
        assert_eq!(headers.get(X_FORWARDED_USER).unwrap(), "u1");
        assert_eq!(headers.get(X_FORWARDED_EMAIL).unwrap(), "u@example.test");
        assert_eq!(headers.get(X_FORWARDED_PREFERRED_USERNAME).unwrap(), "jdoe");
        assert_eq!(headers.get(X_FORWARDED_GROUPS).unwrap(), "a,b c");
        let authorization = headers.get(AUTHORIZATION).unwrap();
        assert_eq!(authorization, "Bearer tok");
        assert!(authorization.is_sensitive());
        assert_eq!(headers.len(), 5);
    }

    #[test]
    fn minimal_identity_has_no_optional_headers() {
        let identity = IdentityHeaders::new("u1", None, None, &[], None).unwrap();
        assert!(!identity.has_token());
        let mut headers = HeaderMap::new();
        identity.apply(&mut headers);
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn invalid_values_are_rejected() {
        assert!(IdentityHeaders::new("u\n1", None, None, &[], None).is_err());
        assert!(IdentityHeaders::new("u", None, None, &[], Some("t\r\nX: y")).is_err());
    }
}
