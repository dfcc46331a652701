//! Issue 18, shipping: the binary as it is packaged and installed.
//! `--version` names the release and the commit it was built from; `probe`
//! is the image's HEALTHCHECK; completions and the man page come from the
//! clap definitions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
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

// ---- completions and the man page ----

const COMMANDS: [&str; 8] = ["run", "check", "explain", "demo", "token", "probe", "completions", "man"];

#[tokio::test]
async fn completions_for_each_shell_name_every_command() {
    for (shell, marker) in
        [("bash", "complete -F _jwtgate"), ("zsh", "#compdef jwtgate"), ("fish", "complete -c jwtgate")]
    {
        let out = jwtgate(&["completions", shell]).await;
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        for command in COMMANDS {
            assert!(script.contains(command), "{shell}: {command} is not completed");
        }
    }
    let out = jwtgate(&["completions", "powershell"]).await;
    assert_eq!(out.status.code(), Some(2), "only bash, zsh and fish are offered");
}

/// The bash script really completes: sourced into bash, `jwtgate ex<TAB>`
/// offers `explain`, and `jwtgate completions <TAB>` the three shells.
#[tokio::test]
async fn bash_completion_completes_commands_and_shells() {
    let script = jwtgate(&["completions", "bash"]).await.stdout;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwtgate.bash");
    std::fs::write(&path, script).unwrap();
    let complete = |words: &[&str]| {
        let line = words.join(" ");
        let program = format!(
            "source {}; COMP_WORDS=({line}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT={}; \
             _jwtgate jwtgate '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            path.display(),
            words.len() - 1,
            line.len(),
            words[words.len() - 1],
            words[words.len() - 2],
        );
        let out = Command::new("bash").args(["-c", &program]).output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).lines().map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(complete(&["jwtgate", "ex"]), ["explain"]);
    let shells = complete(&["jwtgate", "completions", "''"]);
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.contains(&shell.to_string()), "{shells:?}");
    }
}

#[tokio::test]
async fn man_page_is_roff_naming_every_command() {
    let out = jwtgate(&["man"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(page.starts_with(".ie") || page.starts_with(".TH"), "{}", &page[..page.len().min(200)]);
    assert!(page.contains(".TH jwtgate 1"), "the title line names jwtgate(1)");
    assert!(page.contains(env!("CARGO_PKG_VERSION")));
    for command in COMMANDS {
        assert!(page.contains(&format!("jwtgate\\-{command}")), "{command} is not in the page");
    }
    // groff reads it without a warning, when groff is there.
    if Path::new("/usr/bin/groff").exists() {
        let mut groff = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut groff.stdin.take().unwrap(), page.as_bytes()).unwrap();
        let out = groff.wait_with_output().unwrap();
        assert!(out.status.success() && out.stderr.is_empty(), "groff: {}", text(&out.stderr));
    }
}
