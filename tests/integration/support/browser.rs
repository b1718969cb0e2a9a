//! A scripted browser: a hyper client with redirects off (every 302 is asserted
//! by the caller), its own cookie jar for the gateway, and the login walk
//! through the development provider's form.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::http::{EXCHANGE_TIMEOUT, Reply};

/// Headers a browser sends on a top-level navigation.
pub const NAVIGATION: [(&str, &str); 4] = [
    ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-dest", "document"),
    ("sec-fetch-site", "same-origin"),
];

/// A navigation started by another site (a link or `<img>` elsewhere).
pub const CROSS_SITE_NAVIGATION: [(&str, &str); 4] = [
    ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-dest", "document"),
    ("sec-fetch-site", "cross-site"),
];

/// A login that has been started at the gateway and not finished yet.
#[derive(Debug, Clone)]
pub struct PendingLogin {
    /// The provider's authorize URL the gateway redirected to.
    pub authorize_url: String,
    /// Its query parameters.
    pub params: HashMap<String, String>,
    /// The flow cookie the gateway set for this attempt.
    pub flow_cookie_name: String,
    pub flow_cookie_value: String,
}

impl PendingLogin {
    /// The `state` of this attempt.
    pub fn state(&self) -> &str {
        &self.params["state"]
    }
}

/// A browser talking to one gateway and its provider.
#[derive(Debug)]
pub struct Browser {
    client: Client<HttpConnector, Full<Bytes>>,
    /// Where the gateway really listens (`http://127.0.0.1:G`).
    gateway: String,
    /// The gateway's public origin (may be `https://` while the socket is plain HTTP).
    public_origin: String,
    issuer: String,
    session_cookie: String,
    jar: Mutex<BTreeMap<String, String>>,
}

impl Browser {
    /// POSTs a back-channel logout token as the provider would (form-encoded).
    pub async fn post_logout_token(&self, token: &str) -> Reply {
        let body = form_urlencoded::Serializer::new(String::new()).append_pair("logout_token", token).finish();
        let form = [("content-type", "application/x-www-form-urlencoded")];
        self.send(http::Method::POST, "/oauth2/backchannel_logout", &form, bytes::Bytes::from(body)).await
    }

    /// A browser with an empty jar.
    pub fn new(gateway: String, public_origin: String, issuer: String, session_cookie: String) -> Self {
        // No pooling: every request is its own connection, so a restarted gateway
        // never answers on an old gateway's connection.
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build_http();
        Self { client, gateway, public_origin, issuer, session_cookie, jar: Mutex::new(BTreeMap::new()) }
    }

    /// The name of the gateway's session cookie.
    pub fn session_cookie_name(&self) -> &str {
        &self.session_cookie
    }

    /// The prefix of the gateway's flow cookies.
    pub fn flow_cookie_prefix(&self) -> String {
        format!("{}_flow_", self.session_cookie)
    }

    fn jar(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.jar.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The value of a cookie in the jar.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar().get(name).cloned()
    }

    /// The session cookie's value; fails the test if there is none.
    pub fn session_value(&self) -> String {
        self.cookie(&self.session_cookie).expect("a session cookie in the jar")
    }

    /// Puts a cookie in the jar (as a script or an attacker could).
    pub fn set_cookie(&self, name: &str, value: &str) {
        self.jar().insert(name.to_owned(), value.to_owned());
    }

    /// Removes a cookie from the jar.
    pub fn remove_cookie(&self, name: &str) {
        self.jar().remove(name);
    }

    /// Names of every cookie in the jar.
    pub fn cookie_names(&self) -> Vec<String> {
        self.jar().keys().cloned().collect()
    }

    /// The URL to connect to, and whether it is the gateway (cookies apply).
    fn resolve(&self, target: &str) -> (String, bool) {
        if target.starts_with('/') {
            (format!("{}{target}", self.gateway), true)
        } else if let Some(rest) = target.strip_prefix(&self.public_origin) {
            (format!("{}{rest}", self.gateway), true)
        } else if target.starts_with(&self.gateway) {
            (target.to_owned(), true)
        } else {
            (target.to_owned(), false)
        }
    }

