//! `[rate_limit_store]`: every limit's buckets kept in Redis, shared by
//! all replicas. One round trip per request: a Lua script (EVALSHA, EVAL
//! when the server has not seen it) runs GCRA on the server, atomically,
//! for all the request's limits at once, with the server's clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::local::Outcome;

/// How long a request waits for Redis before the store counts as failed
/// and `on_store_error` decides. Loopback answers in well under a
/// millisecond and a LAN in a few: this bounds what a sick Redis adds.
pub const STORE_TIMEOUT: Duration = Duration::from_millis(50);

/// Seconds between two warnings of a failing store: one line, not one per request.
const LOG_EVERY_SECONDS: u64 = 10;

/// GCRA per key. KEYS: one per limit; ARGV: its interval (µs) and burst,
/// in turn. The theoretical arrival time (µs, server clock) is stored per
/// key, expiring once the bucket is full again. Either every limit takes
/// a cell, or none does: `{1, ttl…}` (µs until each bucket is full) or
/// `{0, index, wait}` (µs until the refusing limit has a cell).
const GCRA: &str = r"
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000000 + tonumber(now[2])
local tats = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  local wait = tat + interval - interval * burst - now
  if wait > 0 then return {0, i, wait} end
  tats[i] = tat + interval
end
local out = {1}
for i = 1, #KEYS do
  local ttl = tats[i] - now
  redis.call('SET', KEYS[i], string.format('%d', tats[i]), 'PX', math.max(1, math.ceil(ttl / 1000)))
  out[i + 1] = ttl
end
return out
";

/// One limit's bucket, as the script takes it.
pub(super) struct Bucket {
    pub(super) key: String,
    pub(super) interval: Duration,
    pub(super) burst: u32,
}

pub(super) struct Store {
    client: redis::Client,
    /// Made by the first request that finds it missing (a failed attempt
    /// leaves it missing for the next); from then on the manager remakes
    /// the connection itself whenever it breaks.
    connection: tokio::sync::OnceCell<ConnectionManager>,
    script: redis::Script,
    /// Seconds since the epoch of the last warning.
    last_warning: AtomicU64,
    /// Failures since the last warning.
    unreported: AtomicU64,
}

/// The store's answer: each bucket's outcome, or the one that refused.
pub(super) enum Answer {
    Allowed(Vec<Outcome>),
    Limited { index: usize, wait: Duration },
}

impl Store {
    /// The store at `url`; nothing is connected until the first request
    /// (so `explain` and `check` never connect).
    pub(super) fn new(url: &str) -> Result<Store, String> {
        let client = redis::Client::open(url).map_err(|e| format!("rate_limit_store.redis_url: {e}"))?;
        Ok(Store {
            client,
            connection: tokio::sync::OnceCell::new(),
            script: redis::Script::new(GCRA),
            last_warning: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
        })
    }

    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        let connect = || {
            // Reconnection attempts 1 s apart at most, so a Redis that is back is used within a second or so.
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(STORE_TIMEOUT)
                .set_response_timeout(STORE_TIMEOUT)
                .set_max_delay(1000)
                .set_number_of_retries(3);
            ConnectionManager::new_with_config(self.client.clone(), config)
        };
        self.connection.get_or_try_init(connect).await.cloned()
    }

    /// One round trip, bounded by [`STORE_TIMEOUT`]; `None` when the store
    /// failed (logged at most every [`LOG_EVERY_SECONDS`]).
    pub(super) async fn check(&self, buckets: &[Bucket]) -> Option<Answer> {
        let mut invocation = self.script.prepare_invoke();
        for bucket in buckets {
            // Whole microseconds (the script's unit, exact in a Lua double): a
            // rate over 1,000,000/s per key is counted as 1,000,000/s.
            let interval = bucket.interval.as_micros().max(1);
            invocation.key(&bucket.key).arg(u64::try_from(interval).unwrap_or(u64::MAX)).arg(bucket.burst);
        }
        let call = async {
            let mut connection = self.connection().await?;
            invocation.invoke_async::<Vec<i64>>(&mut connection).await
        };
        let reply = tokio::time::timeout(STORE_TIMEOUT, call).await;
        let error = match reply {
            Ok(Ok(reply)) => match parse(&reply, buckets) {
                Some(answer) => return Some(answer),
                None => format!("unexpected reply {reply:?}"),
            },
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {} ms", STORE_TIMEOUT.as_millis()),
        };
        self.report(&error);
        None
    }

    fn report(&self, error: &str) {
        let unreported = self.unreported.fetch_add(1, Ordering::Relaxed) + 1;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last = self.last_warning.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= LOG_EVERY_SECONDS
            && self.last_warning.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.unreported.store(0, Ordering::Relaxed);
            tracing::warn!(
                failures = unreported,
                error,
                "rate_limit_store: Redis did not answer; on_store_error decides until it does"
            );
        }
    }
}

/// The script's reply as outcomes, or `None` for a reply it cannot give.
fn parse(reply: &[i64], buckets: &[Bucket]) -> Option<Answer> {
    let micros = |us: i64| Duration::from_micros(u64::try_from(us.max(0)).unwrap_or(0));
    match reply {
        [1, ttls @ ..] if ttls.len() == buckets.len() => Some(Answer::Allowed(
            ttls.iter()
                .zip(buckets)
                .map(|(ttl, bucket)| {
                    let full_in = micros(*ttl);
                    let interval = bucket.interval.as_micros().max(1);
                    let used = full_in.as_micros().div_ceil(interval);
                    let remaining = u128::from(bucket.burst).saturating_sub(used);
                    Outcome::Allowed { remaining: u32::try_from(remaining).unwrap_or(0), full_in }
                })
                .collect(),
        )),
        [0, index, wait] => {
            let index = usize::try_from(*index).ok()?.checked_sub(1).filter(|i| *i < buckets.len())?;
            Some(Answer::Limited { index, wait: micros(*wait) })
        }
        _ => None,
    }
}
