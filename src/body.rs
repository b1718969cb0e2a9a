//! The one response/request body type that flows through the gateway.
//!
//! Upstream bodies stream through untouched; gateway-made bodies are small and
//! complete. Both are boxed into [`ProxyBody`] so handlers return one type.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};

/// Any error a body can fail with while streaming.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming body, boxed so that upstream and gateway bodies share a type.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// A complete body from bytes the gateway made itself.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed()
}

/// Boxes any streaming body whose error converts into [`BoxError`].
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}