    /// Sends one request (no redirect following); gateway cookies go with it
    /// and the gateway's `Set-Cookie`s update the jar.
    pub async fn send(&self, method: Method, target: &str, headers: &[(&str, &str)], body: Bytes) -> Reply {
        let (url, to_gateway) = self.resolve(target);
        let mut request = Request::builder().method(method).uri(&url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if to_gateway {
            let cookies = self.jar().iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>();
            if !cookies.is_empty() {
                request = request.header(header::COOKIE, cookies.join("; "));
            }
        }
        let request = request.body(Full::new(body)).expect("a valid request");
        let exchange = async {
            let response = self.client.request(request).await.unwrap_or_else(|error| panic!("{url}: {error}"));
            let (parts, body) = response.into_parts();
            let body = body.collect().await.expect("the response body").to_bytes();
            Reply { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() }
        };
        let reply = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await.unwrap_or_else(|_| panic!("{url} hung"));
        if to_gateway {
            let mut jar = self.jar();
            for cookie in reply.set_cookies() {
                if cookie.is_deletion() {
                    jar.remove(&cookie.name);
                } else {
                    jar.insert(cookie.name, cookie.value);
                }
            }
        }
        reply
    }

    /// A top-level navigation (GET, accepting HTML).
    pub async fn navigate(&self, target: &str) -> Reply {
        self.send(Method::GET, target, &NAVIGATION, Bytes::new()).await
    }

    /// A program's GET (accepting JSON) carrying `Authorization: Bearer <token>`.
    pub async fn api_get_with_bearer(&self, target: &str, token: &str) -> Reply {
        let authorization = format!("Bearer {token}");
        let headers = [("accept", "application/json"), ("authorization", authorization.as_str())];
        self.send(Method::GET, target, &headers, Bytes::new()).await
    }

    /// A program's GET (accepting JSON).
    pub async fn api_get(&self, target: &str) -> Reply {
        self.send(Method::GET, target, &[("accept", "application/json")], Bytes::new()).await
    }

    /// Navigates to `target` without a session and checks the gateway sends the
    /// browser to the provider with a fresh flow cookie.
    pub async fn start_login(&self, target: &str) -> PendingLogin {
        let reply = self.navigate(target).await;
        let location = reply.expect_redirect();
        assert!(
            location.starts_with(&format!("{}/authorize?", self.issuer)),
            "{target} should redirect to the provider, not {location}"
        );
        let params = query_params(&location);
        let state = params.get("state").expect("a state in the authorize URL");
        let flow_cookie_name = format!("{}{state}", self.flow_cookie_prefix());
        let flow = reply.set_cookie(&flow_cookie_name).expect("a flow cookie named after the state");
        PendingLogin { authorize_url: location, params, flow_cookie_name, flow_cookie_value: flow.value }
    }

    /// Fills in the provider's login form for `pending` and returns the callback
    /// URL the provider redirects to.
    pub async fn sign_in_at_provider(&self, pending: &PendingLogin, username: &str, password: &str) -> String {
        let page = self.navigate(&pending.authorize_url).await;
        assert_eq!(page.status, StatusCode::OK, "the provider's login form: {}", page.body);
        let mut form = hidden_fields(&page.body);
        assert!(!form.is_empty(), "the login form has hidden fields");
        form.push(("username".to_owned(), username.to_owned()));
        form.push(("password".to_owned(), password.to_owned()));
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&form).finish();
        let reply = self
            .send(
                Method::POST,
                &format!("{}/authorize", self.issuer),
                &[("content-type", "application/x-www-form-urlencoded"), ("accept", "text/html")],
                Bytes::from(body),
            )
            .await;
        let callback = reply.expect_redirect();
        assert!(
            callback.starts_with(&format!("{}/oauth2/callback?", self.public_origin)),
            "the provider should redirect to our callback, not {callback}"
        );
        callback
    }

    /// Follows the provider's redirect to the gateway's callback.
    pub async fn finish_login(&self, callback_url: &str) -> Reply {
        self.navigate(callback_url).await
    }

    /// The whole login from a navigation to `target`; returns where the gateway
    /// finally sends the browser (after checking a session cookie was set).
    pub async fn login_at(&self, target: &str, username: &str, password: &str) -> String {
        let pending = self.start_login(target).await;
        let callback = self.sign_in_at_provider(&pending, username, password).await;
        let reply = self.finish_login(&callback).await;
        let location = reply.expect_redirect();
        let session = reply.set_cookie(&self.session_cookie).expect("the callback sets the session cookie");
        assert!(!session.is_deletion());
        assert!(
            reply.set_cookie(&pending.flow_cookie_name).is_some_and(|flow| flow.is_deletion()),
            "the callback deletes the flow cookie it used"
        );
        location
    }

    /// Logs alice in from `/`.
    pub async fn login(&self) -> String {
        self.login_at("/", "alice", "alice").await
    }
}

/// The decoded query parameters of a URL.
pub fn query_params(url: &str) -> HashMap<String, String> {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    let query = query.split_once('#').map_or(query, |(query, _)| query);
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

/// Replaces (or adds) one query parameter of a URL, keeping the others in order.
pub fn with_param(url: &str, name: &str, value: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    match pairs.iter_mut().find(|(key, _)| key == name) {
        Some(pair) => pair.1 = value.to_owned(),
        None => pairs.push((name.to_owned(), value.to_owned())),
    }
    let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish();
    format!("{base}?{query}")
}

/// The `(name, value)` of every `<input type="hidden">` in a page.
pub fn hidden_fields(page: &str) -> Vec<(String, String)> {
    const MARKER: &str = "<input type=\"hidden\" name=\"";
    let mut fields = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find(MARKER) {
        rest = &rest[start + MARKER.len()..];
        let (name, after) = rest.split_once('"').expect("a closing quote");
        let after = after.strip_prefix(" value=\"").expect("a value attribute");
        let (value, after) = after.split_once('"').expect("a closing quote");
        fields.push((unescape_html(name), unescape_html(value)));
        rest = after;
    }
    fields
}

fn unescape_html(text: &str) -> String {
    text.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}
