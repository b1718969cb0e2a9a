//! A real `redis-server` on loopback for shared-store tests, killed on drop;
//! plaintext, or TLS-only ([`RedisTls`]: `--port 0 --tls-port P`).
//!
//! redis-server cannot listen on port 0, so the port is picked by binding a
//! listener to `127.0.0.1:0`, reading its port and dropping it before the
//! server starts. Another process could take the port in between (a tiny
//! race); a start that fails is retried once on a new port.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A running `redis-server`.
pub struct RedisServer {
    port: u16,
    extra: Vec<String>,
    /// Its working directory: a replica's full sync writes an RDB file there.
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// TLS-only when set.
    tls: Option<RedisTls>,
}

/// The TLS files of TLS-only Redis processes (certificate, key, the CA they
/// and their test clients trust) and the host name test clients connect to.
#[derive(Clone)]
pub struct RedisTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    ca_pem: String,
    host: String,
}

impl RedisTls {
    /// A certificate from `pki` naming `names` (written as `{file}.crt`/`.key`;
    /// a client certificate too: replication and the cluster bus present it);
    /// test clients connect to `names[0]`.
    pub fn new(pki: &super::pki::Pki, names: &[&str], file: &str) -> RedisTls {
        let (cert, key) = pki.write(&pki.peer_for(names), file);
        let host = names.first().copied().unwrap_or("127.0.0.1").to_owned();
        RedisTls { ca: pki.ca_file(), cert, key, ca_pem: pki.ca_pem(), host }
    }

    /// The server options: TLS only on `port`, no client certificates asked,
    /// TLS for replication and the cluster bus too.
    pub fn server_options(&self, port: u16) -> Vec<String> {
        let mut options = vec!["--port".to_owned(), "0".to_owned(), "--tls-port".to_owned(), port.to_string()];
        for (option, path) in
            [("--tls-cert-file", &self.cert), ("--tls-key-file", &self.key), ("--tls-ca-cert-file", &self.ca)]
        {
            options.push(option.to_owned());
            options.push(path.display().to_string());
        }
        for option in ["--tls-auth-clients", "no", "--tls-replication", "yes", "--tls-cluster", "yes"] {
            options.push(option.to_owned());
        }
        options
    }

    /// The same as lines of a configuration file (for redis-sentinel).
    pub fn config_lines(&self, port: u16) -> String {
        let options = self.server_options(port);
        options.chunks(2).map(|pair| format!("{} {}\n", pair[0].trim_start_matches('-'), pair[1])).collect()
    }

    /// A client of the process on `port`, trusting the CA, connecting to the host name.
    pub fn client(&self, port: u16, password: Option<&str>) -> Option<redis::Client> {
        let info = redis::ConnectionInfo {
            addr: redis::ConnectionAddr::TcpTls { host: self.host.clone(), port, insecure: false, tls_params: None },
            redis: redis::RedisConnectionInfo {
                password: password.map(str::to_owned),
                ..redis::RedisConnectionInfo::default()
            },
        };
        let certificates =
            redis::TlsCertificates { client_tls: None, root_cert: Some(self.ca_pem.clone().into_bytes()) };
        redis::Client::build_with_tls(info, certificates).ok()
    }
}

impl RedisServer {
    /// Starts a server on a free loopback port without persistence; fails the
    /// test (saying how to install it) when `redis-server` is missing.
    pub async fn start() -> RedisServer {
        Self::start_with(&[]).await
    }

    /// [`RedisServer::start`] with extra command-line options (`--replicaof 127.0.0.1 6379`).
    pub async fn start_with(extra: &[&str]) -> RedisServer {
        Self::start_as(None, extra).await
    }

    /// [`RedisServer::start_with`], TLS only.
    pub async fn start_tls(tls: &RedisTls, extra: &[&str]) -> RedisServer {
        Self::start_as(Some(tls), extra).await
    }

