//! The per-limit series of `[[rate_limits]]`: decisions, store failures
//! and the keys a local limit remembers. Recording is a relaxed atomic add.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

/// One limit's counters, kept across reloads by its name (`rate_limits[N]`).
#[derive(Debug, Default)]
pub struct RateLimitSeries {
    label: String,
    allowed: AtomicU64,
    limited: AtomicU64,
    /// Checks the store (Redis) did not answer in time.
    store_errors: AtomicU64,
    /// Keys the local limiter holds, as of its last sweep.
    keys: AtomicU64,
}

impl RateLimitSeries {
    pub fn new(label: &str) -> Self {
        RateLimitSeries { label: label.to_string(), ..RateLimitSeries::default() }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn decided(&self, allowed: bool) {
        let counter = if allowed { &self.allowed } else { &self.limited };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn store_error(&self) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn keys(&self, count: usize) {
        self.keys.store(count as u64, Ordering::Relaxed);
    }
}

/// The three families, one series per limit.
pub(super) fn encode(series: &[std::sync::Arc<RateLimitSeries>], encoder: &mut DescriptorEncoder) -> std::fmt::Result {
    if series.is_empty() {
        return Ok(());
    }
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut family = encoder.encode_descriptor(
        "jwtgate_rate_limit_decisions",
        "Requests a rate limit judged, by limit and decision (allowed, limited)",
        None,
        MetricType::Counter,
    )?;
    for limit in series {
        for (decision, counter) in [("allowed", &limit.allowed), ("limited", &limit.limited)] {
            let labels = [("limit", limit.label.as_str()), ("decision", decision)];
            family
                .encode_family(&labels)?
                .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&load(counter), None)?;
        }
    }
    let mut family = encoder.encode_descriptor(
        "jwtgate_rate_limit_store_errors",
        "Checks [rate_limit_store] did not answer in time (Redis down or slow); on_store_error decided them",
        None,
        MetricType::Counter,
    )?;
    for limit in series {
        let labels = [("limit", limit.label.as_str())];
        family
            .encode_family(&labels)?
            .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&load(&limit.store_errors), None)?;
    }
    let mut family = encoder.encode_descriptor(
        "jwtgate_rate_limit_keys",
        "Keys (subjects, IPs, routes) a local rate limit remembers, as of its last sweep",
        None,
        MetricType::Gauge,
    )?;
    for limit in series {
        let labels = [("limit", limit.label.as_str())];
        family.encode_family(&labels)?.encode_gauge(&(load(&limit.keys) as i64))?;
    }
    Ok(())
}
