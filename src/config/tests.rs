#![allow(clippy::result_large_err)]

use figment::Jail;

use super::*;

const GOOD_SECRET: &str = "q83vEjh5ZtNcXo0aNxyY5eWwIulXf1ESc3K0tkuqYzk=";

fn load_from(jail: &mut Jail, toml: &str) -> Result<Config, ConfigError> {
    jail.create_file("portcullis.toml", toml).unwrap();
    Config::load(Some(Path::new("portcullis.toml")))
}

fn minimal(extra: &str) -> String {
    format!(
        r#"
public_url = "https://app.example.com"
upstream = "http://127.0.0.1:8080"
{extra}
[oidc]
issuer = "https://idp.example.com"
client_id = "portcullis"
[session]
secret = "{GOOD_SECRET}"
"#
    )
}

fn error_text(result: Result<Config, ConfigError>) -> String {
    match result {
        Ok(_) => panic!("the configuration was accepted"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn minimal_file_gives_safe_defaults() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let config = load_from(jail, &minimal("")).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:4180");
        assert!(matches!(config.providers[0].credentials, ClientCredentials::Public));
        assert_eq!(config.providers[0].scopes, ["openid", "profile", "email"]);
        assert_eq!(config.providers[0].redirect_url.as_str(), "https://app.example.com/oauth2/callback");
        assert!(config.is_https());
        assert_eq!(config.session.cookie_name, "_portcullis");
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(config.server.worker_threads.get(), cores, "one serving thread per core by default");
        Ok(())
    });
}

#[test]
fn environment_overrides_the_file_with_double_underscore_nesting() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("PORTCULLIS_OIDC__CLIENT_ID", "from-env");
        jail.set_env("PORTCULLIS_OIDC__CLIENT_SECRET", "s3cret-value");
        jail.set_env("PORTCULLIS_OIDC__CLIENT_AUTH_METHOD", "client_secret_post");
        jail.set_env("PORTCULLIS_LISTEN", "0.0.0.0:9000");
        let config = load_from(jail, &minimal("")).unwrap();
        assert_eq!(config.providers[0].client_id, "from-env");
        assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
        match &config.providers[0].credentials {
            ClientCredentials::Confidential { secret, method } => {
                assert_eq!(secret.expose(), "s3cret-value");
                assert_eq!(*method, ClientAuthMethod::SecretPost);
            }
            ClientCredentials::Public => panic!("expected a confidential client"),
        }
        assert!(!format!("{config:?}").contains("s3cret-value"), "Debug must not show the secret");
        Ok(())
    });
}

#[test]
fn errors_name_the_key() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let cases = [
            (minimal("").replace("https://idp.example.com", "http://idp.example.com"), "oidc.issuer"),
            (minimal("").replace("client_id = \"portcullis\"", ""), "oidc.client_id"),
            (minimal("").replace(GOOD_SECRET, "c2hvcnQ="), "session.secret"),
            (minimal("").replace(GOOD_SECRET, "CHANGE-ME-generate-with-portcullis-secret"), "session.secret"),
            (minimal("").replace(GOOD_SECRET, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), "session.secret"),
            (minimal("").replace("https://app.example.com", "https://app.example.com/sub"), "public_url"),
            (minimal("").replace("http://127.0.0.1:8080", "ftp://x"), "upstream"),
            (minimal("listen = \"nonsense\""), "listen"),
            (minimal("").replace("[session]", "[session]\ncookie_name = \"__Host-x\""), "session.cookie_name"),
            (minimal("").replace("[oidc]", "[oidc]\nscopes = [\"email\"]"), "oidc.scopes"),
            (minimal("").replace("[oidc]", "[oidc]\nid_token_algorithms = [\"HS256\"]"), "oidc.id_token_algorithms"),
            (minimal("").replace("[oidc]", "[oidc]\ntrusted_audiences = [\" \"]"), "oidc.trusted_audiences"),
            (minimal("").replace("[oidc]", "[oidc]\nclient_secret = \"\""), "oidc.client_secret"),
            (minimal("").replace("[oidc]", "[oidc]\ncleint_id = \"typo\""), "oidc.cleint_id"),
            (minimal("").replace("[oidc]", "[oidc]\nhttp_timeout = \"soon\""), "oidc.http_timeout"),
            (minimal("").replace("[session]", "[session]\ncache_max_bytes = 1000"), "session.cache_max_bytes"),
            (format!("{}\n[tracing]\notlp_endpoint = \"ftp://collector\"\n", minimal("")), "tracing.otlp_endpoint"),
            (
                format!("{}\n[tracing]\notlp_endpoint = \"http://u:p@127.0.0.1:4318/v1/traces\"\n", minimal("")),
                "tracing.otlp_endpoint",
            ),
            (format!("{}\n[tracing]\nsample_ratio = 1.5\n{TRACING_ON}", minimal("")), "tracing.sample_ratio"),
            (format!("{}\n[tracing]\nsample_ratio = -0.1\n{TRACING_ON}", minimal("")), "tracing.sample_ratio"),
            (format!("{}\n[tracing]\ntimeout = \"0s\"\n{TRACING_ON}", minimal("")), "tracing.timeout"),
            (format!("{}\n[tracing]\nservice_name = \" \"\n{TRACING_ON}", minimal("")), "tracing.service_name"),
            (
                format!("{}\n[tracing]\nheaders = {{ \"bad name\" = \"x\" }}\n{TRACING_ON}", minimal("")),
                "tracing.headers",
            ),
            (format!("{}\n[tracing]\nca_file = \"/nonexistent/ca.pem\"\n{TRACING_ON}", minimal("")), "tracing.ca_file"),
            (format!("{}\n[tracing]\nendpoint = \"http://127.0.0.1:4318\"\n", minimal("")), "tracing.endpoint"),
            (format!("{}\n[server]\nworker_threads = 5000\n", minimal("")), "server.worker_threads"),
            (format!("{}\n[server]\nhttp2_idle_timeout = \"0s\"\n", minimal("")), "server.http2_idle_timeout"),
            (format!("{}\n[server]\nmax_connections_per_ip = 0\n", minimal("")), "server.max_connections_per_ip"),
            (format!("{}\n[server]\nmax_connection_age = \"0s\"\n", minimal("")), "server.max_connection_age"),
            (
                format!("{}\n[server]\nwatch_config = true\nwatch_config_interval = \"10ms\"\n", minimal("")),
                "server.watch_config_interval",
            ),
            (format!("{}\n[proxy]\nupgrade_protocols = [\"h2c\"]\n", minimal("")), "proxy.upgrade_protocols"),
            (format!("{}\n[proxy]\nupgrade_protocols = [\"a b\"]\n", minimal("")), "proxy.upgrade_protocols"),
            (format!("{}\n[proxy]\nupgrade_idle_timeout = \"0s\"\n", minimal("")), "proxy.upgrade_idle_timeout"),
            (format!("{}\n[tls]\nticket_rotation = \"9m\"\n", minimal("")), "tls.ticket_rotation"),
            (format!("{}\n[tls]\nticket_rotation = \"25h\"\n", minimal("")), "tls.ticket_rotation"),
            (format!("{}\n[tls]\nsession_ticket = false\n", minimal("")), "tls.session_ticket"),
        ];
        for (toml, key) in cases {
            let text = error_text(load_from(jail, &toml));
            assert!(text.contains(key), "error {text:?} does not name {key}");
        }
        Ok(())
    });
}

