//! `[forward_auth]`, validated: which proxies may state the original request, and how.

use super::raw::RawForwardAuth;
use super::{ConfigError, invalid};

/// `[forward_auth]`, validated.
#[derive(Debug, Clone, Default)]
pub struct ForwardAuthConfig {
    pub trusted_proxies: Vec<Cidr>,
    pub pass_access_token: bool,
    pub redirect_browsers: bool,
    pub original_request: OriginalRequest,
}

/// Where a trusted proxy states the original request. Exactly one convention
/// is believed: proxies pass their clients' headers on, so a header of another
/// convention next to it may be a client's and makes the request a 403.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OriginalRequest {
    /// `X-Forwarded-Method`, `X-Forwarded-Uri` and `X-Forwarded-Host`
    /// (the nginx recipe, Traefik, Caddy).
    #[default]
    XForwarded,
    /// `X-Original-Method` and the absolute `X-Original-URL` (ingress-nginx).
    XOriginal,
    /// The path after `/oauth2/auth`, the subrequest's method and `Host` (Envoy `ext_authz`).
    Envoy,
}

impl ForwardAuthConfig {
    /// Whether requests from `peer` may state the original request.
    pub fn trusts(&self, peer: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|cidr| cidr.contains(peer))
    }
}

/// An IP network, `address/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: std::net::IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `::1/128` or a bare address (a single host).
    pub fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let network: std::net::IpAddr = address.trim().parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { network, prefix })
    }

    /// Whether `ip` is inside this network (IPv4-mapped IPv6 peers count as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Validates `[forward_auth]`; errors name the key.
pub(super) fn validate(raw: &RawForwardAuth) -> Result<ForwardAuthConfig, ConfigError> {
    let mut trusted_proxies = Vec::with_capacity(raw.trusted_proxies.len());
    for (index, text) in raw.trusted_proxies.iter().enumerate() {
        trusted_proxies.push(Cidr::parse(text).ok_or_else(|| {
            invalid(
                format!("forward_auth.trusted_proxies[{index}]"),
                format!("{text:?} is not an address or CIDR like 10.0.0.0/8"),
            )
        })?);
    }
    let original_request = match raw.original_request.as_deref().unwrap_or("x-forwarded") {
        "x-forwarded" => OriginalRequest::XForwarded,
        "x-original" => OriginalRequest::XOriginal,
        "envoy" => OriginalRequest::Envoy,
        other => {
            return Err(invalid(
                "forward_auth.original_request",
                format!("{other:?} is not one of \"x-forwarded\", \"x-original\", \"envoy\""),
            ));
        }
    };
    Ok(ForwardAuthConfig {
        trusted_proxies,
        pass_access_token: raw.pass_access_token,
        redirect_browsers: raw.redirect_browsers,
        original_request,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_contain_what_they_should() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(Cidr::parse("127.0.0.1").unwrap().contains("127.0.0.1".parse().unwrap()));
        assert!(!Cidr::parse("127.0.0.1").unwrap().contains("127.0.0.2".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nonsense").is_none());
        assert!(!ForwardAuthConfig::default().trusts("127.0.0.1".parse().unwrap()));
    }
}
