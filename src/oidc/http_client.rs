//! The HTTP client for calls to the identity provider: TLS verified against
//! the system roots or a configured CA, every call bounded in time and in response size.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tracing::Instrument as _;

use crate::workers::{WorkerCount, WorkerLocal};

/// Responses from the provider larger than this are refused (metadata, JWKS
/// and token responses are a few kilobytes).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// A failed call to the provider. Carries no response body or secret.
#[derive(Debug, thiserror::Error)]
pub enum IdpHttpError {
    #[error("the provider did not answer within {0:?}")]
    Timeout(Duration),
    #[error("could not reach the provider: {0}")]
    Unreachable(String),
    #[error("the provider's response was larger than {MAX_RESPONSE_BYTES} bytes or broke off")]
    Body,
    #[error("invalid request URL")]
    BadUrl,
}

/// A response read in full (bounded).
#[derive(Debug)]
pub struct IdpResponse {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Which call to the provider a request is: it names the request's trace span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdpCall {
    /// `/.well-known/openid-configuration`.
    Discovery,
    /// The provider's signing keys.
    Jwks,
    /// Authorization code (with PKCE verifier) for tokens.
    TokenExchange,
    /// Refresh token for fresh tokens.
    Refresh,
    /// Token revocation at sign-out (RFC 7009).
    Revocation,
    /// Token introspection for opaque bearer tokens (RFC 7662).
    Introspection,
}

impl IdpCall {
    /// A short, stable name (the span's `portcullis.idp.operation`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Discovery => "discovery",
            Self::Jwks => "jwks",
            Self::TokenExchange => "token_exchange",
            Self::Refresh => "refresh",
            Self::Revocation => "revocation",
            Self::Introspection => "introspection",
        }
    }
}

type PooledClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A pooled client for the provider; cheap to clone.
///
/// Each serving worker has its own pool (and the other threads one more): a
/// pooled connection is driven by a task on the runtime that opened it, so a
/// pool shared by all threads had a worker's code exchange cross to the
/// start-up runtime that held the connection and back (two cross-thread
/// wake-ups, 3.5 more context switches per login; `bench/logins.sh`).
#[derive(Clone, Debug)]
pub struct IdpHttpClient {
    clients: Arc<WorkerLocal<PooledClient>>,
    timeout: Duration,
}

impl IdpHttpClient {
    /// A client that verifies TLS as `tls` says (system roots unless a CA is
    /// configured), with a connection pool for each of `workers` serving workers.
    pub fn new(timeout: Duration, tls: &crate::tls_client::ClientTls, workers: WorkerCount) -> std::io::Result<Self> {
        let config = crate::tls_client::client_config(tls, "identity provider").map_err(std::io::Error::other)?;
        let clients = WorkerLocal::new(workers, || {
            let mut http = HttpConnector::new();
            http.enforce_http(false);
            http.set_connect_timeout(Some(timeout));
            http.set_nodelay(true);
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(config.clone())
                .https_or_http()
                .enable_http1()
                .wrap_connector(http);
            Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(https)
        });
        Ok(Self { clients: Arc::new(clients), timeout })
    }

    /// `GET url` accepting JSON; `call` names it in traces.
    pub async fn get(&self, call: IdpCall, url: &str) -> Result<IdpResponse, IdpHttpError> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(url)
            .header(header::ACCEPT, HeaderValue::from_static("application/json"))
            .body(Full::new(Bytes::new()))
            .map_err(|_| IdpHttpError::BadUrl)?;
        self.send(call, request).await
    }

    /// `POST url` with an `application/x-www-form-urlencoded` body and an
    /// optional `Authorization` header (client authentication); `call` names it in traces.
    pub async fn post_form(
        &self,
        call: IdpCall,
        url: &str,
        form: &[(&str, &str)],
        authorization: Option<HeaderValue>,
    ) -> Result<IdpResponse, IdpHttpError> {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(header::ACCEPT, HeaderValue::from_static("application/json"))
            .header(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        if let Some(value) = authorization {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        let request = builder.body(Full::new(Bytes::from(body))).map_err(|_| IdpHttpError::BadUrl)?;
        self.send(call, request).await
    }

    async fn send(&self, call: IdpCall, request: Request<Full<Bytes>>) -> Result<IdpResponse, IdpHttpError> {
        let span = idp_span(call, &request);
        let exchange = async {
            let response = self.clients.current().request(request).await.map_err(|error| {
                IdpHttpError::Unreachable(if error.is_connect() {
                    "connection failed".to_owned()
                } else {
                    error.to_string()
                })
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|_| IdpHttpError::Body)?
                .to_bytes();
            Ok(IdpResponse { status, body })
        };
        let result = tokio::time::timeout(self.timeout, exchange)
            .instrument(span.clone())
            .await
            .map_err(|_| IdpHttpError::Timeout(self.timeout))
            .and_then(|result| result);
        if !span.is_disabled() {
            match &result {
                Ok(response) => {
                    span.record("http.response.status_code", i64::from(response.status.as_u16()));
                    if response.status.is_server_error() {
                        span.record("otel.status_code", "ERROR");
                    }
                }
                Err(_) => {
                    span.record("otel.status_code", "ERROR");
                }
            }
        }
        result
    }
}

/// The client span of one call to the provider: the operation, method, host,
/// port and path. Never the form body, query or Authorization (codes,
/// verifiers, tokens and client secrets live there).
fn idp_span(call: IdpCall, request: &Request<Full<Bytes>>) -> tracing::Span {
    tracing::info_span!(
        target: crate::telemetry::SPAN_TARGET,
        "idp",
        otel.name = %format_args!("idp {}", call.as_str()),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        portcullis.idp.operation = call.as_str(),
        http.request.method = %request.method(),
        server.address = request.uri().host(),
        server.port = request.uri().port_u16().map(i64::from),
        url.path = request.uri().path(),
        http.response.status_code = tracing::field::Empty,
    )
}
