//! `[[rate_limits]]`: GCRA per key (a claim of the verified token, the
//! client IP, or the route), checked after a request is admitted. Kept in
//! this process ([`local`]) or, with `[rate_limit_store]`, in Redis
//! ([`redis`]) so that replicas share one budget. A refused request gets
//! 429 `rate_limited` with `Retry-After` and the `RateLimit-Policy` and
//! `RateLimit` fields of draft-ietf-httpapi-ratelimit-headers-11; an
//! admitted one carries them too.

mod local;
mod redis;

use std::borrow::Cow;
use std::fmt::Write as _;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use http::HeaderValue;
use serde_json::Value;

use crate::auth::{ClaimPlan, ValueSlot, Verified};
use crate::config::{OnStoreError, RateLimitConfig, RateLimitKey, RateLimitStoreConfig};
use crate::error::{Refusal, Throttled};
use crate::metrics::{Metrics, RateLimitSeries};

pub use local::Outcome;
pub use redis::STORE_TIMEOUT;

/// How often each local limit forgets the keys whose buckets are full.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// The limits of one configuration, and which apply to each route.
pub struct RateLimits {
    limits: Vec<Limit>,
    /// By route index (the route table's, default last): the limits that apply.
    by_route: Vec<RouteLimits>,
    /// Keys local buckets by a hash: no allocation per request, and a
    /// per-process seed, so no one can aim collisions at another's bucket.
    hasher: RandomState,
    store: Option<(redis::Store, OnStoreError)>,
}

#[derive(Default)]
struct RouteLimits {
    /// Indexes into `limits`.
    limits: Box<[usize]>,
    /// `RateLimit-Policy` of those limits, rendered once.
    policy: Option<HeaderValue>,
}

struct Limit {
    name: String,
    key: Key,
    /// As written, for `explain`: `claim:sub`.
    key_text: String,
    count: u32,
    period: Duration,
    burst: u32,
    interval: Duration,
    local: local::Local,
    series: Arc<RateLimitSeries>,
}

enum Key {
    Claim(ValueSlot),
    Ip,
    Route,
}

/// Who a bucket belongs to.
enum Subject<'a> {
    Claim(Cow<'a, str>),
    Ip(IpAddr),
    Route(&'a str),
}

/// The `RateLimit-Policy` and `RateLimit` an admitted request's answer carries.
#[derive(Debug)]
pub struct Passed {
    pub policy: HeaderValue,
    pub state: HeaderValue,
}

/// A route as the limits see it.
pub struct RouteRef<'a> {
    pub index: usize,
    /// Its path as configured.
    pub name: &'a str,
}

