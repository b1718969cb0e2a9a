//! Request paths as authorization rules see them: one normal form, and a
//! refusal for spellings that different servers resolve differently.
//!
//! Browsers and HTTP clients remove dot segments before sending (RFC 3986
//! §5.2.4), so a path that still carries `.`/`..` (also as `%2e`), an encoded
//! slash or backslash, or a raw backslash is a trick or a bug: it is refused,
//! because a rule and the upstream could disagree about what it names. So is
//! a malformed escape (`%`, `%zz`), which some servers refuse and others keep.
//!
//! Percent-escapes are normalised as RFC 3986 §6.2.2 allows: an escaped
//! unreserved character (`%61`, `%7E`) is decoded, as upstream frameworks do
//! before routing; every other escape, `%25` included, stays encoded with
//! upper-case hex, so the upstream decodes it once to the bytes the rules saw
//! (`%252F` reaches it as `%252F` and becomes the text `%2F`, never a slash).
//! Empty segments (`//`) are collapsed and `;parameters` are dropped. A path
//! needing any of this is not canonical and never public; the gateway forwards
//! the normal form, so the upstream gets exactly the path that was authorised.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The normal form of a request path, for rule matching and forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath<'a> {
    /// `/a/b` form: no empty segments, no `;parameters`, only the escapes
    /// that must stay escaped (upper-case hex). Borrowed from the request when
    /// it was already in this form (nearly always).
    pub path: Cow<'a, str>,
    /// Whether the request path was already exactly this (public rules need it).
    pub canonical: bool,
}

/// The path cannot be given one meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ambiguous request path (dot segments, encoded or back slashes, malformed escapes)")]
pub struct AmbiguousPath;

/// Normalises `raw` (the path of the request target, without query).
pub fn normalise(raw: &str) -> Result<NormalPath<'_>, AmbiguousPath> {
    if !raw.starts_with('/') {
        // `*` (OPTIONS) or an absolute-form oddity: nothing a rule can name.
        return Err(AmbiguousPath);
    }
    if is_in_normal_form(raw.as_bytes())? {
        // Nothing to collapse, drop or decode: the normal form is `raw` itself,
        // and only its segments need checking (run on every request, so no copy).
        if raw.split('/').any(is_dot_segment) {
            return Err(AmbiguousPath);
        }
        return Ok(NormalPath { path: Cow::Borrowed(raw), canonical: true });
    }
    build_normal_form(raw)
}

/// Whether `raw` (starting with `/`) is its own normal form but for dot
/// segments: no `;parameters`, no empty segment but a trailing one, and only
/// escapes that stay as they are. Refuses a backslash or a refused or
/// malformed escape met before the first `;` or `//` (after it, the built
/// form decides, as it drops parameters).
fn is_in_normal_form(raw: &[u8]) -> Result<bool, AmbiguousPath> {
    let mut at = 0;
    while let Some(&byte) = raw.get(at) {
        match byte {
            b';' => return Ok(false),
            b'/' if raw.get(at + 1) == Some(&b'/') => return Ok(false),
            b'\\' => return Err(AmbiguousPath),
            b'%' => {
                let escape = raw.get(at..).unwrap_or_default();
                let decoded = escaped_byte(escape)?;
                if is_unreserved(decoded) || escape.get(1..3).is_some_and(|hex| hex.iter().any(u8::is_ascii_lowercase))
                {
                    return Ok(false);
                }
                at += 3;
                continue;
            }
            _ => {}
        }
        at += 1;
    }
    Ok(true)
}

/// The normal form built segment by segment: empty segments collapsed,
/// `;parameters` dropped, escapes normalised, a trailing slash kept.
fn build_normal_form(raw: &str) -> Result<NormalPath<'_>, AmbiguousPath> {
    let mut path = String::with_capacity(raw.len());
    for segment in raw.split('/').skip(1) {
        let name = segment.split(';').next().unwrap_or("");
        if name.is_empty() {
            continue;
        }
        path.push('/');
        let start = path.len();
        push_normalised(&mut path, name)?;
        if path.get(start..).is_some_and(is_dot_segment) {
            return Err(AmbiguousPath);
        }
    }
    if path.is_empty() || (raw.ends_with('/') && !path.ends_with('/')) {
        path.push('/');
    }
    let canonical = path == raw;
    Ok(NormalPath { path: Cow::Owned(path), canonical })
}

