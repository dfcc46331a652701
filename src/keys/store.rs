//! The key store of one issuer: the current [`KeySet`] snapshot behind an
//! `ArcSwap` (read lock-free on every request), the background refresher
//! that replaces it, and the rate-limited refetch for an unknown `kid`.
//!
//! Writers — the refresher and unknown-`kid` refetches — serialise on an
//! async mutex that is never touched by requests whose key is known.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwapOption, Guard};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{info, warn};

use super::fetch::{FetchError, Fetched, Fetcher, FileStamp, read_file};
use super::set::{KeyPurpose, KeySet};
use crate::config::{IssuerConfig, JwksSource};
use crate::metrics::{FetchResult, IssuerCounters};

/// How often a `jwks_file` is checked for changes.
const FILE_POLL: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
const NEVER: u64 = u64::MAX;

/// The keys of one issuer, as served to requests.
pub struct Snapshot {
    pub keys: KeySet,
    /// Bumped whenever a new document replaces the keys.
    pub generation: u64,
}

/// What one fetch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    Replaced { keys: usize },
    NotModified,
}

/// State only writers touch, under `fetch_lock`.
#[derive(Default)]
struct FetchState {
    jwks_uri: Option<String>,
    etag: Option<String>,
    file_stamp: Option<FileStamp>,
    max_age: Option<Duration>,
}

pub struct IssuerKeys {
    issuer: String,
    source: JwksSource,
    refresh_interval: Duration,
    min_refresh_interval: Duration,
    fetcher: Fetcher,
    snapshot: ArcSwapOption<Snapshot>,
    fetch_lock: Mutex<FetchState>,
    /// A fetch is under way: unknown-`kid` requests wait for it.
    fetching: AtomicBool,
    /// Start of the last fetch attempt, in ms since `epoch` (`NEVER` if none).
    last_attempt_ms: AtomicU64,
    /// Wall-clock seconds of the last successful fetch (0 if none).
    last_success_unix: AtomicU64,
    epoch: Instant,
    /// Shared by the tenants of a templated issuer (see [`super::tenants`]).
    counters: Arc<IssuerCounters>,
    /// The configuration this store was built from, to tell on reload whether it can be kept.
    config: IssuerConfig,
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKeys").field("issuer", &self.issuer).field("has_keys", &self.has_keys()).finish()
    }
}

impl IssuerKeys {
    pub fn new(config: &IssuerConfig, fetcher: Fetcher) -> IssuerKeys {
        IssuerKeys::sharing(config, fetcher, &Arc::default())
    }

    /// A store whose failures and fetches count in `counters` (one tenant's, in its issuer's).
    pub fn sharing(config: &IssuerConfig, fetcher: Fetcher, counters: &Arc<IssuerCounters>) -> IssuerKeys {
        IssuerKeys {
            issuer: config.issuer.clone(),
            source: config.jwks.clone(),
            refresh_interval: config.refresh_interval,
            min_refresh_interval: config.min_refresh_interval,
            fetcher,
            snapshot: ArcSwapOption::empty(),
            fetch_lock: Mutex::new(FetchState::default()),
            fetching: AtomicBool::new(false),
            last_attempt_ms: AtomicU64::new(NEVER),
            last_success_unix: AtomicU64::new(0),
            epoch: Instant::now(),
            counters: Arc::clone(counters),
            config: config.clone(),
        }
    }

    /// Whether a reloaded issuer configuration can keep this store (and its keys).
    pub fn same_source(&self, config: &IssuerConfig) -> bool {
        IssuerKeys::same_fetching(&self.config, config)
    }

    /// Whether two issuer configurations fetch the same keys the same way.
    pub fn same_fetching(a: &IssuerConfig, b: &IssuerConfig) -> bool {
        a.issuer == b.issuer
            && a.jwks == b.jwks
            && a.ca_file == b.ca_file
            && a.refresh_interval == b.refresh_interval
            && a.min_refresh_interval == b.min_refresh_interval
            && a.jwks_limits == b.jwks_limits
    }

    /// This issuer's auth-failure and fetch counters.
    pub fn counters(&self) -> &IssuerCounters {
        &self.counters
    }

