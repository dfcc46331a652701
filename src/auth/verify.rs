//! [`Authenticator::verify`]: from a token string to [`Verified`], the proof
//! the rest of the request path asks for.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::Algorithm;
use serde_json::Value;

use super::AuthFailure;
use super::cache::TokenCache;
use super::claims::{self, ClaimPath};
use super::locations::TokenLocation;
use super::projection::{ClaimPlan, HeaderClaim, HeaderSlot, Kept, ScopeSlot, StampSlot, Stamped, ValueSlot};
use super::token::{self, Unverified};
use crate::config::{DpopMode, IssuerConfig, TENANT, Tenants};
use crate::keys::{IssuerKeys, IssuerStore, KeyBinding, TenantRefusal, VerifyingKey};
use crate::metrics::IssuerCounters;

mod introspected;
mod lookup;

/// Proof that a token passed every check; the only way to get one is
/// [`Authenticator::verify`]. Cheap to clone: cached tokens share it.
#[derive(Debug, Clone)]
pub struct Verified(Arc<Identity>);

/// What a verified token established: what the request path reads of its
/// claims, and what binds a cached verification to its expiry and key.
#[derive(Debug)]
pub struct Identity {
    profile: Arc<IssuerProfile>,
    /// The token named its key by `kid` (and so can be vouched for after
    /// the key set changes, while that name means the same key).
    named_its_key: bool,
    /// Only the claims the configuration reads (see [`ClaimPlan`]).
    kept: Kept,
    /// `exp` plus leeway, in seconds since the epoch: not valid from then on.
    valid_until: f64,
    /// The store whose keys verified it (its tenant's, for keys per
    /// tenant); `None` for an introspected token, which no key verified.
    keys: Option<Arc<IssuerKeys>>,
    /// The key-snapshot generation it was verified against.
    generation: u64,
    /// The `kid` and fingerprint of the key that verified the signature.
    key: Arc<KeyBinding>,
}

/// What later steps need to know of the issuer that vouched for a token.
#[derive(Debug)]
struct IssuerProfile {
    name: String,
    /// A SPIFFE trust domain: its tokens' `sub` is a checked SPIFFE ID.
    spiffe: bool,
    /// `dpop` of the issuer (a route's may override it).
    dpop: DpopMode,
    counters: Arc<IssuerCounters>,
    token_from: Vec<TokenLocation>,
}

impl Verified {
    pub fn issuer(&self) -> &str {
        &self.0.profile.name
    }

    /// The failure counters of the issuer that vouched for the token.
    pub fn issuer_counters(&self) -> &IssuerCounters {
        &self.0.profile.counters
    }

    /// Whether the issuer accepts its tokens from `location`.
    pub fn accepts_location(&self, location: &TokenLocation) -> bool {
        self.0.profile.token_from.contains(location)
    }

    /// The `kid` the token named, if it named one.
    pub fn kid(&self) -> Option<&str> {
        self.0.key.kid.as_deref().filter(|_| self.0.named_its_key)
    }

    /// `sub`, when it is a string.
    pub fn subject(&self) -> Option<&str> {
        self.0.kept.subject()
    }

    /// The issuer's `dpop`.
    pub fn dpop_mode(&self) -> DpopMode {
        self.0.profile.dpop
    }

    /// The SPIFFE ID of a JWT-SVID (its `sub`, checked to be a SPIFFE ID
    /// of the issuer's trust domain); `None` for any other token.
    pub fn spiffe_id(&self) -> Option<&str> {
        self.subject().filter(|_| self.0.profile.spiffe)
    }

    /// The value of the claim `slot` keeps; `None` when the token has none.
    pub fn value(&self, slot: ValueSlot) -> Option<&Value> {
        self.0.kept.value(slot)
    }

    /// Whether the scope `slot` keeps is among the token's scopes (the
    /// union of its issuer's `scope_claims`).
    pub fn has_scope(&self, slot: ScopeSlot) -> bool {
        self.0.kept.has_scope(slot)
    }

    /// The claim `slot` keeps, rendered as an identity header value.
    pub fn header(&self, slot: HeaderSlot) -> Option<&HeaderClaim> {
        self.0.kept.header(slot)
    }

    /// The payload header's value when the gateway rewrote the claims (its
    /// `{tenant}` claim set or removed); `None`: the token's own payload
    /// segment is the value.
    pub fn rewritten_payload(&self) -> Option<&HeaderClaim> {
        self.0.kept.rewritten_payload()
    }

