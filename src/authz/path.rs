//! Request paths as authorization rules see them: one normal form, and a
//! refusal for spellings that different servers resolve differently.
//!
//! Browsers and HTTP clients remove dot segments before sending (RFC 3986
//! §5.2.4), so a path that still carries `.`/`..` (also as `%2e`), an encoded
//! slash or backslash, or a raw backslash is a trick or a bug: it is refused,
//! because a rule and the upstream could disagree about what it names.
//! Empty segments (`//`) are collapsed and `;parameters` are dropped for
//! matching; a path needing either is not canonical and never public.

use std::borrow::Cow;

/// The normal form of a request path, for rule matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath<'a> {
    /// `/a/b` form: no empty segments, no `;parameters`. Borrowed from the
    /// request when it was already in this form (nearly always).
    pub path: Cow<'a, str>,
    /// Whether the request path was already exactly this (public rules need it).
    pub canonical: bool,
}

/// The path cannot be given one meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ambiguous request path (dot segments, encoded or back slashes)")]
pub struct AmbiguousPath;

/// Normalises `raw` (the path of the request target, without query).
pub fn normalise(raw: &str) -> Result<NormalPath<'_>, AmbiguousPath> {
    if !raw.starts_with('/') {
        // `*` (OPTIONS) or an absolute-form oddity: nothing a rule can name.
        return Err(AmbiguousPath);
    }
    if is_in_normal_form(raw) {
        // Nothing to collapse or drop: the normal form is `raw` itself, and
        // only its segments need checking (run on every request, so no copy).
        if raw.split('/').any(|segment| is_ambiguous_segment(segment.as_bytes())) {
            return Err(AmbiguousPath);
        }
        return Ok(NormalPath { path: Cow::Borrowed(raw), canonical: true });
    }
    build_normal_form(raw)
}

/// Whether `raw` (starting with `/`) has no `;parameters` and no empty
/// segment but a trailing one: then its normal form is itself.
fn is_in_normal_form(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    !bytes.contains(&b';') && !bytes.windows(2).any(|pair| pair == b"//")
}

/// The normal form built segment by segment: empty segments collapsed,
/// `;parameters` dropped, a trailing slash kept.
fn build_normal_form(raw: &str) -> Result<NormalPath<'_>, AmbiguousPath> {
    let mut path = String::with_capacity(raw.len());
    for segment in raw.split('/').skip(1) {
        let name = segment.split(';').next().unwrap_or("");
        if name.is_empty() {
            continue;
        }
        if is_ambiguous_segment(name.as_bytes()) {
            return Err(AmbiguousPath);
        }
        path.push('/');
        path.push_str(name);
    }
    if path.is_empty() || (raw.ends_with('/') && !path.ends_with('/')) {
        path.push('/');
    }
    let canonical = path == raw;
    Ok(NormalPath { path: Cow::Owned(path), canonical })
}

/// Whether a segment (without its `;parameters`) is `.` or `..`, also spelt
/// with `%2e`, or holds a backslash or an encoded slash, backslash or NUL.
/// Checked in place: this runs on every request.
fn is_ambiguous_segment(name: &[u8]) -> bool {
    let encodes = |rest: &[u8], hex: &[u8; 2]| rest.get(1..3).is_some_and(|digits| digits.eq_ignore_ascii_case(hex));
    let mut dots = 0;
    let mut only_dots = true;
    let mut at = 0;
    while let Some(rest) = name.get(at..).filter(|rest| !rest.is_empty()) {
        match rest {
            [b'\\', ..] => return true,
            [b'%', ..] if encodes(rest, b"2f") || encodes(rest, b"5c") || encodes(rest, b"00") => return true,
            [b'%', ..] if encodes(rest, b"2e") => {
                dots += 1;
                at += 3;
                continue;
            }
            [b'.', ..] => dots += 1,
            _ => only_dots = false,
        }
        at += 1;
    }
    only_dots && (dots == 1 || dots == 2)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn plain_paths_are_canonical() {
        for raw in ["/", "/a", "/a/b/", "/static/app.js", "/a%20b"] {
            assert_eq!(normalise(raw).unwrap(), NormalPath { path: raw.into(), canonical: true }, "{raw}");
        }
    }

    #[test]
    fn dots_that_are_not_a_whole_segment_are_names() {
        for raw in ["/a/...", "/a/.x", "/a/x.", "/a/%2e%2e%2e", "/a/%2ex", "/v1.2/", "/a/%25", "/a/%2", "/a/%"] {
            assert_eq!(normalise(raw).unwrap(), NormalPath { path: raw.into(), canonical: true }, "{raw}");
        }
    }

    #[test]
    fn slashes_and_parameters_normalise_but_are_not_canonical() {
        let found = normalise("//admin//x;jsessionid=1/").unwrap();
        assert_eq!(found.path, "/admin/x/");
        assert!(!found.canonical);
        assert_eq!(normalise("/public;x").unwrap().path, "/public");
    }

    #[test]
    fn the_borrowed_normal_form_is_the_built_one() {
        // Every path of up to four segments from pieces that matter to either
        // path: the shortcut must answer exactly as building the form does.
        let pieces = ["", "a", ".", "..", "%2e", "%2E.", "a;b", ";x", "x.y", "%2F", "b%5c", "\\", "%00", "..;"];
        let mut checked = 0;
        let mut paths = vec![String::new()];
        for _ in 0..4 {
            let mut longer = Vec::new();
            for path in &paths {
                for piece in pieces {
                    let raw = format!("{path}/{piece}");
                    let shortcut = normalise(&raw);
                    let built = build_normal_form(&raw);
                    assert_eq!(shortcut, built, "{raw}");
                    if let Ok(found) = &shortcut {
                        assert_eq!(found.canonical, found.path == raw, "{raw}");
                    }
                    checked += 1;
                    longer.push(raw);
                }
            }
            paths = longer;
        }
        assert!(checked > 40_000, "{checked}");
    }

    #[test]
    fn tricks_are_refused() {
        for raw in [
            "/public/../admin",
            "/public/%2e%2e/admin",
            "/public/%2E%2e/admin",
            "/public/.%2e/admin",
            "/public/..;/admin",
            "/public/./x",
            "/public%2f..%2fadmin",
            "/public%2Fadmin",
            "/public\\..\\admin",
            "/public%5cadmin",
            "/a%00",
            "/a/%2E",
            "/a/.%2E/b",
            "/a/x%5C",
            "/a/x%2F",
            "*",
            "",
        ] {
            assert_eq!(normalise(raw), Err(AmbiguousPath), "{raw}");
        }
    }
}
