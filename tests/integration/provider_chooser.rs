//! Signing in with several providers: a page that accepts one goes straight
//! to it, one that accepts several shows the chooser, `/oauth2/start` starts a
//! login at a chosen provider, the last choice is remembered only when
//! enabled, and API clients learn the accepted issuers from `WWW-Authenticate`.

use bytes::Bytes;
use http::{Method, StatusCode};
use portcullis::config::raw::RawRule;

use crate::support::browser::PendingLogin;
use crate::support::{Browser, Reply, TestWorld, query_params};

/// Three providers; `/two` accepts staff and partners, `/staff-only` staff,
/// `/public` anyone; every other path all three.
fn three_providers() -> crate::support::world::WorldBuilder {
    TestWorld::builder().providers(&[("staff", "Staff"), ("partners", "Partners"), ("ops", "Ops")]).tweak(rules)
}

fn rules(raw: &mut portcullis::config::RawConfig) {
    let rule = |prefix: &str, providers: Option<&[&str]>, allow: Option<&str>| RawRule {
        path_prefix: Some(prefix.to_owned()),
        providers: providers.map(|ids| ids.iter().map(|id| (*id).to_owned()).collect()),
        allow: allow.map(str::to_owned),
        ..RawRule::default()
    };
    raw.authz.rules = vec![
        rule("/two", Some(&["staff", "partners"]), None),
        rule("/staff-only", Some(&["staff"]), None),
        rule("/public", None, Some("public")),
    ];
}

/// The chooser's links, as (data-provider, href with `&amp;` undone), in page order.
fn chooser_links(reply: &Reply) -> Vec<(String, String)> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply
        .body
        .split("<a class=\"provider")
        .skip(1)
        .map(|anchor| {
            let attribute = |name: &str| {
                let start = anchor.find(&format!("{name}=\"")).expect("the attribute") + name.len() + 2;
                let rest = &anchor[start..];
                rest[..rest.find('"').expect("a closing quote")].replace("&amp;", "&")
            };
            (attribute("data-provider"), attribute("href"))
        })
        .collect()
}

fn assert_is_the_chooser(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.header("content-type").as_deref(), Some("text/html; charset=utf-8"));
    assert_eq!(reply.header("cache-control").as_deref(), Some("no-store"));
    let csp = reply.header("content-security-policy").expect("the page CSP");
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(reply.header("x-frame-options").as_deref(), Some("DENY"));
    assert!(reply.set_cookies().is_empty(), "the chooser sets no cookie: {:?}", reply.set_cookies());
    for landmark in ["<html lang=\"en\">", "<main>", "<h1", "<ul>", "<li>", ":focus-visible"] {
        assert!(reply.body.contains(landmark), "{landmark} in {}", reply.body);
    }
    assert!(!reply.body.contains("<script"), "no script: {}", reply.body);
}

/// A browser whose login walk goes through `issuer` and whose session cookie is `session_cookie`.
fn browser_for(world: &TestWorld, issuer: &str, session_cookie: &str) -> Browser {
    Browser::new(
        format!("http://{}", world.gateway_addr),
        world.public_url.clone(),
        issuer.to_owned(),
        session_cookie.to_owned(),
    )
}

#[tokio::test]
async fn a_page_that_accepts_one_provider_goes_straight_to_it() {
    let world = three_providers().start().await;
    let browser = world.browser();
    let pending = browser.start_login("/staff-only/page?x=1").await;
    let flow = world.open_flow(&pending.flow_cookie_name, &pending.flow_cookie_value);
    assert_eq!(flow.provider, "staff");
    assert_eq!(flow.return_to, "/staff-only/page?x=1");
}

#[tokio::test]
async fn a_page_that_accepts_several_shows_the_chooser_of_exactly_those() {
    let world = three_providers().start().await;
    let reply = world.browser().navigate("/two/page?x=1&y=%3Cb%3E").await;
    assert_is_the_chooser(&reply);
    let links = chooser_links(&reply);
    let rd = "%2Ftwo%2Fpage%3Fx%3D1%26y%3D%253Cb%253E";
    assert_eq!(
        links,
        [
            ("staff".to_owned(), format!("/oauth2/start?provider=staff&rd={rd}")),
            ("partners".to_owned(), format!("/oauth2/start?provider=partners&rd={rd}")),
        ]
    );
    assert!(reply.body.contains(">Staff<") && reply.body.contains(">Partners<"), "{}", reply.body);
    assert!(!reply.body.contains("Ops") && !reply.body.contains("provider=ops"), "ops is not accepted here");
    // A path every provider is accepted on lists all three, in configuration order.
    let all = chooser_links(&world.browser().navigate("/anything").await);
    assert_eq!(all.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["staff", "partners", "ops"]);
}

