//! What a verified token keeps of its claims. The request path reads only
//! claims the configuration names: the scopes routes ask for, the claims
//! routes compare, the identity headers, and `sub` for the access log.
//! [`ClaimPlan`] gathers them once per configuration from everything that
//! reads them; each verified token is then projected onto the plan, so a
//! cached token holds those few values instead of its parsed claims
//! (issue 17; `examples/cache_memory` counts the bytes per entry).
//!
//! A kept claim is read back only through the slot its reader was handed
//! when it registered, so no reader can ask a token for a claim the plan did
//! not keep.

use arc_swap::ArcSwapOption;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use serde_json::Value;

use super::claims::{ClaimPath, has_scope};
use super::identity::header_value;
use super::token::Claims;

/// The claims the request path reads, registered by their readers (the
/// route table, the identity headers) while the gateway is built, and then
/// handed whole to the [`Authenticator`](super::Authenticator), which keeps
/// exactly these of every token it verifies.
#[derive(Debug, Default)]
pub struct ClaimPlan {
    /// Claims whose values are kept, each once: those routes compare. This
    /// list is the seam for issue 20: CEL expressions over `claims` will
    /// register here the paths they read (found when the configuration is
    /// loaded) and read the values back with [`Verified::value`](super::Verified::value).
    values: Vec<ClaimPath>,
    /// Scopes routes ask for, each once: a token keeps one bit per scope.
    scopes: Vec<Box<str>>,
    /// Claims sent as identity headers, each once.
    headers: Vec<ClaimPath>,
    /// `[headers] payload` is sent.
    payload: bool,
    /// Slots for values derived from a token and reused while fresh (the
    /// signed assertion, one per audience); 0 unless configured.
    stamps: usize,
}

/// A claim whose value a token keeps; only [`ClaimPlan::keep_value`] makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueSlot(usize);

/// A scope a token keeps the presence of; only [`ClaimPlan::keep_scope`] makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeSlot(usize);

/// A claim a token keeps as an identity header value; only
/// [`ClaimPlan::keep_header`] makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderSlot(usize);

/// A slot where a token keeps a [`Stamped`] value; only
/// [`ClaimPlan::keep_stamp`] makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StampSlot(usize);

/// A header value derived from a verified token (a signed assertion),
/// reused by every request with that token until `renew_at`.
#[derive(Debug)]
pub struct Stamped {
    pub value: HeaderValue,
    /// Seconds since the epoch: from then on it is made again.
    pub renew_at: u64,
}

/// A claim as an identity header, rendered once at verification.
#[derive(Debug)]
pub enum HeaderClaim {
    /// The token has no such claim: no header.
    Absent,
    /// The value cannot be a header value (CR, LF, NUL…): left out, and
    /// logged by claim name on each request, never sent raw.
    Unrenderable,
    Ready(HeaderValue),
}

impl ClaimPlan {
    /// Keeps the value of the claim at `path` (a route compares it).
    pub fn keep_value(&mut self, path: &ClaimPath) -> ValueSlot {
        ValueSlot(index_of(&mut self.values, path))
    }

    /// Keeps whether the token has `scope` among its issuer's scope claims.
    pub fn keep_scope(&mut self, scope: &str) -> ScopeSlot {
        ScopeSlot(match self.scopes.iter().position(|kept| &**kept == scope) {
            Some(index) => index,
            None => {
                self.scopes.push(scope.into());
                self.scopes.len() - 1
            }
        })
    }

    /// Keeps the claim at `path` rendered as an identity header value.
    pub fn keep_header(&mut self, path: &ClaimPath) -> HeaderSlot {
        HeaderSlot(index_of(&mut self.headers, path))
    }

    /// Keeps a slot for a [`Stamped`] value: each verified (and cached)
    /// token holds one, empty until its first request fills it. Swapped
    /// atomically, so requests with the same token share it without a lock.
    pub fn keep_stamp(&mut self) -> StampSlot {
        self.stamps += 1;
        StampSlot(self.stamps - 1)
    }

    /// Keeps the payload header's value where the gateway rewrote the claims.
    pub fn keep_payload(&mut self) {
        self.payload = true;
    }

