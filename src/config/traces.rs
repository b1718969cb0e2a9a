//! `[tracing]`: validation of the optional OpenTelemetry export (OTLP/HTTP).
//! Absent `otlp_endpoint` means off. Header values may be API keys: they are
//! [`SecretString`]s and never appear in errors, `Debug` or `check-config`.

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use url::Url;

use super::{ConfigError, invalid, load_roots, non_zero, raw};
use crate::secret::SecretString;
use crate::tls_client::ClientTls;

/// `[tracing]`, validated: present only when traces are exported.
#[derive(Clone, Debug)]
pub struct TracingConfig {
    /// Where spans are POSTed (OTLP/HTTP, protobuf), used exactly as given.
    pub otlp_endpoint: Url,
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// Share of new root traces recorded, in `0.0..=1.0`; a remote parent's decision is followed.
    pub sample_ratio: f64,
    /// Extra headers on every export request (checked to be valid HTTP header names and values).
    pub headers: Vec<(HeaderName, SecretString)>,
    /// Timeout of each export request.
    pub timeout: Duration,
    /// TLS towards an https collector.
    pub tls: ClientTls,
}

/// Validates `[tracing]`; `Ok(None)` when no endpoint is set (tracing off).
pub(super) fn validate_tracing(raw: raw::RawTracing) -> Result<Option<TracingConfig>, ConfigError> {
    let Some(endpoint) = raw.otlp_endpoint.filter(|text| !text.trim().is_empty()) else {
        return Ok(None);
    };
    const ENDPOINT: &str = "tracing.otlp_endpoint";
    let otlp_endpoint = Url::parse(&endpoint)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
        .ok_or_else(|| invalid(ENDPOINT, "must be an http(s) URL, e.g. http://127.0.0.1:4318/v1/traces"))?;
    if !otlp_endpoint.username().is_empty() || otlp_endpoint.password().is_some() {
        return Err(invalid(ENDPOINT, "must not hold credentials; put an API key in tracing.headers"));
    }
    if otlp_endpoint.fragment().is_some() {
        return Err(invalid(ENDPOINT, "must not have a fragment"));
    }
    // The exporter parses it as an `http::Uri`; refuse here what it would refuse later.
    if otlp_endpoint.as_str().parse::<http::Uri>().is_err() {
        return Err(invalid(ENDPOINT, "is not a valid request URL"));
    }

    let service_name = raw.service_name.trim().to_owned();
    if service_name.is_empty() || service_name.len() > 255 {
        return Err(invalid("tracing.service_name", "must be 1-255 characters"));
    }
    if !raw.sample_ratio.is_finite() || !(0.0..=1.0).contains(&raw.sample_ratio) {
        return Err(invalid("tracing.sample_ratio", "must be a number from 0.0 to 1.0"));
    }

    let mut headers = Vec::with_capacity(raw.headers.len());
    for (name, value) in raw.headers {
        // The name is part of the key; the value is never quoted (it may be an API key).
        let key = format!("tracing.headers.{name}");
        let header =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid(&key, "is not a valid header name"))?;
        if HeaderValue::from_str(value.expose()).is_err() {
            return Err(invalid(key, "is not a valid header value"));
        }
        headers.push((header, value));
    }

    let roots = raw.ca_file.as_deref().map(|path| load_roots("tracing.ca_file", path)).transpose()?;
    Ok(Some(TracingConfig {
        otlp_endpoint,
        service_name,
        sample_ratio: raw.sample_ratio,
        headers,
        timeout: non_zero("tracing.timeout", raw.timeout)?,
        tls: ClientTls { roots, identity: None, dangerous_skip_verify: false },
    }))
}
