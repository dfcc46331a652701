//! Running jwtgate for months: probes, metrics, request ids, reload,
//! graceful shutdown and logs — in-process and through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use jwtgate::reload::Reloader;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

/// `name{labels}` → value, for every sample line of a Prometheus text page.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample line: {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number in {line:?}"));
        assert!(series.starts_with("jwtgate_"), "{line:?}");
        samples.insert(series.to_string(), value);
    }
    samples
}

async fn metrics(gateway: &TestGateway) -> HashMap<String, f64> {
    let response = client().get(gateway.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    parse_metrics(&response.text().await.unwrap())
}

#[tokio::test]
async fn readiness_follows_the_keys() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    idp.set_down(true);
    let upstream = TestUpstream::start().await;
    let gateway = TestGateway::start(&toml(&upstream.url(), &idp.issuer).text()).await;

    assert_eq!(get(&gateway.admin_url("/healthz"), None).await.0, 200);
    let (status, _, body) = get(&gateway.admin_url("/readyz"), None).await;
    assert_eq!(status, 503);
    assert_eq!(body, json!({"ready": false, "issuers_without_keys": [idp.issuer]}));

    idp.set_down(false);
    gateway.wait_for_keys().await;
    let (status, _, body) = get(&gateway.admin_url("/readyz"), None).await;
    assert_eq!((status, body), (200, json!({"ready": true})));
    assert_eq!(get(&gateway.admin_url("/nope"), None).await.0, 404);
}

#[tokio::test]
async fn metrics_parse_and_move() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = TestGateway::for_idp(&idp, &upstream, "").await;
    let token = key.mint(&claims(&idp.issuer, "api"));
    let mut expired = claims(&idp.issuer, "api");
    expired["exp"] = json!(now() - 3600);
    let expired = key.mint(&expired);

    for _ in 0..3 {
        assert_eq!(get(&gateway.url("/"), Some(&token)).await.0, 200);
    }
    assert_eq!(get(&gateway.url("/"), None).await.0, 401);
    assert_eq!(get(&gateway.url("/"), Some(&expired)).await.0, 401);
    assert_eq!(get(&gateway.url("/slow"), Some(&token)).await.0, 504);

    let m = metrics(&gateway).await;
    let issuer = &idp.issuer;
    let expect = [
        ("jwtgate_requests_total{outcome=\"allowed\",status=\"200\"}".to_string(), 3.0),
        ("jwtgate_requests_total{outcome=\"refused\",status=\"401\"}".to_string(), 2.0),
        ("jwtgate_requests_total{outcome=\"upstream_error\",status=\"504\"}".to_string(), 1.0),
        ("jwtgate_auth_failures_total{issuer=\"\",reason=\"missing_token\"}".to_string(), 1.0),
        (format!("jwtgate_auth_failures_total{{issuer=\"{issuer}\",reason=\"expired\"}}"), 1.0),
        (format!("jwtgate_jwks_fetches_total{{issuer=\"{issuer}\",result=\"ok\"}}"), 1.0),
        (format!("jwtgate_jwks_keys{{issuer=\"{issuer}\"}}"), 1.0),
        ("jwtgate_upstream_duration_seconds_count".to_string(), 3.0),
        ("jwtgate_in_flight_requests".to_string(), 0.0),
    ];
    for (series, value) in expect {
        assert_eq!(m.get(&series), Some(&value), "{series} in {m:#?}");
    }
    let age = m[&format!("jwtgate_jwks_age_seconds{{issuer=\"{issuer}\"}}")];
    assert!((0.0..60.0).contains(&age), "{age}");
}

#[tokio::test]
async fn request_ids_are_kept_or_made_and_travel_both_ways() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = TestGateway::for_idp(&idp, &upstream, "").await;
    let token = key.mint(&claims(&idp.issuer, "api"));

    let response =
        client().get(gateway.url("/")).bearer_auth(&token).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    assert_eq!(upstream.last().headers["x-request-id"], "abc-123");

    let response =
        client().get(gateway.url("/")).bearer_auth(&token).header("x-request-id", "bad id").send().await.unwrap();
    let made = response.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(made.len(), 24);
    assert_eq!(upstream.last().headers["x-request-id"], made.as_str());

    let refused = client().get(gateway.url("/")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().contains_key("x-request-id"), "refusals carry the id too");
}

