//! The upstream: connection pools (one per serving worker; `plain_pool` for
//! http, hyper-util's client for https), target URI building and the
//! response timeout.
//!
//! Everything derivable from the configured base URL (scheme, authority, path
//! prefix) is parsed once in [`Upstream::new`], so building a target URI per
//! request is at most one string join.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tracing::Instrument as _;

use super::ProxyError;
use super::plain_pool::{Address, PlainPool};
use crate::body::ProxyBody;
use crate::workers::{WorkerCount, WorkerLocal};

/// Timeouts and pool limits of the upstream client.
#[derive(Clone, Debug)]
pub struct UpstreamSettings {
    /// How long a TCP connect may take (TLS handshake excluded).
    pub connect_timeout: Duration,
    /// How long to wait for the upstream's response headers, connecting included.
    pub response_timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
    /// How many idle connections are kept per upstream host, in each worker's pool.
    pub pool_max_idle_per_host: usize,
    /// Roots, client certificate and verification for an https upstream.
    pub tls: crate::tls_client::ClientTls,
}

impl Default for UpstreamSettings {
    /// 5 s connect, 30 s until response headers, 90 s pool idle, 64 idle connections.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(30),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 64,
            tls: crate::tls_client::ClientTls::default(),
        }
    }
}

type UpstreamClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

/// The forwarding target: base URL plus a pooled keep-alive client; cloning is one `Arc` bump.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    base: url::Url,
    scheme: Scheme,
    authority: Authority,
    /// The base path without its trailing `/`; `None` when the base path is `/`.
    path_prefix: Option<String>,
    transport: Transport,
    response_timeout: Duration,
}

/// How requests reach the upstream: connection pools, one per serving worker.
enum Transport {
    /// Plain http: HTTP/1.1 keep-alive connections.
    Plain(WorkerLocal<PlainPool>),
    /// https: hyper-util's client (rustls, HTTP/2 by ALPN).
    Tls(Box<WorkerLocal<UpstreamClient>>),
}

/// A worker's pool for the plain-http upstream at `base`.
fn plain_pool(base: &url::Url, authority: &Authority, settings: &UpstreamSettings) -> Result<PlainPool, ProxyError> {
    let port = base.port_or_known_default().unwrap_or(80);
    let address = match base.host() {
        Some(url::Host::Ipv4(ip)) => Address::Ip(SocketAddr::new(ip.into(), port)),
        Some(url::Host::Ipv6(ip)) => Address::Ip(SocketAddr::new(ip.into(), port)),
        Some(url::Host::Domain(name)) => Address::Name(name.to_owned(), port),
        None => return Err(invalid("has no host")),
    };
    let host = HeaderValue::from_str(authority.as_str()).map_err(|_| invalid("has an invalid host"))?;
    Ok(PlainPool::new(
        address,
        host,
        settings.connect_timeout,
        settings.pool_idle_timeout,
        settings.pool_max_idle_per_host,
    ))
}

/// hyper-util's connector for an https upstream: TCP with the connect
/// timeout, then rustls offering HTTP/2 and HTTP/1.1.
fn https_connector(settings: &UpstreamSettings) -> Result<HttpsConnector<HttpConnector>, ProxyError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(settings.connect_timeout));
    http.set_nodelay(true);
    let tls = crate::tls_client::client_config(&settings.tls, "upstream").map_err(ProxyError::InvalidUpstream)?;
    Ok(HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http))
}

