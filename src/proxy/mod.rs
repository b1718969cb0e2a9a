//! Forwarding to the upstream: header hygiene, pooled client, streaming, upgrades.
//!
//! The gateway decides who the user is; [`forward`] then cleans the request,
//! injects the identity, sends it to the [`Upstream`] and streams the answer
//! back. Bodies are never buffered whole in either direction.

/// The individual header-hygiene steps [`forward`] applies (public for the benchmarks).
pub mod headers;
mod identity;
mod plain_pool;
mod upgrade;
mod upstream;

#[cfg(test)]
mod tests;

use std::error::Error as _;

use http::header::{CONNECTION, HOST, HeaderName, HeaderValue, UPGRADE};
use http::{Extensions, Request, Response, StatusCode, Version};
use hyper::body::Incoming;

pub(crate) use headers::split_cookie_pairs;
pub use headers::{
    X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REQUEST_ID, remove_gateway_cookies, remove_hop_by_hop,
    remove_spoofed_identity,
};
pub use identity::{
    IdentityHeaders, X_FORWARDED_EMAIL, X_FORWARDED_GROUPS, X_FORWARDED_PREFERRED_USERNAME, X_FORWARDED_USER,
};
pub use upgrade::{ConnectionSlot, TunnelSession, Tunnels};
pub use upstream::{Upstream, UpstreamSettings};

use crate::body::{self, ProxyBody};

/// What the gateway knows about one request beyond the request itself.
pub struct ForwardContext<'a> {
    /// The client connection's peer IP as `X-Forwarded-For` sends it ([`headers::ip_header_value`]).
    pub forwarded_for: Option<&'a HeaderValue>,
    /// "http" or "https", as the client reached the gateway.
    pub client_scheme: &'a str,
    /// Cookie names the gateway owns: removed from the Cookie header sent upstream.
    pub is_gateway_cookie: &'a (dyn Fn(&str) -> bool + Sync),
    /// The authenticated user's headers; `None` on public (skip-auth) routes.
    pub identity: Option<&'a IdentityHeaders>,
    /// Keep the client's own `Authorization` (the operator's opt-in for public
    /// routes); never kept when `identity` is set.
    pub forward_client_authorization: bool,
    /// Forwarded as `X-Request-Id` when present.
    pub request_id: Option<&'a HeaderValue>,
    /// The operator's fixed headers for this upstream, replacing the client's;
    /// applied after hop-by-hop removal, so no `Connection` nomination drops them.
    pub set_headers: &'a [(HeaderName, HeaderValue)],
    /// Where an upgraded connection (WebSocket) is registered, so shutdown can wait for it.
    pub tunnels: &'a Tunnels,
    /// The session an upgraded connection would belong to (noted only for upgrade requests).
    pub tunnel_session: Option<TunnelSession>,
    /// The client connection's place in the connection limits, kept by a tunnel.
    pub connection_slot: Option<&'a ConnectionSlot>,
}

impl std::fmt::Debug for ForwardContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardContext")
            .field("forwarded_for", &self.forwarded_for)
            .field("client_scheme", &self.client_scheme)
            .field("identity", &self.identity)
            .field("forward_client_authorization", &self.forward_client_authorization)
            .finish_non_exhaustive()
    }
}

/// Why a request could not be forwarded; [`ProxyError::status`] is what the client gets.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The upstream could not be connected to (refused, connect timeout, DNS) or
    /// reset/closed the connection before answering (502).
    #[error("upstream unreachable")]
    Unreachable,
    /// No response headers within the response timeout (504).
    #[error("upstream timed out")]
    Timeout,
    /// The upstream answered with something that is not valid HTTP (502).
    #[error("upstream sent an invalid response")]
    BadResponse,
    /// The request target cannot be forwarded, e.g. `OPTIONS *` (400).
    #[error("request target cannot be forwarded")]
    BadRequest,
    /// The upstream configuration is unusable; a startup error, never per request.
    #[error("invalid upstream configuration: {0}")]
    InvalidUpstream(String),
}

impl ProxyError {
    /// The status the gateway answers with: 502, 504, 400, or 500 for configuration errors.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unreachable | Self::BadResponse => StatusCode::BAD_GATEWAY,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::InvalidUpstream(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short, stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::BadResponse => "bad_response",
            Self::BadRequest => "bad_request",
            Self::InvalidUpstream(_) => "invalid_upstream",
        }
    }
}