#[tokio::test]
async fn following_a_chooser_link_ends_in_a_working_session_at_that_provider() {
    let world = three_providers().start().await;
    let partners = &world.other_providers[0];
    let browser = browser_for(&world, partners.issuer(), "_portcullis_partners");
    let links = chooser_links(&browser.navigate("/two/page").await);
    let (_, link) = links.iter().find(|(id, _)| id == "partners").expect("a partners link");
    // The walk of `Browser::login_at`, with the flow cookie every provider shares.
    let authorize_url = browser.navigate(link).await.expect_redirect();
    assert!(authorize_url.starts_with(&format!("{}/authorize?", partners.issuer())), "{authorize_url}");
    let params = query_params(&authorize_url);
    let flow_cookie_name = format!("_portcullis_flow_{}", params["state"]);
    let flow_cookie_value = browser.cookie(&flow_cookie_name).expect("a flow cookie");
    let pending = PendingLogin { authorize_url, params, flow_cookie_name, flow_cookie_value };
    let callback = browser.sign_in_at_provider(&pending, "carol", "carol").await;
    let finished = browser.finish_login(&callback).await;
    assert_eq!(finished.expect_redirect(), "/two/page");
    assert!(finished.set_cookie("_portcullis_partners").is_some_and(|cookie| !cookie.is_deletion()));
    assert!(browser.cookie("_portcullis").is_none(), "no session at the staff provider");
    let page = browser.navigate("/two/page").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("carol@example.test"), "{}", page.body);
    // The partners session does not count where only staff is accepted: a login there instead.
    let elsewhere = browser.navigate("/staff-only/x").await.expect_redirect();
    assert!(elsewhere.starts_with(&format!("{}/authorize?", world.provider.issuer())), "{elsewhere}");
}

#[tokio::test]
async fn the_start_endpoint_starts_at_the_chosen_provider_or_chooses() {
    let world = three_providers().start().await;
    let browser = world.browser();
    let partners = world.other_providers[0].issuer().to_owned();
    let explicit = browser.navigate("/oauth2/start?provider=partners&rd=/two/x").await.expect_redirect();
    assert!(explicit.starts_with(&format!("{partners}/authorize?")), "{explicit}");
    let state = query_params(&explicit)["state"].clone();
    let flow_name = format!("{}{state}", browser.flow_cookie_prefix());
    let flow = world.open_flow(&flow_name, &browser.cookie(&flow_name).expect("a flow cookie"));
    assert_eq!((flow.provider.as_str(), flow.return_to.as_str()), ("partners", "/two/x"));

    // Without provider=: the rd page's providers decide.
    let staff_only = browser.navigate("/oauth2/start?rd=%2Fstaff-only%2Fx").await.expect_redirect();
    assert!(staff_only.starts_with(&format!("{}/authorize?", world.provider.issuer())), "{staff_only}");
    let two = browser.navigate("/oauth2/start?rd=%2Ftwo%2Fx").await;
    assert_is_the_chooser(&two);
    assert_eq!(chooser_links(&two).len(), 2);
    // An rd the redirect policy refuses becomes `/`, where all are accepted.
    let elsewhere = browser.navigate("/oauth2/start?rd=https%3A%2F%2Fevil.example%2F").await;
    let links = chooser_links(&elsewhere);
    assert_eq!(links.len(), 3);
    assert!(links.iter().all(|(_, href)| href.ends_with("&rd=%2F")), "{links:?}");

    let unknown = browser.navigate("/oauth2/start?provider=nope&rd=/").await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(unknown.body.contains("no such sign-in provider"), "{}", unknown.body);
    // A provider the rd page does not accept may still be chosen (documented).
    let ops = browser.navigate("/oauth2/start?provider=ops&rd=/two/x").await.expect_redirect();
    assert!(ops.starts_with(&format!("{}/authorize?", world.other_providers[1].issuer())), "{ops}");
    assert!(browser.cookie_names().iter().all(|name| !name.ends_with("_choice")), "nothing remembered by default");
}

#[tokio::test]
async fn the_last_choice_is_remembered_only_when_enabled() {
    let world = three_providers()
        .https()
        .tweak(|raw| {
            rules(raw);
            raw.session.remember_provider_choice = true;
        })
        .start()
        .await;
    let browser = world.browser();
    let start = browser.navigate("/oauth2/start?provider=partners&rd=/two/x").await;
    assert_eq!(start.status, StatusCode::FOUND);
    let choice = start.set_cookie("__Host-_portcullis_choice").expect("the choice is remembered");
    assert_eq!(choice.value, "partners");
    assert!(choice.has("HttpOnly") && choice.has("Secure"), "{}", choice.raw);
    assert_eq!(choice.attribute("SameSite"), Some("Lax"));
    let max_age: u64 = choice.attribute("Max-Age").expect("a Max-Age").parse().unwrap();
    assert!(max_age >= 300 * 24 * 3600, "{max_age}");

    let links = chooser_links(&browser.navigate("/anything").await);
    assert_eq!(links.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["partners", "staff", "ops"]);
    let page = browser.navigate("/anything").await.body;
    assert_eq!(page.matches("Last used").count(), 1);
    // A page that does not accept the remembered provider just lists its own.
    let staff_and_partners = chooser_links(&browser.navigate("/two/a").await);
    assert_eq!(staff_and_partners[0].0, "partners");
    // Ours: never sent upstream.
    let public = browser.navigate("/public/x").await;
    assert_eq!(public.status, StatusCode::OK);
    assert!(!public.body.contains("_choice"), "{}", public.body);
    // An unknown or tampered id is ignored.
    browser.set_cookie("__Host-_portcullis_choice", "nope");
    let links = chooser_links(&browser.navigate("/anything").await);
    assert_eq!(links[0].0, "staff");

    // Off (the default): no choice cookie is ever set, and one sent is not believed.
    let off = three_providers().https().start().await;
    let browser = off.browser();
    let start = browser.navigate("/oauth2/start?provider=partners&rd=/").await;
    assert_eq!(start.status, StatusCode::FOUND);
    assert!(start.set_cookies().iter().all(|cookie| !cookie.name.ends_with("_choice")), "{:?}", start.set_cookies());
    browser.set_cookie("__Host-_portcullis_choice", "ops");
    let page = browser.navigate("/anything").await;
    assert_eq!(chooser_links(&page)[0].0, "staff");
    assert!(!page.body.contains("Last used"));
}

