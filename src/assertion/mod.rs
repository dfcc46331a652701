//! `[headers] assertion`: the verified caller, as a short JWT jwtgate signs
//! for the backend (Pomerium's `X-Pomerium-Jwt-Assertion`, ory/oathkeeper's
//! id_token mutator), so a backend that cannot trust the network between
//! it and the gateway can still trust who is calling.
//!
//! One per request admitted with a token (none for anonymous requests;
//! the header a client sends is stripped like every identity header). Its
//! claims: the configured ones copied from the verified token, `iss` (the
//! gateway: `[server] public_url`, else `"jwtgate"`), `aud` (the
//! upstream's origin), `iat`, and `exp` = `iat + ttl`, never past the
//! token's own `exp`. Signing costs tens of microseconds (ES256), so the
//! signed value is kept with the verified token, one per upstream, and
//! reused until half its ttl is left: an atomic swap, no lock.
//!
//! The public keys are served as a JWKS on the admin listener
//! ([`Published`]); after a reload with a new key the old one stays
//! published until every assertion it signed has expired.

mod published;
mod signer;

pub use published::Published;
pub use signer::{Signer, generate_command};

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};
use tracing::error;

use crate::auth::claims::ClaimPath;
use crate::auth::{ClaimPlan, StampSlot, Stamped, ValueSlot, Verified};
use crate::config::{AssertionConfig, Problem, PublicUrl};
use crate::proxy::Upstream;

/// `iss` when `[server] public_url` does not name the gateway.
pub const DEFAULT_ISSUER: &str = "jwtgate";

pub struct Assertion {
    header: HeaderName,
    signer: Arc<Signer>,
    ttl: u64,
    issuer: Value,
    /// Each copied claim: its name in the assertion, and where a verified
    /// token keeps its value.
    claims: Vec<(String, ValueSlot)>,
    /// The token's own `exp`, which caps the assertion's.
    exp: ValueSlot,
    /// Each upstream by name, with its `aud` and the slot a verified token
    /// keeps its assertion for that audience in.
    audiences: Vec<(Arc<str>, Value, StampSlot)>,
}

impl Assertion {
    /// Reads the key and registers in `plan` the claims an assertion
    /// copies and a slot per upstream. `upstreams`: every upstream.
    pub fn new<'u>(
        config: &AssertionConfig,
        public_url: Option<&PublicUrl>,
        upstreams: impl Iterator<Item = &'u Upstream>,
        plan: &mut ClaimPlan,
    ) -> Result<Assertion, Problem> {
        let signer = Signer::load(&config.key_file, config.alg)?;
        let claims = config.claims.iter().map(|path| (path.leaf().to_string(), plan.keep_value(path))).collect();
        let audiences = upstreams
            .map(|upstream| {
                let (scheme, authority) = upstream.origin();
                let aud = Value::String(format!("{scheme}://{authority}"));
                (Arc::clone(upstream.name()), aud, plan.keep_stamp())
            })
            .collect();
        Ok(Assertion {
            header: config.header.clone(),
            signer: Arc::new(signer),
            ttl: config.ttl.as_secs(),
            issuer: Value::String(issuer(public_url)),
            claims,
            exp: plan.keep_value(&ClaimPath::nested(&["exp"])),
            audiences,
        })
    }

    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    pub fn signer(&self) -> &Arc<Signer> {
        &self.signer
    }

    pub fn ttl(&self) -> u64 {
        self.ttl
    }

    /// The assertion for a request admitted with `verified` to `upstream`,
    /// as of `now` (seconds since the epoch): the one this token already
    /// has for that upstream while it is fresh, else a new one, kept for
    /// the requests after. `None` only when signing failed (logged).
    pub fn attach(&self, verified: &Verified, upstream: &Upstream, now: u64) -> Option<(HeaderName, HeaderValue)> {
        let (_, aud, slot) = self.audiences.iter().find(|(name, ..)| name == upstream.name())?;
        let stamp = verified.stamp(*slot)?;
        if let Some(fresh) = stamp.load().as_ref().filter(|signed| now < signed.renew_at) {
            return Some((self.header.clone(), fresh.value.clone()));
        }
        let jws = self.sign(verified, aud, now)?;
        // From shared bytes: a reuse clones a reference, not the text.
        let value = HeaderValue::from_maybe_shared(Bytes::from(jws)).ok()?;
        stamp.store(Some(Arc::new(Stamped { value: value.clone(), renew_at: now + self.ttl.div_ceil(2) })));
        Some((self.header.clone(), value))
    }

    /// Signs the claims of an assertion for `verified`, audience `aud`.
    fn sign(&self, verified: &Verified, aud: &Value, now: u64) -> Option<String> {
        let mut claims = Map::with_capacity(self.claims.len() + 4);
        for (name, slot) in &self.claims {
            if let Some(value) = verified.value(*slot) {
                claims.insert(name.clone(), value.clone());
            }
        }
        let token_exp = verified.value(self.exp).and_then(Value::as_f64).map(|exp| exp.max(0.0).floor() as u64);
        let exp = token_exp.map_or(now + self.ttl, |token_exp| token_exp.min(now + self.ttl));
        claims.insert("iss".into(), self.issuer.clone());
        claims.insert("aud".into(), aud.clone());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), exp.into());
        let signed = self.signer.sign(&claims);
        if signed.is_none() {
            error!("signing the backend assertion failed (system random source); header left out");
        }
        signed
    }
}

/// `iss`: the gateway's public URL when configured.
fn issuer(public_url: Option<&PublicUrl>) -> String {
    let Some(url) = public_url else { return DEFAULT_ISSUER.to_string() };
    let default_port = matches!((url.scheme.as_str(), url.port), ("https", 443) | ("http", 80));
    let port = if default_port { String::new() } else { format!(":{}", url.port) };
    format!("{}://{}{port}{}", url.scheme, url.host, url.base_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuer_is_the_public_url_without_its_default_port() {
        let url = |scheme: &str, port, base: &str| PublicUrl {
            scheme: scheme.into(),
            host: "api.example.com".into(),
            port,
            base_path: base.into(),
        };
        assert_eq!(issuer(None), "jwtgate");
        assert_eq!(issuer(Some(&url("https", 443, ""))), "https://api.example.com");
        assert_eq!(issuer(Some(&url("https", 8443, "/api"))), "https://api.example.com:8443/api");
        assert_eq!(issuer(Some(&url("http", 80, ""))), "http://api.example.com");
    }
}
