//! The sign-in chooser: where a browser goes when the page it asked for
//! accepts sessions from several providers. A plain HTML list of links to
//! `/oauth2/start?provider=ID&rd=...` (no JavaScript, no cookie set by the
//! page itself), optionally with the last choice first (`session.remember_provider_choice`).
//! Also the `WWW-Authenticate` challenge that names the accepted providers' issuers.

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use super::Gateway;
use super::endpoint::paths;
use crate::authz::ProviderSet;
use crate::body::{ProxyBody, full};
use crate::pages::{self, escape_html};
use crate::session::cookies::CookieJarSpec;

/// How long the remembered choice lasts: about a year.
const CHOICE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// One provider as the chooser lists it.
#[derive(Debug, PartialEq, Eq)]
struct ChooserEntry<'a> {
    id: &'a str,
    display_name: &'a str,
    last_used: bool,
}

impl Gateway {
    /// The chooser page for the `accepted` providers, each link returning to
    /// `return_to` (already sanitised) after the login.
    pub(super) fn chooser(&self, headers: &HeaderMap, accepted: ProviderSet, return_to: &str) -> Response<ProxyBody> {
        let remembered = self.remembered_choice(headers);
        let mut entries: Vec<ChooserEntry<'_>> = self
            .providers
            .accepted(accepted)
            .map(|(_, provider)| ChooserEntry {
                id: &provider.config.id,
                display_name: &provider.config.display_name,
                last_used: remembered.as_deref() == Some(provider.config.id.as_str()),
            })
            .collect();
        // The last choice first; the others keep the configured order (a stable sort).
        entries.sort_by_key(|entry| !entry.last_used);
        let mut response = Response::new(full(chooser_page(&entries, return_to)));
        *response.status_mut() = StatusCode::OK;
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        pages::harden(&mut response);
        response
    }

    /// The gateway's cookie attributes and the remembered choice's cookie name,
    /// `{session cookie name}_choice`: one of the gateway's own names, so never forwarded upstream.
    fn choice_cookie(&self) -> (CookieJarSpec, String) {
        let session = &self.config.session;
        let spec =
            CookieJarSpec::configured(&session.cookie_name, self.config.is_https(), session.cookie_domain.as_deref());
        let name = format!("{}_choice", spec.session_name());
        (spec, name)
    }

    /// The `Set-Cookie` remembering `provider_id` as the last choice; `None`
    /// unless `session.remember_provider_choice` is on.
    pub(super) fn remember_choice(&self, provider_id: &str) -> Option<HeaderValue> {
        if !self.config.session.remember_provider_choice {
            return None;
        }
        let (spec, name) = self.choice_cookie();
        spec.set(&name, provider_id, CHOICE_MAX_AGE)
    }

    /// The provider id the request's choice cookie names, when remembering
    /// is on and it names a configured provider.
    fn remembered_choice(&self, headers: &HeaderMap) -> Option<String> {
        if !self.config.session.remember_provider_choice {
            return None;
        }
        let (_, name) = self.choice_cookie();
        let value = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find_map(|(cookie, value)| (cookie == name).then(|| value.trim_matches('"').to_owned()))?;
        self.providers.by_id(&value).map(|(_, provider)| provider.config.id.clone())
    }

    /// `WWW-Authenticate` for a request that needs credentials from one of
    /// the `accepted` providers: with one configured provider the plain
    /// challenge, else one that names their issuers (an RFC 6750 §3 extension
    /// parameter, a space-separated list as `scope` is).
    pub(super) fn login_challenge(&self, accepted: ProviderSet) -> Option<HeaderValue> {
        if self.config.providers.len() < 2 {
            return None;
        }
        let mut issuers: Vec<&str> =
            self.providers.accepted(accepted).map(|(_, provider)| provider.config.issuer.as_str()).collect();
        // Several clients may share an issuer: name it once.
        let mut seen = std::collections::HashSet::new();
        issuers.retain(|issuer| seen.insert(*issuer));
        HeaderValue::try_from(issuers_challenge(&issuers)).ok()
    }
}

