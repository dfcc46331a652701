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
        assert!(series.starts_with("jwtgate_") || series.starts_with("process_"), "{line:?}");
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
        (r#"jwtgate_requests_total{route="(default)",method="GET",outcome="allowed",status="200"}"#.into(), 3.0),
        (r#"jwtgate_requests_total{route="(default)",method="GET",outcome="refused",status="401"}"#.into(), 2.0),
        (r#"jwtgate_requests_total{route="(default)",method="GET",outcome="upstream_error",status="504"}"#.into(), 1.0),
        (r#"jwtgate_request_duration_seconds_count{route="(default)"}"#.into(), 6.0),
        ("jwtgate_auth_failures_total{issuer=\"\",reason=\"missing_token\"}".to_string(), 1.0),
        (format!("jwtgate_auth_failures_total{{issuer=\"{issuer}\",reason=\"expired\"}}"), 1.0),
        (format!("jwtgate_jwks_fetches_total{{issuer=\"{issuer}\",result=\"ok\"}}"), 1.0),
        (format!("jwtgate_jwks_keys{{issuer=\"{issuer}\"}}"), 1.0),
        (r#"jwtgate_upstream_duration_seconds_count{route="(default)"}"#.into(), 3.0),
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
    let keys_before = gateway.shared.load().issuer_keys()[0].clone();

    assert_eq!(get(&gateway.url("/open"), None).await.0, 401);
    std::fs::write(&path, format!("{base}\n[[routes]]\npath = \"/open\"\nauth = \"public\"\n")).unwrap();
    assert!(reloader.reload());
    assert_eq!(get(&gateway.url("/open"), None).await.0, 200, "the new route is in force");
    assert!(keys_before.same_store(&gateway.shared.load().issuer_keys()[0]), "the issuer kept its key store");
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
    // A chunked body of 11 bytes, whose length is counted as it streams.
    let chunked = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nUser-Agent: probe/1.0\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"
    );
    let answer = raw(format!("127.0.0.1:{}", binary.port).parse().unwrap(), chunked.as_bytes()).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
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
    assert_eq!(requests.len(), 5, "{lines:#?}");
    assert_eq!(requests[0]["status"], 200);
    assert_eq!(requests[0]["outcome"], "allowed");
    assert_eq!(requests[0]["sub"], "user-1");
    // Issue 18: who asked, over what, and how much went each way.
    assert_eq!(requests[0]["client_ip"], "127.0.0.1");
    assert_eq!(requests[0]["protocol"], "HTTP/1.1");
    assert_eq!(requests[0]["tls"], false);
    assert_eq!(requests[0]["upstream"], "default");
    assert_eq!(requests[0]["route"], "(default)");
    assert_eq!(requests[0]["bytes_in"], 0);
    assert!(requests[0]["bytes_out"].as_u64().is_some_and(|n| n > 0), "{}", requests[0]);
    assert!(requests[0]["latency_ms"].as_f64().is_some(), "{}", requests[0]);
    assert!(requests[0].get("complete").is_none(), "only an answer cut short says so: {}", requests[0]);
    assert_eq!(requests[4]["user_agent"], "probe/1.0");
    assert_eq!(requests[4]["method"], "POST");
    assert_eq!(requests[4]["bytes_in"], 11, "{}", requests[4]);
    // A refusal's body is the gateway's JSON: its length is what was sent.
    assert!(requests[1]["bytes_out"].as_u64().is_some_and(|n| n > 20), "{}", requests[1]);
    assert!(requests[1].get("upstream").is_none(), "a refusal went to no upstream: {}", requests[1]);
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

/// What one keep-alive client saw during a shutdown round.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// Requests answered with a complete response (status line and whole body).
    answered: usize,
    /// Requests written completely that got no complete response: the
    /// connection was closed or reset while the answer was awaited.
    lost: usize,
    /// Answers carrying `Connection: close`, after which the client reconnected.
    told_to_close: usize,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.answered += other.answered;
        self.lost += other.lost;
        self.told_to_close += other.told_to_close;
    }
}

/// Reads one HTTP/1.1 response (`Content-Length` framed) from `stream`:
/// `Some(connection_close)` when it arrived whole, `None` when the
/// connection ended first.
async fn read_response(stream: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>) -> Option<bool> {
    use tokio::io::AsyncReadExt;
    buffer.clear();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .unwrap_or_else(|| panic!("no content-length in {head}"))
        .trim()
        .parse()
        .unwrap();
    let close = head.lines().any(|l| l.starts_with("connection:") && l.contains("close"));
    while buffer.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
    Some(close)
}

/// Sends GETs back to back on one keep-alive connection, reconnecting after
/// `Connection: close` (never reusing that connection), until the gateway
/// no longer accepts connections.
async fn keep_alive_client(port: u16, request: Arc<Vec<u8>>) -> Tally {
    use tokio::io::AsyncWriteExt;
    let mut tally = Tally::default();
    let mut buffer = Vec::with_capacity(16 * 1024);
    'connections: loop {
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            return tally;
        };
        stream.set_nodelay(true).unwrap();
        loop {
            if stream.write_all(&request).await.is_err() {
                // Not written completely: the server had closed the connection.
                continue 'connections;
            }
            match read_response(&mut stream, &mut buffer).await {
                Some(close) => {
                    tally.answered += 1;
                    if close {
                        tally.told_to_close += 1;
                        continue 'connections;
                    }
                }
                None => {
                    tally.lost += 1;
                    continue 'connections;
                }
            }
        }
    }
}

