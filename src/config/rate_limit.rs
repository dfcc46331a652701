//! `[[rate_limits]]` and `[rate_limit_store]` as validated: what each
//! limit counts by, how fast, and where the counts are kept.

use std::time::Duration;

use super::ClaimPath;

/// One `[[rate_limits]]` entry: GCRA, `count` requests per `period`, with
/// up to `burst` at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// `rate_limits[N]`: its name in metrics, logs, `RateLimit-Policy` and
    /// `explain` (the contract has no `name` key: the index is stable
    /// within one file, and says where to look).
    pub name: String,
    pub key: RateLimitKey,
    /// The `rate` as written: `count` per `period`.
    pub count: u32,
    pub period: Duration,
    /// Requests let through at once from a full bucket (default: `count`).
    pub burst: u32,
    /// Route paths as configured (`[[routes]] path`); `None`: every request.
    pub routes: Option<Vec<String>>,
}

impl RateLimitConfig {
    /// The time one request's cell takes to come back: `period / count`.
    pub fn interval(&self) -> Duration {
        self.period / self.count.max(1)
    }
}

/// What a limit counts requests by: each value its own bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitKey {
    /// `claim:NAME`: the verified token's claim; a request without it
    /// (anonymous, or a token without the claim) is counted by its client IP.
    Claim(ClaimPath),
    /// The client IP the gateway sees (the connection's peer, as in the
    /// access log); an IPv6 client by its /64.
    Ip,
    /// One bucket per route.
    Route,
}

impl RateLimitKey {
    /// As written in the file.
    pub fn describe(&self) -> String {
        match self {
            Self::Claim(path) => format!("claim:{}", path.name()),
            Self::Ip => "ip".to_string(),
            Self::Route => "route".to_string(),
        }
    }
}

/// `[rate_limit_store]`: the limits' counts kept in Redis, shared by every
/// replica that names the same server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitStoreConfig {
    pub redis_url: String,
    pub on_store_error: OnStoreError,
}

/// What a request gets when the store cannot answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// Let it through (counted and logged): a store outage is not an outage.
    Allow,
    /// Refuse it, 503 `temporarily_unavailable` with `Retry-After`.
    Deny,
}