#[tokio::test]
async fn reload_swaps_the_config_keeps_keys_and_refuses_bad_files() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwtgate.toml");
    let base = toml(&upstream.url(), &idp.issuer).text();
    std::fs::write(&path, &base).unwrap();
    let gateway = TestGateway::start(&base).await;
    gateway.wait_for_keys().await;
    let running = jwtgate::Config::load(&path).unwrap();
    let reloader = Reloader::new(path.clone(), Arc::clone(&gateway.shared), running, None);
    let keys_before = Arc::clone(&gateway.shared.load().issuer_keys()[0]);

    assert_eq!(get(&gateway.url("/open"), None).await.0, 401);
    std::fs::write(&path, format!("{base}\n[[routes]]\npath = \"/open\"\nauth = \"public\"\n")).unwrap();
    assert!(reloader.reload());
    assert_eq!(get(&gateway.url("/open"), None).await.0, 200, "the new route is in force");
    assert!(Arc::ptr_eq(&keys_before, &gateway.shared.load().issuer_keys()[0]), "the issuer kept its key store");
    assert_eq!(idp.fetches(), 1, "no refetch for an unchanged issuer");

    std::fs::write(&path, "[upstream\nurl = 1").unwrap();
    assert!(!reloader.reload());
    assert_eq!(get(&gateway.url("/open"), None).await.0, 200, "the old configuration still serves");
}

/// The real binary as a child process, its stderr collected line by line.
struct Binary {
    child: tokio::process::Child,
    stderr: Arc<Mutex<Vec<String>>>,
    port: u16,
    admin_port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Binary {
    /// `global` flags go before `run`, `run_flags` after it.
    async fn start(config: &PathBuf, global: &[&str], run_flags: &[&str]) -> Binary {
        let (port, admin_port) = (free_port(), free_port());
        let text = std::fs::read_to_string(config)
            .unwrap()
            .replace("PORT", &port.to_string())
            .replace("ADMIN", &admin_port.to_string());
        std::fs::write(config, text).unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_jwtgate"))
            .args(global)
            .args(["run", "-c", config.to_str().unwrap()])
            .args(run_flags)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let collected = Arc::clone(&stderr);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                collected.lock().unwrap().push(line);
            }
        });
        let binary = Binary { child, stderr, port, admin_port };
        binary.wait_for_log("loaded signing keys").await;
        binary
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn wait_for_log(&self, needle: &str) {
        for _ in 0..500 {
            if self.stderr.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no log line with {needle:?} in:\n{}", self.stderr.lock().unwrap().join("\n"));
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill").args([name, &pid]).status().unwrap().success());
    }

    async fn wait(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let status =
            tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await.expect("jwtgate exited").unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let lines = self.stderr.lock().unwrap().clone();
        (status, lines)
    }
}

fn config_file(upstream: &TestUpstream, idp: &TestIdp, extra: &str) -> (tempfile::TempDir, PathBuf) {
    config_file_with_grace(upstream, idp, extra, "10s")
}

fn config_file_with_grace(
    upstream: &TestUpstream,
    idp: &TestIdp,
    extra: &str,
    grace: &str,
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwtgate.toml");
    let text = toml(&upstream.url(), &idp.issuer)
        .server(&format!(
            "listen = \"127.0.0.1:PORT\"\nadmin_listen = \"127.0.0.1:ADMIN\"\nshutdown_grace = \"{grace}\"\n"
        ))
        .upstream("timeout = \"10s\"")
        .text();
    std::fs::write(&path, format!("{text}{extra}")).unwrap();
    (dir, path)
}

#[tokio::test]
async fn sigterm_drains_an_in_flight_request_then_exits_0() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let (_dir, path) = config_file(&upstream, &idp, "");
    let binary = Binary::start(&path, &[], &[]).await;
    let token = key.mint(&claims(&idp.issuer, "api"));
    let url = binary.url("/slow");
    let in_flight = tokio::spawn(async move { get(&url, Some(&token)).await.0 });
    tokio::time::sleep(Duration::from_millis(500)).await;
    binary.signal("-TERM");
    assert_eq!(in_flight.await.unwrap(), 200, "the slow request finished during the drain");
    let (status, lines) = binary.wait().await;
    assert!(status.success(), "{status:?}\n{}", lines.join("\n"));
    assert!(lines.iter().any(|l| l.contains("all connections drained")), "{}", lines.join("\n"));
}

#[tokio::test]
async fn requests_still_open_when_the_grace_period_ends_are_cut() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let (_dir, path) = config_file_with_grace(&upstream, &idp, "", "500ms");
    let binary = Binary::start(&path, &[], &[]).await;
    let token = key.mint(&claims(&idp.issuer, "api"));
    let url = binary.url("/slow");
    // The upstream answers /slow after 3 s; the grace period is 0.5 s.
    let in_flight =
        tokio::spawn(async move { client().get(&url).bearer_auth(&token).send().await.map(|r| r.status()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    binary.signal("-TERM");
    let (status, lines) = binary.wait().await;
    assert!(status.success(), "{status:?}");
    assert!(in_flight.await.unwrap().is_err(), "the slow request was cut, not answered");
    assert!(lines.iter().any(|l| l.contains("grace period over")), "{}", lines.join("\n"));
}

#[tokio::test]
async fn sighup_applies_a_valid_change_and_keeps_the_old_config_on_an_invalid_one() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let (_dir, path) = config_file(&upstream, &idp, "");
    let binary = Binary::start(&path, &[], &[]).await;
    assert_eq!(get(&binary.url("/open"), None).await.0, 401);

    let valid = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{valid}\n[[routes]]\npath = \"/open\"\nauth = \"public\"\n")).unwrap();
    binary.signal("-HUP");
    binary.wait_for_log("configuration reloaded").await;
    assert_eq!(get(&binary.url("/open"), None).await.0, 200);

    std::fs::write(&path, format!("{valid}\n[[routes]]\npath = \"/open\"\nauth = \"sometimes\"\n")).unwrap();
    binary.signal("-HUP");
    binary.wait_for_log("configuration reload refused").await;
    assert_eq!(get(&binary.url("/open"), None).await.0, 200, "the old configuration still serves");
    let admin = format!("http://127.0.0.1:{}/readyz", binary.admin_port);
    assert_eq!(get(&admin, None).await.0, 200);
    binary.signal("-TERM");
    let (status, lines) = binary.wait().await;
    assert!(status.success());
    assert!(lines.iter().any(|l| l.contains("routes[0].auth: must be")), "the reason is logged:\n{}", lines.join("\n"));
}

