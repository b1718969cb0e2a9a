//! The authorization phase: the request's normalised path is routed through
//! the compiled rules before authentication (public routes skip it), and the
//! authenticated caller is checked against the matched rule after it. Every
//! refusal is logged with the rule that made it.

use http::Method;

use super::refusal::Refusal;
use super::upstreams::Routes;
use super::{Gateway, RequestId};
use crate::authz::path::{NormalPath, normalise};
use crate::authz::{Access, Principal, ProviderSet, Route};

/// Where a request is going, as the rules see it.
#[derive(Debug)]
pub(super) struct Target<'g, 'p> {
    pub path: NormalPath<'p>,
    pub route: Route<'g>,
    /// The `[[upstreams]]` entry serving it; `None`: the default upstream.
    pub upstream: Option<&'g super::upstreams::Route>,
}

impl Target<'_, '_> {
    /// Public rules skip authentication, but only for paths already in normal form.
    pub(super) fn is_public(&self) -> bool {
        matches!(self.route.access, Access::Public) && self.path.canonical
    }

    /// The providers whose sessions and tokens this request may use: those
    /// both its upstream (or `authz.providers`) and its rule accept.
    pub(super) fn accepted(&self, policy: &crate::authz::Policy) -> ProviderSet {
        let upstream = self.upstream.map_or(policy.providers(), |upstream| upstream.providers);
        upstream.intersection(self.route.providers)
    }
}

impl Gateway {
    /// Routes `method`, the request's `host` (without port; see `authority`)
    /// and the raw `path` through the upstreams and rules of `routes` (the
    /// request's snapshot); `None` for a path with several possible meanings,
    /// refused (400) before anything else.
    pub(super) fn target<'g, 'p>(
        routes: &'g Routes,
        method: &Method,
        host: Option<&str>,
        path: &'p str,
    ) -> Option<Target<'g, 'p>> {
        let path = normalise(path).ok()?;
        let upstream = routes.select(host, &path.path);
        // An upstream's own rules come first, then the global ones, both
        // matching the path as that upstream routes it.
        let case_insensitive = upstream.map_or(routes.authz.case_insensitive(), |upstream| upstream.case_insensitive);
        let route = upstream
            .and_then(|upstream| upstream.rules.route(method, &path.path, case_insensitive))
            .unwrap_or_else(|| routes.authz.route_with_case(method, &path.path, case_insensitive));
        Some(Target { path, route, upstream })
    }

    /// `None` when `principal` may pass `target`; otherwise the refusal. Logs the decision.
    pub(super) fn authorize(
        &self,
        routes: &Routes,
        target: &Target<'_, '_>,
        principal: &Principal,
        request_id: &RequestId,
    ) -> Option<Refusal> {
        if routes.authz.admits(target.route.access, principal) {
            tracing::debug!(target: "portcullis::authz", request_id = %request_id, decision = "allow", rule = target.route.rule, user = %principal.subject);
            return None;
        }
        tracing::info!(
            target: "portcullis::authz",
            request_id = %request_id,
            decision = "deny",
            rule = target.route.rule,
            upstream = target.upstream.map_or("default", |upstream| upstream.name.as_str()),
            user = %principal.subject,
            path = %target.path.path,
        );
        self.metrics.auth_decision("forbidden", Refusal::RuleDenied.metric_reason());
        Some(Refusal::RuleDenied)
    }
}

/// The refusal of an ambiguous path, logged.
pub(super) fn ambiguous_path(request_id: &RequestId) -> Refusal {
    tracing::info!(target: "portcullis::authz", request_id = %request_id, decision = "refuse", reason = "ambiguous_path");
    Refusal::AmbiguousPath
}