    /// The slot `slot` names, where requests with this token share a
    /// value derived from it (a signed assertion) while it is fresh.
    pub fn stamp(&self, slot: StampSlot) -> Option<&arc_swap::ArcSwapOption<Stamped>> {
        self.0.kept.stamp(slot)
    }

    /// Whether a cached verification still holds: unexpired, and the very
    /// key that verified it (not merely its `kid`) still in the issuer's
    /// current key set.
    fn still_holds(&self, now: f64) -> bool {
        let identity = &self.0;
        if now >= identity.valid_until {
            return false;
        }
        let Some(keys) = &identity.keys else { return false };
        match keys.load().as_ref() {
            Some(snapshot) if snapshot.generation == identity.generation => true,
            // Keys changed: only a token that named its key can be vouched
            // for, and only while that name still means the same key.
            Some(snapshot) => {
                identity.named_its_key
                    && identity
                        .key
                        .kid
                        .as_deref()
                        .and_then(|kid| snapshot.keys.by_kid(kid))
                        .is_some_and(|key| key.binding.fingerprint == identity.key.fingerprint)
            }
            None => false,
        }
    }
}

/// A refused token, with the issuer it named when that issuer is configured.
#[derive(Debug)]
pub struct Rejected<'a> {
    pub failure: AuthFailure,
    pub issuer: Option<&'a IssuerCounters>,
}

impl From<AuthFailure> for Rejected<'_> {
    fn from(failure: AuthFailure) -> Self {
        Rejected { failure, issuer: None }
    }
}

/// Told of each check a token passes, in order (see `jwtgate explain`).
pub trait Trace {
    fn passed(&mut self, check: &'static str);

    /// A line with a value (a rule's result), made only when traced.
    fn value(&mut self, _line: &dyn Fn() -> String) {}
}

/// No tracing: what every request uses; compiles to nothing.
impl Trace for () {
    #[inline(always)]
    fn passed(&mut self, _check: &'static str) {}
}

impl Trace for Vec<&'static str> {
    fn passed(&mut self, check: &'static str) {
        self.push(check);
    }
}

/// `jwtgate explain`: every check, and every value.
impl Trace for Vec<std::borrow::Cow<'static, str>> {
    fn passed(&mut self, check: &'static str) {
        self.push(std::borrow::Cow::Borrowed(check));
    }

    fn value(&mut self, line: &dyn Fn() -> String) {
        self.push(std::borrow::Cow::Owned(line()));
    }
}

/// An issuer with `{tenant}` in it: `prefix{tenant}suffix`.
struct Template {
    suffix: String,
    /// `None`: any tenant.
    tenants: Option<HashSet<String>>,
    issuer: Issuer,
}

struct Issuer {
    profile: Arc<IssuerProfile>,
    /// Where this issuer puts scopes.
    scope_claims: Vec<ClaimPath>,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway_secs: u64,
    keys: IssuerStore,
    /// RFC 9068: lower case, without `application/`.
    require_typ: Option<String>,
    max_lifetime_secs: Option<u64>,
    required_claims: Vec<ClaimPath>,
    /// A SPIFFE issuer's trust domain (`sub` must be an ID in it).
    spiffe_domain: Option<String>,
}

/// Verifies tokens against the configured issuers.
pub struct Authenticator {
    issuers: HashMap<String, Issuer>,
    /// Multi-tenant issuers, by the length of their text before `{tenant}`
    /// and then by that text: a lookup costs one hash per distinct length,
    /// whatever the number of issuers or tenants.
    templates: Vec<(usize, HashMap<String, Vec<Template>>)>,
    /// SPIFFE trust domain → its issuer, for JWT-SVIDs that name no
    /// configured `iss` (SPIFFE leaves `iss` optional): chosen by `sub`.
    spiffe_domains: HashMap<String, String>,
    /// Its entries are projected onto `plan`, so it belongs to this
    /// Authenticator alone (a reload builds a new one, with a new cache).
    cache: Option<TokenCache>,
    /// What a verified token keeps of its claims; the cache holds only that.
    plan: ClaimPlan,
    max_json_depth: usize,
    /// RFC 7662 endpoints (`introspected.rs`); empty unless configured.
    introspection: introspected::Introspection,
}

/// The outcome of looking at one snapshot.
enum Attempt {
    /// Verified against the snapshot of this generation by the key with
    /// this fingerprint, or refused.
    Done(Result<(u64, Arc<KeyBinding>), AuthFailure>),
    /// No key fits; a refetch may help. Carries the snapshot generation seen.
    NoKey(u64),
}