/// Issue 16: under load, SIGTERM loses no request. 24 clients each send
/// requests back to back on their own keep-alive connection; every request
/// written completely must get a complete answer (the gateway tells clients
/// to stop with `Connection: close` and only then closes), in every round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_keep_alive_load_loses_no_request() {
    const ROUNDS: usize = 5;
    const CLIENTS: usize = 24;
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let token = key.mint(&claims(&idp.issuer, "api"));
    let request = Arc::new(
        format!("GET /orders HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {token}\r\n\r\n").into_bytes(),
    );
    let (mut report, mut lost_per_round) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (_dir, path) = config_file(&upstream, &idp, "");
        let binary = Binary::start(&path, &[], &[]).await;
        let seen_before = upstream.count();
        let clients: Vec<_> =
            (0..CLIENTS).map(|_| tokio::spawn(keep_alive_client(binary.port, Arc::clone(&request)))).collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        binary.signal("-TERM");
        let mut tally = Tally::default();
        for client in clients {
            tally += tokio::time::timeout(Duration::from_secs(20), client).await.expect("the client finished").unwrap();
        }
        let (status, lines) = binary.wait().await;
        assert!(status.success(), "{status:?}\n{}", lines.join("\n"));
        // Of the lost requests, those the gateway read (and passed on): the
        // rest were closed before any byte of them was read. Neither may
        // happen: a client sending back to back is never idle for the
        // drain window, so its connection ends only after `Connection: close`.
        let read_but_lost = (upstream.count() - seen_before).saturating_sub(tally.answered);
        report.push(format!("round {round}: {tally:?}, read by the gateway but unanswered: {read_but_lost}"));
        assert!(tally.answered > 0, "{report:#?}");
        lost_per_round.push(tally.lost + read_but_lost);
    }
    eprintln!("{}", report.join("\n"));
    assert!(lost_per_round.iter().all(|&lost| lost == 0), "requests lost:\n{}", report.join("\n"));
}

