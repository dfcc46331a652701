//! Issue 18, shipping: the binary as it is packaged and installed.
//! `--version` names the release and the commit it was built from.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

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