impl Authenticator {
    /// `keys[i]` holds the keys of `issuers[i]`; token headers and payloads
    /// may nest `max_json_depth` levels. A verified token keeps the claims
    /// `plan` names, which every reader of claims has registered by now.
    pub fn new(
        issuers: &[IssuerConfig],
        keys: &[IssuerStore],
        cache: Option<TokenCache>,
        plan: ClaimPlan,
        max_json_depth: usize,
    ) -> Authenticator {
        let mut exact = HashMap::new();
        let mut spiffe_domains = HashMap::new();
        let mut templates: Vec<(usize, HashMap<String, Vec<Template>>)> = Vec::new();
        for (config, keys) in issuers.iter().zip(keys) {
            let issuer = Issuer {
                profile: Arc::new(IssuerProfile {
                    name: config.issuer.clone(),
                    spiffe: config.spiffe,
                    dpop: config.dpop,
                    counters: match keys {
                        IssuerStore::Shared(keys) => keys.counters_arc(),
                        IssuerStore::PerTenant(tenants) => tenants.counters_arc(),
                    },
                    token_from: config.token_from.clone(),
                }),
                scope_claims: config.scope_claims.clone(),
                audiences: config.audiences.clone(),
                algorithms: config.algorithms.clone(),
                leeway_secs: config.leeway.as_secs(),
                keys: keys.clone(),
                require_typ: config.require_typ.clone(),
                max_lifetime_secs: config.max_lifetime.map(|d| d.as_secs()),
                required_claims: config.required_claims.clone(),
                spiffe_domain: config.issuer.strip_prefix("spiffe://").filter(|_| config.spiffe).map(str::to_owned),
            };
            if let Some(domain) = &issuer.spiffe_domain {
                spiffe_domains.insert(domain.clone(), config.issuer.clone());
            }
            match (&config.tenants, config.issuer.split_once(TENANT)) {
                (Some(tenants), Some((prefix, suffix))) => {
                    let tenants = match tenants {
                        Tenants::Any => None,
                        Tenants::Only(list) => Some(list.iter().cloned().collect()),
                    };
                    let template = Template { suffix: suffix.to_string(), tenants, issuer };
                    let index = templates.iter().position(|(len, _)| *len == prefix.len()).unwrap_or_else(|| {
                        templates.push((prefix.len(), HashMap::new()));
                        templates.len() - 1
                    });
                    templates[index].1.entry(prefix.to_string()).or_default().push(template);
                }
                _ => {
                    exact.insert(config.issuer.clone(), issuer);
                }
            }
        }
        Authenticator {
            issuers: exact,
            templates,
            spiffe_domains,
            cache,
            plan,
            max_json_depth,
            introspection: Default::default(),
        }
    }

