//! Which part of the gateway answers a request: decided once, from the path,
//! and the source of the request's metric label and span name.

/// Paths the gateway answers itself.
pub mod paths {
    pub const PING: &str = "/ping";
    pub const READY: &str = "/ready";
    pub const START: &str = "/oauth2/start";
    pub const CALLBACK: &str = "/oauth2/callback";
    pub const SIGN_OUT: &str = "/oauth2/sign_out";
    pub const BACKCHANNEL_LOGOUT: &str = "/oauth2/backchannel_logout";
    pub const AUTH: &str = "/oauth2/auth";
    pub const USERINFO: &str = "/oauth2/userinfo";
}

/// What answers a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Endpoint {
    Ping,
    Ready,
    /// `/oauth2/start`: an explicit login.
    Start,
    Callback,
    SignOut,
    BackchannelLogout,
    /// `/oauth2/auth`, and `/oauth2/auth/<original path>` for Envoy.
    ForwardAuth,
    Userinfo,
    /// Everything else: routed, authenticated and forwarded upstream.
    Proxy,
}

impl Endpoint {
    /// The endpoint for a request's `path`.
    pub(super) fn of(path: &str) -> Self {
        match path {
            paths::PING => Self::Ping,
            paths::READY => Self::Ready,
            paths::START => Self::Start,
            paths::CALLBACK => Self::Callback,
            paths::SIGN_OUT => Self::SignOut,
            paths::BACKCHANNEL_LOGOUT => Self::BackchannelLogout,
            paths::AUTH => Self::ForwardAuth,
            paths::USERINFO => Self::Userinfo,
            path if path.strip_prefix(paths::AUTH).is_some_and(|rest| rest.starts_with('/')) => Self::ForwardAuth,
            _ => Self::Proxy,
        }
    }

    /// The `route` label of the request metrics and the span's route name.
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Ready => "ready",
            Self::Start => "login",
            Self::Callback => "callback",
            Self::SignOut => "sign_out",
            Self::BackchannelLogout => "backchannel_logout",
            Self::ForwardAuth => "forward_auth",
            Self::Userinfo => "userinfo",
            Self::Proxy => "proxy",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_to_their_endpoint_once() {
        assert_eq!(Endpoint::of("/ping"), Endpoint::Ping);
        assert_eq!(Endpoint::of("/oauth2/callback"), Endpoint::Callback);
        assert_eq!(Endpoint::of("/oauth2/auth"), Endpoint::ForwardAuth);
        assert_eq!(Endpoint::of("/oauth2/auth/app/x"), Endpoint::ForwardAuth);
        assert_eq!(Endpoint::of("/oauth2/auth/app/x").label(), "forward_auth");
        assert_eq!(Endpoint::of("/oauth2/authorize"), Endpoint::Proxy);
        assert_eq!(Endpoint::of("/oauth2/userinfo/x"), Endpoint::Proxy);
        assert_eq!(Endpoint::of("/app"), Endpoint::Proxy);
    }
}