    /// What a token keeps of `claims`, which are verified and carry the
    /// gateway's own `{tenant}` claim already. `scope_claims`: where its
    /// issuer puts scopes; `rewritten`: the claims differ from the token's
    /// payload segment. Every boxed slice is allocated at its exact length.
    pub(super) fn project(&self, claims: &Claims, scope_claims: &[ClaimPath], rewritten: bool) -> Kept {
        let mut scopes = vec![0u64; self.scopes.len().div_ceil(64)];
        for (index, scope) in self.scopes.iter().enumerate() {
            if has_scope(claims, scope_claims, scope) {
                scopes[index / 64] |= 1 << (index % 64);
            }
        }
        let header = |value: Option<&Value>| match value {
            None => HeaderClaim::Absent,
            Some(value) => header_value(value).map_or(HeaderClaim::Unrenderable, HeaderClaim::Ready),
        };
        // The token's own payload segment is exactly the verified JSON
        // unless the gateway rewrote the claims: only then is it kept,
        // re-encoded, here.
        let rewritten_payload = (self.payload && rewritten).then(|| {
            let encoded = serde_json::to_vec(claims)
                .ok()
                .and_then(|json| HeaderValue::try_from(URL_SAFE_NO_PAD.encode(json)).ok());
            encoded.map_or(HeaderClaim::Absent, HeaderClaim::Ready)
        });
        // Allocated only when there is something rare to keep.
        let rare = (rewritten_payload.is_some() || self.stamps > 0).then(|| {
            Box::new(Rare { rewritten_payload, stamps: (0..self.stamps).map(|_| ArcSwapOption::empty()).collect() })
        });
        Kept {
            subject: claims.get("sub").and_then(Value::as_str).map(Box::from),
            values: self.values.iter().map(|path| path.lookup(claims).cloned()).collect(),
            scopes: scopes.into_boxed_slice(),
            headers: self.headers.iter().map(|path| header(path.lookup(claims))).collect(),
            rare,
        }
    }
}

/// The index of `path` in `paths`, added when missing.
fn index_of(paths: &mut Vec<ClaimPath>, path: &ClaimPath) -> usize {
    match paths.iter().position(|kept| kept == path) {
        Some(index) => index,
        None => {
            paths.push(path.clone());
            paths.len() - 1
        }
    }
}

/// What a verified token keeps of its claims, by its [`ClaimPlan`].
#[derive(Debug)]
pub(super) struct Kept {
    /// `sub`, when a string: for the access log.
    subject: Option<Box<str>>,
    /// By [`ValueSlot`]; `None`: the token has no such claim.
    values: Box<[Option<Value>]>,
    /// Bit `i`: the token has the scope of `ScopeSlot(i)`.
    scopes: Box<[u64]>,
    /// By [`HeaderSlot`].
    headers: Box<[HeaderClaim]>,
    /// What few configurations keep, behind one pointer (8 bytes, `None`
    /// in most entries), so that a cache entry is no larger for them.
    rare: Option<Box<Rare>>,
}

#[derive(Debug)]
struct Rare {
    /// The payload header's value when the claims were rewritten; `None`:
    /// the token's own payload segment is the value.
    rewritten_payload: Option<HeaderClaim>,
    /// By [`StampSlot`].
    stamps: Box<[ArcSwapOption<Stamped>]>,
}

// A slot is only ever used with the tokens its own plan projected (one
// gateway builds both): the bounds checks below cannot fail, and are
// asserted in debug builds rather than trusted silently.
impl Kept {
    pub(super) fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    pub(super) fn value(&self, slot: ValueSlot) -> Option<&Value> {
        debug_assert!(slot.0 < self.values.len(), "a value slot of another plan");
        self.values.get(slot.0).and_then(Option::as_ref)
    }

    pub(super) fn has_scope(&self, slot: ScopeSlot) -> bool {
        debug_assert!(slot.0 / 64 < self.scopes.len(), "a scope slot of another plan");
        self.scopes.get(slot.0 / 64).is_some_and(|bits| bits & (1 << (slot.0 % 64)) != 0)
    }

    pub(super) fn header(&self, slot: HeaderSlot) -> Option<&HeaderClaim> {
        debug_assert!(slot.0 < self.headers.len(), "a header slot of another plan");
        self.headers.get(slot.0)
    }

    pub(super) fn rewritten_payload(&self) -> Option<&HeaderClaim> {
        self.rare.as_ref().and_then(|rare| rare.rewritten_payload.as_ref())
    }

