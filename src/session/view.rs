//! A borrowed reading of a session cookie's JSON for the authenticated hot
//! path: the same format as [`SessionData`](super::data::SessionData), but
//! token strings are borrowed from the opened cookie or only noted as present,
//! so a request that needs neither a refresh nor a re-seal copies no token.

use std::borrow::Cow;

use serde::de::Visitor;
use serde::{Deserialize, Deserializer};

use crate::authz::Principal;
use crate::clock::UnixSeconds;

/// The session payload as the hot path reads it, borrowing from the opened
/// cookie's JSON.
///
/// It accepts every payload [`SessionData`](super::data::SessionData) accepts
/// and reads the same values from it: the same fields are required and typed
/// alike, optional fields get the same defaults (`null` is absent), unknown
/// fields are ignored and duplicate fields are refused. The strings it does
/// not read (`refresh_token`) are [`Unread`] and the ID token is an
/// [`UncheckedStr`]: their quotes and escapes are checked, their text is not
/// (UTF-8, raw control characters), which is where the time goes for kilobyte
/// tokens; the ID token's UTF-8 is checked when it is asked for. Only a
/// payload sealed with the gateway's key is ever parsed, and those are written
/// by `serde_json` from a `SessionData`, so that text is always valid. Whatever
/// needs more (a refresh, a re-seal, building a cache entry) parses the full
/// `SessionData` from the same bytes.
#[derive(Deserialize)]
pub struct SessionView<'a> {
    /// Format version; other versions are refused (login again).
    pub v: u8,
    /// Random session id: the token-cache key and the unit of revocation.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// The provider's id; absent: `default`.
    #[serde(default, borrow)]
    pub provider: Option<BorrowedStr<'a>>,
    #[serde(borrow)]
    pub iss: Cow<'a, str>,
    /// Owned: it becomes the principal's subject.
    pub sub: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<bool>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub preferred_username: Option<String>,
    /// Owned: they become the principal's groups.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The provider's session id (`sid`), for back-channel logout.
    #[serde(default, borrow)]
    pub sid: Option<BorrowedStr<'a>>,
    pub created_at: UnixSeconds,
    pub last_seen_at: UnixSeconds,
    pub expires_at: UnixSeconds,
    #[serde(borrow)]
    pub access_token: Cow<'a, str>,
    pub access_expires_at: UnixSeconds,
    #[serde(default)]
    pub access_issued_at: UnixSeconds,
    /// Whether a refresh token is present (`null` counts as absent, as for `SessionData`).
    #[serde(default)]
    pub refresh_token: Option<Unread>,
    /// The ID token, if present (`null` counts as absent, as for `SessionData`).
    #[serde(default, borrow)]
    pub id_token: Option<UncheckedStr<'a>>,
}

/// A JSON string borrowed from the input when it has no escapes, copied otherwise.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct BorrowedStr<'a>(#[serde(borrow)] pub Cow<'a, str>);

/// A JSON string that is skipped, not read: found by its closing quote
/// (`serde_json` searches for it with `memchr` when it need not validate) with
/// its escapes checked, and nothing copied. Any other JSON type is refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unread;

impl<'de> Deserialize<'de> for Unread {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `bytes`, not `str`: serde_json then does not check the text's UTF-8 and control characters.
        deserializer.deserialize_bytes(UnreadVisitor)
    }
}

struct UnreadVisitor;

impl Visitor<'_> for UnreadVisitor {
    type Value = Unread;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<Unread, E> {
        Ok(Unread)
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Unread, E> {
        Ok(Unread)
    }
}

/// A JSON string kept as its bytes (escapes resolved, borrowed when it has
/// none), found as [`Unread`] finds it; its UTF-8 is checked only by
/// [`UncheckedStr::to_str`]. Debug shows only its length: it holds a token.
#[derive(Clone, PartialEq, Eq)]
pub struct UncheckedStr<'a>(Cow<'a, [u8]>);

impl UncheckedStr<'_> {
    /// The text; `None` if it is not UTF-8 (the full parse refuses such a payload).
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl std::fmt::Debug for UncheckedStr<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UncheckedStr({} bytes)", self.0.len())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for UncheckedStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_bytes(UncheckedStrVisitor)
    }
}

