//! `[[rate_limits]]` and `[rate_limit_store]`.

use std::time::Duration;

use super::Problems;
use crate::config::rate_limit::{OnStoreError, RateLimitConfig, RateLimitKey, RateLimitStoreConfig};
use crate::config::raw::{RawRateLimit, RawRateLimitStore};
use crate::config::{ClaimPath, RouteConfig};

/// The most requests a limit may let through at once, or per period: past
/// this a limit limits nothing a gateway could serve.
const MAX_COUNT: i64 = 10_000_000;

pub(super) fn rate_limits(raw: &[RawRateLimit], routes: &[RouteConfig], p: &mut Problems) -> Vec<RateLimitConfig> {
    raw.iter().enumerate().filter_map(|(i, raw)| rate_limit(&format!("rate_limits[{i}]"), raw, routes, p)).collect()
}

fn rate_limit(name: &str, raw: &RawRateLimit, routes: &[RouteConfig], p: &mut Problems) -> Option<RateLimitConfig> {
    let key = match p.required(&format!("{name}.key"), raw.key.as_ref()).map(|k| key(k)) {
        Some(Ok(key)) => Some(key),
        Some(Err(problem)) => {
            p.add(&format!("{name}.key"), problem);
            None
        }
        None => None,
    };
    let rate = match p.required(&format!("{name}.rate"), raw.rate.as_ref()).map(|r| rate(r)) {
        Some(Ok(rate)) => Some(rate),
        Some(Err(problem)) => {
            p.add(&format!("{name}.rate"), problem);
            None
        }
        None => None,
    };
    let burst = match raw.burst {
        None => None,
        Some(burst) if (1..=MAX_COUNT).contains(&burst) => u32::try_from(burst).ok(),
        Some(burst) => {
            p.add(
                &format!("{name}.burst"),
                format!("must be between 1 and {MAX_COUNT} (got {burst}) — the requests let through at once"),
            );
            None
        }
    };
    let limited = raw.routes.as_ref().map(|paths| {
        paths
            .iter()
            .enumerate()
            .filter_map(|(j, path)| {
                let normal = crate::path::normalize(path).ok().map(|n| {
                    let trimmed = n.trim_end_matches('/');
                    if trimmed.is_empty() { "/".to_string() } else { trimmed.to_string() }
                });
                match normal.filter(|n| routes.iter().any(|route| route.path == *n)) {
                    Some(path) => Some(path),
                    None => {
                        let known: Vec<&str> = routes.iter().map(|r| r.path.as_str()).collect();
                        let known = if known.is_empty() {
                            "there are no [[routes]]; leave routes out to limit every request".to_string()
                        } else {
                            format!("write one of the [[routes]] paths: {}", known.join(", "))
                        };
                        p.add(&format!("{name}.routes[{j}]"), format!("no route has path {path:?} — {known}"));
                        None
                    }
                }
            })
            .collect()
    });
    let (count, period) = rate?;
    Some(RateLimitConfig {
        name: name.to_string(),
        key: key?,
        count,
        period,
        burst: burst.unwrap_or(count),
        routes: limited,
    })
}

/// `claim:NAME`, `ip` or `route`.
fn key(text: &str) -> Result<RateLimitKey, String> {
    match text {
        "ip" => Ok(RateLimitKey::Ip),
        "route" => Ok(RateLimitKey::Route),
        other => match other.strip_prefix("claim:") {
            Some(claim) => ClaimPath::parse(claim)
                .map(RateLimitKey::Claim)
                .map_err(|why| format!("{why} — write key = \"claim:sub\" (or another claim's name)")),
            None => Err(format!(
                "must be \"claim:NAME\", \"ip\" or \"route\" (got {other:?}) — e.g. key = \"claim:sub\" for one \
                 bucket per subject"
            )),
        },
    }
}

/// `COUNT/UNIT`: `100/s`, `600/m`, `10/h`.
fn rate(text: &str) -> Result<(u32, Duration), String> {
    let wrong = || {
        format!("expected requests per second, minute or hour such as \"100/s\", \"600/m\" or \"10/h\" (got {text:?})")
    };
    let (count, unit) = text.split_once('/').ok_or_else(wrong)?;
    let period = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(wrong()),
    };
    let count: i64 = count.trim().parse().map_err(|_| wrong())?;
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(format!("the count must be between 1 and {MAX_COUNT} (got {text:?})"));
    }
    Ok((u32::try_from(count).map_err(|_| wrong())?, period))
}

pub(super) fn store(raw: &RawRateLimitStore, limits: usize, p: &mut Problems) -> Option<RateLimitStoreConfig> {
    let on_store_error = match raw.on_store_error.as_deref() {
        None | Some("allow") => OnStoreError::Allow,
        Some("deny") => OnStoreError::Deny,
        Some(other) => {
            p.add(
                "rate_limit_store.on_store_error",
                format!(
                    "must be \"allow\" or \"deny\" (got {other:?}) — what a request gets while Redis cannot answer"
                ),
            );
            OnStoreError::Allow
        }
    };
    if limits == 0 {
        p.add("rate_limit_store", "there are no [[rate_limits]] to keep — add one, or remove [rate_limit_store]");
    }
    let url = p.required("rate_limit_store.redis_url", raw.redis_url.as_ref())?;
    match url::Url::parse(url) {
        Ok(parsed) if parsed.scheme() == "redis" && parsed.host_str().is_some_and(|h| !h.is_empty()) => {
            Some(RateLimitStoreConfig { redis_url: url.clone(), on_store_error })
        }
        Ok(parsed) if parsed.scheme() == "rediss" => {
            p.add(
                "rate_limit_store.redis_url",
                "TLS to Redis (rediss://) is not supported — use redis:// over a private network or a local TLS tunnel",
            );
            None
        }
        _ => {
            p.add(
                "rate_limit_store.redis_url",
                format!("expected a URL such as \"redis://127.0.0.1:6379\" (got {url:?})"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_count_per_unit() {
        assert_eq!(rate("100/s"), Ok((100, Duration::from_secs(1))));
        assert_eq!(rate("600/m"), Ok((600, Duration::from_secs(60))));
        assert_eq!(rate("10/h"), Ok((10, Duration::from_secs(3600))));
        for bad in ["100", "0/s", "-1/s", "10/d", "x/s", "/s", "100/"] {
            assert!(rate(bad).is_err(), "{bad}");
        }
        assert!(key("claim:").is_err());
        assert_eq!(key("ip"), Ok(RateLimitKey::Ip));
        assert!(matches!(key("claim:/realm_access/id"), Ok(RateLimitKey::Claim(_))));
        assert!(key("subject").unwrap_err().contains("claim:NAME"));
    }
}