    pub(super) fn stamp(&self, slot: StampSlot) -> Option<&ArcSwapOption<Stamped>> {
        debug_assert!(self.rare.as_ref().is_some_and(|r| slot.0 < r.stamps.len()), "a stamp slot of another plan");
        self.rare.as_ref().and_then(|rare| rare.stamps.get(slot.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(name: &str) -> ClaimPath {
        ClaimPath::parse(name).unwrap()
    }

    /// The projection answers as the full claims did: `has_scope` and
    /// lookups by path, for every slot, scopes past the first 64 included.
    #[test]
    fn keeps_exactly_what_was_registered() {
        let mut plan = ClaimPlan::default();
        let scope_claims = [path("scope"), path("/realm/roles")];
        let filler: Vec<ScopeSlot> = (0..70).map(|i| plan.keep_scope(&format!("s{i}"))).collect();
        let read = plan.keep_scope("read");
        let admin = plan.keep_scope("admin");
        let missing = plan.keep_scope("write");
        assert_eq!(plan.keep_scope("read"), read, "each scope once");
        let tenant = plan.keep_value(&path("tenant"));
        let level = plan.keep_value(&path("/org/level"));
        let absent = plan.keep_value(&path("absent"));
        assert_eq!(plan.keep_value(&path("tenant")), tenant, "each path once");
        let user = plan.keep_header(&path("sub"));
        let bad = plan.keep_header(&path("bad"));
        let none = plan.keep_header(&path("absent"));

        let claims = json!({"sub": "u1", "scope": "read s69", "realm": {"roles": ["admin"]},
            "tenant": "acme", "org": {"level": 3}, "bad": "a\r\nb"});
        let kept = plan.project(claims.as_object().unwrap(), &scope_claims, false);
        assert!(kept.has_scope(read) && kept.has_scope(admin) && kept.has_scope(filler[69]));
        assert!(!kept.has_scope(missing) && !kept.has_scope(filler[0]));
        assert_eq!(kept.value(tenant), Some(&json!("acme")));
        assert_eq!(kept.value(level), Some(&json!(3)));
        assert_eq!(kept.value(absent), None);
        assert!(matches!(kept.header(user), Some(HeaderClaim::Ready(v)) if v == "u1"));
        assert!(matches!(kept.header(bad), Some(HeaderClaim::Unrenderable)));
        assert!(matches!(kept.header(none), Some(HeaderClaim::Absent)));
        assert_eq!(kept.subject(), Some("u1"));
        assert!(kept.rewritten_payload().is_none(), "no payload header configured");
    }

    /// Stamp slots start empty and hold what is stored; a plan without
    /// them, or without a rewritten payload, allocates nothing for either.
    #[test]
    fn stamps_are_kept_per_slot() {
        let claims = json!({"sub": "u1"});
        let claims = claims.as_object().unwrap();
        let plan = ClaimPlan::default();
        assert!(plan.project(claims, &[], false).rare.is_none());
        let mut plan = ClaimPlan::default();
        let (first, second) = (plan.keep_stamp(), plan.keep_stamp());
        let kept = plan.project(claims, &[], false);
        assert!(kept.stamp(first).unwrap().load().is_none());
        let value = HeaderValue::from_static("signed");
        kept.stamp(second).unwrap().store(Some(std::sync::Arc::new(Stamped { value, renew_at: 9 })));
        assert!(kept.stamp(first).unwrap().load().is_none());
        assert_eq!(kept.stamp(second).unwrap().load().as_ref().map(|s| s.renew_at), Some(9));
        assert!(kept.rewritten_payload().is_none());
    }

    /// The payload is kept only when the header is configured and the claims differ from the token's.
    #[test]
    fn keeps_the_payload_only_when_rewritten() {
        let claims = json!({"sub": 7, "{tenant}": "acme"});
        let claims = claims.as_object().unwrap();
        let mut plan = ClaimPlan::default();
        assert!(plan.project(claims, &[], true).rewritten_payload().is_none());
        plan.keep_payload();
        assert!(plan.project(claims, &[], false).rewritten_payload().is_none());
        let kept = plan.project(claims, &[], true);
        let expected = URL_SAFE_NO_PAD.encode(r#"{"sub":7,"{tenant}":"acme"}"#);
        assert!(matches!(kept.rewritten_payload(), Some(HeaderClaim::Ready(v)) if v == expected.as_str()));
        assert_eq!(kept.subject(), None, "sub is not a string");
    }
}