#[tokio::test]
async fn watch_reloads_when_the_file_changes() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let (_dir, path) = config_file(&upstream, &idp, "");
    let binary = Binary::start(&path, &[], &["--watch"]).await;
    assert_eq!(get(&binary.url("/open"), None).await.0, 401);
    let valid = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{valid}\n[[routes]]\npath = \"/open\"\nauth = \"public\"\n")).unwrap();
    binary.wait_for_log("configuration reloaded").await;
    assert_eq!(get(&binary.url("/open"), None).await.0, 200);
}

#[tokio::test]
async fn json_logs_parse_and_never_contain_the_token() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let (_dir, path) = config_file(&upstream, &idp, "\n[[routes]]\npath = \"/admin\"\nscopes = [\"admin\"]\n");
    let binary = Binary::start(&path, &["--log-format", "json"], &[]).await;
    let token = key.mint(&claims(&idp.issuer, "api"));
    let mut wrong = claims(&idp.issuer, "other-api");
    wrong["sub"] = json!("user-2");
    let wrong = key.mint(&wrong);
    assert_eq!(get(&binary.url("/orders"), Some(&token)).await.0, 200);
    assert_eq!(get(&binary.url("/orders"), Some(&wrong)).await.0, 401);
    assert_eq!(get(&binary.url("/orders"), Some("not.a.jwt")).await.0, 401);
    assert_eq!(get(&binary.url("/admin"), Some(&token)).await.0, 403);
    binary.signal("-TERM");
    let (_, lines) = binary.wait().await;
    let mut requests = Vec::new();
    for line in &lines {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        for secret in [&token, &wrong] {
            for part in secret.split('.') {
                assert!(!line.contains(part), "a token part was logged: {line}");
            }
        }
        assert!(!line.contains("not.a.jwt"), "{line}");
        if entry["message"] == "request" {
            requests.push(entry);
        }
    }
    assert_eq!(requests.len(), 4, "{lines:#?}");
    assert_eq!(requests[0]["status"], 200);
    assert_eq!(requests[0]["outcome"], "allowed");
    assert_eq!(requests[0]["sub"], "user-1");
    assert_eq!(requests[1]["reason"], "wrong_audience");
    assert_eq!(
        (requests[3]["status"].as_u64(), requests[3]["sub"].as_str()),
        (Some(403), Some("user-1")),
        "a 403 names its subject"
    );
    assert_eq!(requests[3]["route"], "/admin");
    assert!(requests.iter().all(|r| r["request_id"].as_str().is_some_and(|id| !id.is_empty())));
}

/// Issue 15, point 7: log lines read as values (`admin=127.0.0.1:9901`, not
/// `Some(…)`), latency is rounded to hundredths of a millisecond, and the
/// shutdown line names the listener it drains.
#[tokio::test]
async fn pretty_logs_show_plain_values() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let (_dir, path) = config_file(&upstream, &idp, "");
    let binary = Binary::start(&path, &[], &[]).await;
    assert_eq!(get(&binary.url("/orders"), Some(&key.mint(&claims(&idp.issuer, "api")))).await.0, 200);
    binary.signal("-TERM");
    let port = binary.port;
    let admin = binary.admin_port;
    let (status, lines) = binary.wait().await;
    assert!(status.success());
    let all = lines.join("\n");
    assert!(!all.contains("Some("), "{all}");
    assert!(all.contains(&format!("listen=127.0.0.1:{port} admin=127.0.0.1:{admin}")), "{all}");
    let request =
        lines.iter().find(|l| l.contains(" request ") || l.ends_with("request")).unwrap_or_else(|| panic!("{all}"));
    let latency = request
        .split("latency_ms=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("{request}"));
    let decimals = latency.split('.').nth(1).map_or(0, str::len);
    assert!(latency.parse::<f64>().is_ok() && decimals <= 2, "{request}");
    assert!(
        lines.iter().any(|l| l.contains(&format!("shutting down: draining open connections listen=127.0.0.1:{port} grace=10s"))),
        "{all}"
    );
}
