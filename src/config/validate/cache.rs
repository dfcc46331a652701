//! `[cache]`: the verified-token cache.

use super::Problems;
use crate::config::raw::RawCache;
use crate::config::{CacheConfig, defaults};

pub(super) fn cache(raw: Option<&RawCache>, p: &mut Problems) -> CacheConfig {
    CacheConfig {
        max_tokens: match raw.and_then(|c| c.max_tokens) {
            None => defaults::CACHE_MAX_TOKENS,
            Some(max_tokens) => usize::try_from(max_tokens).unwrap_or_else(|_| {
                p.add("cache.max_tokens", format!("must be 0 (off) or more (got {max_tokens})"));
                0
            }),
        },
    }
}
