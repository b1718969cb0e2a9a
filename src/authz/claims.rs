//! Reading authorization facts out of token claims: values at a dotted claim
//! path (Keycloak's `realm_access.roles`), and email addresses checked the
//! strict way (exactly one `@`, domains compared on label boundaries).

use serde_json::Value;

/// The strings at `path` (dot-separated keys) in `claims`: a string gives one
/// value, an array gives its string members; anything else gives none.
pub fn strings_at(claims: &Value, path: &str) -> Vec<String> {
    let mut node = claims;
    for key in path.split('.') {
        match node.get(key) {
            Some(next) => node = next,
            None => return Vec::new(),
        }
    }
    match node {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// The claims (payload) of a compact JWS, without checking anything: only for
/// tokens already verified, or to pick the verifier by `iss`.
pub fn unverified_payload(token: &str) -> Option<Value> {
    use base64::Engine;
    let mut parts = token.split('.');
    let (_header, payload) = (parts.next()?, parts.next()?);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The lowercased domain of an address with exactly one `@` and non-empty
/// local part and domain; `None` for anything else.
pub fn email_domain(email: &str) -> Option<&str> {
    let (local, domain) = email.split_once('@')?;
    if local.is_empty() || domain.is_empty() || domain.contains('@') || domain.starts_with('.') || domain.ends_with('.')
    {
        return None;
    }
    Some(domain)
}

/// Whether `domain` is `allowed` or a subdomain of it when `allowed` starts
/// with a dot (`.example.com`); ASCII case-insensitive, label boundaries only.
pub fn domain_allowed(domain: &str, allowed: &str) -> bool {
    match allowed.strip_prefix('.') {
        Some(parent) => {
            domain.len() > parent.len() + 1
                && domain.get(domain.len() - parent.len()..).is_some_and(|tail| tail.eq_ignore_ascii_case(parent))
                && domain.as_bytes().get(domain.len() - parent.len() - 1) == Some(&b'.')
        }
        None => domain.eq_ignore_ascii_case(allowed),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn dotted_paths_reach_nested_claims() {
        let claims = json!({"realm_access": {"roles": ["admin", 3, "user"]}, "groups": "one", "n": 1});
        assert_eq!(strings_at(&claims, "realm_access.roles"), ["admin", "user"]);
        assert_eq!(strings_at(&claims, "groups"), ["one"]);
        assert!(strings_at(&claims, "n").is_empty());
        assert!(strings_at(&claims, "realm_access.missing").is_empty());
    }

    #[test]
    fn emails_need_exactly_one_at() {
        assert_eq!(email_domain("a@example.com"), Some("example.com"));
        assert_eq!(email_domain("a@evil.com@example.com"), None);
        assert_eq!(email_domain("@example.com"), None);
        assert_eq!(email_domain("a@"), None);
        assert_eq!(email_domain("plain"), None);
    }

    #[test]
    fn domains_match_on_label_boundaries() {
        assert!(domain_allowed("Example.COM", "example.com"));
        assert!(!domain_allowed("evilexample.com", "example.com"));
        assert!(!domain_allowed("example.com.evil.net", "example.com"));
        assert!(!domain_allowed("sub.example.com", "example.com"));
        assert!(domain_allowed("sub.Example.com", ".example.com"));
        assert!(!domain_allowed("example.com", ".example.com"));
        assert!(!domain_allowed("evilexample.com", ".example.com"));
    }

    #[test]
    fn payloads_decode_without_verification() {
        let token = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2kifQ.";
        assert_eq!(unverified_payload(token).unwrap()["iss"], "https://i");
        assert!(unverified_payload("garbage").is_none());
    }
}