impl RateLimits {
    /// The limits of `configs` over the routes of `routes` (every route, in
    /// index order); `None` when there are none, so that the request path
    /// without limits does nothing more than test an `Option`. Claims are
    /// registered in `plan`. Local limits are swept by a task when there
    /// is a Tokio runtime.
    pub fn new<'r>(
        configs: &[RateLimitConfig],
        store: Option<&RateLimitStoreConfig>,
        routes: impl Iterator<Item = RouteRef<'r>>,
        plan: &mut ClaimPlan,
        metrics: &Metrics,
    ) -> Result<Option<Arc<RateLimits>>, String> {
        if configs.is_empty() {
            return Ok(None);
        }
        let limits: Vec<Limit> = configs
            .iter()
            .map(|config| Limit {
                name: config.name.clone(),
                key: match &config.key {
                    RateLimitKey::Claim(path) => Key::Claim(plan.keep_value(path)),
                    RateLimitKey::Ip => Key::Ip,
                    RateLimitKey::Route => Key::Route,
                },
                key_text: config.key.describe(),
                count: config.count,
                period: config.period,
                burst: config.burst,
                interval: config.interval(),
                local: local::Local::new(config.interval(), config.burst),
                series: metrics.rate_limit_series(&config.name),
            })
            .collect();
        let by_route = routes
            .map(|route| {
                let applies: Box<[usize]> = configs
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.routes.as_ref().is_none_or(|paths| paths.iter().any(|p| p == route.name)))
                    .map(|(i, _)| i)
                    .collect();
                let policy = policy(applies.iter().map(|&i| &limits[i]));
                RouteLimits { limits: applies, policy }
            })
            .collect();
        let store = match store {
            Some(config) => Some((redis::Store::new(&config.redis_url)?, config.on_store_error)),
            None => None,
        };
        let limits = Arc::new(RateLimits { limits, by_route, hasher: RandomState::new(), store });
        if limits.store.is_none()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(sweep(Arc::downgrade(&limits)));
        }
        Ok(Some(limits))
    }

    /// Takes a cell from every limit of the route for this request; the
    /// headers for its answer, or the refusal. `verified`: the caller's
    /// token, when it had one; `ip`: the client's address.
    pub async fn check(
        &self,
        route: &RouteRef<'_>,
        verified: Option<&Verified>,
        ip: IpAddr,
    ) -> Result<Option<Box<Passed>>, Refusal> {
        let Some(applies) = self.by_route.get(route.index).filter(|r| !r.limits.is_empty()) else {
            return Ok(None);
        };
        let limits = applies.limits.iter().map(|&i| &self.limits[i]);
        // `RateLimit`: one item per limit judged, written as they are.
        let mut state = String::with_capacity(40 * applies.limits.len());
        let mut refused = None;
        match &self.store {
            None => {
                // In turn: a limit that refuses stops the others from being asked.
                for limit in limits {
                    let outcome = limit.local.check(self.hash(&limit.subject(route.name, verified, ip)));
                    refused = record(&mut state, limit, outcome);
                    if refused.is_some() {
                        break;
                    }
                }
            }
            Some((store, on_error)) => {
                let (limits, buckets): (Vec<&Limit>, Vec<redis::Bucket>) = limits
                    .enumerate()
                    .map(|(i, limit)| {
                        let subject = limit.subject(route.name, verified, ip);
                        (limit, limit.bucket(applies.limits[i], &subject))
                    })
                    .unzip();
                match store.check(&buckets).await {
                    Some(redis::Answer::Allowed(outcomes)) => {
                        for (limit, outcome) in limits.into_iter().zip(outcomes) {
                            record(&mut state, limit, outcome);
                        }
                    }
                    Some(redis::Answer::Limited { index, wait }) => {
                        refused = record(&mut state, limits[index], Outcome::Limited { wait });
                    }
                    None => {
                        for limit in &limits {
                            limit.series.store_error();
                        }
                        return match on_error {
                            OnStoreError::Allow => Ok(None),
                            OnStoreError::Deny => Err(Refusal::RateLimitStoreUnavailable),
                        };
                    }
                }
            }
        }
        let policy = applies.policy.clone().unwrap_or(HeaderValue::from_static(""));
        let state = HeaderValue::try_from(state).unwrap_or(HeaderValue::from_static(""));
        match refused {
            Some(retry_after) => Err(Refusal::RateLimited(Box::new(Throttled { retry_after, policy, state }))),
            // Boxed: the request's notes carry it, and stay small without limits.
            None => Ok(Some(Box::new(Passed { policy, state }))),
        }
    }

    /// The limits of the route for this request, one line each, without
    /// taking a cell (`jwtgate explain`).
    pub fn describe(&self, route: &RouteRef<'_>, verified: Option<&Verified>) -> Vec<String> {
        let where_kept = if self.store.is_some() { "shared through [rate_limit_store]" } else { "in this process" };
        let Some(applies) = self.by_route.get(route.index) else { return Vec::new() };
        applies
            .limits
            .iter()
            .map(|&i| {
                let limit = &self.limits[i];
                // explain has no client address: a claim missing here is counted by IP.
                let unspecified = IpAddr::from([0, 0, 0, 0]);
                let bucket = match limit.subject(route.name, verified, unspecified) {
                    Subject::Claim(value) => format!("{} = {value:?}", limit.key_text),
                    Subject::Ip(_) if matches!(limit.key, Key::Claim(_)) => {
                        format!("{} absent: counted by the client IP", limit.key_text)
                    }
                    Subject::Ip(_) => "the client IP".to_string(),
                    Subject::Route(name) => format!("route {name}"),
                };
                let period = match limit.period.as_secs() {
                    1 => "s",
                    60 => "m",
                    _ => "h",
                };
                format!(
                    "{}: {}/{period}, burst {}, one bucket per {}; bucket: {bucket}; {where_kept} (not consumed by explain)",
                    limit.name, limit.count, limit.burst, limit.key_text
                )
            })
            .collect()
    }

    fn hash(&self, subject: &Subject<'_>) -> u64 {
        match subject {
            Subject::Claim(value) => self.hasher.hash_one((0u8, value.as_ref())),
            Subject::Ip(ip) => self.hasher.hash_one((1u8, ip)),
            Subject::Route(name) => self.hasher.hash_one((2u8, name)),
        }
    }
}