/// A WebSocket session open when the gateway shuts down goes on during the
/// grace period, then both sides get a close frame 1001 "going away"
/// instead of a silent cut.
#[tokio::test]
async fn websocket_sessions_get_a_going_away_close_frame_when_the_grace_ends() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    // An echo upstream that reports the close frame it receives.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo = listener.local_addr().unwrap();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
        while let Some(Ok(message)) = socket.next().await {
            match message {
                Message::Close(frame) => {
                    let _ = closed_tx.send(frame);
                    return;
                }
                message if message.is_text() => socket.send(message).await.unwrap(),
                _ => {}
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwtgate.toml");
    let text = toml(&format!("http://{echo}"), &idp.issuer)
        .server("listen = \"127.0.0.1:PORT\"\nadmin_listen = \"127.0.0.1:ADMIN\"\nshutdown_grace = \"1500ms\"\n")
        .text();
    std::fs::write(&path, text).unwrap();
    let binary = Binary::start(&path, &[], &[]).await;
    let token = key.mint(&claims(&idp.issuer, "api"));
    let mut request = format!("ws://127.0.0.1:{}/chat", binary.port).into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket.send(Message::text("before")).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap(), Message::text("before"));

    let signalled = std::time::Instant::now();
    binary.signal("-TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    socket.send(Message::text("during the grace")).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap(), Message::text("during the grace"), "the session still works");

    let last =
        tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("the gateway closed the session");
    let Some(Ok(Message::Close(Some(frame)))) = last else { panic!("expected a close frame, got {last:?}") };
    assert_eq!((frame.code, frame.reason.as_str()), (CloseCode::Away, "going away"));
    assert!(signalled.elapsed() >= Duration::from_millis(1400), "not before the grace ends: {:?}", signalled.elapsed());
    let upstream_saw = tokio::time::timeout(Duration::from_secs(5), closed_rx).await.unwrap().unwrap();
    assert_eq!(upstream_saw.map(|f| f.code), Some(CloseCode::Away), "the upstream is told too");
    let (status, lines) = binary.wait().await;
    assert!(status.success(), "{status:?}\n{}", lines.join("\n"));
    assert!(lines.iter().any(|l| l.contains("grace period over")), "{}", lines.join("\n"));
}

/// Issue 18: the shipped Grafana dashboard graphs what the gateway exports:
/// every metric a query names, with every label it filters or groups by,
/// is on a real gateway's /metrics page once it has served some traffic.
#[tokio::test]
async fn the_grafana_dashboard_queries_only_metrics_the_gateway_exports() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = TestGateway::for_idp(&idp, &upstream, "").await;
    let token = key.mint(&claims(&idp.issuer, "api"));
    for _ in 0..2 {
        assert_eq!(get(&gateway.url("/"), Some(&token)).await.0, 200);
    }
    assert_eq!(get(&gateway.url("/"), None).await.0, 401);
    // Sample name → the label names it carries.
    let mut exported: HashMap<String, std::collections::HashSet<String>> = HashMap::new();
    for line in gateway.metrics_text().await.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let series = line.rsplit_once(' ').unwrap().0;
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let names =
            labels.trim_end_matches('}').split(',').filter_map(|l| l.split_once('=')).map(|(k, _)| k.to_string());
        exported.entry(name.to_string()).or_default().extend(names);
    }

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/jwtgate.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queries: Vec<String> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{}", panel["title"]);
        queries.extend(panel["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_string()));
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            queries.push(query.to_string());
        }
    }
    let titles: Vec<&str> =
        dashboard["panels"].as_array().unwrap().iter().map(|p| p["title"].as_str().unwrap()).collect();
    for topic in ["by outcome", "by reason", "by issuer", "Latency percentiles", "Key freshness", "cache hit", "memory"]
    {
        assert!(titles.iter().any(|t| t.contains(topic)), "no panel for {topic}: {titles:?}");
    }

    let mut checked = 0;
    for query in &queries {
        let mut rest = query.as_str();
        while let Some(at) = rest.find(|c: char| c.is_ascii_lowercase()) {
            rest = &rest[at..];
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            let (word, after) = rest.split_at(end);
            rest = after;
            if !(word.starts_with("jwtgate_") || word.starts_with("process_")) {
                continue;
            }
            let labels = exported.get(word).unwrap_or_else(|| panic!("{word} (in {query}) is not exported"));
            // The selector's labels, and the `by (...)` labels of the query.
            let selector = after.strip_prefix('{').and_then(|s| s.split_once('}')).map_or("", |(s, _)| s);
            let grouped = query.split("by (").skip(1).filter_map(|s| s.split_once(')')).map(|(g, _)| g);
            let named = selector
                .split(',')
                .filter_map(|m| m.split(['=', '!']).next())
                .chain(grouped.flat_map(|g| g.split(',')))
                .map(str::trim)
                .filter(|l| !l.is_empty() && !["job", "instance", "le"].contains(l));
            for label in named {
                assert!(labels.contains(label), "{word} has no label {label} (in {query}); it has {labels:?}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} metric references checked");
}
