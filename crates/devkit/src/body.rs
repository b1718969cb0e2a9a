//! The one response body type of the provider and the echo upstream.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

/// Any error a body can fail with while streaming.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming body, boxed so that every handler returns one type.
pub(crate) type Body = BoxBody<Bytes, BoxError>;

/// A complete body from bytes made here.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// Boxes any streaming body whose error converts into [`BoxError`].
pub(crate) fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}