#[test]
fn errors_never_print_secrets() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let leaked = "dG9vLXNob3J0LXNlY3JldC12YWx1ZQ==";
        let text = error_text(load_from(jail, &minimal("").replace(GOOD_SECRET, leaked)));
        assert!(text.contains("session.secret"));
        assert!(!text.contains(leaked));
        jail.set_env("PORTCULLIS_OIDC__CLIENT_SECRET", "[leakme1, leakme2]");
        let text = error_text(load_from(jail, &minimal("")));
        assert!(!text.contains("leakme"), "{text}");
        Ok(())
    });
}

#[test]
fn secret_file_holds_several_keys_first_seals() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file(
            "keys",
            &format!("# newest first\n{GOOD_SECRET}\nZm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5d2FsZG8=\n"),
        )?;
        let toml = minimal("").replace(&format!("secret = \"{GOOD_SECRET}\""), "secret_file = \"keys\"");
        let config = load_from(jail, &toml).unwrap();
        assert_eq!(config.session.keys.len(), 2);
        Ok(())
    });
}

#[test]
fn the_shipped_example_is_complete_but_refuses_its_sample_secret() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let example = include_str!("../../config/portcullis.toml");
        let text = error_text(load_from(jail, example));
        assert!(text.starts_with("session.secret"), "{text}");
        jail.set_env("PORTCULLIS_SESSION__SECRET", GOOD_SECRET);
        let config = load_from(jail, example).unwrap();
        assert_eq!(config.providers[0].scopes.first().map(String::as_str), Some("openid"));
        Ok(())
    });
}

#[test]
fn kubernetes_service_link_variables_are_not_configuration() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("PORTCULLIS_PORT", "tcp://10.0.0.1:4180");
        jail.set_env("PORTCULLIS_SERVICE_HOST", "10.0.0.1");
        jail.set_env("PORTCULLIS_SERVICE_PORT_HTTP", "4180");
        jail.set_env("PORTCULLIS_PORT_4180_TCP_ADDR", "10.0.0.1");
        let config = load_from(jail, &minimal("")).unwrap();
        assert_eq!(config.providers[0].client_id, "portcullis");
        jail.set_env("PORTCULLIS_LISTN", "0.0.0.0:1");
        assert_eq!(error_text(load_from(jail, &minimal(""))), "listn: unknown key", "real typos still fail");
        Ok(())
    });
}

