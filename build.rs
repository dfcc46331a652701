//! Build script: the commit the binary is built from, for `--version` and
//! `jwtgate_build_info` (`src/version.rs` reads it as `JWTGATE_COMMIT`).
//!
//! Where it comes from, first found wins:
//! 1. `$JWTGATE_COMMIT` set by whoever builds (the Dockerfile's build
//!    argument: the image's build context has no `.git`);
//! 2. `git rev-parse --short=7 HEAD`, when this package has a `.git` of its
//!    own (a directory, or a file in a `git worktree`) — never a repository
//!    that merely encloses it, such as a home directory under git holding
//!    `~/.cargo/registry`;
//! 3. `unknown`.
//!
//! Nothing here may fail the build but a `$JWTGATE_COMMIT` that cannot be
//! shown on one line: no git, no `.git`, a git that errors all give
//! `unknown`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=JWTGATE_COMMIT");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = match std::env::var("JWTGATE_COMMIT") {
        Ok(given) if !given.trim().is_empty() => {
            let given = given.trim().to_string();
            if !given.chars().all(|c| c.is_ascii_graphic()) {
                eprintln!("JWTGATE_COMMIT must be a commit id on one line without spaces (got {given:?})");
                std::process::exit(1);
            }
            given
        }
        _ if manifest_dir.join(".git").exists() => {
            watch_head(&manifest_dir);
            git(&manifest_dir, &["rev-parse", "--short=7", "HEAD"]).unwrap_or_else(|| "unknown".to_string())
        }
        _ => "unknown".to_string(),
    };
    println!("cargo:rustc-env=JWTGATE_COMMIT={commit}");
}

/// Tells cargo to run this script again when HEAD moves: when `HEAD`
/// itself changes (a checkout), and when the branch it names gets a new
/// commit. git answers where those files are, which in a worktree is
/// partly in the main repository's `.git` (`--git-path` knows the layout).
/// Only files that exist are named: cargo reruns a script on every build
/// for a named file that is missing.
fn watch_head(dir: &Path) {
    let watch = |path: PathBuf| {
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    };
    let Some(head) = git_path(dir, "HEAD") else { return };
    watch(head);
    // Detached HEAD holds the commit itself: nothing else to watch.
    let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) else { return };
    let Some(loose) = git_path(dir, &branch) else { return };
    if let Some(packed) = git_path(dir, "packed-refs") {
        watch(packed);
    }
    if loose.exists() {
        watch(loose);
    } else if let Some(refs_dir) = loose.parent() {
        // The branch lives in packed-refs; its next commit writes the
        // loose file, which shows in its directory.
        watch(refs_dir.to_path_buf());
    }
}

/// Where `name` lives under the git directory, as an absolute path.
fn git_path(dir: &Path, name: &str) -> Option<PathBuf> {
    git(dir, &["rev-parse", "--git-path", name]).map(|path| dir.join(path))
}

/// `git ARGS` run in `dir`: its first line of output, if it succeeded.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).current_dir(dir).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let line = text.lines().next()?.trim().to_string();
    (!line.is_empty()).then_some(line)
}
