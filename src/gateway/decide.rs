//! The one decision about a request for an application: route (host and
//! path → target and rule) → identify (session, else bearer token) →
//! authorize (the rule). Which hosts are served at all is the proxy path's
//! question (421); forward-auth judges the host its trusted proxy states.
//! The proxy path, forward-auth and ext_authz (gRPC) all ask [`Gateway::decide`];
//! `/oauth2/userinfo`, which has no route, asks its identify step. Each turns
//! the [`Decision`] into its own kind of answer.

use http::{HeaderMap, HeaderValue, Method};

use super::authorize::{self, Target};
use super::bearer::BearerOutcome;
use super::refusal::{ProviderNeed, Refusal};
use super::upstreams::Routes;
use super::{Connection, Gateway, RequestId};
use crate::authz::ProviderSet;
use crate::sessions::{Authentication, Caller};

/// What the decision looks at.
#[derive(Debug)]
pub(super) struct RequestFacts<'a, 'p> {
    pub method: &'a Method,
    /// The application's host, without port (see `authority`); `None`: not known.
    pub host: Option<&'a str>,
    /// The path as requested; routing normalises it to what the upstream will get.
    pub path: &'p str,
    /// Where the session cookie and any bearer token are.
    pub headers: &'a HeaderMap,
}

/// What becomes of a request.
#[derive(Debug)]
pub(super) enum Decision<'g, 'p> {
    /// A public route: no caller needed.
    Public {
        route: Target<'g, 'p>,
    },
    /// The caller may pass; `set_cookies` renew the session cookie.
    Allowed {
        caller: Identified,
        route: Target<'g, 'p>,
    },
    Refused(Refusal),
}

/// A caller and how they proved who they are.
#[derive(Debug)]
pub(super) struct Identified {
    pub caller: Caller,
    /// A re-sealed session cookie to send back (sessions only).
    pub set_cookies: Vec<HeaderValue>,
    pub credential: Credential,
}

/// What identified a caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Credential {
    /// The session cookie; `cookies_only`: the request's `Cookie` headers held nothing else.
    Session {
        cookies_only: bool,
        /// The index of the session's provider.
        provider: u8,
    },
    Bearer,
}

impl Gateway {
    /// Routes, identifies and authorizes one request by `routes`, the
    /// request's snapshot of the routes and rules. Logs and counts refusals.
    pub(super) async fn decide<'g, 'p>(
        &self,
        routes: &'g Routes,
        facts: &RequestFacts<'_, 'p>,
        connection: &Connection,
        request_id: &RequestId,
    ) -> Decision<'g, 'p> {
        let Some(route) = Self::target(routes, facts.method, facts.host, facts.path) else {
            return Decision::Refused(authorize::ambiguous_path(request_id));
        };
        record_upstream(route.upstream.map_or("default", |upstream| upstream.name.as_str()));
        if route.is_public() {
            return Decision::Public { route };
        }
        let accepted = route.accepted(&routes.authz);
        let caller = match self.identify(facts.headers, connection, request_id, accepted).await {
            Ok(caller) => caller,
            Err(refusal) => return Decision::Refused(refusal),
        };
        match self.authorize(routes, &route, &caller.caller.principal, request_id) {
            Some(denied) => Decision::Refused(denied),
            None => Decision::Allowed { caller, route },
        }
    }

    /// The caller behind a request's session cookie or, without a valid
    /// session, its bearer token, at one of the `accepted` providers. One
    /// rule when both are sent: a valid session decides (the client's
    /// `Authorization` is replaced upstream).
    pub(super) async fn identify(
        &self,
        headers: &HeaderMap,
        connection: &Connection,
        request_id: &RequestId,
        accepted: ProviderSet,
    ) -> Result<Identified, Refusal> {
        // Matched by value, never borrowed: a borrowed result would be kept
        // beside the authentication's future in this one, on every request.
        let without_session = match self.sessions.authenticate(headers, &connection.recent, accepted).await {
            Authentication::Session(session) => {
                self.metrics.auth_decision("authenticated", "session");
                return Ok(Identified {
                    caller: session.caller,
                    set_cookies: session.set_cookies,
                    credential: Credential::Session {
                        cookies_only: session.cookies_only_session,
                        provider: session.provider,
                    },
                });
            }
            // A 401 would send the browser to a sign-in that cannot succeed either.
            Authentication::ProviderUnavailable => {
                self.metrics.auth_decision("unavailable", "idp_unavailable");
                return Err(Refusal::ProviderUnavailable(ProviderNeed::SessionRenewal));
            }
            Authentication::StoreUnavailable => {
                self.metrics.auth_decision("unavailable", "store_unavailable");
                Refusal::StoreUnavailable
            }
            Authentication::Invalid => {
                self.metrics.auth_decision("unauthenticated", "invalid_session");
                Refusal::SessionInvalid(accepted)
            }
            Authentication::Anonymous => {
                self.metrics.auth_decision("unauthenticated", "no_session");
                Refusal::LoginRequired(accepted)
            }
        };
        // Rare (API clients): on the heap, so the session path's future stays small.
        match Box::pin(self.authenticate_bearer(headers, connection, accepted)).await {
            BearerOutcome::Valid(caller) => {
                self.metrics.auth_decision("authenticated", "bearer");
                Ok(Identified { caller, set_cookies: Vec::new(), credential: Credential::Bearer })
            }
            BearerOutcome::Invalid(reason) => {
                tracing::info!(target: "portcullis::auth", request_id = %request_id, event = "bearer_refused", reason);
                self.metrics.auth_decision("unauthenticated", "invalid_token");
                Err(Refusal::InvalidToken)
            }
            BearerOutcome::Throttled => Err(Refusal::TooManyFailures),
            BearerOutcome::Unavailable => Err(Refusal::ProviderUnavailable(ProviderNeed::TokenCheck)),
            BearerOutcome::Absent => Err(without_session),
        }
    }
}

/// Names the matched upstream (`default` or an `[[upstreams]]` name) on the
/// current request span; a static check only when tracing is off.
fn record_upstream(name: &str) {
    if tracing::span_enabled!(target: crate::telemetry::SPAN_TARGET, tracing::Level::INFO) {
        tracing::Span::current().record("portcullis.upstream", name);
    }
}