#[test]
fn the_session_store_is_off_by_default_and_validated_when_set() {
    Jail::expect_with(|jail| {
        assert!(load_from(jail, &minimal("")).unwrap().session.store.is_none());

        let store = |extra: &str| minimal("") + &format!("[session.store]\n{extra}\n");
        let config = load_from(jail, &store("url = \"rediss://user:pw@redis.internal:6380/1\"")).unwrap();
        let stored = config.session.store.expect("store mode");
        assert_eq!(stored.key_prefix, "portcullis:");
        assert_eq!(stored.local_cache_ttl, Duration::from_secs(5));
        assert!(!format!("{stored:?}").contains("pw@"), "the URL is redacted in Debug");

        let error = error_text(load_from(jail, &store("url = \"http://pw@redis.internal\"")));
        assert!(error.starts_with("session.store.url:") && !error.contains("pw"), "{error}");
        let error = error_text(load_from(jail, &store("password_file = \"/nope\"")));
        assert!(error.starts_with("session.store.password_file:"), "{error}");
        let error = error_text(load_from(jail, &store("url = \"redis://:pw@r\"\npassword_file = \"pw.txt\"")));
        assert!(error.contains("already holds a password"), "{error}");
        jail.create_file("pw.txt", "s3cret\n").unwrap();
        let config = load_from(jail, &store("url = \"redis://r:6379\"\npassword_file = \"pw.txt\"")).unwrap();
        assert_eq!(config.session.store.unwrap().password.unwrap().expose(), "s3cret");
        let error = error_text(load_from(jail, &store("url = \"redis://r\"\nlocal_cache_ttl = \"5m\"")));
        assert!(error.starts_with("session.store.local_cache_ttl:"), "{error}");
        Ok(())
    });
}

#[test]
fn the_session_store_accepts_sentinel_urls_and_acl_credentials_from_files() {
    use crate::config::StoreEndpoint;
    Jail::expect_with(|jail| {
        let store = |extra: &str| minimal("") + &format!("[session.store]\n{extra}\n");
        jail.create_file("pw.txt", "data-s3cret\n").unwrap();
        jail.create_file("sentinel-pw.txt", "sentinel-s3cret").unwrap();
        jail.create_file("empty.txt", "\n").unwrap();
        let text = store(
            "url = \"rediss+sentinel://s1:26380,s2/sessions/2\"\nusername = \"portcullis\"\n\
             password_file = \"pw.txt\"\nsentinel_username = \"watcher\"\n\
             sentinel_password_file = \"sentinel-pw.txt\"\nmin_replica_acks = 1",
        );
        let stored = load_from(jail, &text).unwrap().session.store.expect("store mode");
        assert_eq!(stored.min_replica_acks, 1);
        assert_eq!(stored.username.as_deref(), Some("portcullis"));
        assert_eq!(stored.password.as_ref().map(|password| password.expose()), Some("data-s3cret"));
        let StoreEndpoint::Sentinel(sentinel) = &stored.endpoint else { panic!("a Sentinel endpoint") };
        assert_eq!(sentinel.nodes, [("s1".to_owned(), 26380), ("s2".to_owned(), 26379)]);
        assert_eq!((sentinel.master_name.as_str(), sentinel.db, sentinel.tls), ("sessions", 2, true));
        assert_eq!(sentinel.username.as_deref(), Some("watcher"));
        assert_eq!(sentinel.password.as_ref().map(|password| password.expose()), Some("sentinel-s3cret"));
        assert!(!format!("{stored:?}").contains("s3cret"), "secrets are redacted in Debug");
        assert_eq!(load_from(jail, &store("url = \"redis://r\"")).unwrap().session.store.unwrap().min_replica_acks, 0);
        let cluster = load_from(jail, &store("url = \"rediss+cluster://n1:7000,n2\"\nusername = \"portcullis\""));
        let StoreEndpoint::Cluster { nodes, tls } = cluster.unwrap().session.store.unwrap().endpoint else {
            panic!("a cluster endpoint")
        };
        assert_eq!(nodes, [("n1".to_owned(), 7000), ("n2".to_owned(), 6379)]);
        assert!(tls);

        let refused = [
            ("url = \"redis+sentinel://u:s3cret@s1/m\"", "session.store.url:"),
            ("url = \"redis+sentinel://s1\"", "session.store.url:"),
            (
                "url = \"redis://r\"\nsentinel_password_file = \"sentinel-pw.txt\"",
                "session.store.sentinel_password_file:",
            ),
            ("url = \"redis://r\"\nsentinel_username = \"w\"", "session.store.sentinel_username:"),
            ("username = \"portcullis\"", "session.store.username:"),
            ("url = \"redis://user@r\"\nusername = \"portcullis\"", "session.store.username:"),
            ("url = \"redis://r\"\nusername = \"a b\"", "session.store.username:"),
            ("url = \"redis://r\"\npassword_file = \"empty.txt\"", "session.store.password_file:"),
            (
                "url = \"redis+sentinel://s1/m\"\nsentinel_password_file = \"/nope\"",
                "session.store.sentinel_password_file:",
            ),
            ("url = \"redis://r\"\nmin_replica_acks = 17", "session.store.min_replica_acks:"),
            ("url = \"redis+cluster://n1\"\nmin_replica_acks = 1", "session.store.min_replica_acks:"),
            ("url = \"redis+cluster://n1\"\nsentinel_username = \"w\"", "session.store.sentinel_username:"),
            ("url = \"redis+cluster://n1/0\"", "session.store.url:"),
        ];
        for (extra, key) in refused {
            let error = error_text(load_from(jail, &store(extra)));
            assert!(error.starts_with(key) && !error.contains("s3cret"), "{extra}: {error}");
        }
        Ok(())
    });
}

