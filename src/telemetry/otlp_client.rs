//! The HTTP client the OTLP exporter sends spans with: hyper-util's pooled
//! client over rustls with aws-lc-rs (our one crypto provider), verifying an
//! https collector against the system roots or `tracing.ca_file`.
//!
//! The SDK's batch processor exports from its own thread with a plain
//! executor, while hyper needs the tokio reactor: every request is therefore
//! spawned onto the runtime the client was built on, and only awaited there.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use opentelemetry_http::{HttpClient, HttpError};

/// Collector responses larger than this are refused (an export answer is a few bytes).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Sends OTLP export requests; cheap to clone.
#[derive(Clone, Debug)]
pub struct OtlpHttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

/// Why an export request failed; never carries a header value.
#[derive(Debug, thiserror::Error)]
enum ExportError {
    #[error("the collector did not answer within {0:?}")]
    Timeout(Duration),
    #[error("could not reach the collector: {0}")]
    Unreachable(String),
    #[error("the collector's response was too large or broke off")]
    Body,
    #[error("the export task ended unexpectedly")]
    Task,
}

impl OtlpHttpClient {
    /// A client bounded by `timeout` per request (connect to last body byte),
    /// verifying TLS as `tls` says; must be called inside a tokio runtime.
    pub fn new(timeout: Duration, tls: &crate::tls_client::ClientTls) -> Result<Self, String> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| "the OTLP client needs a tokio runtime".to_owned())?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        let config = crate::tls_client::client_config(tls, "OTLP collector")?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(2)
            .build(https);
        Ok(Self { client, runtime, timeout })
    }

    async fn exchange(
        client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
        timeout: Duration,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, ExportError> {
        let exchange = async {
            let response = client.request(request.map(Full::new)).await.map_err(|error| {
                ExportError::Unreachable(if error.is_connect() {
                    "connection failed".to_owned()
                } else {
                    error.to_string()
                })
            })?;
            let (parts, body) = response.into_parts();
            let body =
                Limited::new(body, MAX_RESPONSE_BYTES).collect().await.map_err(|_| ExportError::Body)?.to_bytes();
            Ok(Response::from_parts(parts, body))
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| ExportError::Timeout(timeout))?
    }
}

// The trait is declared with `async_trait`; this is its expansion, written out
// so the crate needs no proc-macro for one method.
impl HttpClient for OtlpHttpClient {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let task = self.runtime.spawn(Self::exchange(self.client.clone(), self.timeout, request));
        Box::pin(async move {
            match task.await {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(error)) => Err(Box::new(error) as HttpError),
                Err(_) => Err(Box::new(ExportError::Task) as HttpError),
            }
        })
    }
}