struct UncheckedStrVisitor;

impl<'de> Visitor<'de> for UncheckedStrVisitor {
    type Value = UncheckedStr<'de>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_borrowed_bytes<E: serde::de::Error>(self, bytes: &'de [u8]) -> Result<Self::Value, E> {
        Ok(UncheckedStr(Cow::Borrowed(bytes)))
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
        Ok(UncheckedStr(Cow::Owned(bytes.to_vec())))
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(UncheckedStr(Cow::Borrowed(text.as_bytes())))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(UncheckedStr(Cow::Owned(text.as_bytes().to_vec())))
    }
}

/// The ID token of a session is not UTF-8: the payload is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotUtf8;

impl<'a> SessionView<'a> {
    /// Reads `json` as a session payload; `Err` whenever
    /// `serde_json::from_slice::<SessionData>` would refuse it for its JSON
    /// syntax, a missing required field or a mistyped field it reads.
    pub fn parse(json: &'a [u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(json)
    }

    /// The provider's session id, if any.
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_ref().map(|sid| &*sid.0)
    }

    /// Whether the session holds a refresh token.
    pub fn has_refresh_token(&self) -> bool {
        self.refresh_token.is_some()
    }

    /// Whether the session holds an ID token.
    pub fn has_id_token(&self) -> bool {
        self.id_token.is_some()
    }

    /// The ID token, copied: `Ok(None)` without one, `Err` if it is not UTF-8
    /// (a payload the full parse refuses).
    pub fn id_token(&self) -> Result<Option<String>, NotUtf8> {
        match &self.id_token {
            None => Ok(None),
            Some(token) => token.to_str().map(|token| Some(token.to_owned())).ok_or(NotUtf8),
        }
    }

    /// The principal of the session and its access token, taking the claims
    /// out of the view (the same principal `SessionData::into_principal` makes).
    pub fn into_principal(self) -> (Principal, Cow<'a, str>) {
        let principal = Principal {
            subject: self.sub,
            email: self.email,
            email_verified: self.email_verified.unwrap_or(false),
            name: self.name,
            preferred_username: self.preferred_username,
            groups: self.roles,
        };
        (principal, self.access_token)
    }
}

