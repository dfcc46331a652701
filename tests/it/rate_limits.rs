//! `[[rate_limits]]` and `[rate_limit_store]`: local GCRA per subject, IP
//! or route; 429 with `Retry-After` and the `RateLimit-Policy`/`RateLimit`
//! fields; two jwtgate processes sharing one budget through a real Redis; and what
//! a Redis outage does under `on_store_error`, and that the limit returns
//! with Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::support::keys::{SigningKey, claims};
use crate::support::{Process, TestGateway, TestIdp, TestUpstream, assert_refused, client, free_port, get, toml};
use serde_json::json;

const RATE_LIMITED: &str = "too many requests: a rate limit of this route is spent; retry after Retry-After seconds";

fn token_for(key: &SigningKey, issuer: &str, sub: &str) -> String {
    let mut c = claims(issuer, "api");
    c["sub"] = json!(sub);
    key.mint(&c)
}

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> String {
    headers.get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

/// A counter's value in the gateway's /metrics text.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

#[tokio::test]
async fn local_limits_per_subject_with_retry_after_and_ratelimit_fields() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let limits = r#"
[[routes]]
path = "/api"
auth = "optional"
[[routes]]
path = "/other"
[[rate_limits]]
key = "claim:sub"
rate = "1/h"
burst = 3
routes = ["/api"]
"#;
    let gateway = toml(&upstream.url(), &idp.issuer).issuer(limits).start().await;
    let alice = token_for(&key, &idp.issuer, "alice");
    let bob = token_for(&key, &idp.issuer, "bob");

    for remaining in [2, 1, 0] {
        let (status, headers, _) = get(&gateway.url("/api/items"), Some(&alice)).await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "ratelimit-policy"), "\"rate_limits[0]\";q=1;w=3600");
        let state = header(&headers, "ratelimit");
        assert!(state.starts_with(&format!("\"rate_limits[0]\";r={remaining};t=")), "{state}");
    }
    let answer = get(&gateway.url("/api/items"), Some(&alice)).await;
    assert_refused(&answer, 429, "rate_limited", RATE_LIMITED);
    let retry_after: u64 = header(&answer.1, "retry-after").parse().unwrap();
    // One cell of 1/h comes back within the hour, not sooner than ~59 minutes.
    assert!((3500..=3600).contains(&retry_after), "{retry_after}");
    assert_eq!(header(&answer.1, "ratelimit-policy"), "\"rate_limits[0]\";q=1;w=3600");
    assert_eq!(header(&answer.1, "ratelimit"), format!("\"rate_limits[0]\";r=0;t={retry_after}"));
    assert_eq!(upstream.count(), 3, "a refused request never reaches the upstream");

    // Another subject has its own bucket; so does an anonymous client (by its IP).
    for _ in 0..3 {
        assert_eq!(get(&gateway.url("/api/items"), Some(&bob)).await.0, 200);
        assert_eq!(get(&gateway.url("/api/items"), None).await.0, 200);
    }
    assert_eq!(get(&gateway.url("/api/items"), Some(&bob)).await.0, 429);
    assert_eq!(get(&gateway.url("/api/items"), None).await.0, 429);
    // A token without the claim is counted by its IP too: the anonymous
    // client's bucket, spent already.
    let mut no_sub = claims(&idp.issuer, "api");
    no_sub.as_object_mut().unwrap().remove("sub");
    assert_eq!(get(&gateway.url("/api/items"), Some(&key.mint(&no_sub))).await.0, 429);

    // The limit names its routes: /other is not limited, and says nothing of limits.
    for _ in 0..10 {
        let (status, headers, _) = get(&gateway.url("/other"), Some(&alice)).await;
        assert_eq!(status, 200);
        assert!(headers.get("ratelimit").is_none() && headers.get("ratelimit-policy").is_none());
    }
    let text = gateway.metrics_text().await;
    assert_eq!(metric(&text, "jwtgate_rate_limit_decisions_total{limit=\"rate_limits[0]\",decision=\"allowed\"}"), 9);
    assert_eq!(metric(&text, "jwtgate_rate_limit_decisions_total{limit=\"rate_limits[0]\",decision=\"limited\"}"), 4);
    assert!(
        text.contains("jwtgate_requests_total{route=\"/api\",method=\"GET\",outcome=\"refused\",status=\"429\"} 4")
    );
}

