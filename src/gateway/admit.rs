//! Steps 2 to 4 of the request path, shared by inline and forward-auth
//! mode: the one place that makes the proof an upstream requires.

use super::*;
use crate::auth::bearer;
use crate::auth::dpop::{DpopFailure, ProofTarget, TokenSent};
use crate::config::DpopMode;

impl Gateway {
    /// Steps 2 to 4 for the request `ask` describes, shared by inline and
    /// forward-auth mode: the route, identity headers stripped from
    /// `headers`, and the token (from the headers, or the query where an
    /// issuer allows) checked as the route says. Returns the route and the
    /// proof of admission that [`Upstream::prepare`] requires; `trace`
    /// records each check passed, for `jwtgate explain`.
    pub(super) async fn admit<'a, 'r>(
        &'a self,
        ask: Ask<'r>,
        headers: &mut HeaderMap,
        notes: &mut Notes<'a>,
        trace: &mut impl Trace,
    ) -> Result<(&'a GatewayRoute, Admitted<'r>), Refusal> {
        let Ask { method, host, path, query, deadline, at, sent_method, origin, presented, client_ip } = ask;
        // 2. Match a route.
        let route = self.routes.find(host, method, path);
        notes.route = Some(route);
        notes.served_as = Some(MethodLabel::of(method));
        notes.cors = route.cors();
        // 3. Identity headers come only from us, on every route.
        self.identity.strip(headers);
        // 4. Authenticate and authorise as the route says.
        let mode = route.auth_for(method, headers);
        let token = match mode {
            AuthMode::Public => None,
            AuthMode::Optional | AuthMode::Required => {
                locations::find(headers, query, &self.token_locations, self.max_token_bytes).map_err(|error| {
                    let refusal = Refusal::from(error);
                    if let Some(reason) = refusal.auth_reason() {
                        self.metrics.auth_failure(None, reason);
                    }
                    refusal
                })?
            }
        };
        let location = token.map(|(_, location)| location.clone());
        let mut identity = match (token.map(|(token, _)| token), mode) {
            (Some(token), _) => {
                // Only an unknown-kid refetch waits here; the timer is armed only then.
                let verification = async {
                    match at {
                        None => self.auth.verify(token).await,
                        Some(now) => self.auth.verify_traced(token, now, trace).await,
                    }
                };
                let verified = tokio::time::timeout_at(deadline, verification)
                    .await
                    .map_err(|_| Refusal::GatewayTimeout(REQUEST_TIMED_OUT))?
                    .map_err(|rejected| {
                        self.metrics.auth_failure(rejected.issuer, rejected.failure.reason());
                        Refusal::from(rejected.failure)
                    })?;
                // Kept before authorising, so a 403 is logged with its subject.
                let verified = notes.verified.insert(verified);
                if location.as_ref().is_some_and(|l| !verified.accepts_location(l)) {
                    self.metrics.auth_failure(Some(verified.issuer_counters()), AuthFailure::WrongLocation.reason());
                    return Err(Refusal::InvalidToken(AuthFailure::WrongLocation));
                }
                // RFC 8705, on every request: a cached verification knows
                // nothing of the connection it is now used on.
                self.binding.check(verified, presented, trace).map_err(|failure| {
                    self.metrics.auth_failure(Some(verified.issuer_counters()), failure.reason());
                    Refusal::InvalidToken(failure)
                })?;
                // RFC 9449: a bound token only with its proof, on every request (cached or not).
                let dpop_scheme = location == Some(TokenLocation::Header) && bearer::dpop_scheme(headers);
                let authority = origin.as_ref().and_then(|o| {
                    o.authority.or_else(|| headers.get(http::header::HOST).and_then(|h| h.to_str().ok()))
                });
                let target = ProofTarget {
                    method: sent_method,
                    path,
                    https: origin.as_ref().is_some_and(|o| o.https),
                    authority,
                };
                let now = || at.unwrap_or_else(crate::auth::dpop::unix_now);
                let mode = route.dpop().unwrap_or(verified.dpop_mode());
                let sent = TokenSent { token, dpop_scheme, headers };
                if let Err(failure) = self.dpop.judge(mode, verified, &sent, &target, now) {
                    self.metrics.auth_failure(Some(verified.issuer_counters()), failure.reason());
                    let nonce = (failure == DpopFailure::NonceRequired).then(|| self.dpop.nonce(now())).flatten();
                    return Err(Refusal::Dpop { failure, nonce });
                }
                if dpop_scheme || mode != DpopMode::Off {
                    trace.passed(
                        "DPoP: a proof of the token's key for this request, or an unbound token where DPoP is allowed",
                    );
                }
                route.authorize(verified).inspect_err(|refusal| {
                    if let Some(reason) = refusal.auth_reason() {
                        self.metrics.auth_failure(Some(verified.issuer_counters()), reason);
                    }
                })?;
                let mut identity = self.identity.values(verified, token);
                if let Some(assertion) = &self.assertion {
                    identity.extend(assertion.attach(verified, route.upstream(), now()));
                }
                identity
            }
            (None, AuthMode::Required) => {
                self.metrics.auth_failure(None, Reason::MissingToken);
                return Err(Refusal::MissingToken);
            }
            (None, _) => {
                notes.anonymous = true;
                Vec::new()
            }
        };
        // The route's CEL rules, last: over the checked token (or none) and
        // the request as the upstream will get it.
        let facts = crate::policy::Facts { method, path, host, headers, verified: notes.verified.as_ref() };
        route.judge_rules(&facts, trace).inspect_err(|refusal| {
            if let Some(reason) = refusal.auth_reason() {
                self.metrics.auth_failure(notes.verified.as_ref().map(Verified::issuer_counters), reason);
            }
        })?;
        if let Presented::Certificate(certificate) = presented {
            self.identity.add_certificate(certificate, &mut identity);
        }
        // 5. Rate limits, once the caller is known; explain (`at`) spends none.
        if let Some(limits) = &self.rate_limits
            && at.is_none()
        {
            let route_ref = RouteRef { index: route.index(), name: route.name() };
            let ip = client_ip.unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
            // Boxed: the check's state (a Redis call) would otherwise make
            // every request's future larger, limits or not.
            notes.rate_limit = Box::pin(limits.check(&route_ref, notes.verified.as_ref(), ip)).await?;
        }
        Ok((route, Admitted::judged(path, identity, location)))
    }
}

