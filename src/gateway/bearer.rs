//! Bearer tokens from API clients (requests without a session): which
//! issuer's keys and rules a JWT is checked with (the provider's, or an extra
//! configured issuer's, loaded on first use), the check itself being
//! [`crate::oidc::access_token`]'s; opaque tokens go to the provider's
//! introspection endpoint, cached, with a per-client budget for refusals.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, header};
use serde_json::Value;

use super::login::seconds;
use super::providers::IdentityProvider;
use super::throttle::{FailureBudget, INACTIVE_TOKENS_PER_CLIENT};
use super::{Connection, Gateway};
use crate::authz::claims::{strings_at, unverified_payload};
use crate::authz::{Principal, ProviderSet};
use crate::config::IssuerConfig;
use crate::oidc::access_token::{self, AccessTokenError};
use crate::oidc::http_client::IdpHttpClient;
use crate::oidc::id_token::JwtRules;
use crate::oidc::provider::{LoadedProvider, Provider};
use crate::proxy::IdentityHeaders;
use crate::session::cache::ActiveSession;
use crate::sessions::Caller;

/// How often a failed load of an extra issuer's metadata and keys is retried.
const ISSUER_RETRY: Duration = Duration::from_secs(30);

/// The `WWW-Authenticate` of a refused bearer token (RFC 6750 §3.1).
pub(super) const INVALID_TOKEN_CHALLENGE: &str = "Bearer realm=\"portcullis\", error=\"invalid_token\"";

/// The verdict on a request's `Authorization` header.
#[derive(Debug)]
pub(super) enum BearerOutcome {
    /// No bearer token was sent (or bearer tokens are off).
    Absent,
    /// A verified token: the caller it names (the token itself is what goes upstream).
    Valid(Caller),
    /// A token was sent and is no good: 401, never forwarded.
    Invalid(&'static str),
    /// The token's issuer cannot be reached to get its keys: 503.
    Unavailable,
    /// Not checked: this client's introspections keep finding tokens inactive
    /// (see `throttle`): 429.
    Throttled,
}

/// Introspection results are kept at most this long (and never past the token's `exp`),
/// so a token revoked at the provider stops working soon.
const INTROSPECTION_CACHE_MAX: Duration = Duration::from_secs(300);

/// An inactive (or not-ours) introspection answer is kept this long, so the
/// same token sent again costs the provider nothing.
const INACTIVE_CACHE: Duration = Duration::from_secs(60);

/// Bearer-token state: extra issuers, each loaded (discovery and JWKS) on
/// first use, and the caches of introspected opaque tokens.
#[derive(Debug)]
pub(super) struct ExtraIssuers {
    entries: Vec<ExtraIssuer>,
    /// By SHA-256 of the token (the token itself is never kept as a key).
    introspected: moka::future::Cache<[u8; 32], Arc<TokenCaller>>,
    /// Tokens introspection refused, by SHA-256, with the reason and the
    /// providers that were asked (a refusal speaks only for them).
    refused: moka::future::Cache<[u8; 32], (&'static str, ProviderSet)>,
    /// Refused introspections per client address.
    refusals: FailureBudget,
}

struct UntilExpiry;

impl moka::Expiry<[u8; 32], Arc<TokenCaller>> for UntilExpiry {
    fn expire_after_create(&self, _key: &[u8; 32], value: &Arc<TokenCaller>, _now: Instant) -> Option<Duration> {
        let left = value.active.access_expires_at.saturating_sub(crate::clock::Clock::system().now());
        Some(Duration::from_secs(u64::try_from(left).unwrap_or(0)).min(INTROSPECTION_CACHE_MAX))
    }
}

#[derive(Debug)]
struct ExtraIssuer {
    config: IssuerConfig,
    provider: Provider,
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
}

impl ExtraIssuers {
    /// Handles for the configured issuers; nothing is fetched yet.
    pub(super) fn new(configs: &[IssuerConfig], client: &IdpHttpClient) -> Self {
        let entries = configs
            .iter()
            .map(|config| ExtraIssuer {
                config: config.clone(),
                provider: Provider::new(config.issuer.clone(), client.clone(), Duration::from_secs(10)),
                last_attempt: tokio::sync::Mutex::new(None),
            })
            .collect();
        let introspected = moka::future::Cache::builder().max_capacity(100_000).expire_after(UntilExpiry).build();
        let refused = moka::future::Cache::builder().max_capacity(100_000).time_to_live(INACTIVE_CACHE).build();
        Self { entries, introspected, refused, refusals: FailureBudget::new(INACTIVE_TOKENS_PER_CLIENT) }
    }
}

impl ExtraIssuer {
    async fn loaded(&self) -> Option<Arc<crate::oidc::provider::LoadedProvider>> {
        if let Some(loaded) = self.provider.current() {
            return Some(loaded);
        }
        let mut last = self.last_attempt.lock().await;
        if let Some(loaded) = self.provider.current() {
            return Some(loaded);
        }
        if last.is_some_and(|at| at.elapsed() < ISSUER_RETRY) {
            return None;
        }
        *last = Some(Instant::now());
        if let Err(error) = self.provider.load().await {
            tracing::warn!(issuer = %self.config.issuer, %error, "extra bearer-token issuer not available");
        }
        self.provider.current()
    }
}

/// The token of an `Authorization: Bearer` header; `Err` for a malformed or repeated one.
fn bearer_token(headers: &HeaderMap) -> Option<Result<&str, ()>> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return Some(Err(()));
    }
    let text = value.to_str().ok()?;
    let (scheme, token) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    let token68 = token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b));
    Some(if token.is_empty() || !token68 { Err(()) } else { Ok(token) })
}

