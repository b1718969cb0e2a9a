//! Reading the small form bodies the gateway accepts itself (sign-out,
//! back-channel logout): bounded in size and time, urlencoded only.

use std::time::Duration;

use http::{Request, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

/// Largest form body accepted (a logout token with a few claims fits easily).
pub(super) const MAX_FORM_BYTES: usize = 16 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A form body that could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum FormError {
    #[error("content type must be application/x-www-form-urlencoded")]
    ContentType,
    #[error("body too large or unreadable")]
    Body,
    #[error("body not received in time")]
    Timeout,
}

/// The urlencoded pairs of a request body.
pub(super) async fn read_form(request: Request<Incoming>) -> Result<Vec<(String, String)>, FormError> {
    let urlencoded = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    if !urlencoded {
        return Err(FormError::ContentType);
    }
    let collect = Limited::new(request.into_body(), MAX_FORM_BYTES).collect();
    let body = tokio::time::timeout(READ_TIMEOUT, collect)
        .await
        .map_err(|_| FormError::Timeout)?
        .map_err(|_| FormError::Body)?
        .to_bytes();
    Ok(form_urlencoded::parse(&body).into_owned().collect())
}

/// The first value of query parameter `name`.
pub(super) fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes()).find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

/// The value of the only `name` field; `None` when absent or repeated.
pub(super) fn single<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut values = pairs.iter().filter(|(key, _)| key == name).map(|(_, value)| value.as_str());
    let first = values.next()?;
    values.next().is_none().then_some(first)
}
