//! Issue 18, shipping: the binary as it is packaged and installed.
//! `--version` names the release and the commit it was built from; `probe`
//! is the image's HEALTHCHECK.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use hyper::Request;
use serde_json::json;

use crate::support::*;

/// `jwtgate ARGS` with its output, without blocking the test's runtime
/// (the servers it talks to run on it).
async fn jwtgate(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_jwtgate"))
        .args(args)
        .env_remove("JWTGATE_CONFIG")
        .output()
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---- version ----

/// `git rev-parse --short=7 HEAD` in this checkout, when it is one.
fn git_head() -> Option<String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !repo.join(".git").exists() {
        return None;
    }
    let out = Command::new("git").args(["rev-parse", "--short=7", "HEAD"]).current_dir(repo).output().ok()?;
    out.status.success().then(|| text(&out.stdout).trim().to_string())
}

/// The `COMMIT` of a `jwtgate X.Y.Z (COMMIT)` line: 7 hex digits (more if
/// git needs them to be unambiguous) or `unknown`.
fn commit_of(line: &str) -> String {
    let prefix = format!("jwtgate {} (", env!("CARGO_PKG_VERSION"));
    let commit = line.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix(')')).unwrap_or_else(|| {
        panic!("{line:?} is not `{prefix}COMMIT)`");
    });
    let hex = commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
    assert!(hex || commit == "unknown", "{commit:?} is neither a short commit id nor `unknown`");
    commit.to_string()
}

#[tokio::test]
async fn version_names_the_release_and_the_commit_it_was_built_from() {
    let out = jwtgate(&["--version"]).await;
    assert!(out.status.success());
    let line = text(&out.stdout);
    let commit = commit_of(line.trim_end());
    assert_eq!(line.matches('\n').count(), 1);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(version.split('.').filter(|n| n.parse::<u32>().is_ok()).count(), 3, "{version}");
    // The library says the same, for the build_info metric.
    assert_eq!((jwtgate::version::VERSION, jwtgate::version::COMMIT), (version, commit.as_str()));
    // Built from a git checkout without $JWTGATE_COMMIT: git's own answer.
    if std::env::var_os("JWTGATE_COMMIT").is_none()
        && let Some(head) = git_head()
    {
        assert_eq!(commit, head, "--version names another commit than HEAD");
    }
}

// ---- probe ----

/// A server answering `/ok` with 200, `/down` like a `/readyz` without
/// keys, and `/stuck` never.
async fn probe_target() -> std::net::SocketAddr {
    let (addr, _task) = crate::support::http::serve(|req: Request<hyper::body::Incoming>| async move {
        match req.uri().path() {
            "/ok" => json_response(200, &json!({"status": "ok"})),
            "/stuck" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                json_response(200, &json!({}))
            }
            _ => json_response(503, &json!({"ready": false, "issuers_without_keys": ["https://idp.example/"]})),
        }
    })
    .await;
    addr
}

#[tokio::test]
async fn probe_exits_0_on_a_2xx_and_says_nothing() {
    let addr = probe_target().await;
    let out = jwtgate(&["probe", &format!("http://{addr}/ok")]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    assert_eq!(text(&out.stdout), "");
}

#[tokio::test]
async fn probe_exits_1_on_a_503_naming_the_status_and_the_body() {
    let addr = probe_target().await;
    let url = format!("http://{addr}/readyz");
    let out = jwtgate(&["probe", &url]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "probe {url}: answered 503 Service Unavailable: {{\"issuers_without_keys\":[\"https://idp.example/\"],\"ready\":false}}\n"
        )
    );
}

#[tokio::test]
async fn probe_exits_1_when_nothing_listens() {
    let addr = free_port();
    let out = jwtgate(&["probe", &format!("http://{addr}/readyz")]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).ends_with(&format!(": connection refused: nothing listens on {addr}\n")), "{out:?}");
}

#[tokio::test]
async fn probe_exits_1_when_no_answer_comes_within_its_timeout() {
    let addr = probe_target().await;
    let started = std::time::Instant::now();
    let out = jwtgate(&["probe", "--timeout", "300ms", &format!("http://{addr}/stuck")]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).ends_with(": no answer within 300ms\n"), "{}", text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

/// Docker reserves exit code 2 for HEALTHCHECK commands: a URL the probe
/// cannot use is a failed probe (1), not a usage error.
#[tokio::test]
async fn probe_exits_1_on_a_url_it_cannot_use() {
    for url in ["https://127.0.0.1:9901/readyz", "not a url"] {
        let out = jwtgate(&["probe", url]).await;
        assert_eq!(out.status.code(), Some(1), "{url}: {}", text(&out.stderr));
        assert_eq!(text(&out.stderr).lines().count(), 1, "{}", text(&out.stderr));
    }
}