impl Gateway {
    /// Judges the request's bearer token, if bearer tokens are enabled and one was sent.
    /// Tokens are accepted only from the `accepted` providers (and, on routes
    /// that accept every provider, from the extra `[[bearer.issuers]]`).
    pub(super) async fn authenticate_bearer(
        &self,
        headers: &HeaderMap,
        connection: &Connection,
        accepted: ProviderSet,
    ) -> BearerOutcome {
        let settings = &self.config.bearer;
        if !settings.enabled {
            return BearerOutcome::Absent;
        }
        let token = match bearer_token(headers) {
            None => return BearerOutcome::Absent,
            Some(Err(())) => return BearerOutcome::Invalid("malformed_header"),
            Some(Ok(token)) => token,
        };
        if token.split('.').count() != 3 {
            return if settings.introspection {
                self.introspect_bearer(token, connection.client_addr.ip(), accepted).await
            } else {
                BearerOutcome::Invalid("not_a_jwt")
            };
        }
        if jsonwebtoken::decode_header(token).is_err() {
            return BearerOutcome::Invalid("malformed");
        }
        let Some(iss) = unverified_payload(token).and_then(|claims| claims.get("iss")?.as_str().map(str::to_owned))
        else {
            return BearerOutcome::Invalid("no_issuer");
        };

        // Pick keys and expectations by the claimed issuer; the signature then proves it.
        if self.providers.with_issuer(ProviderSet::ALL, &iss).next().is_some() {
            let mut outcome = BearerOutcome::Invalid("provider_not_accepted");
            // Several clients may share the issuer: the token is for one of them (its audience).
            for (_, provider) in self.providers.with_issuer(accepted, &iss) {
                let Some(loaded) = provider.current() else {
                    outcome = BearerOutcome::Unavailable;
                    continue;
                };
                let oidc = &provider.config;
                let rules = JwtRules {
                    algorithms: &oidc.id_token_algorithms,
                    issuer: &iss,
                    audience: &oidc.bearer_audience,
                    trusted_audiences: &oidc.trusted_audiences,
                    now: self.clock.now(),
                    skew_seconds: seconds(oidc.clock_skew),
                };
                outcome = self.verified_bearer(token, &loaded, &rules).await;
                if matches!(outcome, BearerOutcome::Valid(_)) {
                    break;
                }
            }
            return outcome;
        }
        let Some(extra) = self.providers.extra_issuers().entries.iter().find(|extra| extra.config.issuer == iss) else {
            return BearerOutcome::Invalid("unknown_issuer");
        };
        // The extra issuers are no provider a route can name: only routes that accept every provider take them.
        if accepted != ProviderSet::ALL {
            return BearerOutcome::Invalid("provider_not_accepted");
        }
        let Some(loaded) = extra.loaded().await else { return BearerOutcome::Unavailable };
        let Some(first) = self.providers.get(0) else { return BearerOutcome::Invalid("unknown_issuer") };
        let rules = JwtRules {
            algorithms: &extra.config.algorithms,
            issuer: &iss,
            audience: &extra.config.audience,
            trusted_audiences: &first.config.trusted_audiences,
            now: self.clock.now(),
            skew_seconds: seconds(first.config.clock_skew),
        };
        self.verified_bearer(token, &loaded, &rules).await
    }