impl std::fmt::Debug for SessionView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionView")
            .field("sub", &self.sub)
            .field("expires_at", &self.expires_at)
            .field("access_expires_at", &self.access_expires_at)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::data::{SESSION_FORMAT, SessionData};

    fn full_session() -> SessionData {
        SessionData {
            v: SESSION_FORMAT,
            id: "session-id-1".to_owned(),
            provider: "default".to_owned(),
            iss: "https://idp.example/realms/a".to_owned(),
            sub: "alice".to_owned(),
            email: Some("alice@example.com".to_owned()),
            email_verified: Some(true),
            name: Some("Alice \"Al\" Liddell, caf\u{e9} \\ \u{1f600}\n".to_owned()),
            preferred_username: Some("al\u{e9}".to_owned()),
            roles: vec!["admin".to_owned(), "r\u{e9}le".to_owned()],
            sid: Some("provider-sid".to_owned()),
            created_at: 1_700_000_000,
            last_seen_at: 1_700_000_100,
            expires_at: 1_700_086_400,
            access_token: "eyJhbGciOi.access.token".to_owned(),
            access_expires_at: 1_700_000_300,
            access_issued_at: 0,
            refresh_token: Some("refresh-token".to_owned()),
            id_token: Some("eyJhbGciOi.id.token".to_owned()),
        }
    }

    fn minimal_session() -> SessionData {
        SessionData {
            email: None,
            email_verified: None,
            name: None,
            preferred_username: None,
            roles: Vec::new(),
            sid: None,
            refresh_token: None,
            id_token: None,
            ..full_session()
        }
    }

    /// The view reads what the full parse reads from the same bytes.
    fn assert_agrees(json: &[u8]) {
        let data: SessionData = serde_json::from_slice(json).expect("full parse");
        let view = SessionView::parse(json).expect("view parse");
        assert_eq!(view.v, data.v);
        assert_eq!(view.id, data.id);
        assert_eq!(view.iss, data.iss);
        assert_eq!(view.sid(), data.sid.as_deref());
        assert_eq!(view.created_at, data.created_at);
        assert_eq!(view.last_seen_at, data.last_seen_at);
        assert_eq!(view.expires_at, data.expires_at);
        assert_eq!(view.access_expires_at, data.access_expires_at);
        assert_eq!(view.access_issued_at, data.access_issued_at);
        assert_eq!(view.has_refresh_token(), data.refresh_token.is_some());
        assert_eq!(view.has_id_token(), data.id_token.is_some());
        assert_eq!(view.id_token(), Ok(data.id_token.clone()));
        let (principal, access_token) = view.into_principal();
        assert_eq!(access_token, data.access_token);
        assert_eq!(principal, data.principal());
    }

    #[test]
    fn agrees_with_the_full_parse_with_and_without_optional_fields() {
        for data in [full_session(), minimal_session()] {
            let json = serde_json::to_vec(&data).unwrap();
            assert_agrees(&json);
        }
        let view_json = serde_json::to_vec(&minimal_session()).unwrap();
        let view = SessionView::parse(&view_json).unwrap();
        assert!(!view.has_refresh_token() && !view.has_id_token() && view.sid().is_none());
    }

    #[test]
    fn borrows_unescaped_strings_and_unescapes_escaped_ones() {
        let mut data = full_session();
        data.sid = Some("s\u{e9}\"d".to_owned());
        data.access_token = "tok\\en\"x".to_owned();
        let json = serde_json::to_vec(&data).unwrap();
        assert_agrees(&json);
        let view = SessionView::parse(&json).unwrap();
        assert!(matches!(view.id, Cow::Borrowed(_)));
        assert!(matches!(view.iss, Cow::Borrowed(_)));
        assert!(matches!(view.access_token, Cow::Owned(_)));
        assert_eq!(view.access_token, "tok\\en\"x");
        assert_eq!(view.sid(), Some("s\u{e9}\"d"));

        let json = serde_json::to_vec(&full_session()).unwrap();
        let view = SessionView::parse(&json).unwrap();
        assert!(matches!(view.access_token, Cow::Borrowed(_)));
        assert!(matches!(view.sid, Some(BorrowedStr(Cow::Borrowed(_)))));
    }

    #[test]
    fn agrees_on_escape_sequences_json_writers_may_use() {
        // \u escapes (a writer other than serde_json may produce them), escaped
        // slashes, nulls for optional fields and unknown fields.
        let json = br#"{"v":1,"id":"i\u0064","iss":"https:\/\/idp","sub":"\u00e9l\u00e8ve",
            "email":null,"name":"Ren\u00e9 \"R\"","preferred_username":"r\ud83d\ude00",
            "groups":["g\u0031"],"roles":["\u0072ole"],"sid":"s\u0069d","future":{"x":[1,"y"]},
            "created_at":1,"last_seen_at":2,"expires_at":3,"access_token":"a\u0062c",
            "access_expires_at":4,"refresh_token":null,"id_token":"i\u0064t"}"#;
        assert_agrees(json);
        let view = SessionView::parse(json).unwrap();
        assert_eq!(view.iss, "https://idp");
        assert_eq!(view.access_token, "abc");
        assert!(!view.has_refresh_token());
        assert_eq!(view.id_token(), Ok(Some("idt".to_owned())));
        let (principal, _) = view.into_principal();
        assert_eq!(principal.subject, "\u{e9}l\u{e8}ve");
        assert_eq!(principal.name.as_deref(), Some("Ren\u{e9} \"R\""));
        assert_eq!(principal.preferred_username.as_deref(), Some("r\u{1f600}"));
    }

    #[test]
    fn sealed_bytes_of_the_format_are_unchanged() {
        // The view is read-only: the payload written for the same data is what it always was.
        let json = serde_json::to_string(&minimal_session()).unwrap();
        assert_eq!(
            json,
            r#"{"v":1,"id":"session-id-1","iss":"https://idp.example/realms/a","sub":"alice","created_at":1700000000,"last_seen_at":1700000100,"expires_at":1700086400,"access_token":"eyJhbGciOi.access.token","access_expires_at":1700000300}"#
        );
    }

    #[test]
    fn refuses_what_the_full_parse_refuses() {
        let good = String::from_utf8(serde_json::to_vec(&full_session()).unwrap()).unwrap();
        let cases: Vec<String> = vec![
            String::new(),
            "{}".to_owned(),
            "null".to_owned(),
            good[..good.len() - 1].to_owned(),
            format!("{good} x"),
            good.replace(r#""v":1"#, r#""v":"1""#),
            good.replace(r#""v":1"#, r#""v":256"#),
            good.replace(r#""sub":"alice""#, r#""sub":5"#),
            good.replace(r#""id":"session-id-1","#, ""),
            good.replace(r#""access_token":"eyJhbGciOi.access.token","#, ""),
            good.replace(r#""created_at":1700000000"#, r#""created_at":"1700000000""#),
            good.replace(r#""email_verified":true"#, r#""email_verified":"yes""#),
            good.replace(r#""roles":["#, r#""roles":[5,"#),
            good.replace(r#""id":"session-id-1","#, r#""id":"a","id":"b","#),
            good.replace(r#""refresh_token":"#, r#""x":1,"refresh_token":"r","refresh_token":"#),
            good.replace("eyJhbGciOi.id.token", "bad\\escape"),
            good.replace(r#""refresh_token":"refresh-token""#, r#""refresh_token":5"#),
            good.replace(r#""id_token":"eyJhbGciOi.id.token""#, r#""id_token":["x"]"#),
            good.replace("eyJhbGciOi.access.token", "lone\\ud800surrogate"),
            good.replace(r#""iss":"#, r#""iss" "#),
            good.replace("refresh-token\"", "refresh-token"),
        ];
        for case in &cases {
            assert!(serde_json::from_slice::<SessionData>(case.as_bytes()).is_err(), "full parse accepted {case}");
            assert!(SessionView::parse(case.as_bytes()).is_err(), "view accepted {case}");
        }
        let mut invalid_utf8 = good.clone().into_bytes();
        let at = good.find("alice").unwrap();
        invalid_utf8[at] = 0xff;
        assert!(serde_json::from_slice::<SessionData>(&invalid_utf8).is_err());
        assert!(SessionView::parse(&invalid_utf8).is_err());
    }

    #[test]
    fn unread_strings_are_skipped_without_checking_their_text() {
        // The one difference, and only for strings the hot path does not read:
        // raw control characters, invalid UTF-8 and lone surrogates in them are
        // not looked for. serde_json never writes them, and only payloads sealed
        // with the gateway's key are parsed.
        let good = String::from_utf8(serde_json::to_vec(&full_session()).unwrap()).unwrap();
        let cases: Vec<Vec<u8>> = vec![
            good.replace("eyJhbGciOi.id.token", "control\u{1}char").into_bytes(),
            good.replace("refresh-token", "lone\\ud800surrogate").into_bytes(),
            {
                let mut bytes = good.clone().into_bytes();
                let at = good.find("refresh-token").unwrap();
                bytes[at] = 0xff;
                bytes
            },
        ];
        for case in &cases {
            assert!(serde_json::from_slice::<SessionData>(case).is_err());
            let view = SessionView::parse(case).expect("an unread string's text is not checked");
            assert_eq!(view.sub, "alice");
            assert!(view.has_refresh_token() && view.has_id_token());
        }
        // The ID token is read only when some upstream receives it, and then
        // its UTF-8 is checked: what the full parse refuses is refused.
        let mut invalid_utf8 = good.clone().into_bytes();
        invalid_utf8[good.find("eyJhbGciOi.id.token").unwrap()] = 0xff;
        let lone_surrogate = good.replace("eyJhbGciOi.id.token", "lone\\udc00surrogate").into_bytes();
        for case in [invalid_utf8, lone_surrogate] {
            assert!(serde_json::from_slice::<SessionData>(&case).is_err());
            assert_eq!(SessionView::parse(&case).unwrap().id_token(), Err(NotUtf8));
        }
    }

    #[test]
    fn the_id_token_is_never_shown_by_debug() {
        let json = serde_json::to_vec(&full_session()).unwrap();
        let view = SessionView::parse(&json).unwrap();
        let shown = format!("{view:?} {:?}", view.id_token);
        assert!(!shown.contains("eyJ") && !shown.contains("refresh-token"), "{shown}");
    }
}
