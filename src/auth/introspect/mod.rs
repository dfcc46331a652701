//! RFC 7662 token introspection: asking an issuer's endpoint whether a
//! token is active, remembering the verdict, and asking at most once at a
//! time per token.
//!
//! This module owns the endpoint (client authentication, timeout, the
//! answer's size and syntax, [`answer`]) and the verdict cache; what an
//! active answer must hold to become a [`Verified`] is judged by the
//! Authenticator (`verify/introspected.rs`), which hands its judgement in.
//!
//! The cache is keyed by the SHA-256 of the token (as the verified-token
//! cache is), bounded in entries, and its entries end:
//! - an allowed token: `min(cache_ttl, exp - now)`;
//! - a refused token (inactive, expired, wrong audience…): [`REFUSED_TTL`];
//! - the endpoint down, slow, or answering unusably: [`UNAVAILABLE_TTL`].
//!
//! Requests with the same token while it is being asked wait for that one
//! answer (quick_cache's placeholder: single-flight); if the asking request
//! goes away, one of the waiters asks instead.

pub mod answer;

use std::time::Duration;

use http::HeaderValue;
use quick_cache::sync::Cache;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use tokio::time::Instant;

use self::answer::Answer;
use super::cache::{TokenCache, TokenKey};
use super::token::Claims;
use super::{AuthFailure, Verified};
use crate::config::{IntrospectMode, IntrospectionAuth, IssuerConfig};
use crate::keys::{Fetcher, FetcherError};

/// A refused token's verdict is reused this long: a client retrying a
/// revoked token costs the endpoint one call per 5 s, and a token that
/// becomes active (clock skew at the issuer) is accepted 5 s later at most.
pub const REFUSED_TTL: Duration = Duration::from_secs(5);
/// An endpoint failure is remembered this long per token: requests that
/// were waiting on the failed call, and retries within it, get 503 at once.
pub const UNAVAILABLE_TTL: Duration = Duration::from_secs(1);
/// Verdicts kept at most (each a few hundred bytes).
pub const MAX_ENTRIES: usize = 10_000;
/// An answer is a few hundred bytes; never hold more than this of one.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// One issuer's introspection endpoint and its verdicts.
pub struct Introspector {
    issuer: String,
    mode: IntrospectMode,
    url: String,
    client: reqwest::Client,
    credentials: Credentials,
    timeout: Duration,
    cache_ttl: Duration,
    max_json_depth: usize,
    verdicts: Cache<TokenKey, Entry>,
}

/// How the gateway authenticates itself to the endpoint.
enum Credentials {
    /// The whole `Authorization` value, built once, marked sensitive.
    Basic(HeaderValue),
    Post {
        client_id: String,
        client_secret: String,
    },
}

/// Why the endpoint gave no answer, in words.
#[derive(Debug, thiserror::Error)]
enum Unanswered {
    /// Not reached: connection, TLS, timeout before an answer.
    #[error("{0}")]
    Unreached(String),
    /// Reached, but it refused jwtgate or its answer is not RFC 7662.
    #[error("{0}")]
    Unusable(String),
}

/// A verdict and the moment it stops being reused.
#[derive(Clone)]
struct Entry {
    verdict: Result<Verified, AuthFailure>,
    until: Instant,
}

