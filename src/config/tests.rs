#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::result_large_err)]

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
        assert!(matches!(config.oidc.credentials, ClientCredentials::Public));
        assert_eq!(config.oidc.scopes, ["openid", "profile", "email"]);
        assert_eq!(config.oidc.redirect_url.as_str(), "https://app.example.com/oauth2/callback");
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
        assert_eq!(config.oidc.client_id, "from-env");
        assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
        match &config.oidc.credentials {
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
            (format!("{}\n[proxy]\nupgrade_protocols = [\"h2c\"]\n", minimal("")), "proxy.upgrade_protocols"),
            (format!("{}\n[proxy]\nupgrade_protocols = [\"a b\"]\n", minimal("")), "proxy.upgrade_protocols"),
            (format!("{}\n[proxy]\nupgrade_idle_timeout = \"0s\"\n", minimal("")), "proxy.upgrade_idle_timeout"),
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
        assert_eq!(config.oidc.scopes.first().map(String::as_str), Some("openid"));
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
        assert_eq!(config.oidc.client_id, "portcullis");
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
        ("[authz]\nallowed_email_domains = [\"a@b\"]\n", "authz.allowed_emails"),
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