    /// [`RedisServer::start_tls`] when `tls` is set, else [`RedisServer::start_with`].
    pub async fn start_as(tls: Option<&RedisTls>, extra: &[&str]) -> RedisServer {
        for attempt in 0..2 {
            let port = free_port();
            let extra = extra.iter().map(|option| (*option).to_owned()).collect();
            let dir = tempfile::tempdir().expect("a working directory for redis-server");
            let mut server = RedisServer { port, extra, dir, child: None, tls: tls.cloned() };
            if server.spawn().await {
                return server;
            }
            eprintln!("redis-server did not come up on port {port} (attempt {attempt}); retrying on another port");
        }
        panic!("redis-server did not start twice in a row");
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its TLS files, when it is TLS-only.
    pub fn tls(&self) -> Option<&RedisTls> {
        self.tls.as_ref()
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Calls per command since the server started, from `INFO commandstats`
    /// (`"mget" -> 3`; subcommands as `"client|setinfo"`). The `INFO` that
    /// reads them is counted too, under `"info"`.
    pub async fn command_calls(&self) -> BTreeMap<String, u64> {
        let text = info(self.port, "commandstats").await;
        let mut calls = BTreeMap::new();
        for line in text.lines() {
            let Some((name, fields)) = line.trim_end().strip_prefix("cmdstat_").and_then(|rest| rest.split_once(':'))
            else {
                continue;
            };
            let count = fields
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))
                .and_then(|count| count.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("unreadable commandstats line: {line}"));
            calls.insert(name.to_owned(), count);
        }
        calls
    }

    /// Kills the server (SIGKILL): its data is gone, as after a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a new, empty server on the same port with other extra options.
    pub async fn restart_with(&mut self, extra: &[&str]) {
        self.extra = extra.iter().map(|option| (*option).to_owned()).collect();
        self.restart().await;
    }

    /// Starts a new, empty server on the same port after [`RedisServer::kill`].
    pub async fn restart(&mut self) {
        self.kill();
        assert!(self.spawn().await, "redis-server did not restart on port {}", self.port);
    }

    async fn spawn(&mut self) -> bool {
        let listen = match &self.tls {
            Some(tls) => tls.server_options(self.port),
            None => vec!["--port".to_owned(), self.port.to_string()],
        };
        let spawned = Command::new("redis-server")
            .args(listen)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed: the shared-store tests need it. tests/run-all.sh installs it \
                 (Debian package redis-server), or run: apt-get install redis-server"
            ),
            Err(error) => panic!("cannot run redis-server: {error}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                // Exited: most likely the port was taken in the meantime.
                self.child = None;
                return false;
            }
            if ping_as(self.port, self.tls.as_ref()).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    listener.local_addr().expect("probe address").port()
}

/// [`ping`] over TLS when `tls` is set.
pub(crate) async fn ping_as(port: u16, tls: Option<&RedisTls>) -> bool {
    let Some(tls) = tls else { return ping(port).await };
    let exchange = async {
        let mut connection = tls.client(port, None)?.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING").query_async::<String>(&mut connection).await.ok()
    };
    tokio::time::timeout(Duration::from_secs(2), exchange).await.ok().flatten().is_some_and(|pong| pong == "PONG")
}

pub(crate) async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await.ok()?;
        Some(&reply == b"+PONG\r\n")
    };
    tokio::time::timeout(Duration::from_secs(1), attempt).await.ok().flatten().unwrap_or(false)
}

/// The text of `INFO section`, read over RESP (a bulk string reply).
async fn info(port: u16, section: &str) -> String {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect to redis-server");
        stream.write_all(format!("INFO {section}\r\n").as_bytes()).await.expect("send INFO");
        let mut reply = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let read = stream.read(&mut buffer).await.expect("read the INFO reply");
            assert!(read > 0, "redis-server closed the connection mid-reply");
            reply.extend_from_slice(buffer.get(..read).unwrap_or_default());
            let Some(header_end) = reply.windows(2).position(|pair| pair == b"\r\n") else { continue };
            let header = std::str::from_utf8(reply.get(..header_end).unwrap_or_default()).expect("a text header");
            let length: usize = header
                .strip_prefix('$')
                .and_then(|length| length.parse().ok())
                .unwrap_or_else(|| panic!("not a bulk reply: {header}"));
            let body_start = header_end + 2;
            if let Some(body) = reply.get(body_start..body_start + length) {
                return String::from_utf8_lossy(body).into_owned();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), exchange).await.expect("redis-server answers INFO")
}