impl Introspector {
    /// One per issuer with `introspection`, each with the issuer's key-fetch
    /// client (system roots plus its `ca_file`), in configuration order.
    pub fn for_issuers(issuers: &[IssuerConfig], max_json_depth: usize) -> Result<Vec<Introspector>, FetcherError> {
        let mut out = Vec::new();
        for (i, issuer) in issuers.iter().enumerate() {
            let Some(config) = &issuer.introspection else { continue };
            let fetcher = Fetcher::for_issuer(i, issuer.ca_file.as_deref())?;
            let credentials = match config.auth {
                IntrospectionAuth::Basic => {
                    // RFC 6749 §2.3.1: id and secret are form-encoded before Basic encoding.
                    use base64::Engine;
                    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                    let pair = format!("{}:{}", encode(&config.client_id), encode(config.client_secret.expose()));
                    let text = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair));
                    // Cannot fail: "Basic " and base64 are visible ASCII.
                    let mut value = HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static("Basic"));
                    value.set_sensitive(true);
                    Credentials::Basic(value)
                }
                IntrospectionAuth::Post => Credentials::Post {
                    client_id: config.client_id.clone(),
                    client_secret: config.client_secret.expose().to_string(),
                },
            };
            out.push(Introspector {
                issuer: issuer.issuer.clone(),
                mode: config.mode,
                url: config.url.clone(),
                client: fetcher.http_client().clone(),
                credentials,
                timeout: config.timeout,
                cache_ttl: config.cache_ttl,
                max_json_depth,
                verdicts: Cache::new(MAX_ENTRIES),
            });
        }
        Ok(out)
    }

    /// The issuer (as configured) whose endpoint this is.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn mode(&self) -> IntrospectMode {
        self.mode
    }

    /// The verdict on `token` as of `now` (seconds since the epoch): reused
    /// while its entry lasts, else asked of the endpoint once however many
    /// requests wait for it. `judge` turns an active answer's members into
    /// the identity, or the check they fail.
    pub async fn verdict(
        &self,
        token: &str,
        now: u64,
        judge: impl FnOnce(Claims) -> Result<Verified, AuthFailure>,
    ) -> Result<Verified, AuthFailure> {
        let key = TokenCache::key(token);
        // A verdict made after this request arrived is good for it even
        // with cache_ttl = 0: concurrent requests share one call.
        let asked_at = Instant::now();
        let guard = loop {
            match self.verdicts.get_value_or_guard_async(&key).await {
                Ok(entry) if entry.until >= asked_at => return entry.verdict,
                Ok(_) => {
                    self.verdicts.remove_if(&key, |entry| entry.until < asked_at);
                }
                Err(guard) => break guard,
            }
        };
        let (verdict, ttl) = match self.ask(token).await {
            Ok(Answer::Active(claims)) => {
                let exp = claims.get("exp").and_then(serde_json::Value::as_f64);
                match judge(claims) {
                    Ok(verified) => {
                        let left = exp.map_or(self.cache_ttl, |exp| {
                            Duration::try_from_secs_f64(exp - now as f64).unwrap_or(Duration::ZERO)
                        });
                        (Ok(verified), self.cache_ttl.min(left))
                    }
                    Err(failure) => (Err(failure), REFUSED_TTL),
                }
            }
            Ok(Answer::Inactive) => (Err(AuthFailure::Inactive), REFUSED_TTL),
            Err(problem) => {
                tracing::warn!(issuer = %self.issuer, url = %self.url, %problem, "token introspection failed");
                (Err(AuthFailure::IntrospectionUnavailable), UNAVAILABLE_TTL)
            }
        };
        // cache_ttl may be written as years: past Instant's range, a year will do.
        let until = Instant::now().checked_add(ttl).unwrap_or_else(|| asked_at + Duration::from_secs(365 * 86_400));
        let _ = guard.insert(Entry { verdict: verdict.clone(), until });
        verdict
    }

    /// For `check --online`: asks about a token no provider issued, which
    /// a working endpoint that accepts jwtgate's credentials answers with
    /// `active: false`. `Err((answered, why))`: `answered` when the
    /// endpoint was reached and refused or answered unusably.
    pub async fn probe(&self) -> Result<(), (bool, String)> {
        match self.ask("jwtgate-check-online-probe").await {
            Ok(_) => Ok(()),
            Err(Unanswered::Unreached(why)) => Err((false, why)),
            Err(Unanswered::Unusable(why)) => Err((true, why)),
        }
    }

    /// One POST to the endpoint (RFC 7662 §2.1); `Err` says in words why
    /// there is no answer. The form body holding the token lives only
    /// until it is sent.
    async fn ask(&self, token: &str) -> Result<Answer, Unanswered> {
        let mut request = self
            .client
            .post(&self.url)
            .timeout(self.timeout)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json");
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("token", token);
            form.append_pair("token_type_hint", "access_token");
            match &self.credentials {
                Credentials::Basic(value) => request = request.header(AUTHORIZATION, value.clone()),
                Credentials::Post { client_id, client_secret } => {
                    form.append_pair("client_id", client_id);
                    form.append_pair("client_secret", client_secret);
                }
            }
            form.finish()
        };
        let timeouts = crate::outbound::Timeouts { connect: self.timeout, whole: self.timeout };
        let cause = |error: reqwest::Error| crate::outbound::cause(&error, timeouts);
        let unusable = |why: String| Unanswered::Unusable(why);
        let mut response = request.body(body).send().await.map_err(|error| Unanswered::Unreached(cause(error)))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(unusable(format!("the endpoint answered HTTP {status} (expected 200)")));
        }
        let too_large = || unusable(format!("the answer is larger than {MAX_ANSWER_BYTES} bytes"));
        if response.content_length().is_some_and(|n| n > MAX_ANSWER_BYTES as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| unusable(cause(error)))? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        answer::parse(&body, self.max_json_depth).map_err(|why| unusable(why.to_string()))
    }
}