#[tokio::test]
async fn ip_and_route_keys_and_explain_spends_nothing() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let limits = r#"
[[routes]]
path = "/open"
auth = "public"
[[routes]]
path = "/busy"
auth = "public"
[[rate_limits]]
key = "route"
rate = "2/m"
routes = ["/busy"]
[[rate_limits]]
key = "ip"
rate = "600/m"
burst = 4
routes = ["/open"]
"#;
    let text = toml(&upstream.url(), &idp.issuer).issuer(limits).text();
    let gateway = TestGateway::start(&text).await;
    // rate = "2/m" without burst: a burst of 2, for the whole route.
    assert_eq!(get(&gateway.url("/busy"), None).await.0, 200);
    assert_eq!(get(&gateway.url("/busy/x"), None).await.0, 200);
    let answer = get(&gateway.url("/busy"), None).await;
    assert_refused(&answer, 429, "rate_limited", RATE_LIMITED);
    assert!((1..=30).contains(&header(&answer.1, "retry-after").parse::<u64>().unwrap()));
    for _ in 0..4 {
        assert_eq!(get(&gateway.url("/open"), None).await.0, 200);
    }
    let answer = get(&gateway.url("/open"), None).await;
    assert_eq!(answer.0, 429);
    // 600/m: a cell every 100 ms, so the wait rounds up to one second.
    assert_eq!(header(&answer.1, "retry-after"), "1");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(get(&gateway.url("/open"), None).await.0, 200);

    // explain lists the limits of the route and takes no cell.
    let config = jwtgate::Config::parse(&text, "t.toml", Path::new("."), &|_| None).unwrap();
    let token = token_for(&key, &idp.issuer, "alice");
    let options = jwtgate::explain::Options {
        method: http::Method::GET,
        path: "/busy".into(),
        ..jwtgate::explain::Options::default()
    };
    let (report, _) = jwtgate::explain::explain(&config, &token, &options).await.unwrap();
    assert!(
        report.contains("limits\n  rate_limits[0]: 2/m, burst 2, one bucket per route; bucket: route /busy; in this process (not consumed by explain)"),
        "{report}"
    );
    assert!(!report.contains("rate_limits[1]"), "{report}");
}

#[tokio::test]
async fn forward_auth_checks_count_the_client_the_edge_saw() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let extra = r#"
[forward_auth]
path = "/auth"
edge = "traefik"
[[routes]]
path = "/public"
auth = "public"
[[rate_limits]]
key = "ip"
rate = "1/h"
burst = 2
"#;
    let gateway = toml(&upstream.url(), &idp.issuer).issuer(extra).start().await;
    let check = |client_ip: &'static str| {
        crate::support::client()
            .get(gateway.url("/auth"))
            .header("x-forwarded-uri", "/public/status")
            .header("x-forwarded-method", "GET")
            // What the client claimed, then what Traefik appended.
            .header("x-forwarded-for", format!("203.0.113.99, {client_ip}"))
            .send()
    };
    let status = |ip| async move { check(ip).await.unwrap().status().as_u16() };
    assert_eq!(status("198.51.100.1").await, 200);
    assert_eq!(status("198.51.100.1").await, 200);
    let refused = check("198.51.100.1").await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    // Another client of the edge, with the same forged first entry: its own bucket.
    assert_eq!(status("198.51.100.2").await, 200);
    assert_eq!(upstream.count(), 0);
}