#[test]
fn the_session_store_ca_file_needs_a_tls_url_and_usable_certificates() {
    Jail::expect_with(|jail| {
        let store = |extra: &str| minimal("") + &format!("[session.store]\n{extra}\n");
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap().self_signed(&key).unwrap();
        jail.create_file("store-ca.pem", &ca.pem())?;
        jail.create_file("not-a-ca.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")?;
        for url in ["rediss://r:6380", "rediss+sentinel://s1/m", "rediss+cluster://n1,n2"] {
            let text = store(&format!("url = \"{url}\"\nca_file = \"store-ca.pem\""));
            let stored = load_from(jail, &text).unwrap().session.store.expect("store mode");
            assert_eq!(stored.ca_pem.as_deref(), Some(ca.pem().as_bytes()), "{url}");
        }
        assert!(load_from(jail, &store("url = \"rediss://r\"")).unwrap().session.store.unwrap().ca_pem.is_none());
        let refused = [
            // A CA with a plaintext URL would suggest a protection that is not there.
            ("url = \"redis://r\"\nca_file = \"store-ca.pem\"", "needs a TLS URL"),
            ("url = \"redis+sentinel://s1/m\"\nca_file = \"store-ca.pem\"", "needs a TLS URL"),
            ("url = \"redis+cluster://n1\"\nca_file = \"store-ca.pem\"", "needs a TLS URL"),
            ("ca_file = \"store-ca.pem\"", "needs session.store.url"),
            ("url = \"rediss://:s3cret@r\"\nca_file = \"missing.pem\"", "cannot read"),
            ("url = \"rediss://:s3cret@r\"\nca_file = \"not-a-ca.pem\"", ""),
        ];
        for (extra, problem) in refused {
            let error = error_text(load_from(jail, &store(extra)));
            assert!(error.starts_with("session.store.ca_file: ") && error.contains(problem), "{extra}: {error}");
            assert!(!error.contains("s3cret"), "{error}");
        }
        Ok(())
    });
}

#[test]
fn the_effective_configuration_never_shows_secrets() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("PORTCULLIS_OIDC__CLIENT_SECRET", "s3cret-client-value");
        jail.create_file("portcullis.toml", &minimal(""))?;
        let (_, effective) = Config::load_with_effective(Some(Path::new("portcullis.toml"))).unwrap();
        let text = effective.to_string();
        assert!(!text.contains("s3cret-client-value") && !text.contains(GOOD_SECRET), "{text}");
        assert_eq!(effective["oidc"]["client_secret"], "<redacted>");
        assert_eq!(effective["session"]["secret"], "<redacted>");
        assert_eq!(effective["oidc"]["client_id"], "portcullis");
        assert!(effective["session"]["store"]["url"].is_null());
        Ok(())
    });
}

#[test]
fn authorization_keys_are_named_in_errors() {
    let cases = [
        ("[forward_auth]\ntrusted_proxies = [\"10.0.0.0/99\"]\n", "forward_auth.trusted_proxies"),
        ("[forward_auth]\noriginal_request = \"x-real\"\n", "forward_auth.original_request"),
        ("[bearer]\nintrospection = true\n", "bearer.introspection"),
        ("[authz]\ndefault = \"public\"\n", "authz.default"),
        ("[authz]\nallowed_email_domains = [\"a@b\"]\n", "authz.allowed_email_domains[0]"),
        ("[[authz.rules]]\npath_prefix = \"admin\"\n", "authz.rules"),
        ("[[authz.rules]]\npath_prefix = \"/a\"\nallow = \"maybe\"\n", "authz.rules"),
        ("[[upstreams]]\nurl = \"http://127.0.0.1:1\"\n[[upstreams.rules]]\npath_pattern = \"/a/**/b\"\n", "upstreams"),
        ("[[bearer.issuers]]\nissuer = \"https://ci.example\"\naudience = \"\"\n", "bearer.issuers"),
    ];
    for (extra, key) in cases {
        Jail::expect_with(|jail| {
            let text = error_text(load_from(jail, &format!("{}\n{extra}", minimal(""))));
            assert!(text.starts_with(key), "{extra}: {text}");
            Ok(())
        });
    }
}

