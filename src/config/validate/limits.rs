//! `[limits]`: bounds on what clients and key servers can make jwtgate hold or do.

use super::Problems;
use crate::config::raw::RawLimits;
use crate::config::{JwksLimits, LimitsConfig};

/// `[limits]`: each bound within a range that keeps it a bound.
pub(super) fn limits(raw: Option<&RawLimits>, p: &mut Problems) -> LimitsConfig {
    let defaults = LimitsConfig::default();
    let Some(raw) = raw else { return defaults };
    let mut bounded = |key: &str, value: Option<i64>, range: std::ops::RangeInclusive<i64>, default: usize| {
        let Some(value) = value else { return default };
        if range.contains(&value) {
            usize::try_from(value).unwrap_or(default)
        } else {
            p.add(
                &format!("limits.{key}"),
                format!("must be between {} and {} (got {value})", range.start(), range.end()),
            );
            default
        }
    };
    let max_token_bytes = bounded("max_token_bytes", raw.max_token_bytes, 256..=1024 * 1024, defaults.max_token_bytes);
    // serde_json stops at 128 levels whatever this says.
    let max_json_depth = bounded("max_json_depth", raw.max_json_depth, 2..=128, defaults.max_json_depth);
    let max_bytes = bounded("max_jwks_bytes", raw.max_jwks_bytes, 1024..=64 * 1024 * 1024, defaults.jwks.max_bytes);
    let max_keys = bounded("max_jwks_keys", raw.max_jwks_keys, 1..=10_000, defaults.jwks.max_keys);
    let streams = bounded(
        "http2_max_concurrent_streams",
        raw.http2_max_concurrent_streams,
        1..=10_000,
        defaults.http2_max_concurrent_streams as usize,
    );
    let http2_max_pending_resets = bounded(
        "http2_max_pending_resets",
        raw.http2_max_pending_resets,
        1..=100_000,
        defaults.http2_max_pending_resets,
    );
    let http2_max_error_resets =
        bounded("http2_max_error_resets", raw.http2_max_error_resets, 1..=100_000, defaults.http2_max_error_resets);
    let fetch_timeout =
        p.duration("limits.jwks_fetch_timeout", raw.jwks_fetch_timeout.as_deref(), defaults.jwks.fetch_timeout);
    if fetch_timeout.is_zero() {
        p.add("limits.jwks_fetch_timeout", "must be longer than 0s");
    }
    LimitsConfig {
        max_token_bytes,
        max_json_depth,
        jwks: JwksLimits { max_bytes, max_keys, fetch_timeout },
        http2_max_concurrent_streams: u32::try_from(streams).unwrap_or(defaults.http2_max_concurrent_streams),
        http2_max_pending_resets,
        http2_max_error_resets,
    }
}
