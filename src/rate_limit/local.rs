//! A limit kept in this process: governor's GCRA, one cell of state per
//! key in its keyed store. Keys whose bucket has refilled are forgotten by
//! a sweep; past [`MAX_KEYS`] the store starts over, so that a client
//! spraying subjects or addresses cannot grow memory without bound.

use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

/// Keys one limit remembers before it starts over (a few tens of bytes
/// each: tens of MB at most). Checked by the sweep, not per request.
pub(super) const MAX_KEYS: usize = 1_000_000;

type Keyed = RateLimiter<u64, DashMapStateStore<u64, Prehashed>, DefaultClock, StateInformationMiddleware>;

/// The keys are already seeded hashes ([`super::RateLimits`]): the map
/// takes them as they are instead of hashing them again.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Prehashed;

#[derive(Debug, Default)]
pub(super) struct PrehashedHasher(u64);

impl BuildHasher for Prehashed {
    type Hasher = PrehashedHasher;

    fn build_hasher(&self) -> PrehashedHasher {
        PrehashedHasher(0)
    }
}

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }

    /// Not reached for `u64` keys; folds bytes in all the same.
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }
}

/// What a limit decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Let through; `remaining` more could go now, and the bucket is full
    /// again after `full_in`.
    Allowed { remaining: u32, full_in: Duration },
    /// Refused; the next request could go after `wait`.
    Limited { wait: Duration },
}

pub(super) struct Local {
    quota: Quota,
    limiter: ArcSwap<Keyed>,
}

impl Local {
    pub(super) fn new(interval: Duration, burst: u32) -> Local {
        // Validation keeps both above zero; the fallbacks are never used.
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Local { quota, limiter: ArcSwap::from_pointee(Local::fresh(quota)) }
    }

    fn fresh(quota: Quota) -> Keyed {
        RateLimiter::dashmap_with_hasher(quota, Prehashed).with_middleware::<StateInformationMiddleware>()
    }

    /// Takes one cell of `key`'s bucket, if there is one.
    pub(super) fn check(&self, key: u64) -> Outcome {
        let limiter = self.limiter.load();
        match limiter.check_key(&key) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let missing = self.quota.burst_size().get().saturating_sub(remaining);
                Outcome::Allowed { remaining, full_in: self.quota.replenish_interval() * missing }
            }
            Err(not_until) => Outcome::Limited { wait: not_until.wait_time_from(limiter.clock().now()) },
        }
    }

    /// Forgets the keys whose buckets are full again; starts over when
    /// still past [`MAX_KEYS`]. Returns the keys kept and whether it started over.
    pub(super) fn sweep(&self) -> (usize, bool) {
        let limiter = self.limiter.load();
        limiter.retain_recent();
        limiter.shrink_to_fit();
        let kept = limiter.len();
        if kept > MAX_KEYS {
            self.limiter.store(Arc::new(Local::fresh(self.quota)));
            return (0, true);
        }
        (kept, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refused_per_key() {
        let local = Local::new(Duration::from_secs(1), 3);
        assert!(matches!(local.check(1), Outcome::Allowed { remaining: 2, .. }));
        assert!(matches!(local.check(1), Outcome::Allowed { remaining: 1, .. }));
        assert!(
            matches!(local.check(1), Outcome::Allowed { remaining: 0, full_in } if full_in == Duration::from_secs(3))
        );
        match local.check(1) {
            Outcome::Limited { wait } => assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(local.check(2), Outcome::Allowed { remaining: 2, .. }));
        // Keys 1 and 2 are not full again: the sweep keeps both.
        assert_eq!(local.sweep(), (2, false));
    }

    #[test]
    fn sweep_forgets_refilled_keys() {
        let local = Local::new(Duration::from_millis(1), 1);
        for key in 0..100 {
            local.check(key);
        }
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(local.sweep(), (0, false));
    }
}