#[test]
fn errors_name_indexed_keys_and_never_quote_secrets() {
    const UPSTREAM: &str = "[[upstreams]]\nurl = \"http://127.0.0.1:1\"\npath_prefix = \"/a/\"\n";
    const ISSUER: &str = "[[bearer.issuers]]\nissuer = \"https://ci.example\"\naudience = \"ci\"\n";
    let rule = |allow: &str| format!("[[authz.rules]]\npath_prefix = \"/r\"\nallow = \"{allow}\"\n");
    let cases = [
        (format!("{UPSTREAM}{UPSTREAM}{UPSTREAM}token = \"refresh\"\n"), "upstreams[2].token"),
        (format!("{UPSTREAM}{UPSTREAM}host = \"a.example:443\"\n"), "upstreams[1].host"),
        (
            format!("{UPSTREAM}path_prefix = \"a\"\n").replacen("path_prefix = \"/a/\"\n", "", 1),
            "upstreams[0].path_prefix",
        ),
        (UPSTREAM.replace("http://", "ftp://"), "upstreams[0].url"),
        (format!("{UPSTREAM}identity_headers = [\"user\", \"password\"]\n"), "upstreams[0].identity_headers"),
        (
            format!("{UPSTREAM}set_headers = {{ x-forwarded-user = \"admin\" }}\n"),
            "upstreams[0].set_headers.x-forwarded-user",
        ),
        (
            format!(
                "{UPSTREAM}[[upstreams.rules]]\npath_prefix = \"/ok\"\n[[upstreams.rules]]\npath_prefix = \"no-slash\"\n"
            ),
            "upstreams[0].rules[1].path_prefix",
        ),
        (format!("{UPSTREAM}tokn = \"id\"\n"), "upstreams[0].tokn"),
        (format!("{}{}", rule("public"), rule("sometimes")), "authz.rules[1].allow"),
        (format!("{}emails = [\"a@b.example\", \"nobody\"]\n", rule("authenticated")), "authz.rules[0].emails[1]"),
        (format!("{}methods = [\"GET\", \"G T\"]\n", rule("deny")), "authz.rules[0].methods[1]"),
        ("[authz]\napi_path_prefixes = [\"/api/\", \"v2\"]\n".to_owned(), "authz.api_path_prefixes[1]"),
        (
            format!("{ISSUER}{ISSUER}").replacen("audience = \"ci\"", "audience = \"\"", 2).replacen(
                "audience = \"\"",
                "audience = \"ci\"",
                1,
            ),
            "bearer.issuers[1].audience",
        ),
        (format!("{ISSUER}algorithms = [\"HS256\"]\n"), "bearer.issuers[0].algorithms[0]"),
        (
            "[forward_auth]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/99\"]\n".to_owned(),
            "forward_auth.trusted_proxies[1]",
        ),
        ("allowed_redirect_hosts = [\"ok.example\", \"a/b\"]\n".to_owned(), "allowed_redirect_hosts[1]"),
    ];
    for (extra, key) in cases {
        Jail::expect_with(|jail| {
            jail.clear_env();
            // Top-level keys must come before the first table.
            let toml = if extra.starts_with('[') { format!("{}\n{extra}", minimal("")) } else { minimal(&extra) };
            let text = error_text(load_from(jail, &toml));
            assert!(text.starts_with(&format!("{key}:")), "{extra}: {text}");
            Ok(())
        });
    }

    let api_key = "sk-live-0123456789\u{1}";
    let second_secret = "not-a-key-but-secret";
    let cases = [
        (
            format!("{UPSTREAM}set_headers = {{ x-api-key = \"{api_key}\" }}\n"),
            "upstreams[0].set_headers.x-api-key",
            api_key,
        ),
        (String::new(), "session.secrets[1]", second_secret),
    ];
    for (extra, key, secret) in cases {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let mut toml = format!("{}\n{extra}", minimal(""));
            if extra.is_empty() {
                toml = toml.replace(
                    &format!("secret = \"{GOOD_SECRET}\""),
                    &format!("secrets = [\"{GOOD_SECRET}\", \"{second_secret}\"]"),
                );
            }
            let text = error_text(load_from(jail, &toml.replace('\u{1}', "\\u0001")));
            assert!(text.starts_with(&format!("{key}:")), "{text}");
            assert!(!text.contains(secret.trim_end_matches('\u{1}')), "a secret was quoted: {text}");
            Ok(())
        });
    }
}

#[test]
fn rules_load_from_toml() {
    Jail::expect_with(|jail| {
        let extra = "[authz]\ngroups_claim = \"realm_access.roles\"\n[[authz.rules]]\nname = \"assets\"\npath_prefix = \"/static/\"\nallow = \"public\"\n";
        let config = load_from(jail, &format!("{}\n{extra}", minimal(""))).unwrap();
        assert_eq!(config.authz.route(&http::Method::GET, "/static/x").rule, "assets");
        assert_eq!(config.authz.groups_claim(), "realm_access.roles");
        Ok(())
    });
}

const TRACING_ON: &str = "otlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"\n";

#[test]
fn tracing_is_off_unless_an_endpoint_is_set_and_the_environment_can_set_it() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        assert!(load_from(jail, &minimal("")).unwrap().tracing.is_none());
        jail.set_env("PORTCULLIS_TRACING__OTLP_ENDPOINT", "https://collector.example.com/v1/traces");
        let tracing = load_from(jail, &minimal("")).unwrap().tracing.expect("tracing is on");
        assert_eq!(tracing.otlp_endpoint.as_str(), "https://collector.example.com/v1/traces");
        assert_eq!(tracing.service_name, "portcullis");
        assert!((tracing.sample_ratio - 1.0).abs() < f64::EPSILON);
        assert_eq!(tracing.timeout, Duration::from_secs(10));
        assert!(tracing.headers.is_empty());
        Ok(())
    });
}

#[test]
fn tracing_header_values_are_secret_in_debug_errors_and_effective_config() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let key = "collector-api-key-value-1234";
        let toml = format!(
            "{}\n[tracing]\n{TRACING_ON}service_name = \"edge\"\nsample_ratio = 0.25\nheaders = {{ \"x-api-key\" = \"{key}\" }}\n",
            minimal("")
        );
        jail.create_file("portcullis.toml", &toml).unwrap();
        let (config, effective) = Config::load_with_effective(Some(Path::new("portcullis.toml"))).unwrap();
        let tracing = config.tracing.clone().expect("tracing is on");
        assert_eq!(tracing.service_name, "edge");
        assert!((tracing.sample_ratio - 0.25).abs() < f64::EPSILON);
        assert_eq!(tracing.headers.len(), 1);
        assert_eq!(tracing.headers[0].0.as_str(), "x-api-key");
        assert_eq!(tracing.headers[0].1.expose(), key);
        assert!(!format!("{config:?}").contains(key), "Debug must not show the header value");
        let shown = effective.to_string();
        assert!(!shown.contains(key), "{shown}");
        assert_eq!(effective["tracing"]["headers"]["x-api-key"], "<redacted>");
        assert_eq!(effective["tracing"]["otlp_endpoint"], "http://127.0.0.1:4318/v1/traces");

        let bad = toml.replace("x-api-key\" = \"", "x-api-key\" = \"bad\\n");
        let text = error_text(load_from(jail, &bad));
        assert!(text.contains("tracing.headers") && !text.contains(key), "{text}");
        Ok(())
    });
}

