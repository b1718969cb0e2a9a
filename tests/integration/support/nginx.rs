//! A real nginx (Debian's `nginx` package) for forward-auth tests: started
//! with a generated configuration in a temporary directory (`daemon off`,
//! pid, logs and temp files inside it) on a loopback port, killed on drop.

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::eventually;

/// A running nginx.
pub struct Nginx {
    /// `http://127.0.0.1:PORT`
    pub origin: String,
    child: Child,
    dir: tempfile::TempDir,
}

/// A loopback port that was free a moment ago (bound to :0, then released).
pub fn free_port() -> u16 {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind :0");
    listener.local_addr().expect("address").port()
}

fn binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let candidates = std::env::var_os("PORTCULLIS_NGINX")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::split_paths(&path).map(|dir| dir.join("nginx")))
        .chain(["/usr/sbin/nginx", "/usr/local/sbin/nginx"].map(PathBuf::from));
    for candidate in candidates {
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "nginx is not installed, and the forward-auth end-to-end test needs it: run tests/run-all.sh \
         (it installs the Debian package `nginx`, see APT_REQUIREMENTS), or `apt-get install nginx`"
    );
}

impl Nginx {
    /// Starts nginx on `port` with `server` as the body of its one `server {}`
    /// block (the `listen` line is added), and waits until it accepts connections.
    pub async fn start(port: u16, server: &str) -> Nginx {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().display().to_string();
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {path}/nginx.pid;\nerror_log {path}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {path}/access.log;\n  client_body_temp_path {path}/body;\n  proxy_temp_path {path}/proxy;\n\
               fastcgi_temp_path {path}/fastcgi;\n  uwsgi_temp_path {path}/uwsgi;\n  scgi_temp_path {path}/scgi;\n\
               server {{\n    listen 127.0.0.1:{port};\n{server}\n  }}\n}}\n"
        );
        let config_path = dir.path().join("nginx.conf");
        std::fs::write(&config_path, config).expect("write nginx.conf");
        let child = Command::new(binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&config_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nginx");
        let mut nginx = Nginx { origin: format!("http://127.0.0.1:{port}"), child, dir };
        let addr = format!("127.0.0.1:{port}");
        let up = eventually(Duration::from_secs(10), || {
            let addr = addr.clone();
            async move { tokio::net::TcpStream::connect(addr).await.is_ok() }
        })
        .await;
        if !up || nginx.child.try_wait().ok().flatten().is_some() {
            panic!("nginx did not start on {addr}:\n{}", nginx.error_log());
        }
        nginx
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