/// Forwards one request to the upstream and returns its (streaming) response.
///
/// The request is cleaned (hop-by-hop, spoofed identity, gateway cookies),
/// given `X-Forwarded-*`, the identity headers and the operator's fixed
/// headers, and sent as HTTP/1.1 (or HTTP/2 if the upstream negotiated it).
/// An HTTP/1.1 `Upgrade` request to an allow-listed protocol whose upstream
/// answers 101 is tunnelled; the gateway's server connection must be served
/// `with_upgrades()` for that.
pub async fn forward(
    upstream: &Upstream,
    mut req: Request<Incoming>,
    ctx: ForwardContext<'_>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let target = upstream.target_uri(req.uri())?;
    // HTTP/2 has no Upgrade mechanism (RFC 9113 §8.6); only HTTP/1.1 requests tunnel.
    let upgrade_protocol =
        if req.version() == Version::HTTP_11 { ctx.tunnels.allowed_upgrade(req.headers()) } else { None };
    let client_upgrade = upgrade_protocol.as_ref().map(|_| hyper::upgrade::on(&mut req));
    // HTTP/2 carries the host in `:authority`, which hyper keeps in the URI.
    let original_host = req
        .headers()
        .get(HOST)
        .cloned()
        .or_else(|| req.uri().authority().and_then(|authority| HeaderValue::from_str(authority.as_str()).ok()));

    let (mut parts, incoming) = req.into_parts();
    let headers = &mut parts.headers;
    // Room for the forwarding and identity headers added below, in one step:
    // hyper sizes the map for the headers it parsed, and each growth rehashes.
    headers
        .reserve(headers::FORWARDING_HEADERS + ctx.identity.map_or(0, IdentityHeaders::count) + ctx.set_headers.len());
    headers::remove_hop_by_hop(headers);
    if let Some(protocol) = &upgrade_protocol {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, protocol.clone());
    }
    // An authenticated request carries only the gateway's Authorization (or none), never the
    // client's; a public one carries the client's only where the operator opted in.
    headers::remove_spoofed_identity(headers, ctx.identity.is_some() || !ctx.forward_client_authorization);
    headers::remove_gateway_cookies(headers, ctx.is_gateway_cookie);
    headers::set_forwarding(
        headers,
        headers::Forwarding {
            forwarded_for: ctx.forwarded_for,
            client_scheme: ctx.client_scheme,
            original_host,
            request_id: ctx.request_id,
        },
    );
    if let Some(identity) = ctx.identity {
        identity.apply(headers);
    }
    for (name, value) in ctx.set_headers {
        headers.insert(name.clone(), value.clone());
    }
    parts.uri = target;
    // The gateway speaks its own version to the upstream (RFC 9110 §6.2); the
    // pooled client negotiates HTTP/2 by ALPN where the upstream offers it.
    parts.version = Version::HTTP_11;
    // Server-side extensions (connection internals) must not leak into the client.
    parts.extensions = Extensions::new();
    let outbound = Request::from_parts(parts, body::boxed(incoming));

    let mut response = upstream.send(outbound).await.inspect_err(|error| {
        tracing::warn!(kind = error.kind(), "upstream request failed");
    })?;

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            // A 101 nobody asked for cannot be relayed meaningfully.
            tracing::warn!(kind = "unsolicited_101", "upstream request failed");
            return Err(ProxyError::BadResponse);
        };
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        let owner = upgrade::TunnelOwner { session: ctx.tunnel_session, slot: ctx.connection_slot.map(Clone::clone) };
        upgrade::spawn_tunnel(client_upgrade, upstream_upgrade, ctx.tunnels, owner);
        // The 101 keeps Connection/Upgrade: they are what the client switches on.
        return Ok(response);
    }

    headers::remove_hop_by_hop(response.headers_mut());
    Ok(response)
}

/// Maps a client failure onto the error kinds the gateway distinguishes.
fn classify_client_error(error: &hyper_util::client::legacy::Error) -> ProxyError {
    if error.is_connect() {
        return ProxyError::Unreachable;
    }
    classify_causes(error.source())
}

/// The proxy error for a failed exchange on an upstream connection.
fn classify_hyper_error(error: &hyper::Error) -> ProxyError {
    if error.is_parse() || error.is_parse_status() {
        return ProxyError::BadResponse;
    }
    if error.is_incomplete_message() || error.is_closed() || error.is_canceled() {
        return ProxyError::Unreachable;
    }
    classify_causes(error.source())
}

/// The first cause that says the upstream went away makes it unreachable; a
/// cause that says it answered badly, or none, makes it a bad response.
fn classify_causes(mut source: Option<&(dyn std::error::Error + 'static)>) -> ProxyError {
    while let Some(cause) = source {
        if let Some(hyper_error) = cause.downcast_ref::<hyper::Error>() {
            if hyper_error.is_parse() || hyper_error.is_parse_status() {
                return ProxyError::BadResponse;
            }
            if hyper_error.is_incomplete_message() || hyper_error.is_closed() || hyper_error.is_canceled() {
                return ProxyError::Unreachable;
            }
        }
        if let Some(io_error) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind;
            if matches!(
                io_error.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::NotConnected
                    | ErrorKind::UnexpectedEof
            ) {
                return ProxyError::Unreachable;
            }
        }
        source = cause.source();
    }
    ProxyError::BadResponse
}