// The rules of `[authz]` and `[[upstreams]]`, compiled here and evaluated by `crate::authz`.
mod rules {
    use http::Method;

    use crate::authz::{Access, Principal};
    use crate::config::compile_policy;
    use crate::config::raw::{RawAuthz, RawRule};

    fn principal(email: &str, verified: bool, groups: &[&str]) -> Principal {
        Principal {
            subject: "s".to_owned(),
            email: Some(email.to_owned()),
            email_verified: verified,
            name: None,
            preferred_username: None,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    fn rule(prefix: &str, allow: &str) -> RawRule {
        RawRule { path_prefix: Some(prefix.to_owned()), allow: Some(allow.to_owned()), ..RawRule::default() }
    }

    #[test]
    fn first_match_wins_and_prefixes_respect_segments() {
        let mut raw = RawAuthz::default();
        raw.rules.push(rule("/admin", "deny"));
        raw.rules.push(rule("/", "public"));
        let policy = compile_policy(&raw, &[]).unwrap();
        assert_eq!(policy.route(&Method::GET, "/admin").access, &Access::Deny);
        assert_eq!(policy.route(&Method::GET, "/admin/x").access, &Access::Deny);
        assert_eq!(policy.route(&Method::GET, "/administrator").access, &Access::Public);
    }

    #[test]
    fn patterns_are_anchored() {
        let mut raw = RawAuthz::default();
        raw.rules.push(RawRule {
            path_pattern: Some("/api/*/admin/**".to_owned()),
            allow: Some("deny".to_owned()),
            ..RawRule::default()
        });
        let policy = compile_policy(&raw, &[]).unwrap();
        assert_eq!(policy.route(&Method::GET, "/api/v1/admin/x").rule, "rules[0]");
        assert_eq!(policy.route(&Method::GET, "/api/v1/admin").rule, "default");
        assert_eq!(policy.route(&Method::GET, "/x/api/v1/admin/x").rule, "default");
        assert_eq!(policy.route(&Method::GET, "/api/v1/v2/admin/x").rule, "default");
    }

    #[test]
    fn case_insensitive_matching_is_opt_in() {
        let mut raw = RawAuthz::default();
        raw.rules.push(rule("/admin", "deny"));
        raw.rules.push(RawRule {
            path_pattern: Some("/api/*/Keys".to_owned()),
            allow: Some("deny".to_owned()),
            ..RawRule::default()
        });
        let policy = compile_policy(&raw, &[]).unwrap();
        assert!(!policy.case_insensitive());
        for path in ["/ADMIN", "/Admin/x", "/api/v1/keys"] {
            assert_eq!(policy.route(&Method::GET, path).rule, "default", "{path}");
            assert_ne!(policy.route_with_case(&Method::GET, path, true).rule, "default", "{path}");
        }
        raw.case_insensitive = true;
        let policy = compile_policy(&raw, &[]).unwrap();
        assert_eq!(policy.route(&Method::GET, "/aDmIn/x").rule, "rules[0]");
        assert_eq!(policy.route(&Method::GET, "/API/v1/KEYS").rule, "rules[1]");
        assert_eq!(policy.route(&Method::GET, "/administrator").rule, "default");
        assert_eq!(policy.route(&Method::GET, "/adm").rule, "default");
        assert_eq!(policy.route_with_case(&Method::GET, "/ADMIN", false).rule, "default");
    }

    #[test]
    fn methods_narrow_rules() {
        let mut raw = RawAuthz::default();
        raw.rules.push(RawRule { methods: vec!["post".to_owned()], ..rule("/x", "deny") });
        let policy = compile_policy(&raw, &[]).unwrap();
        assert_eq!(policy.route(&Method::POST, "/x").access, &Access::Deny);
        assert_eq!(policy.route(&Method::GET, "/x").rule, "default");
    }

    #[test]
    fn emails_domains_groups_and_verification() {
        let mut raw = RawAuthz::default();
        raw.rules.push(RawRule {
            email_domains: vec!["example.com".to_owned()],
            groups: vec!["admins".to_owned()],
            ..rule("/", "authenticated")
        });
        let policy = compile_policy(&raw, &[]).unwrap();
        let access = policy.route(&Method::GET, "/").access;
        assert!(policy.admits(access, &principal("a@EXAMPLE.com", true, &[])));
        assert!(!policy.admits(access, &principal("a@example.com", false, &[])));
        assert!(!policy.admits(access, &principal("a@evil.com@example.com", true, &[])));
        assert!(!policy.admits(access, &principal("a@notexample.com", true, &[])));
        assert!(policy.admits(access, &principal("a@other.org", false, &["admins"])));
        assert!(!policy.admits(access, &principal("a@other.org", true, &["Admins"])));
    }

    #[test]
    fn config_errors_name_the_key() {
        let mut raw = RawAuthz::default();
        raw.rules.push(RawRule { emails: vec!["x@y".to_owned()], ..rule("/", "public") });
        assert!(compile_policy(&raw, &[]).unwrap_err().to_string().starts_with("authz.rules[0].allow:"));
        let raw = RawAuthz { default: "maybe".to_owned(), ..RawAuthz::default() };
        assert!(compile_policy(&raw, &[]).unwrap_err().to_string().starts_with("authz.default:"));
        let raw = RawAuthz { allowed_emails: vec!["a@b@c".to_owned()], ..RawAuthz::default() };
        assert!(compile_policy(&raw, &[]).unwrap_err().to_string().starts_with("authz.allowed_emails[0]:"));
    }
}

#[test]
fn configured_hosts_are_compared_lower_case_without_dot() {
    assert_eq!(upstreams::configured_host("Admin.Example.").as_deref(), Some("admin.example"));
    assert_eq!(upstreams::configured_host("[::1]").as_deref(), Some("[::1]"));
    assert_eq!(upstreams::configured_host("admin.example:443"), None);
    assert_eq!(upstreams::configured_host("*.example"), None);
    assert_eq!(upstreams::configured_host("[::1]:443"), None);
    assert_eq!(upstreams::configured_host("."), None);
    assert_eq!(upstreams::configured_host(""), None);
}

#[test]
fn tls_session_tickets_are_on_by_default_and_can_be_turned_off() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let files = "[tls]\ncert_file = \"tls.crt\"\nkey_file = \"tls.key\"\n";
        let config = load_from(jail, &format!("{}\n{files}", minimal(""))).unwrap();
        assert_eq!(config.tls.unwrap().ticket_rotation, Some(Duration::from_secs(6 * 3600)), "on, rotating every 6h");
        let config = load_from(jail, &format!("{}\n{files}ticket_rotation = \"1h\"\n", minimal(""))).unwrap();
        assert_eq!(config.tls.unwrap().ticket_rotation, Some(Duration::from_secs(3600)));
        jail.set_env("PORTCULLIS_TLS__SESSION_TICKETS", "false");
        let config = load_from(jail, &format!("{}\n{files}", minimal(""))).unwrap();
        assert_eq!(config.tls.unwrap().ticket_rotation, None, "off: resumption from each process's memory only");
        Ok(())
    });
}

