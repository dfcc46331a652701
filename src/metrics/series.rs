//! The per-route series: `jwtgate_requests_total` by method, outcome and
//! status, and the two duration histograms. Recording is a few relaxed
//! atomic adds: no lock, no allocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::Method;

use super::Outcome;

/// Upper bounds of the duration histograms' buckets: from the gateway's own
/// refusals (tens of microseconds) to a slow upstream.
const DURATION_BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// `method` label values: the methods of RFC 9110 and PATCH; any other is `other`.
const METHODS: [&str; 10] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "other"];

/// A method as its `method` label: one byte, kept in place of the method
/// until the answer is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodLabel(u8);

impl MethodLabel {
    /// Without regard to case, as the gateway serves methods (`get` is `GET`).
    pub fn of(method: &Method) -> MethodLabel {
        MethodLabel(match *method {
            Method::GET => 0,
            Method::HEAD => 1,
            Method::POST => 2,
            Method::PUT => 3,
            Method::DELETE => 4,
            Method::CONNECT => 5,
            Method::OPTIONS => 6,
            Method::TRACE => 7,
            Method::PATCH => 8,
            _ => METHODS[..9].iter().position(|m| m.eq_ignore_ascii_case(method.as_str())).unwrap_or(9) as u8,
        })
    }
}

/// One histogram's buckets, each counted on its own (the encoder makes
/// them cumulative); an observation above the last bound is only in the count.
#[derive(Debug)]
pub(super) struct Histogram {
    buckets: [AtomicU64; DURATION_BUCKETS.len()],
    pub(super) count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = DURATION_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(super) fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> =
            DURATION_BUCKETS.iter().zip(&self.buckets).map(|(bound, n)| (*bound, n.load(Ordering::Relaxed))).collect();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            sum,
            self.count.load(Ordering::Relaxed),
            &buckets,
            None,
        )
    }
}

/// The `jwtgate_requests_total` series of one route, one per method,
/// outcome and status seen. The set of possible series is large (10 × 4 ×
/// 500) and the set seen small, so they live in a fixed open-addressed
/// table: a slot is one `AtomicU64` holding the series' key in its top 16
/// bits and its count in the rest, claimed once by a compare-and-swap and
/// never freed. Recording takes no lock and allocates nothing; no crate
/// offers such a table for counters.
#[derive(Debug)]
pub(super) struct SeriesTable {
    slots: Box<[AtomicU64]>,
    /// Requests whose series found no free slot: exported with `other` labels.
    pub(super) overflow: AtomicU64,
}

const SERIES_SLOTS: usize = 256;
/// A key is 17 bits (method 4, outcome 3, status 10); a count has the 47
/// below it (10^14: 44 years at 100,000 requests a second on one series).
const KEY_SHIFT: u32 = 47;

impl SeriesTable {
    fn new() -> SeriesTable {
        SeriesTable { slots: (0..SERIES_SLOTS).map(|_| AtomicU64::new(0)).collect(), overflow: AtomicU64::new(0) }
    }

    /// Never zero: a status is at least 100.
    fn key(method: usize, outcome: Outcome, status: u16) -> u64 {
        (method as u64) << 13 | (outcome as u64) << 10 | u64::from(status.clamp(100, 599))
    }

    fn add(&self, key: u64) {
        let tagged = key << KEY_SHIFT;
        let start = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize % SERIES_SLOTS;
        for probe in 0..SERIES_SLOTS {
            let slot = &self.slots[(start + probe) % SERIES_SLOTS];
            let seen = slot.load(Ordering::Relaxed);
            if seen >> KEY_SHIFT == key {
                slot.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if seen == 0 {
                match slot.compare_exchange(0, tagged | 1, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => return,
                    Err(now) if now >> KEY_SHIFT == key => {
                        slot.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(_) => {}
                }
            }
        }
        self.overflow.fetch_add(1, Ordering::Relaxed);
    }

    /// `(method, outcome, status, count)` of every series seen, in a stable order.
    pub(super) fn series(&self) -> Vec<(&'static str, &'static str, u16, u64)> {
        let mut series: Vec<_> = self
            .slots
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
            .filter(|v| *v != 0)
            .map(|v| {
                let key = v >> KEY_SHIFT;
                let method = METHODS[((key >> 13) as usize).min(METHODS.len() - 1)];
                let outcome = Outcome::ALL[(((key >> 10) & 7) as usize).min(Outcome::ALL.len() - 1)].label();
                (method, outcome, (key & 0x3ff) as u16, v & ((1 << KEY_SHIFT) - 1))
            })
            .collect();
        series.sort_unstable();
        series
    }
}

/// Everything recorded per route: the `route` label's series. Routes that
/// share a label (the same path with different methods) share one.
#[derive(Debug)]
pub struct RouteSeries {
    label: Box<str>,
    pub(super) requests: SeriesTable,
    pub(super) request_duration: Histogram,
    pub(super) upstream_duration: Histogram,
}

impl RouteSeries {
    pub(super) fn new(label: &str) -> RouteSeries {
        RouteSeries {
            label: label.into(),
            requests: SeriesTable::new(),
            request_duration: Histogram::default(),
            upstream_duration: Histogram::default(),
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// A request answered: counted, with the time from its head to its answer's end.
    pub fn request(&self, method: MethodLabel, outcome: Outcome, status: u16, elapsed: Duration) {
        self.requests.add(SeriesTable::key(usize::from(method.0), outcome, status));
        self.request_duration.observe(elapsed);
    }

    /// Time from sending a request upstream to its response head.
    pub fn upstream_duration(&self, elapsed: Duration) {
        self.upstream_duration.observe(elapsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_series_table_counts_every_key_it_can_hold_and_overflows_into_one() {
        let table = SeriesTable::new();
        let keys: Vec<u64> = (0..METHODS.len())
            .flat_map(|m| {
                Outcome::ALL.into_iter().flat_map(move |o| (100..600).map(move |s| SeriesTable::key(m, o, s)))
            })
            .collect();
        for (i, key) in keys.iter().enumerate() {
            for _ in 0..(i % 3 + 1) {
                table.add(*key);
            }
        }
        let series = table.series();
        assert_eq!(series.len(), SERIES_SLOTS);
        let held: u64 = series.iter().map(|s| s.3).sum();
        let total: u64 = (0..keys.len()).map(|i| (i % 3 + 1) as u64).sum();
        assert_eq!(held + table.overflow.load(Ordering::Relaxed), total, "nothing lost");
        // Each held series has its own count, exactly.
        for (method, outcome, status, count) in series {
            let m = METHODS.iter().position(|x| *x == method).unwrap();
            let o = Outcome::ALL.iter().position(|x| x.label() == outcome).unwrap();
            let i = keys.iter().position(|k| *k == SeriesTable::key(m, Outcome::ALL[o], status)).unwrap();
            assert_eq!(count, (i % 3 + 1) as u64, "{method} {outcome} {status}");
        }
    }

    #[test]
    fn the_series_table_loses_no_count_under_concurrent_first_use() {
        let table = Arc::new(SeriesTable::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let table = Arc::clone(&table);
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        table.add(SeriesTable::key(
                            (i % 7) as usize,
                            Outcome::ALL[(i % 4) as usize],
                            200 + (i % 5) as u16,
                        ));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let series = table.series();
        assert_eq!(series.len(), 7 * 4 * 5, "each key claimed one slot: {series:?}");
        assert_eq!(series.iter().map(|s| s.3).sum::<u64>(), 40_000);
    }
}
