//! A second gateway instance beside a [`TestWorld`]'s: same provider, upstream,
//! configuration and public URL (as behind a load balancer), its own socket.

use std::net::SocketAddr;
use std::sync::Arc;

use portcullis::config::RawConfig;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::browser::Browser;
use super::http::Reply;
use super::world::TestWorld;

/// Another replica of the world's gateway; stops when dropped.
pub struct Replica {
    pub addr: SocketAddr,
    public_url: String,
    issuer: String,
    cookie_name: String,
    gateway: Arc<portcullis::gateway::Gateway>,
    task: JoinHandle<Result<(), portcullis::ServeError>>,
}

impl Replica {
    /// Starts another gateway with the world's configuration.
    pub async fn start(world: &TestWorld) -> Replica {
        Self::start_with(world, |_| {}).await
    }

    /// Starts another gateway with the world's configuration, changed by `tweak`.
    pub async fn start_with(world: &TestWorld, tweak: impl FnOnce(&mut RawConfig)) -> Replica {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the replica");
        let addr = listener.local_addr().expect("replica address");
        let config = world.replica_config_with(addr, tweak);
        let gateway = portcullis::start(config, world.clock.clone()).await.expect("the replica starts");
        let task = tokio::spawn(portcullis::run(Arc::clone(&gateway), listener, std::future::pending()));
        Replica {
            addr,
            public_url: world.public_url.clone(),
            issuer: world.provider.issuer().to_owned(),
            cookie_name: world.session_cookie_name(),
            gateway,
            task,
        }
    }

    /// A browser with an empty jar whose requests to the public URL reach this replica.
    pub fn browser(&self) -> Browser {
        Browser::new(
            format!("http://{}", self.addr),
            self.public_url.clone(),
            self.issuer.clone(),
            self.cookie_name.clone(),
        )
    }

    /// This replica's Prometheus metrics, as `/metrics` serves them.
    pub fn metrics(&self) -> String {
        self.gateway.render_metrics()
    }

    /// `GET /ready` on this replica.
    pub async fn ready(&self) -> Reply {
        self.browser().api_get("/ready").await
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.task.abort();
    }
}