#[test]
fn check_reports_each_bad_key() {
    let text = r#"
[upstream]
url = "http://127.0.0.1:9"
[[issuers]]
issuer = "https://i/"
audiences = ["api"]
[[routes]]
path = "/api"
[[rate_limits]]
key = "subject"
rate = "100 per second"
burst = 0
routes = ["/nope"]
[rate_limit_store]
redis_url = "rediss://cache:6380"
on_store_error = "open"
"#;
    let error = jwtgate::Config::parse(text, "gw.toml", Path::new("."), &|_| None).unwrap_err().to_string();
    for expected in [
        "gw.toml:10:1: rate_limits[0].key: must be \"claim:NAME\", \"ip\" or \"route\" (got \"subject\")",
        "gw.toml:11:1: rate_limits[0].rate: expected requests per second, minute or hour such as \"100/s\"",
        "gw.toml:12:1: rate_limits[0].burst: must be between 1 and 10000000 (got 0)",
        "gw.toml:13:11: rate_limits[0].routes[0]: no route has path \"/nope\" — write one of the [[routes]] paths: /api",
        "gw.toml:15:1: rate_limit_store.redis_url: TLS to Redis (rediss://) is not supported",
        "gw.toml:16:1: rate_limit_store.on_store_error: must be \"allow\" or \"deny\" (got \"open\")",
    ] {
        assert!(error.contains(expected), "{expected}\nnot in:\n{error}");
    }
}

/// A `jwtgate run` process with its own listeners, ready (keys loaded).
struct Replica {
    _child: tokio::process::Child,
    port: u16,
    admin_port: u16,
}