/// One request as [`Gateway::admit`] judges it.
pub(super) struct Ask<'r> {
    /// As the upstream will serve it: canonical, overrides applied.
    pub(super) method: &'r Method,
    /// As routes match it ([`hosts::request_host`]); `None` when no route
    /// names hosts.
    pub(super) host: Option<&'r str>,
    /// Canonical ([`path::normalize`]).
    pub(super) path: &'r str,
    pub(super) query: Option<&'r str>,
    pub(super) deadline: tokio::time::Instant,
    /// `jwtgate explain`: judge as of this time (seconds since the epoch)
    /// instead of the clock.
    pub(super) at: Option<u64>,
    /// The method as the client sent it (a DPoP proof's `htm`).
    pub(super) sent_method: &'r Method,
    /// Where the client sent the request (a DPoP proof's `htu`, when
    /// `[server] public_url` does not say); `None` in forward-auth mode.
    pub(super) origin: Option<Origin<'r>>,
    /// The client certificate of the request's connection, for tokens
    /// bound to one and the certificate identity headers.
    pub(super) presented: Presented<'r>,
    /// The client's address, for `ip` rate limits (and claim limits
    /// without their claim); `None` in explain.
    pub(super) client_ip: Option<std::net::IpAddr>,
}

/// The scheme and authority a request came with.
pub(super) struct Origin<'r> {
    pub(super) https: bool,
    /// `:authority`; the `Host` header when `None`.
    pub(super) authority: Option<&'r str>,
}