#[test]
fn client_tls_files_are_checked_as_the_clients_will_use_them() {
    let self_signed = || {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (cert, _) = self_signed();
    let (_, other_key) = self_signed();
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file("not-a-ca.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")?;
        jail.create_file("client.crt", &cert)?;
        jail.create_file("other.key", &other_key)?;
        let text = error_text(load_from(jail, &minimal("").replace("[oidc]", "[oidc]\nca_file = \"not-a-ca.pem\"")));
        assert!(text.starts_with("oidc.ca_file: unusable CA certificate"), "{text}");
        let mismatched = "[proxy]\nclient_cert_file = \"client.crt\"\nclient_key_file = \"other.key\"\n";
        let text = error_text(load_from(jail, &format!("{}\n{mismatched}", minimal(""))));
        assert!(text.starts_with("proxy.client_key_file: does not match"), "{text}");
        Ok(())
    });
}

/// Two providers, each with what `[oidc]` has; `extra` goes before `[oidc]`, `provider_extra` into the second.
fn two_providers(extra: &str, oidc_extra: &str, provider_extra: &str) -> String {
    format!(
        r#"
public_url = "https://app.example.com"
upstream = "http://127.0.0.1:8080"
{extra}
[oidc]
scopes = ["openid", "email"]
{oidc_extra}
[[oidc.providers]]
id = "staff"
display_name = "Staff"
issuer = "https://staff.example.com"
client_id = "gateway"
client_secret = "s3cret"

[[oidc.providers]]
id = "partners"
issuer = "https://partners.example.com"
client_id = "gateway-partners"
{provider_extra}
[session]
secret = "{GOOD_SECRET}"
"#
    )
}

#[test]
fn several_providers_load_with_the_oidc_section_as_their_defaults() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let config = load_from(jail, &two_providers("", "", "scopes = [\"openid\"]")).unwrap();
        let ids: Vec<&str> = config.providers.iter().map(|provider| provider.id.as_str()).collect();
        assert_eq!(ids, ["staff", "partners"]);
        assert_eq!(config.providers[0].display_name, "Staff");
        assert_eq!(config.providers[1].display_name, "partners", "the id when no display name is set");
        assert_eq!(config.providers[0].scopes, ["openid", "email"], "inherited from [oidc]");
        assert_eq!(config.providers[1].scopes, ["openid"], "overridden per provider");
        assert!(matches!(config.providers[0].credentials, ClientCredentials::Confidential { .. }));
        assert!(matches!(config.providers[1].credentials, ClientCredentials::Public));
        assert_eq!(config.providers[1].bearer_audience, "gateway-partners");
        Ok(())
    });
}

#[test]
fn a_single_oidc_section_is_the_default_provider() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let config = load_from(jail, &minimal("")).unwrap();
        assert_eq!(config.providers.len(), 1);
        assert_eq!(config.providers[0].id, DEFAULT_PROVIDER_ID);
        assert_eq!(config.providers[0].bearer_audience, "portcullis");
        Ok(())
    });
}