/// `Bearer realm="portcullis", issuers="<iss> <iss>"`, each value a valid quoted-string.
fn issuers_challenge(issuers: &[&str]) -> String {
    format!("Bearer realm=\"portcullis\", issuers=\"{}\"", quoted_string_content(&issuers.join(" ")))
}

/// `text` escaped for the inside of an RFC 9110 quoted-string.
fn quoted_string_content(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '"' || c == '\\' {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The chooser's HTML: a list of real links (keyboard and screen-reader
/// friendly without any script), styled inline (the page CSP allows inline styles only).
fn chooser_page(entries: &[ChooserEntry<'_>], return_to: &str) -> String {
    let mut items = String::new();
    for entry in entries {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("provider", entry.id)
            .append_pair("rd", return_to)
            .finish();
        let href = escape_html(&format!("{}?{query}", paths::START));
        let name = escape_html(entry.display_name);
        let (class, note) =
            if entry.last_used { (" last-used", "<span class=\"note\">Last used</span>") } else { ("", "") };
        items.push_str(&format!(
            "<li><a class=\"provider{class}\" href=\"{href}\" data-provider=\"{id}\"><span class=\"name\">{name}</span>{note}</a></li>",
            id = escape_html(entry.id),
        ));
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign in</title>\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<style>\
body{{font-family:system-ui,-apple-system,\"Segoe UI\",sans-serif;margin:0;background:#f4f5f7;color:#1f2328}}\
main{{max-width:26rem;margin:5rem auto;padding:2rem;background:#fff;border-radius:12px;box-shadow:0 1px 3px rgba(0,0,0,.12)}}\
h1{{font-size:1.5rem;margin:0 0 .5rem}}p{{margin:0 0 1.5rem;color:#57606a}}\
ul{{list-style:none;margin:0;padding:0}}li+li{{margin-top:.75rem}}\
a.provider{{display:flex;justify-content:space-between;align-items:center;padding:.85rem 1rem;border:1px solid #d0d7de;\
border-radius:8px;color:#1f2328;text-decoration:none;font-weight:600}}\
a.provider:hover{{background:#f6f8fa;border-color:#8c959f}}\
a.provider:focus-visible{{outline:3px solid #0969da;outline-offset:2px}}\
a.last-used{{border-color:#0969da}}\
.note{{font-size:.8rem;font-weight:400;color:#0969da}}\
</style></head>\
<body><main><h1 id=\"sign-in\">Sign in</h1><p>Choose how you want to sign in.</p>\
<nav aria-labelledby=\"sign-in\"><ul>{items}</ul></nav></main></body></html>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_names_and_links_each_provider_once() {
        let entries = [
            ChooserEntry { id: "staff", display_name: "<script>alert(1)</script>", last_used: false },
            ChooserEntry { id: "partners", display_name: "Partners & \"Friends\"", last_used: true },
        ];
        let page = chooser_page(&entries, "/app?a=1&b=\"x\"");
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{page}");
        assert!(page.contains("Partners &amp; &quot;Friends&quot;"), "{page}");
        assert_eq!(page.matches("<a class=\"provider").count(), 2);
        assert!(page.contains("href=\"/oauth2/start?provider=staff&amp;rd=%2Fapp%3Fa%3D1%26b%3D%22x%22\""), "{page}");
        assert_eq!(page.matches("Last used").count(), 1);
    }

    #[test]
    fn the_challenge_lists_issuers_as_one_quoted_string() {
        assert_eq!(
            issuers_challenge(&["https://a.example", "https://b.example/t"]),
            "Bearer realm=\"portcullis\", issuers=\"https://a.example https://b.example/t\""
        );
        assert_eq!(quoted_string_content("a\"b\\c"), "a\\\"b\\\\c");
    }
}