    pub async fn verify(&self, token: &str) -> Result<Verified, Rejected<'_>> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.verify_traced(token, now, &mut ()).await
    }

    /// [`verify`](Self::verify) as of `now` (seconds since the epoch), telling
    /// `trace` each check that passes: what `jwtgate explain` shows. The
    /// request path passes `()`, which records nothing.
    pub async fn verify_traced(&self, token: &str, now: u64, trace: &mut impl Trace) -> Result<Verified, Rejected<'_>> {
        let cached = self.cache.as_ref().map(|cache| (cache, TokenCache::key(token)));
        if let Some((cache, key)) = &cached
            && let Some(verified) = cache.get(key)
        {
            if verified.still_holds(now as f64) {
                return self.confirmed(verified, token, now, trace).await;
            }
            cache.remove(key);
        }
        let parsed = match token::parse(token, self.max_json_depth) {
            // Boxed: only opaque tokens carry the HTTP call's state.
            Err(AuthFailure::NotJwt) => return Box::pin(self.verify_opaque(token, now, trace)).await,
            parsed => parsed?,
        };
        trace.passed("structure: three base64url segments, a JSON header with alg and no crit, a JSON object payload");
        let iss = parsed.claims.get("iss").map(|v| v.as_str().ok_or(AuthFailure::MissingIssuer)).transpose()?;
        let (issuer, tenant) = match iss.and_then(|iss| self.find_issuer(iss)) {
            Some(found) => found,
            None => match self.spiffe_issuer(&parsed.claims) {
                Some(issuer) => (issuer, None),
                // A JWT-SVID of a trust domain not configured names an issuer, by its sub.
                None if iss.is_none() && !lookup::is_spiffe_id(&parsed.claims) => {
                    return Err(AuthFailure::MissingIssuer.into());
                }
                None => return Err(AuthFailure::UnknownIssuer.into()),
            },
        };
        trace.passed("issuer: iss names a configured issuer");
        let rejected = |failure| Rejected { failure, issuer: Some(&*issuer.profile.counters) };
        let keys = match (&issuer.keys, tenant) {
            (IssuerStore::Shared(keys), _) => Arc::clone(keys),
            (IssuerStore::PerTenant(tenants), Some(tenant)) => tenants.keys_for(tenant).await.map_err(|refusal| {
                rejected(match refusal {
                    TenantRefusal::NotServed => AuthFailure::UnknownIssuer,
                    TenantRefusal::Unavailable => AuthFailure::KeysUnavailable,
                    TenantRefusal::Limit => AuthFailure::TenantLimit,
                })
            })?,
            (IssuerStore::PerTenant(_), None) => return Err(rejected(AuthFailure::UnknownIssuer)),
        };
        let tenant = tenant.map(str::to_owned);
        let (generation, key) = verify_with(issuer, &keys, &parsed, now, trace).await.map_err(rejected)?;
        let exp = parsed.claims.get("exp").and_then(|v| v.as_f64()).unwrap_or(0.0);
        let mut claims = parsed.claims;
        // The tenant is a claim of ours: routes and headers name it
        // "{tenant}", and a token can never supply its own.
        let claims_rewritten = tenant.is_some() || claims.contains_key(TENANT);
        match tenant {
            Some(tenant) => claims.insert(TENANT.to_string(), serde_json::Value::String(tenant)),
            None => claims.remove(TENANT),
        };
        let verified = Verified(Arc::new(Identity {
            profile: Arc::clone(&issuer.profile),
            named_its_key: parsed.kid.is_some(),
            kept: self.plan.project(&claims, &issuer.scope_claims, claims_rewritten),
            valid_until: exp + issuer.leeway_secs as f64,
            keys: Some(keys),
            generation,
            key,
        }));
        if let Some((cache, key)) = cached {
            cache.insert(key, verified.clone());
        }
        self.confirmed(verified, token, now, trace).await
    }
}

/// Everything after the issuer is known: algorithm, key, signature, claims.
/// Returns the generation of the key snapshot that verified the signature
/// and the fingerprint of the key that did.
async fn verify_with(
    issuer: &Issuer,
    keys: &IssuerKeys,
    token: &Unverified<'_>,
    now: u64,
    trace: &mut impl Trace,
) -> Result<(u64, Arc<KeyBinding>), AuthFailure> {
    if !issuer.algorithms.contains(&token.alg) {
        return Err(AuthFailure::AlgorithmNotAllowed);
    }
    trace.passed("algorithm: allowed for this issuer");
    // A header check: refused before any signature work.
    if let Some(required) = &issuer.require_typ
        && !token.typ.as_deref().is_some_and(|typ| media_type_matches(typ, required))
    {
        return Err(AuthFailure::WrongType);
    }
    if issuer.require_typ.is_some() {
        trace.passed("typ: the type this issuer requires");
    }
    let verified_by = match verify_signature(keys, token)? {
        Attempt::Done(result) => result?,
        Attempt::NoKey(generation) => {
            // Boxed: the fetch is rare, and inline it would make every
            // request's future (moved several times per request) kilobytes larger.
            if !Box::pin(keys.refetch_for_unknown_kid(generation)).await {
                return Err(AuthFailure::UnknownKey);
            }
            match verify_signature(keys, token)? {
                Attempt::Done(result) => result?,
                Attempt::NoKey(_) => return Err(AuthFailure::UnknownKey),
            }
        }
    };
    trace.passed("key and signature: a key of the issuer's current set verifies the signature");
    claims::check_times(&token.claims, now, issuer.leeway_secs)?;
    trace.passed("time: exp (required) not passed and nbf reached, within leeway");
    claims::check_audience(&token.claims, &issuer.audiences)?;
    trace.passed("audience: aud contains an accepted audience");
    if let Some(max) = issuer.max_lifetime_secs {
        claims::check_lifetime(&token.claims, max)?;
        trace.passed("lifetime: exp - iat within max_lifetime");
    }
    if let Some(domain) = &issuer.spiffe_domain {
        let sub = token.claims.get("sub").and_then(Value::as_str).unwrap_or_default();
        if crate::config::spiffe::trust_domain(sub) != Ok(domain.as_str()) {
            return Err(AuthFailure::NotSpiffeId);
        }
        trace.passed("SPIFFE ID: sub is a SPIFFE ID of the issuer's trust domain");
    }
    claims::check_required(&token.claims, &issuer.required_claims)?;
    if !issuer.required_claims.is_empty() {
        trace.passed("required claims: all present");
    }
    claims::check_confirmation(&token.claims)?;
    Ok(verified_by)
}