#[test]
fn provider_errors_name_the_provider() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let bad_issuer =
            two_providers("", "", "").replace("https://partners.example.com", "http://partners.example.com");
        let error = error_text(load_from(jail, &bad_issuer));
        assert!(error.starts_with("oidc.providers[partners].issuer:"), "{error}");

        let error = error_text(load_from(jail, &two_providers("", "", "scopes = [\"email\"]")));
        assert!(error.starts_with("oidc.providers[partners].scopes:"), "{error}");

        let twice = two_providers("", "", "").replace("id = \"partners\"", "id = \"staff\"");
        assert!(error_text(load_from(jail, &twice)).starts_with("oidc.providers[1].id:"));

        let bad_id = two_providers("", "", "").replace("id = \"partners\"", "id = \"Partners\"");
        assert!(error_text(load_from(jail, &bad_id)).starts_with("oidc.providers[1].id:"));

        let both = two_providers("", "issuer = \"https://idp.example.com\"", "");
        assert!(error_text(load_from(jail, &both)).starts_with("oidc.issuer:"));

        let audience = two_providers("[bearer]\naudience = \"api\"", "", "");
        assert!(error_text(load_from(jail, &audience)).starts_with("bearer.audience:"));
        Ok(())
    });
}

#[test]
fn routes_and_rules_name_known_providers() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let routes = r#"
[authz]
providers = ["staff"]
[[authz.rules]]
path_prefix = "/admin"
providers = ["staff"]
[[upstreams]]
url = "http://127.0.0.1:9000"
host = "wiki.example.com"
providers = ["partners", "staff"]
"#;
        let config = load_from(jail, &two_providers(routes, "", "")).unwrap();
        assert_eq!(config.authz.providers(), crate::authz::ProviderSet::only(0));
        assert_eq!(config.upstreams[0].providers.single(2), None);
        assert!(config.upstreams[0].providers.contains(0) && config.upstreams[0].providers.contains(1));

        let unknown = routes.replace("providers = [\"partners\", \"staff\"]", "providers = [\"contractors\"]");
        let error = error_text(load_from(jail, &two_providers(&unknown, "", "")));
        assert!(error.starts_with("upstreams[0].providers[0]:") && error.contains("contractors"), "{error}");

        let empty = routes.replace("[authz]\nproviders = [\"staff\"]", "[authz]\nproviders = []");
        assert!(error_text(load_from(jail, &two_providers(&empty, "", ""))).starts_with("authz.providers:"));
        Ok(())
    });
}

#[test]
fn a_cookie_domain_is_a_lowercase_parent_of_the_https_public_url_and_callback() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let with_domain =
            |domain: &str| minimal("").replace("[session]", &format!("[session]\ncookie_domain = {domain:?}"));
        assert!(load_from(jail, &minimal("")).unwrap().session.cookie_domain.is_none(), "opt-in");
        for accepted in ["example.com", "app.example.com"] {
            let config = load_from(jail, &with_domain(accepted)).unwrap();
            assert_eq!(config.session.cookie_domain.as_deref(), Some(accepted));
        }
        for refused in [
            "com",
            ".example.com",
            "example.com.",
            "Example.com",
            "https://example.com",
            "example.com:443",
            "example.com/x",
            "10.0.0.1",
            "[::1]",
            "-example.com",
            "exa mple.com",
            "",
            "other.example.com",
            "ample.com",
            "pp.example.com",
        ] {
            let text = error_text(load_from(jail, &with_domain(refused)));
            assert!(text.contains("session.cookie_domain"), "{refused:?}: {text}");
        }
        let plain_http = with_domain("example.com").replace("https://app.example.com", "http://app.example.com");
        let text = error_text(load_from(jail, &plain_http));
        assert!(text.contains("session.cookie_domain") && text.contains("only over https"), "{text}");
        let foreign_callback = with_domain("example.com")
            .replace("[oidc]", "[oidc]\nredirect_url = \"https://auth.example.org/oauth2/callback\"");
        let text = error_text(load_from(jail, &foreign_callback));
        assert!(text.contains("oidc.redirect_url") && text.contains("session.cookie_domain"), "{text}");
        let shared_callback = with_domain("example.com")
            .replace("[oidc]", "[oidc]\nredirect_url = \"https://auth.example.com/oauth2/callback\"");
        assert!(load_from(jail, &shared_callback).is_ok());
        Ok(())
    });
}

#[test]
fn the_several_providers_example_loads_once_its_secret_files_exist() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let example = include_str!("../../config/providers.example.toml");
        for (path, content) in [
            ("/run/secrets/portcullis-session-keys", GOOD_SECRET),
            ("/run/secrets/entra-client-secret", "entra-secret"),
            ("/run/secrets/google-client-secret", "google-secret"),
        ] {
            let local = path.trim_start_matches("/run/secrets/");
            jail.create_file(local, content)?;
        }
        let text = example.replace("/run/secrets/", "");
        let config = load_from(jail, &text).unwrap();
        let ids: Vec<&str> = config.providers.iter().map(|provider| provider.id.as_str()).collect();
        assert_eq!(ids, ["staff", "partners"]);
        assert!(
            config
                .providers
                .iter()
                .all(|provider| matches!(provider.credentials, ClientCredentials::Confidential { .. }))
        );
        assert_eq!(config.session.cookie_domain.as_deref(), Some("example.com"));
        assert_eq!(config.upstreams.len(), 2);
        Ok(())
    });
}