/// Appends the segment `name` with its escapes normalised: unreserved ones
/// decoded, the rest in upper-case hex; refuses what [`escaped_byte`] refuses
/// and a backslash.
fn push_normalised(out: &mut String, name: &str) -> Result<(), AmbiguousPath> {
    let mut rest = name;
    while let Some(at) = rest.find(['%', '\\']) {
        let (plain, escape) = rest.split_at_checked(at).ok_or(AmbiguousPath)?;
        out.push_str(plain);
        let byte = escaped_byte(escape.as_bytes())?;
        if is_unreserved(byte) {
            out.push(char::from(byte));
        } else {
            // Writing to a `String` cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
        rest = escape.get(3..).ok_or(AmbiguousPath)?;
    }
    out.push_str(rest);
    Ok(())
}

/// The byte `escape` (starting at a `%`) encodes; refused when malformed, or
/// when it is an encoded slash, backslash or NUL (or `escape` is a backslash).
fn escaped_byte(escape: &[u8]) -> Result<u8, AmbiguousPath> {
    let [b'%', high, low, ..] = *escape else { return Err(AmbiguousPath) };
    let digit = |hex: u8| char::from(hex).to_digit(16).and_then(|value| u8::try_from(value).ok());
    let byte = digit(high).zip(digit(low)).map(|(high, low)| (high << 4) | low).ok_or(AmbiguousPath)?;
    if matches!(byte, b'/' | b'\\' | 0) {
        return Err(AmbiguousPath);
    }
    Ok(byte)
}

/// RFC 3986 §2.3 `unreserved`: ALPHA / DIGIT / `-` / `.` / `_` / `~`.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Whether a (decoded) segment is `.` or `..`.
fn is_dot_segment(segment: &str) -> bool {
    segment == "." || segment == ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_canonical() {
        for raw in ["/", "/a", "/a/b/", "/static/app.js", "/a%20b", "/caf%C3%A9", "/a%25", "/a/%252F", "/%3B"] {
            assert_eq!(normalise(raw).unwrap(), NormalPath { path: raw.into(), canonical: true }, "{raw}");
        }
    }

    #[test]
    fn dots_that_are_not_a_whole_segment_are_names() {
        for raw in ["/a/...", "/a/.x", "/a/x.", "/v1.2/"] {
            assert_eq!(normalise(raw).unwrap(), NormalPath { path: raw.into(), canonical: true }, "{raw}");
        }
        for (raw, normal) in [("/a/%2e%2e%2e", "/a/..."), ("/a/%2ex", "/a/.x"), ("/a/x%2E", "/a/x.")] {
            assert_eq!(normalise(raw).unwrap(), NormalPath { path: normal.into(), canonical: false }, "{raw}");
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_the_rest_upper_cased() {
        for (raw, normal) in [
            ("/%61dmin/panel", "/admin/panel"),
            ("/adm%69n/x", "/admin/x"),
            ("/%41%5a%30%2D%5F%7E%7e", "/AZ0-_~~"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a%3b", "/a%3B"),
            ("/%2561dmin", "/%2561dmin"),
            ("/a%25%32%46", "/a%252F"),
        ] {
            let canonical = raw == normal;
            assert_eq!(normalise(raw).unwrap(), NormalPath { path: normal.into(), canonical }, "{raw}");
        }
    }

    #[test]
    fn slashes_and_parameters_normalise_but_are_not_canonical() {
        let found = normalise("//admin//x;jsessionid=1/").unwrap();
        assert_eq!(found.path, "/admin/x/");
        assert!(!found.canonical);
        assert_eq!(normalise("/public;x").unwrap().path, "/public");
        assert_eq!(normalise("/public;%zz/%61").unwrap().path, "/public/a");
    }

    #[test]
    fn the_borrowed_normal_form_is_the_built_one() {
        // Every path of up to four segments from pieces that matter to either
        // path: the shortcut must answer exactly as building the form does.
        let pieces = [
            "", "a", ".", "..", "%2e", "%2E.", "a;b", ";x", "x.y", "%2F", "b%5c", "\\", "%00", "..;", "%61", "%7E",
            "%7e", "%c3", "%C3", "%25", "%252F", "%zz", "%", "a;%",
        ];
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
                        // The normal form is a fixed point: normalising it again changes nothing.
                        assert_eq!(normalise(&found.path).unwrap().path, found.path, "{raw}");
                    }
                    checked += 1;
                    longer.push(raw);
                }
            }
            paths = longer;
        }
        assert!(checked > 300_000, "{checked}");
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
            "/a/%2",
            "/a/%",
            "/a/%zz",
            "/a/%%32%46",
            "/a/%2%46",
            "*",
            "",
        ] {
            assert_eq!(normalise(raw), Err(AmbiguousPath), "{raw}");
        }
    }
}
