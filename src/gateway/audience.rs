//! Telling browsers from programs, so that a page navigation gets the login
//! redirect and a `fetch`, XHR or API call gets a 401 it can act on.

use http::{HeaderMap, HeaderName, Method, header};

use crate::pages::Audience;

/// Names looked up as constants: a `&str` name is parsed and validated on every lookup.
const X_REQUESTED_WITH: HeaderName = HeaderName::from_static("x-requested-with");
const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");

/// A request is a browser navigation when it is a GET/HEAD that accepts
/// HTML, is not marked as XHR, and (when the browser says) is a navigation.
pub fn classify(method: &Method, headers: &HeaderMap) -> Audience {
    let safe_method = method == Method::GET || method == Method::HEAD;
    let accepts_html = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("text/html"));
    let is_xhr = headers.contains_key(X_REQUESTED_WITH);
    // Fetch Metadata (W3C): present in every current browser; absent from older
    // browsers and most programs, which the other signals then decide.
    let navigation = headers
        .get(SEC_FETCH_MODE)
        .and_then(|value| value.to_str().ok())
        .is_none_or(|mode| mode.eq_ignore_ascii_case("navigate"));
    if safe_method && accepts_html && !is_xhr && navigation { Audience::Browser } else { Audience::Api }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn navigations_are_browsers() {
        let nav = headers(&[("accept", "text/html,application/xhtml+xml"), ("sec-fetch-mode", "navigate")]);
        assert_eq!(classify(&Method::GET, &nav), Audience::Browser);
        assert_eq!(classify(&Method::GET, &headers(&[("accept", "text/html")])), Audience::Browser);
    }

    #[test]
    fn programs_and_scripts_are_api() {
        assert_eq!(classify(&Method::GET, &headers(&[])), Audience::Api);
        assert_eq!(classify(&Method::GET, &headers(&[("accept", "application/json")])), Audience::Api);
        assert_eq!(classify(&Method::POST, &headers(&[("accept", "text/html")])), Audience::Api);
        assert_eq!(
            classify(&Method::GET, &headers(&[("accept", "text/html"), ("sec-fetch-mode", "cors")])),
            Audience::Api
        );
        assert_eq!(
            classify(&Method::GET, &headers(&[("accept", "text/html"), ("x-requested-with", "XMLHttpRequest")])),
            Audience::Api
        );
    }
}
