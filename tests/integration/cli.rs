//! The `portcullis` command as an operator runs it: `secret`, `--version`,
//! and `check-config`, which validates everything it can without serving and
//! never prints a secret.

use std::process::Command;

fn portcullis() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    // The test process's own environment must not leak configuration in.
    for (name, _) in std::env::vars() {
        if name.starts_with("PORTCULLIS_") {
            command.env_remove(name);
        }
    }
    command
}

fn write_config(dir: &tempfile::TempDir, extra: &str) -> std::path::PathBuf {
    let path = dir.path().join("portcullis.toml");
    let text = format!(
        "public_url = \"https://app.example.com\"\nupstream = \"http://127.0.0.1:8080\"\n[oidc]\nissuer = \"https://login.example.com\"\nclient_id = \"portcullis\"\n{extra}"
    );
    std::fs::write(&path, text).expect("write the config");
    path
}

#[test]
fn secret_prints_a_fresh_32_byte_key_and_version_prints_the_version() {
    let first = portcullis().arg("secret").output().expect("run portcullis secret");
    let second = portcullis().arg("secret").output().expect("run portcullis secret");
    let key = String::from_utf8(first.stdout).expect("utf-8");
    assert!(first.status.success());
    assert_eq!(key.trim().len(), 44, "base64 of 32 bytes: {key}");
    assert_ne!(key, String::from_utf8(second.stdout).expect("utf-8"));
    let version = portcullis().arg("--version").output().expect("run portcullis --version");
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn check_config_accepts_a_good_file_and_never_prints_its_secrets() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = write_config(&dir, "");
    let secret = crate::support::random_session_secret();
    let output = portcullis()
        .args(["check-config", "--config"])
        .arg(&path)
        .env("PORTCULLIS_SESSION__SECRET", &secret)
        .env("PORTCULLIS_OIDC__CLIENT_SECRET", "client-secret-value")
        .output()
        .expect("run check-config");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("configuration is valid"));
    assert!(stdout.contains("<redacted>"));
    for leaked in [secret.as_str(), "client-secret-value"] {
        assert!(!stdout.contains(leaked) && !stderr.contains(leaked), "a secret was printed");
    }
}

#[test]
fn check_config_refuses_a_non_http_upstream_and_a_weak_secret_naming_the_key() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = write_config(&dir, "[[upstreams]]\nurl = \"ftp://files.internal\"\npath_prefix = \"/files/\"\n");
    let output = portcullis()
        .args(["check-config", "--config"])
        .arg(&path)
        .env("PORTCULLIS_SESSION__SECRET", crate::support::random_session_secret())
        .output()
        .expect("run check-config");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("upstreams") && stderr.contains("ftp"), "{stderr}");

    let weak = portcullis()
        .args(["check-config", "--config"])
        .arg(write_config(&dir, ""))
        .env("PORTCULLIS_SESSION__SECRET", "c2hvcnQ=")
        .output()
        .expect("run check-config");
    assert_eq!(weak.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&weak.stderr);
    assert!(stderr.contains("session.secret") && !stderr.contains("c2hvcnQ="), "{stderr}");
}

/// check-config validates without building a gateway: a bad `[[upstreams]]`
/// setting, an unusable listener key and a TLS ticket rotation out of range
/// are all found, naming the key.
#[test]
fn check_config_names_a_bad_upstream_setting_an_unusable_tls_key_and_a_bad_ticket_rotation() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let check = |extra: &str| {
        let output = portcullis()
            .args(["check-config", "--config"])
            .arg(write_config(&dir, extra))
            .env("PORTCULLIS_SESSION__SECRET", crate::support::random_session_secret())
            .output()
            .expect("run check-config");
        assert_eq!(output.status.code(), Some(2), "{extra}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };

    let upstream = "[[upstreams]]\nurl = \"http://127.0.0.1:8081\"\npath_prefix = \"/a/\"\n\
                    [[upstreams]]\nurl = \"http://127.0.0.1:8082\"\npath_prefix = \"/b/\"\ntoken = \"refresh\"\n";
    let stderr = check(upstream);
    assert!(stderr.contains("upstreams[1].token:"), "{stderr}");

    let pki = crate::support::pki::Pki::new();
    let (cert_file, key_file) = pki.write(&pki.server(), "listener");
    std::fs::write(&key_file, "not a private key\n").expect("spoil the key");
    let tls = format!("[tls]\ncert_file = {:?}\nkey_file = {:?}\n", cert_file, key_file);
    let stderr = check(&tls);
    assert!(stderr.contains("tls.key_file:"), "{stderr}");
    assert!(!stderr.contains("tls.cert_file:"), "the certificate is fine: {stderr}");

    // Usable files again, and a ticket rotation out of its range.
    pki.write(&pki.server(), "listener");
    let stderr = check(&format!("{tls}ticket_rotation = \"1m\"\n"));
    assert!(stderr.contains("tls.ticket_rotation: must be between 10m and 24h"), "{stderr}");
}

/// `[ext_authz]` is validated by check-config: its address, peers and
/// certificate files, each error naming its key and quoting no value.
#[test]
fn check_config_validates_ext_authz() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let run = |extra: &str| {
        portcullis()
            .args(["check-config", "--config"])
            .arg(write_config(&dir, extra))
            .env("PORTCULLIS_SESSION__SECRET", crate::support::random_session_secret())
            .output()
            .expect("run check-config")
    };
    let refused = |extra: &str| {
        let output = run(extra);
        assert_eq!(output.status.code(), Some(2), "{extra}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };

    let good = run("[ext_authz]\ngrpc_listen = \"127.0.0.1:9191\"\ntrusted_peers = [\"10.0.0.0/8\"]\n");
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(stdout.contains("\"grpc_listen\": \"127.0.0.1:9191\""), "{stdout}");

    let stderr = refused("[ext_authz]\ngrpc_listen = \"not-an-address\"\n");
    assert!(stderr.contains("ext_authz.grpc_listen:"), "{stderr}");
    assert!(!stderr.contains("not-an-address"), "{stderr}");
    let stderr =
        refused("[ext_authz]\ngrpc_listen = \"127.0.0.1:9191\"\ntrusted_peers = [\"10.0.0.0/8\", \"everyone\"]\n");
    assert!(stderr.contains("ext_authz.trusted_peers[1]:"), "{stderr}");
    let stderr = refused("[ext_authz]\ngrpc_listen = \"127.0.0.1:9191\"\ntrusted_peers = []\n");
    assert!(stderr.contains("ext_authz.trusted_peers:"), "{stderr}");
    let stderr = refused("[ext_authz]\ngrpc_lsten = \"127.0.0.1:9191\"\n");
    assert!(stderr.contains("grpc_lsten"), "unknown keys are refused: {stderr}");

    let pki = crate::support::pki::Pki::new();
    let (cert_file, key_file) = pki.write(&pki.server(), "ext-authz");
    std::fs::write(&key_file, "not a private key\n").expect("spoil the key");
    let tls = format!(
        "[ext_authz]\ngrpc_listen = \"127.0.0.1:9191\"\ncert_file = {:?}\nkey_file = {:?}\n",
        cert_file, key_file
    );
    let stderr = refused(&tls);
    assert!(stderr.contains("ext_authz.key_file:"), "{stderr}");
    let stderr = refused(&format!("[ext_authz]\ncert_file = {cert_file:?}\nkey_file = {key_file:?}\n"));
    assert!(stderr.contains("ext_authz.cert_file: needs ext_authz.grpc_listen"), "{stderr}");
}