impl Limit {
    fn subject<'a>(&self, route: &'a str, verified: Option<&'a Verified>, ip: IpAddr) -> Subject<'a> {
        match &self.key {
            Key::Claim(slot) => match verified.and_then(|v| v.value(*slot)) {
                Some(Value::String(text)) => Subject::Claim(Cow::Borrowed(text)),
                Some(value @ (Value::Number(_) | Value::Bool(_))) => Subject::Claim(Cow::Owned(value.to_string())),
                // No such claim (or one that names no one): by the client's address.
                _ => Subject::Ip(prefix(ip)),
            },
            Key::Ip => Subject::Ip(prefix(ip)),
            Key::Route => Subject::Route(route),
        }
    }

    /// The Redis bucket of `subject` under this limit (the `index`-th).
    fn bucket(&self, index: usize, subject: &Subject<'_>) -> redis::Bucket {
        let key = match subject {
            Subject::Claim(value) => format!("jwtgate:rl:{index}:claim:{value}"),
            Subject::Ip(ip) => format!("jwtgate:rl:{index}:ip:{ip}"),
            Subject::Route(name) => format!("jwtgate:rl:{index}:route:{name}"),
        };
        redis::Bucket { key, interval: self.interval, burst: self.burst }
    }
}

/// An IPv6 client by its /64 (one subscriber's usual allocation, where
/// each address is free to pick); IPv4, and IPv4 mapped into IPv6, as is.
fn prefix(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

/// `RateLimit-Policy`: each limit as `"NAME";q=COUNT;w=SECONDS`, its rate as configured.
fn policy<'l>(limits: impl Iterator<Item = &'l Limit>) -> Option<HeaderValue> {
    let items: Vec<String> =
        limits.map(|limit| format!("\"{}\";q={};w={}", limit.name, limit.count, limit.period.as_secs())).collect();
    if items.is_empty() { None } else { HeaderValue::try_from(items.join(", ")).ok() }
}

/// Counts `outcome` for `limit` and adds its `RateLimit` item to `state`;
/// for a refusal, the seconds until a cell is back (`Retry-After`).
fn record(state: &mut String, limit: &Limit, outcome: Outcome) -> Option<u64> {
    if !state.is_empty() {
        state.push_str(", ");
    }
    let (remaining, reset, refused) = match outcome {
        Outcome::Allowed { remaining, full_in } => (remaining, seconds_up(full_in), false),
        Outcome::Limited { wait } => (0, seconds_up(wait).max(1), true),
    };
    limit.series.decided(!refused);
    let _ = write!(state, "\"{}\";r={remaining};t={reset}", limit.name);
    refused.then_some(reset)
}

/// Whole seconds, rounded up: a client that waits this long finds a cell.
fn seconds_up(duration: Duration) -> u64 {
    duration.as_nanos().div_ceil(1_000_000_000) as u64
}

/// Every [`SWEEP_EVERY`], each local limit forgets its full buckets, until
/// the limits are dropped (a reload replaced them).
async fn sweep(limits: Weak<RateLimits>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(limits) = limits.upgrade() else { return };
        for limit in &limits.limits {
            let (kept, started_over) = limit.local.sweep();
            limit.series.keys(kept);
            if started_over {
                tracing::warn!(
                    limit = %limit.name,
                    max_keys = local::MAX_KEYS,
                    "rate limit: more keys than it keeps; its buckets start over (many clients, or one spraying subjects or addresses)"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(prefix(a), prefix(b));
        assert_eq!(prefix(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(prefix(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_eq!(seconds_up(Duration::from_millis(1)), 1);
        assert_eq!(seconds_up(Duration::from_secs(2)), 2);
    }
}
