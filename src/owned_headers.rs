//! The request headers only the gateway may set: identity, forwarding and
//! override headers an upstream would believe. The proxy strips every client-sent
//! one; configuration refuses them in `[[upstreams]] set_headers`.

/// Headers only the gateway may set; lowercase, `-` also matching `_`.
///
/// The forwarding headers are here too because some upstream stacks (CGI-style
/// environments) fold `X_Forwarded_For` and `X-Forwarded-For` into one variable.
/// So are the headers frameworks read as the client's address or as the real
/// target or method (`X-Real-IP`, `X-Original-URL`, `X-HTTP-Method-Override`...):
/// a client could otherwise steer an upstream around the gateway's decision.
const SPOOFABLE: [&[u8]; 19] = [
    b"x-forwarded-user",
    b"x-forwarded-email",
    b"x-forwarded-groups",
    b"x-forwarded-preferred-username",
    b"x-forwarded-access-token",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-remote-user",
    b"remote-user",
    b"forwarded",
    b"x-real-ip",
    b"true-client-ip",
    b"x-client-ip",
    b"x-original-url",
    b"x-rewrite-url",
    b"x-http-method-override",
    b"x-http-method",
    b"x-method-override",
];

/// Every header starting with this (with `-` also matching `_`) is gateway-owned.
const SPOOFABLE_PREFIX: &[u8] = b"x-auth-request-";

/// Whether `name` is a gateway-owned identity header in any case/underscore variant.
pub fn is_spoofable(name: &[u8]) -> bool {
    // Cheap first-byte filter: every listed name starts with x, r, f or t.
    match name.first().map(u8::to_ascii_lowercase) {
        Some(b'x' | b'r' | b'f' | b't') => {}
        _ => return false,
    }
    SPOOFABLE.iter().any(|pattern| name.len() == pattern.len() && same_name_prefix(name, pattern))
        || (name.len() > SPOOFABLE_PREFIX.len() && same_name_prefix(name, SPOOFABLE_PREFIX))
}

/// Whether `name` starts with the lowercase `pattern`, ignoring case and `_`/`-`.
fn same_name_prefix(name: &[u8], pattern: &[u8]) -> bool {
    name.len() >= pattern.len()
        && name.iter().zip(pattern).all(|(&n, &p)| {
            let n = n.to_ascii_lowercase();
            n == p || (n == b'_' && p == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoofable_names_match_in_case_and_underscore_variants() {
        for name in [
            "X-Forwarded-User",
            "x_forwarded_user",
            "X-FORWARDED_EMAIL",
            "x-forwarded-groups",
            "X_Forwarded_Preferred_Username",
            "x-forwarded-access-token",
            "X-Auth-Request-User",
            "X-AUTH_REQUEST_EMAIL",
            "x_auth_request_access_token",
            "X-Remote-User",
            "remote_user",
            "Remote-User",
            "Forwarded",
            "x_forwarded_for",
            "X-Real-IP",
            "True-Client-IP",
            "x_original_url",
            "X-Rewrite-URL",
            "X-HTTP-Method-Override",
        ] {
            assert!(is_spoofable(name.as_bytes()), "{name} must be stripped");
        }
        for name in [
            "x-forwarded-prefix",
            "x-auth-request-",
            "x-forwarded-users",
            "accept",
            "x-request-id",
            "forwarded-for",
            "te",
        ] {
            assert!(!is_spoofable(name.as_bytes()), "{name} must pass");
        }
    }
}
