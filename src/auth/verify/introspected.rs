//! Tokens an RFC 7662 endpoint vouches for: opaque tokens, and the JWTs of
//! an `introspect = "always"` issuer once verified locally. A child of
//! `verify`, so an active answer becomes the very [`Verified`] a JWT does
//! (same issuer profile, same [`ClaimPlan`] projection, same route checks
//! and identity headers) without widening what `verify` shows to others.
//!
//! Which endpoint an opaque token goes to: it names no issuer, so
//! validation allows one introspecting issuer, and every opaque token is
//! asked of that issuer's endpoint alone (`docs/introspection.md`).

use super::*;
use crate::auth::introspect::Introspector;
use crate::config::IntrospectMode;

/// The issuers' introspection endpoints, as the Authenticator uses them.
pub(super) struct Introspection {
    /// The one endpoint opaque tokens go to.
    opaque: Option<Arc<Introspector>>,
    /// Issuers whose JWTs are introspected too, by configured name.
    always: HashMap<String, Arc<Introspector>>,
    /// What an introspected identity is "bound to": no key. Its verdict
    /// lives in the introspection cache, never in the verified-token
    /// cache, so nothing ever compares this binding with a key set.
    no_key: Arc<KeyBinding>,
}

impl Default for Introspection {
    fn default() -> Self {
        Introspection {
            opaque: None,
            always: HashMap::new(),
            no_key: Arc::new(KeyBinding { kid: None, fingerprint: [0; 32] }),
        }
    }
}

impl Authenticator {
    /// Hands the issuers' endpoints ([`Introspector::for_issuers`]) to
    /// this Authenticator. Validation allows one; an introspector for an
    /// issuer it does not know exactly is ignored.
    pub fn with_introspection(mut self, introspectors: Vec<Introspector>) -> Authenticator {
        for introspector in introspectors {
            if !self.issuers.contains_key(introspector.issuer()) {
                continue;
            }
            let introspector = Arc::new(introspector);
            if introspector.mode() == IntrospectMode::Always {
                self.introspection.always.insert(introspector.issuer().to_string(), Arc::clone(&introspector));
            }
            self.introspection.opaque = Some(introspector);
        }
        self
    }

    /// A token that is not a JWT: the introspecting issuer's endpoint
    /// decides, or it is refused as before (`not a JWT`).
    pub(super) async fn verify_opaque(
        &self,
        token: &str,
        now: u64,
        trace: &mut impl Trace,
    ) -> Result<Verified, Rejected<'_>> {
        let found = self.introspection.opaque.as_ref().and_then(|i| Some((i, self.issuers.get(i.issuer())?)));
        let Some((introspector, issuer)) = found else { return Err(AuthFailure::NotJwt.into()) };
        trace.passed("opaque token: not a JWT, so asked of the introspecting issuer's endpoint (RFC 7662)");
        let verified = introspector
            .verdict(token, now, |claims| self.judge(issuer, claims, now))
            .await
            .map_err(|failure| Rejected { failure, issuer: Some(&*issuer.profile.counters) })?;
        trace.passed("introspection: active; exp, nbf, iss, aud and required claims hold where the answer has them");
        Ok(verified)
    }

    /// `verified` as it stands, or, for an `introspect = "always"` issuer,
    /// once its endpoint says the token is still active. Free for
    /// configurations where no issuer introspects JWTs.
    pub(super) async fn confirmed(
        &self,
        verified: Verified,
        token: &str,
        now: u64,
        trace: &mut impl Trace,
    ) -> Result<Verified, Rejected<'_>> {
        if self.introspection.always.is_empty() {
            return Ok(verified);
        }
        let found =
            self.introspection.always.get(verified.issuer()).and_then(|i| Some((i, self.issuers.get(i.issuer())?)));
        let Some((introspector, issuer)) = found else { return Ok(verified) };
        // Boxed: only these requests carry the HTTP call's state.
        Box::pin(introspector.verdict(token, now, |claims| self.judge(issuer, claims, now)))
            .await
            .map_err(|failure| Rejected { failure, issuer: Some(&*issuer.profile.counters) })?;
        trace.passed("introspection (introspect = \"always\"): the endpoint says the token is still active");
        Ok(verified)
    }

    /// An active answer's members as a verified identity of `issuer`, or
    /// the check they fail. Each member is judged only when present
    /// (RFC 7662 makes all but `active` optional); `required_claims` can
    /// demand any of them.
    fn judge(&self, issuer: &Issuer, mut claims: token::Claims, now: u64) -> Result<Verified, AuthFailure> {
        // The endpoint answers for one issuer; an answer naming another is not ours to take.
        if claims.get("iss").is_some_and(|iss| iss.as_str() != Some(issuer.profile.name.as_str())) {
            return Err(AuthFailure::UnknownIssuer);
        }
        if claims.contains_key("exp") {
            claims::check_times(&claims, now, issuer.leeway_secs)?;
        } else if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf.as_f64().ok_or(AuthFailure::BadTimeClaim)?;
            if ((now + issuer.leeway_secs) as f64) < nbf {
                return Err(AuthFailure::NotYetValid);
            }
        }
        if claims.contains_key("aud") {
            claims::check_audience(&claims, &issuer.audiences)?;
        }
        // A trust domain's answer speaks for its own workloads only, as a
        // JWT-SVID's sub does (verify_with): else spiffe_ids would match it.
        // An answer without sub names no workload (spiffe_ids refuse it).
        if let (Some(domain), Some(sub)) = (&issuer.spiffe_domain, claims.get("sub")) {
            let sub = sub.as_str().unwrap_or_default();
            if crate::config::spiffe::trust_domain(sub) != Ok(domain.as_str()) {
                return Err(AuthFailure::NotSpiffeId);
            }
        }
        // RFC 8705 / RFC 9449: a bound token is good only with its proof,
        // which the gateway checks on every request after verification
        // (the answer's cnf is kept like a JWT's); a binding it cannot check
        // is refused.
        claims::check_confirmation(&claims)?;
        if let Some(max) = issuer.max_lifetime_secs {
            claims::check_lifetime(&claims, max)?;
        }
        claims::check_required(&claims, &issuer.required_claims)?;
        // "{tenant}" is the gateway's own claim; an answer cannot supply it.
        claims.remove(TENANT);
        let exp = claims.get("exp").and_then(Value::as_f64);
        Ok(Verified(Arc::new(Identity {
            profile: Arc::clone(&issuer.profile),
            named_its_key: false,
            // Rewritten: the payload header carries the answer, not a token segment.
            kept: self.plan.project(&claims, &issuer.scope_claims, true),
            valid_until: exp.map_or(f64::INFINITY, |exp| exp + issuer.leeway_secs as f64),
            keys: None,
            generation: 0,
            key: Arc::clone(&self.introspection.no_key),
        })))
    }
}