impl Replica {
    async fn start(text: &str, dir: &Path, name: &str) -> Replica {
        let (port, admin_port) = (free_port().port(), free_port().port());
        let path = dir.join(format!("{name}.toml"));
        let text = text.replacen(
            "[server]\n",
            &format!("[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\n"),
            1,
        );
        std::fs::write(&path, text).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_jwtgate"))
            .args(["run", "-c", path.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let replica = Replica { _child: child, port, admin_port };
        for _ in 0..500 {
            if client().get(replica.admin_url("/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
                return replica;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("jwtgate {name} did not become ready");
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    async fn metrics_text(&self) -> String {
        client().get(self.admin_url("/metrics")).send().await.unwrap().text().await.unwrap()
    }
}

/// A throwaway redis-server on `addr`: no persistence, killed on drop.
async fn redis(addr: SocketAddr) -> Process {
    let mut command = std::process::Command::new("redis-server");
    command.args(["--port", &addr.port().to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
    Process::start("redis-server", command, addr, tempfile::tempdir().unwrap()).await
}

fn shared_config(upstream: &str, issuer: &str, redis: SocketAddr, on_store_error: &str) -> String {
    toml(upstream, issuer)
        .issuer(&format!(
            "[[rate_limits]]\nkey = \"claim:sub\"\nrate = \"1/h\"\nburst = 5\n\
             [rate_limit_store]\nredis_url = \"redis://{redis}\"\non_store_error = \"{on_store_error}\"\n"
        ))
        .text()
}

#[tokio::test]
#[ignore = "needs redis-server (.ci/run installs it)"]
async fn two_jwtgate_processes_share_one_budget_through_redis() {
    let redis_addr = free_port();
    let _redis = redis(redis_addr).await;
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let text = shared_config(&upstream.url(), &idp.issuer, redis_addr, "deny");
    // Two `jwtgate run` processes, as two replicas are: nothing shared but Redis.
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Replica::start(&text, dir.path(), "a").await, Replica::start(&text, dir.path(), "b").await);
    let alice = token_for(&key, &idp.issuer, "alice");

    // explain, with the store configured, spends nothing of the budget.
    let config = jwtgate::Config::parse(&text, "t.toml", Path::new("."), &|_| None).unwrap();
    let options = jwtgate::explain::Options { path: "/".into(), ..jwtgate::explain::Options::default() };
    let (report, _) = jwtgate::explain::explain(&config, &alice, &options).await.unwrap();
    assert!(report.contains("bucket: claim:sub = \"alice\"; shared through [rate_limit_store]"), "{report}");

    let mut admitted = 0;
    let mut remaining = Vec::new();
    for i in 0..12 {
        let gateway = if i % 2 == 0 { &a } else { &b };
        let (status, headers, _) = get(&gateway.url("/"), Some(&alice)).await;
        match status {
            200 => {
                admitted += 1;
                remaining.push(header(&headers, "ratelimit"));
            }
            429 => assert!(header(&headers, "retry-after").parse::<u64>().unwrap() > 3000),
            other => panic!("status {other}"),
        }
    }
    assert_eq!(admitted, 5, "together the two admit exactly the burst");
    assert!(remaining[0].starts_with("\"rate_limits[0]\";r=4;t="), "{remaining:?}");
    assert!(remaining[4].starts_with("\"rate_limits[0]\";r=0;t="), "{remaining:?}");
    // Another subject: a bucket of its own, on either gateway.
    assert_eq!(get(&b.url("/"), Some(&token_for(&key, &idp.issuer, "bob"))).await.0, 200);
    let text = a.metrics_text().await;
    assert_eq!(metric(&text, "jwtgate_rate_limit_store_errors_total{limit=\"rate_limits[0]\"}"), 0);
}

#[tokio::test]
#[ignore = "needs redis-server (.ci/run installs it)"]
async fn redis_down_follows_on_store_error_and_the_limit_returns_with_it() {
    let redis_addr = free_port();
    let server = redis(redis_addr).await;
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let allow = TestGateway::start(&shared_config(&upstream.url(), &idp.issuer, redis_addr, "allow")).await;
    let deny = TestGateway::start(&shared_config(&upstream.url(), &idp.issuer, redis_addr, "deny")).await;
    allow.wait_for_keys().await;
    deny.wait_for_keys().await;
    let alice = token_for(&key, &idp.issuer, "alice");
    assert_eq!(get(&allow.url("/"), Some(&alice)).await.0, 200);
    assert_eq!(get(&deny.url("/"), Some(&alice)).await.0, 200);

    drop(server);
    // allow: every request goes through (more than the burst), counted.
    for _ in 0..8 {
        let (status, headers, _) = get(&allow.url("/"), Some(&alice)).await;
        assert_eq!(status, 200);
        assert!(headers.get("ratelimit").is_none(), "no store, no count to report");
    }
    let text = allow.metrics_text().await;
    assert_eq!(metric(&text, "jwtgate_rate_limit_store_errors_total{limit=\"rate_limits[0]\"}"), 8);
    // deny: 503, the honest answer for "cannot tell", with Retry-After.
    let answer = get(&deny.url("/"), Some(&alice)).await;
    assert_refused(
        &answer,
        503,
        "temporarily_unavailable",
        "the rate limit store (Redis) does not answer and on_store_error is deny; retry shortly",
    );
    assert_eq!(header(&answer.1, "retry-after"), "1");

    // Redis back on the same port (empty): the limit holds again once reconnected.
    let _server = redis(redis_addr).await;
    let mut back = false;
    for _ in 0..100 {
        let (status, headers, _) = get(&allow.url("/"), Some(&alice)).await;
        assert_eq!(status, 200);
        if headers.get("ratelimit").is_some() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "the store did not come back within 10 s");
    // One cell spent by the request that found it back: four more, then 429.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get(&allow.url("/"), Some(&alice)).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429]);
    // The deny gateway finds its broken connection on its next request
    // (503) and remakes it; then it shares that same, spent budget.
    let mut statuses = Vec::new();
    for _ in 0..50 {
        let status = get(&deny.url("/"), Some(&alice)).await.0;
        statuses.push(status);
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(statuses.len() <= 20, "the deny gateway took more than 2 s to reconnect: {statuses:?}");
}