#[tokio::test]
async fn api_clients_learn_the_accepted_issuers() {
    let world = three_providers()
        .tweak(|raw| {
            rules(raw);
            raw.forward_auth.trusted_proxies = vec!["127.0.0.1/32".to_owned()];
        })
        .start()
        .await;
    let staff = world.provider.issuer();
    let partners = world.other_providers[0].issuer();
    let ops = world.other_providers[1].issuer();
    let browser = world.browser();
    for (path, issuers) in [
        ("/two/x", format!("{staff} {partners}")),
        ("/staff-only/x", staff.to_owned()),
        ("/x", format!("{staff} {partners} {ops}")),
    ] {
        let expected = format!("Bearer realm=\"portcullis\", issuers=\"{issuers}\"");
        let reply = browser.api_get(path).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(reply.header("www-authenticate"), Some(expected.clone()), "{path}");
        assert_eq!(reply.json()["error"], "unauthenticated");
        let asked = browser.send(Method::GET, "/oauth2/auth", &[("x-forwarded-uri", path)], Bytes::new()).await;
        assert_eq!(asked.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(asked.header("www-authenticate"), Some(expected), "forward-auth {path}");
    }
    // `/oauth2/userinfo` has no route: any provider's session would do, and it says so.
    let userinfo = browser.api_get("/oauth2/userinfo").await;
    assert_eq!(userinfo.status, StatusCode::UNAUTHORIZED);
    let every = format!("Bearer realm=\"portcullis\", issuers=\"{staff} {partners} {ops}\"");
    assert_eq!(userinfo.header("www-authenticate"), Some(every));
}

#[tokio::test]
async fn a_single_provider_keeps_its_plain_challenge_and_start() {
    let world = TestWorld::builder()
        .tweak(|raw| {
            raw.forward_auth.trusted_proxies = vec!["127.0.0.1/32".to_owned()];
            raw.forward_auth.redirect_browsers = true;
        })
        .start()
        .await;
    let browser = world.browser();
    assert_eq!(browser.api_get("/x").await.header("www-authenticate").as_deref(), Some("Bearer realm=\"portcullis\""));
    let start = browser.navigate("/oauth2/start?rd=/x").await.expect_redirect();
    assert!(start.starts_with(&format!("{}/authorize?", world.provider.issuer())), "{start}");
    let asked = browser
        .send(Method::GET, "/oauth2/auth", &[("x-forwarded-uri", "/x"), ("accept", "text/html")], Bytes::new())
        .await;
    assert_eq!(asked.location(), "/oauth2/start?rd=%2Fx");
}

#[tokio::test]
async fn forward_auth_sends_browsers_to_the_one_provider_or_the_chooser() {
    let world = three_providers()
        .tweak(|raw| {
            rules(raw);
            raw.forward_auth.trusted_proxies = vec!["127.0.0.1/32".to_owned()];
            raw.forward_auth.redirect_browsers = true;
        })
        .start()
        .await;
    let browser = world.browser();
    let ask = |uri: &'static str| {
        let browser = &browser;
        async move {
            browser
                .send(Method::GET, "/oauth2/auth", &[("x-forwarded-uri", uri), ("accept", "text/html")], Bytes::new())
                .await
                .location()
        }
    };
    assert_eq!(ask("/staff-only/x?a=1").await, "/oauth2/start?provider=staff&rd=%2Fstaff-only%2Fx%3Fa%3D1");
    let several = ask("/two/x").await;
    assert_eq!(several, "/oauth2/start?rd=%2Ftwo%2Fx");
    // Which shows the chooser of the two.
    assert_eq!(chooser_links(&browser.navigate(&several).await).len(), 2);
}

#[tokio::test]
async fn display_names_are_escaped() {
    let world = TestWorld::builder()
        .providers(&[("staff", "<script>alert(1)</script>"), ("partners", "Partners \"&' <b>")])
        .start()
        .await;
    let reply = world.browser().navigate("/").await;
    assert_is_the_chooser(&reply);
    assert!(reply.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{}", reply.body);
    assert!(reply.body.contains("Partners &quot;&amp;&#39; &lt;b&gt;"), "{}", reply.body);
    assert!(!reply.body.contains("<b>"), "{}", reply.body);
}