/// RFC 7515 §4.1.9: `typ` compares case-insensitively, and the
/// `application/` prefix may be left out (`at+jwt`, `application/at+jwt`).
fn media_type_matches(typ: &str, required: &str) -> bool {
    let typ = typ.get(..12).filter(|p| p.eq_ignore_ascii_case("application/")).map_or(typ, |_| &typ[12..]);
    typ.eq_ignore_ascii_case(required)
}

/// Checks the signature against the current snapshot without waiting.
fn verify_signature(keys: &IssuerKeys, token: &Unverified<'_>) -> Result<Attempt, AuthFailure> {
    let guard = keys.load();
    let Some(snapshot) = guard.as_ref() else {
        return Err(AuthFailure::KeysUnavailable);
    };
    let (keys, generation) = (&snapshot.keys, snapshot.generation);
    let done = |key: &VerifyingKey, ok: bool| {
        Attempt::Done(if ok { Ok((generation, Arc::clone(&key.binding))) } else { Err(AuthFailure::BadSignature) })
    };
    if let Some(kid) = &token.kid {
        return Ok(match keys.by_kid(kid) {
            Some(key) if !key.accepts(token.alg) => Attempt::Done(Err(AuthFailure::KeyMismatch)),
            Some(key) => done(key, signature_holds(key, token)),
            None => Attempt::NoKey(generation),
        });
    }
    let mut tried = false;
    for key in keys.candidates(token.alg) {
        tried = true;
        if signature_holds(key, token) {
            return Ok(done(key, true));
        }
    }
    Ok(if tried { Attempt::Done(Err(AuthFailure::BadSignature)) } else { Attempt::NoKey(generation) })
}

fn signature_holds(key: &VerifyingKey, token: &Unverified<'_>) -> bool {
    key.verify(token.alg, token.signing_input.as_bytes(), token.signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::keys::Fetcher;
    use crate::metrics::Metrics;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    /// Cache expiry as arithmetic on `now`, not by waiting for the clock:
    /// a cached verification holds until `exp + leeway` and not a second
    /// longer, although the cache still has it.
    #[tokio::test]
    async fn a_cached_verification_ends_at_exp_plus_leeway() {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.json");
        std::fs::write(&file, format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"k","x":"{x}"}}]}}"#)).unwrap();
        let text = format!(
            "[upstream]\nurl = \"http://127.0.0.1:9\"\n[[issuers]]\nissuer = \"https://i/\"\naudiences = [\"a\"]\n\
             algorithms = [\"EdDSA\"]\nleeway = \"5s\"\njwks_file = {:?}\n",
            file.display().to_string()
        );
        let config = Config::parse(&text, "test.toml", std::path::Path::new("/"), &|_| None).unwrap();
        let keys = Arc::new(IssuerKeys::new(&config.issuers[0], Fetcher::new().unwrap()));
        keys.fetch().await.unwrap();
        let cache = TokenCache::new(10, Arc::new(Metrics::default()));
        let auth = Authenticator::new(&config.issuers, &[IssuerStore::Shared(keys)], cache, ClaimPlan::default(), 32);

        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","kid":"k"}"#);
        let claims = URL_SAFE_NO_PAD.encode(r#"{"iss":"https://i/","aud":"a","iat":900,"exp":1000}"#);
        let signing_input = format!("{header}.{claims}");
        let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(pair.sign(signing_input.as_bytes())));

        assert!(auth.verify_traced(&token, 990, &mut ()).await.is_ok(), "verified and cached");
        assert_eq!(auth.cache.as_ref().map(TokenCache::len), Some(1));
        assert!(auth.verify_traced(&token, 1004, &mut ()).await.is_ok(), "within the leeway, from the cache");
        let expired = auth.verify_traced(&token, 1005, &mut ()).await.err().map(|r| r.failure);
        assert_eq!(expired, Some(AuthFailure::Expired), "exp + leeway reached: the cached entry no longer holds");
    }
}