impl Upstream {
    /// Builds the client for an `http` or `https` base URL without userinfo, query or fragment.
    ///
    /// TLS uses rustls with aws-lc-rs and the platform's native roots; HTTP/2 is
    /// used when the upstream offers it by ALPN, HTTP/1.1 otherwise. Each of the
    /// `worker_count` serving workers gets its own connection pool, so a
    /// request and the upstream connection it uses stay on one thread.
    pub fn new(base: url::Url, settings: UpstreamSettings, worker_count: WorkerCount) -> Result<Self, ProxyError> {
        let scheme = match base.scheme() {
            "http" => Scheme::HTTP,
            "https" => Scheme::HTTPS,
            other => {
                return Err(ProxyError::InvalidUpstream(format!("scheme {other:?} is not http or https")));
            }
        };
        if !base.username().is_empty() || base.password().is_some() {
            return Err(invalid("must not contain credentials"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("must not have a query or fragment"));
        }
        let host = base.host_str().ok_or_else(|| invalid("has no host"))?;
        let authority = match base.port() {
            Some(port) => Authority::try_from(format!("{host}:{port}")),
            None => Authority::try_from(host),
        }
        .map_err(|_| invalid("has an invalid host"))?;
        let trimmed = base.path().trim_end_matches('/');
        let path_prefix = (!trimmed.is_empty()).then(|| trimmed.to_owned());

        let transport = if scheme == Scheme::HTTP {
            Transport::Plain(WorkerLocal::try_new(worker_count, || plain_pool(&base, &authority, &settings))?)
        } else {
            let connector = https_connector(&settings)?;
            Transport::Tls(Box::new(WorkerLocal::new(worker_count, || {
                Client::builder(TokioExecutor::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(settings.pool_idle_timeout)
                    .pool_max_idle_per_host(settings.pool_max_idle_per_host)
                    .build(connector.clone())
            })))
        };

        Ok(Self {
            inner: Arc::new(Inner {
                base,
                scheme,
                authority,
                path_prefix,
                transport,
                response_timeout: settings.response_timeout,
            }),
        })
    }

    /// The configured base URL.
    pub fn base(&self) -> &url::Url {
        &self.inner.base
    }

    /// Base scheme and authority, base path as a prefix (no double slash), then the request's path and query unchanged.
    pub fn target_uri(&self, request_uri: &Uri) -> Result<Uri, ProxyError> {
        let path = request_uri.path();
        // Only origin-form paths are forwarded (`OPTIONS *` and odd forms are not).
        if !path.starts_with('/') {
            return Err(ProxyError::BadRequest);
        }
        let request_path_and_query =
            request_uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        let path_and_query = match &self.inner.path_prefix {
            None => request_path_and_query,
            Some(prefix) => {
                let tail = request_path_and_query.as_str();
                let mut joined = String::with_capacity(prefix.len() + tail.len());
                joined.push_str(prefix);
                joined.push_str(tail);
                PathAndQuery::from_maybe_shared(Bytes::from(joined)).map_err(|_| ProxyError::BadRequest)?
            }
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.inner.scheme.clone());
        parts.authority = Some(self.inner.authority.clone());
        parts.path_and_query = Some(path_and_query);
        Uri::from_parts(parts).map_err(|_| ProxyError::BadRequest)
    }

    /// Sends a prepared request; fails with `Timeout` if no response headers arrive in time.
    ///
    /// With tracing on, the exchange (until the response head) is a client
    /// span whose W3C `traceparent` replaces any the client sent.
    pub(super) async fn send(&self, mut request: Request<ProxyBody>) -> Result<Response<ProxyBody>, ProxyError> {
        let span = self.span(&request);
        crate::telemetry::otel::inject_context(&span, request.headers_mut());
        let exchange = async {
            match &self.inner.transport {
                Transport::Plain(pools) => pools.current().send(request).await,
                Transport::Tls(clients) => match clients.current().request(request).await {
                    Ok(response) => Ok(response.map(crate::body::boxed)),
                    Err(error) => Err(super::classify_client_error(&error)),
                },
            }
        };
        let result = match tokio::time::timeout(self.inner.response_timeout, exchange).instrument(span.clone()).await {
            Ok(result) => result,
            Err(_elapsed) => Err(ProxyError::Timeout),
        };
        if !span.is_disabled() {
            match &result {
                Ok(response) => {
                    span.record("http.response.status_code", i64::from(response.status().as_u16()));
                    if response.status().is_server_error() {
                        span.record("otel.status_code", "ERROR");
                    }
                }
                Err(error) => {
                    span.record("error.type", error.kind());
                    span.record("otel.status_code", "ERROR");
                }
            }
        }
        result
    }

    /// The client span of one forward: method, upstream host and port, and the
    /// path without its query (queries can carry codes and tokens).
    fn span(&self, request: &Request<ProxyBody>) -> tracing::Span {
        tracing::info_span!(
            target: crate::telemetry::SPAN_TARGET,
            "upstream",
            otel.name = %format_args!("{} upstream", request.method()),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = %request.method(),
            server.address = self.inner.authority.host(),
            server.port = self.inner.authority.port_u16().map(i64::from),
            url.path = request.uri().path(),
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        )
    }
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("base", &self.inner.base.as_str())
            .field("response_timeout", &self.inner.response_timeout)
            .finish_non_exhaustive()
    }
}

fn invalid(reason: &str) -> ProxyError {
    ProxyError::InvalidUpstream(format!("upstream URL {reason}"))
}

#[cfg(test)]
mod tests {

    use super::*;

    fn upstream(base: &str) -> Upstream {
        Upstream::new(base.parse().unwrap(), UpstreamSettings::default(), WorkerCount::resolve(1)).unwrap()
    }

    #[tokio::test]
    async fn target_uri_joins_base_path_without_double_slash() {
        let request: Uri = "/a/b?x=1&y=%2F".parse().unwrap();
        for (base, expected) in [
            ("http://up.test:8080", "http://up.test:8080/a/b?x=1&y=%2F"),
            ("http://up.test/", "http://up.test/a/b?x=1&y=%2F"),
            ("https://up.test/app", "https://up.test/app/a/b?x=1&y=%2F"),
            ("https://up.test/app/", "https://up.test/app/a/b?x=1&y=%2F"),
            ("http://[::1]:9000/p/", "http://[::1]:9000/p/a/b?x=1&y=%2F"),
        ] {
            assert_eq!(upstream(base).target_uri(&request).unwrap(), expected, "{base}");
        }
        let root: Uri = "/".parse().unwrap();
        assert_eq!(upstream("http://up.test/app/").target_uri(&root).unwrap(), "http://up.test/app/");
    }

    #[tokio::test]
    async fn absolute_form_requests_keep_only_path_and_query() {
        let request: Uri = "http://client.test/x?q".parse().unwrap();
        assert_eq!(upstream("http://up.test").target_uri(&request).unwrap(), "http://up.test/x?q");
    }

    #[tokio::test]
    async fn asterisk_form_is_rejected() {
        let request: Uri = "*".parse().unwrap();
        assert!(matches!(upstream("http://up.test").target_uri(&request), Err(ProxyError::BadRequest)));
    }

    #[tokio::test]
    async fn invalid_bases_are_rejected() {
        for base in ["ftp://up.test", "http://u:p@up.test", "http://up.test/?q=1", "http://up.test/#f"] {
            assert!(
                matches!(
                    Upstream::new(base.parse().unwrap(), UpstreamSettings::default(), WorkerCount::resolve(1)),
                    Err(ProxyError::InvalidUpstream(_))
                ),
                "{base}"
            );
        }
    }
}
