//! The assertion keys a backend may meet: the JWKS at
//! `/.well-known/jwks.json` on the admin listener. A reload that brings a
//! new key keeps the old one published until every assertion it signed
//! has expired, so a backend that fetched the set before the switch, or
//! holds an assertion signed just before it, is never left without its key.

use serde_json::{Value, json};

use super::Signer;

/// One configuration's published keys.
#[derive(Debug, Default)]
pub struct Published {
    /// The key signing now: its `kid` and JWK.
    current: Option<(String, Value)>,
    /// Keys of earlier configurations, each with the second (since the
    /// epoch) from which no assertion it signed is unexpired.
    retired: Vec<(String, Value, u64)>,
    /// How long after a switch an assertion of the current key can still
    /// be unexpired: its ttl, plus the request timeout for a request
    /// still in flight on this configuration when the next one came.
    lifetime: u64,
}

impl Published {
    pub fn new(signer: Option<&Signer>, lifetime: u64) -> Published {
        let current = signer.map(|signer| (signer.kid().to_string(), signer.jwk().clone()));
        Published { current, retired: Vec::new(), lifetime }
    }

    /// After a reload at `now`: what `previous` published stays published
    /// until its assertions have expired, unless it is the current key again.
    pub fn inherit(&mut self, previous: &Published, now: u64) {
        let current_kid = self.current.as_ref().map(|(kid, _)| kid.clone());
        let switched = previous.current.iter().map(|(kid, jwk)| (kid, jwk, now + previous.lifetime));
        let earlier = previous.retired.iter().map(|(kid, jwk, until)| (kid, jwk, *until));
        for (kid, jwk, until) in switched.chain(earlier) {
            if until <= now || current_kid.as_ref() == Some(kid) || self.retired.iter().any(|(k, ..)| k == kid) {
                continue;
            }
            self.retired.push((kid.clone(), jwk.clone(), until));
        }
    }

    /// The JWKS as of `now`; `None` when there is no key to publish.
    pub fn jwks(&self, now: u64) -> Option<String> {
        let keys: Vec<&Value> = self
            .current
            .iter()
            .map(|(_, jwk)| jwk)
            .chain(self.retired.iter().filter(|(.., until)| now < *until).map(|(_, jwk, _)| jwk))
            .collect();
        (!keys.is_empty()).then(|| json!({ "keys": keys }).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AssertionAlg;
    use aws_lc_rs::signature::Ed25519KeyPair;

    fn signer() -> Signer {
        let der = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
        Signer::from_pkcs8(der.as_ref(), AssertionAlg::EdDsa).unwrap()
    }

    fn kids(published: &Published, now: u64) -> Vec<String> {
        let Some(jwks) = published.jwks(now) else { return Vec::new() };
        let jwks: Value = serde_json::from_str(&jwks).unwrap();
        jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect()
    }

    /// Old keys stay exactly as long as their assertions can live; the
    /// same key again is not listed twice; no key, no set.
    #[test]
    fn retired_keys_stay_until_their_assertions_expire() {
        let (a, b, c) = (signer(), signer(), signer());
        let first = Published::new(Some(&a), 60);
        assert_eq!(kids(&first, 0), [a.kid()]);

        let mut second = Published::new(Some(&b), 30);
        second.inherit(&first, 1000);
        assert_eq!(kids(&second, 1000), [b.kid(), a.kid()]);
        assert_eq!(kids(&second, 1059), [b.kid(), a.kid()]);
        assert_eq!(kids(&second, 1060), [b.kid()], "a's assertions have all expired");

        let mut third = Published::new(Some(&c), 30);
        third.inherit(&second, 1010);
        assert_eq!(kids(&third, 1010), [c.kid(), b.kid(), a.kid()]);
        assert_eq!(kids(&third, 1039), [c.kid(), b.kid(), a.kid()]);
        assert_eq!(kids(&third, 1040), [c.kid(), a.kid()]);

        let mut back = Published::new(Some(&a), 60);
        back.inherit(&third, 1020);
        assert_eq!(kids(&back, 1020), [a.kid(), c.kid(), b.kid()], "a is current, not also retired");

        let mut same = Published::new(Some(&a), 60);
        same.inherit(&first, 1000);
        assert_eq!(kids(&same, 1000), [a.kid()], "an unchanged key is not retired");

        let mut removed = Published::new(None, 0);
        removed.inherit(&first, 1000);
        assert_eq!(kids(&removed, 1059), [a.kid()], "published after the assertion is removed, until expiry");
        assert_eq!(removed.jwks(1060), None);
        assert_eq!(Published::default().jwks(0), None);
    }
}