    /// The caller of a JWT access token verified with `loaded`'s keys under `rules`.
    async fn verified_bearer(&self, token: &str, loaded: &LoadedProvider, rules: &JwtRules<'_>) -> BearerOutcome {
        let require_type = self.config.bearer.require_access_token_type;
        let (claims, exp) = match access_token::validate(token, &loaded.jwks, rules, require_type).await {
            Ok(verified) => verified,
            Err(error) => {
                if let AccessTokenError::Jwt(error) = &error {
                    tracing::info!(target: "portcullis::auth", event = "bearer_refused", reason = %error);
                }
                return BearerOutcome::Invalid(error.reason());
            }
        };
        match self.caller_from_claims(&claims, exp, None).and_then(|known| known.caller(token)) {
            Some(caller) => BearerOutcome::Valid(caller),
            None => BearerOutcome::Invalid("unusable_claims"),
        }
    }

    /// Checks an opaque token at the provider's introspection endpoint. Both
    /// answers are cached; refusals count against `client`'s budget, and once
    /// it is spent the provider is not asked for that client until its window ends.
    async fn introspect_bearer(&self, token: &str, client: IpAddr, accepted: ProviderSet) -> BearerOutcome {
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let now = self.clock.now();
        let issuers = self.providers.extra_issuers();
        if let Some(hit) = issuers.introspected.get(&key).await {
            if hit.provider.is_some_and(|provider| !accepted.contains(provider)) {
                return BearerOutcome::Invalid("provider_not_accepted");
            }
            if hit.active.access_expires_at > now {
                return hit.caller(token).map_or(BearerOutcome::Invalid("unusable_claims"), BearerOutcome::Valid);
            }
            issuers.introspected.invalidate(&key).await;
        }
        // The configured providers among `accepted` (ALL names unconfigured ones too), to compare with those asked.
        let count = self.config.providers.len();
        let accepted =
            accepted.indices(count).fold(ProviderSet::NONE, |set, index| set.union(ProviderSet::only(index)));
        let refused_by = issuers.refused.get(&key).await;
        if let Some((reason, asked)) = refused_by
            && accepted.intersection(asked) == accepted
        {
            return BearerOutcome::Invalid(reason);
        }
        if issuers.refusals.exhausted(client).await {
            tracing::info!(target: "portcullis::auth", event = "bearer_refused", reason = "too_many_failures");
            return BearerOutcome::Throttled;
        }
        // An opaque token names no issuer, so only a route that one provider
        // can vouch for by introspection takes it: asking several in turn
        // would show one provider's token to another.
        let confidential = |provider: &&IdentityProvider| {
            matches!(provider.config.credentials, crate::config::ClientCredentials::Confidential { .. })
        };
        let can_introspect = |(_, provider): &(usize, &IdentityProvider)| {
            confidential(provider)
                && provider.current().is_none_or(|loaded| loaded.metadata.introspection_endpoint.is_some())
        };
        let mut candidates = self.providers.accepted(accepted).filter(can_introspect);
        let (index, provider) = match (candidates.next(), candidates.next()) {
            (Some(only), None) => only,
            (None, _) => return BearerOutcome::Invalid("no_introspection_endpoint"),
            (Some(_), Some(_)) => return BearerOutcome::Invalid("ambiguous_opaque_token"),
        };
        let oidc = &provider.config;
        let Some(loaded) = provider.current() else { return BearerOutcome::Unavailable };
        let Some(endpoint) = loaded.metadata.introspection_endpoint.as_deref() else {
            return BearerOutcome::Invalid("no_introspection_endpoint");
        };
        let started = Instant::now();
        let answer = crate::oidc::introspection::introspect(provider.client(), endpoint, oidc, token).await;
        self.metrics.idp_call("introspection", &oidc.id, started.elapsed().as_secs_f64());
        let verdict = match answer {
            Ok(Some(claims)) => self.introspected_caller(&claims, now, index, oidc),
            Ok(None) => Err("inactive"),
            Err(crate::oidc::token::TokenError::Unavailable(_)) => return BearerOutcome::Unavailable,
            Err(error) => {
                tracing::warn!(target: "portcullis::auth", event = "introspection_failed", %error);
                Err("introspection_failed")
            }
        };
        let known = match verdict {
            Ok(known) => known,
            Err(reason) => {
                issuers.refusals.spend(client).await;
                // No provider of this route can vouch for it (the one that could said no);
                // a route with other providers may still find one that can.
                let asked = refused_by.map_or(accepted, |(_, earlier)| earlier.union(accepted));
                issuers.refused.insert(key, (reason, asked)).await;
                return BearerOutcome::Invalid(reason);
            }
        };
        let Some(caller) = known.caller(token) else {
            return BearerOutcome::Invalid("unusable_claims");
        };
        issuers.introspected.insert(key, Arc::new(known)).await;
        BearerOutcome::Valid(caller)
    }

