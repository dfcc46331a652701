//! The verified-token cache: a token seen before skips parsing and the
//! signature check. Keyed by the SHA-256 of the whole token, bounded in
//! entries (quick_cache: sharded, CLOCK-Pro eviction). An entry is served
//! only while the token is unexpired (`exp` + leeway) and its key is still
//! in the issuer's key set; the route checks run on every request anyway.

use std::sync::Arc;

use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, UnitWeighter};

use super::Verified;
use crate::metrics::Metrics;

pub type TokenKey = [u8; 32];

pub struct TokenCache {
    entries: Cache<TokenKey, Verified, UnitWeighter, DefaultHashBuilder, CountEvictions>,
    metrics: Arc<Metrics>,
}

/// Counts evictions into the metrics.
#[derive(Clone)]
struct CountEvictions(Arc<Metrics>);

impl Lifecycle<TokenKey, Verified> for CountEvictions {
    type RequestState = ();

    fn on_evict(&self, _state: &mut Self::RequestState, _key: TokenKey, _value: Verified) {
        self.0.token_cache_eviction();
    }
}

impl TokenCache {
    /// `None` when `max_tokens` is 0 (the cache is off).
    pub fn new(max_tokens: usize, metrics: Arc<Metrics>) -> Option<TokenCache> {
        if max_tokens == 0 {
            return None;
        }
        let entries = Cache::with(
            max_tokens,
            max_tokens as u64,
            UnitWeighter,
            DefaultHashBuilder::default(),
            CountEvictions(Arc::clone(&metrics)),
        );
        Some(TokenCache { entries, metrics })
    }

    pub fn key(token: &str) -> TokenKey {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        key
    }

    pub fn get(&self, key: &TokenKey) -> Option<Verified> {
        let found = self.entries.get(key);
        self.metrics.token_cache_lookup(found.is_some());
        found
    }

    pub fn insert(&self, key: TokenKey, verified: Verified) {
        self.entries.insert(key, verified);
    }

    pub fn remove(&self, key: &TokenKey) {
        self.entries.remove(key);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