    /// The counters, to share with what outlives a borrow of the store.
    pub fn counters_arc(&self) -> Arc<IssuerCounters> {
        Arc::clone(&self.counters)
    }

    /// Usable keys now.
    pub fn key_count(&self) -> usize {
        self.load().as_ref().map_or(0, |snapshot| snapshot.keys.len())
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The current snapshot; hold the guard only briefly and never across `.await`.
    pub fn load(&self) -> Guard<Option<Arc<Snapshot>>> {
        self.snapshot.load()
    }

    pub fn has_keys(&self) -> bool {
        self.snapshot.load().is_some()
    }

    /// Wall-clock time of the last successful fetch (or unchanged check).
    pub fn last_success(&self) -> Option<SystemTime> {
        match self.last_success_unix.load(Ordering::Relaxed) {
            0 => None,
            s => Some(SystemTime::UNIX_EPOCH + Duration::from_secs(s)),
        }
    }

    fn generation(&self) -> u64 {
        self.snapshot.load().as_ref().map_or(0, |s| s.generation)
    }

    fn attempted_recently(&self) -> bool {
        let last = self.last_attempt_ms.load(Ordering::Acquire);
        last != NEVER && self.now_ms().saturating_sub(last) < self.min_refresh_interval.as_millis() as u64
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Called when a token names a `kid` missing from the snapshot of
    /// `seen_generation`. Joins a fetch under way or starts one, at most once
    /// per `min_refresh_interval`. True when newer keys are there to look at.
    pub async fn refetch_for_unknown_kid(&self, seen_generation: u64) -> bool {
        if self.generation() != seen_generation {
            return true;
        }
        if !self.fetching.load(Ordering::Acquire) && self.attempted_recently() {
            return false;
        }
        let mut state = self.fetch_lock.lock().await;
        if self.generation() != seen_generation {
            return true;
        }
        if self.attempted_recently() {
            return false;
        }
        info!(issuer = %self.issuer, "unknown kid: refetching keys");
        let _ = self.fetch_locked(&mut state).await;
        self.generation() != seen_generation
    }

    /// Fetches now and swaps in the new keys if they changed.
    pub async fn fetch(&self) -> Result<FetchOutcome, FetchError> {
        let mut state = self.fetch_lock.lock().await;
        self.fetch_locked(&mut state).await
    }

    async fn fetch_locked(&self, state: &mut FetchState) -> Result<FetchOutcome, FetchError> {
        self.fetching.store(true, Ordering::Release);
        self.last_attempt_ms.store(self.now_ms(), Ordering::Release);
        let result = self.fetch_document(state).await;
        self.fetching.store(false, Ordering::Release);
        let is_file = matches!(self.source, JwksSource::File(_));
        let outcome = self.apply(result);
        match &outcome {
            Ok(FetchOutcome::Replaced { .. }) => self.counters.fetch(FetchResult::Ok),
            // An unchanged file was not read: not a fetch.
            Ok(FetchOutcome::NotModified) if !is_file => self.counters.fetch(FetchResult::NotModified),
            Ok(FetchOutcome::NotModified) => {}
            Err(_) => self.counters.fetch(FetchResult::Error),
        }
        outcome
    }

    /// Swaps in the keys of a new document.
    fn apply(&self, result: Result<Option<bytes::Bytes>, FetchError>) -> Result<FetchOutcome, FetchError> {
        let outcome = match result {
            Ok(None) => FetchOutcome::NotModified,
            Ok(Some(body)) => {
                let (keys, skipped) =
                    KeySet::from_jwks(&body, self.config.jwks_limits.max_keys, KeyPurpose::of(&self.config))
                        .map_err(|e| FetchError::Jwks(e.to_string()))?;
                for why in &skipped {
                    warn!(issuer = %self.issuer, "skipping key {why}");
                }
                if keys.is_empty() {
                    return Err(FetchError::Jwks("the key set has no usable signing keys".into()));
                }
                let count = keys.len();
                let generation = self.generation() + 1;
                self.snapshot.store(Some(Arc::new(Snapshot { keys, generation })));
                FetchOutcome::Replaced { keys: count }
            }
            Err(e) => return Err(e),
        };
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(1, |d| d.as_secs().max(1));
        self.last_success_unix.store(now, Ordering::Relaxed);
        Ok(outcome)
    }

    /// The document body if it changed, `None` if not.
    async fn fetch_document(&self, state: &mut FetchState) -> Result<Option<bytes::Bytes>, FetchError> {
        let url = match &self.source {
            JwksSource::File(path) => {
                let (body, stamp) = read_file(path, state.file_stamp, self.config.jwks_limits.max_bytes).await?;
                if body.is_some() {
                    // An unchanged file is not parsed again, even if it was bad.
                    state.file_stamp = Some(stamp);
                }
                return Ok(body);
            }
            JwksSource::Url(url) => url.clone(),
            JwksSource::Discovery { discovery_url } => match &state.jwks_uri {
                Some(uri) => uri.clone(),
                None => {
                    let uri = self.fetcher.discover(discovery_url, &self.issuer, &self.config.jwks_limits).await?;
                    state.jwks_uri = Some(uri.clone());
                    uri
                }
            },
        };
        // With no keys loaded, a 304 would leave us with nothing: ask unconditionally.
        let etag = if self.has_keys() { state.etag.as_deref() } else { None };
        match self.fetcher.get(&url, etag, &self.config.jwks_limits).await? {
            Fetched::NotModified { max_age } => {
                // RFC 9111 §4.3.4: a 304 freshens the stored response; what it
                // does not restate (often Cache-Control) stays as it was.
                if max_age.is_some() {
                    state.max_age = max_age;
                }
                Ok(None)
            }
            Fetched::Document { body, etag, max_age } => {
                state.etag = etag;
                state.max_age = max_age;
                Ok(Some(body))
            }
        }
    }

    /// When the next scheduled refresh is due after a successful fetch.
    pub(super) async fn next_refresh(&self) -> Duration {
        if matches!(self.source, JwksSource::File(_)) {
            return FILE_POLL.min(self.refresh_interval);
        }
        let max_age = self.fetch_lock.lock().await.max_age;
        // A SPIFFE bundle says how often to refresh it; so may HTTP caching: the sooner wins.
        let hint = self.load().as_ref().and_then(|snapshot| snapshot.keys.refresh_hint());
        let max_age = match (max_age, hint) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match max_age {
            Some(age) => age.min(self.refresh_interval).max(self.min_refresh_interval),
            None => self.refresh_interval,
        }
    }

    /// Starts the background refresher: it fetches now, then on schedule,
    /// and after a failure keeps the last good set and retries with backoff.
    /// It holds only a weak reference and ends once the store is dropped.
    pub fn spawn_refresher(keys: &Arc<IssuerKeys>) {
        tokio::spawn(run_refresher(Arc::downgrade(keys), Duration::ZERO));
    }

    /// [`spawn_refresher`](Self::spawn_refresher) for keys just fetched:
    /// the first refresh is `delay` from now.
    pub fn spawn_refresher_after(keys: &Arc<IssuerKeys>, delay: Duration) {
        tokio::spawn(run_refresher(Arc::downgrade(keys), delay));
    }

    /// One scheduled refresh; returns how long to wait before the next.
    async fn refresh_once(&self, backoff: &mut Duration) -> Duration {
        match self.fetch().await {
            Ok(outcome) => {
                if let FetchOutcome::Replaced { keys } = outcome {
                    info!(issuer = %self.issuer, keys, "loaded signing keys");
                }
                *backoff = FIRST_BACKOFF;
                self.next_refresh().await
            }
            Err(error) => {
                let delay = *backoff;
                *backoff = (*backoff * 2).min(MAX_BACKOFF).min(self.refresh_interval.max(FIRST_BACKOFF));
                if self.has_keys() {
                    warn!(issuer = %self.issuer, %error, retry_in = ?delay, "key refresh failed; keeping the last good keys");
                } else {
                    warn!(issuer = %self.issuer, %error, retry_in = ?delay, "cannot load signing keys yet");
                }
                delay
            }
        }
    }
}

async fn run_refresher(weak: Weak<IssuerKeys>, first_delay: Duration) {
    let mut backoff = FIRST_BACKOFF;
    tokio::time::sleep(first_delay).await;
    loop {
        let Some(keys) = weak.upgrade() else { return };
        let delay = keys.refresh_once(&mut backoff).await;
        drop(keys);
        tokio::time::sleep(delay).await;
    }
}

impl crate::metrics::KeyFacts for IssuerKeys {
    fn issuer(&self) -> &str {
        IssuerKeys::issuer(self)
    }

    fn counters(&self) -> &IssuerCounters {
        IssuerKeys::counters(self)
    }

    fn key_count(&self) -> usize {
        IssuerKeys::key_count(self)
    }

    fn last_success(&self) -> Option<SystemTime> {
        IssuerKeys::last_success(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// RFC 8032 §7.1's test keys 1 and 2, as JWKs.
    const KEY_1: &str =
        r#"{"kty":"OKP","crv":"Ed25519","kid":"one","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
    const KEY_2: &str =
        r#"{"kty":"OKP","crv":"Ed25519","kid":"two","x":"PUAXw-hDiVqStwqnTRt-vJyYLM8uxJaMwM1V8Sr0Zgw"}"#;

    fn store_for(file: &std::path::Path) -> IssuerKeys {
        let text = format!(
            "[upstream]\nurl = \"http://127.0.0.1:9\"\n[[issuers]]\nissuer = \"https://i/\"\naudiences = [\"a\"]\n\
             algorithms = [\"EdDSA\"]\njwks_file = {:?}\nmin_refresh_interval = \"30s\"\n",
            file.display().to_string()
        );
        let config = Config::parse(&text, "test.toml", std::path::Path::new("/"), &|_| None).unwrap();
        IssuerKeys::new(&config.issuers[0], Fetcher::new().unwrap())
    }

    /// The refetch limit on unknown kids, on tokio's paused clock: what is
    /// tested is the arithmetic of the interval, not the passing of time.
    #[tokio::test(start_paused = true)]
    async fn an_unknown_kid_refetches_at_most_once_per_min_refresh_interval() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.json");
        std::fs::write(&file, format!(r#"{{"keys":[{KEY_1}]}}"#)).unwrap();
        let keys = store_for(&file);
        keys.fetch().await.unwrap();
        let first = keys.generation();
        // The set on disk changes, but the last fetch was just now.
        std::fs::write(&file, format!(r#"{{"keys":[{KEY_1},{KEY_2}]}}"#)).unwrap();
        assert!(!keys.refetch_for_unknown_kid(first).await, "no fetch within min_refresh_interval");
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(!keys.refetch_for_unknown_kid(first).await, "still within it");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(keys.refetch_for_unknown_kid(first).await, "one fetch once it has passed");
        assert_eq!(keys.load().as_ref().map(|s| s.keys.len()), Some(2));
        let second = keys.generation();
        assert!(!keys.refetch_for_unknown_kid(second).await, "and the next waits a full interval again");
    }

    /// After a failed refresh the refresher backs off, doubling up to the
    /// refresh interval, and returns to the schedule once a fetch succeeds.
    #[tokio::test(start_paused = true)]
    async fn failed_refreshes_back_off_and_success_resets_the_schedule() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.json");
        let keys = store_for(&file);
        let mut backoff = FIRST_BACKOFF;
        let mut delays = Vec::new();
        for _ in 0..12 {
            delays.push(keys.refresh_once(&mut backoff).await);
        }
        assert_eq!(delays[0], FIRST_BACKOFF);
        assert!(delays.windows(2).all(|w| w[1] >= w[0] && w[1] <= w[0] * 2), "{delays:?}");
        assert!(delays.iter().all(|d| *d <= MAX_BACKOFF.min(keys.refresh_interval.max(FIRST_BACKOFF))), "{delays:?}");
        std::fs::write(&file, format!(r#"{{"keys":[{KEY_1}]}}"#)).unwrap();
        let next = keys.refresh_once(&mut backoff).await;
        assert_eq!(backoff, FIRST_BACKOFF);
        assert_eq!(next, FILE_POLL.min(keys.refresh_interval), "a key file is polled on its schedule");
    }
}