    /// The caller an active introspection answer describes, if the token is
    /// ours to accept; `Err` says why not.
    fn introspected_caller(
        &self,
        claims: &Value,
        now: i64,
        provider: usize,
        oidc: &crate::config::OidcConfig,
    ) -> Result<TokenCaller, &'static str> {
        // exp is optional in RFC 7662, but required here to bound the cache.
        let exp = claims.get("exp").and_then(Value::as_i64).filter(|exp| *exp > now).ok_or("no_or_past_exp")?;
        if claims.get("iss").is_some_and(|iss| iss.as_str() != Some(oidc.issuer.as_str())) {
            return Err("wrong_issuer");
        }
        // RFC 7662 §2.2 makes aud and client_id optional; a token that names
        // neither as us may have been issued to any other client.
        let audience = oidc.bearer_audience.as_str();
        let ours = match claims.get("aud") {
            Some(Value::String(one)) => one == audience,
            Some(Value::Array(many)) => many.iter().any(|aud| aud.as_str() == Some(audience)),
            Some(_) => false,
            None => claims
                .get("client_id")
                .and_then(Value::as_str)
                .is_some_and(|client_id| client_id == audience || client_id == oidc.client_id),
        };
        if !ours {
            return Err("wrong_audience");
        }
        if claims.get("token_type").and_then(Value::as_str).is_some_and(|typ| typ.eq_ignore_ascii_case("refresh_token"))
        {
            return Err("not_an_access_token");
        }
        self.caller_from_claims(claims, exp, Some(provider)).ok_or("unusable_claims")
    }

    /// The claim holding groups in tokens of the provider at `provider` (an
    /// extra issuer's: `authz.groups_claim`).
    fn groups_claim(&self, provider: Option<usize>) -> &str {
        let own = provider.and_then(|index| self.providers.get(index)?.config.groups_claim.as_deref());
        own.unwrap_or_else(|| self.config.authz.groups_claim())
    }

    /// The caller a verified token's claims describe (identity only: the token goes upstream separately).
    fn caller_from_claims(&self, claims: &Value, expires_at: i64, provider: Option<usize>) -> Option<TokenCaller> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let subject = text("sub").filter(|sub| !sub.is_empty())?;
        let principal = Principal {
            subject,
            email: text("email"),
            email_verified: claims.get("email_verified").and_then(Value::as_bool).unwrap_or(false),
            name: text("name"),
            preferred_username: text("preferred_username"),
            groups: strings_at(claims, self.groups_claim(provider)),
        };
        // The caller's own token goes upstream unchanged, with identity headers from its claims.
        let identity = IdentityHeaders::new(
            &principal.subject,
            principal.email.as_deref().filter(|_| principal.email_verified),
            principal.preferred_username.as_deref(),
            &principal.groups,
            None,
        )
        .ok()?;
        let active = Arc::new(ActiveSession::new(identity, expires_at));
        Some(TokenCaller { active, principal: Arc::new(principal), provider })
    }
}

/// Who a verified bearer token names: what the introspection cache keeps.
#[derive(Debug)]
struct TokenCaller {
    active: Arc<ActiveSession>,
    principal: Arc<Principal>,
    /// The provider that vouched for an introspected token (checked against each route's).
    provider: Option<usize>,
}

impl TokenCaller {
    /// The caller presenting `token` (which is what goes upstream).
    fn caller(&self, token: &str) -> Option<Caller> {
        Caller::new(Arc::clone(&self.active), Arc::clone(&self.principal), token, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::AUTHORIZATION, http::HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn bearer_header_parsing() {
        assert!(bearer_token(&HeaderMap::new()).is_none());
        assert!(bearer_token(&with_authorization(&["Basic abc"])).is_none());
        assert_eq!(bearer_token(&with_authorization(&["bearer a.b.c"])), Some(Ok("a.b.c")));
        assert_eq!(bearer_token(&with_authorization(&["Bearer a b"])), Some(Err(())));
        assert_eq!(bearer_token(&with_authorization(&["Bearer a", "Bearer b"])), Some(Err(())));
    }
}
