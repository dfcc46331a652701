//! `jwtgate explain`, run as a binary against golden output: an expired
//! token, a wrong audience, a missing scope and an allowed request, judged
//! offline (`--jwks`) at a fixed time (`--at`) so the output never varies.
//! `UPDATE_GOLDEN=1 cargo test --test explain` rewrites the files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use crate::support::keys::SigningKey;
use serde_json::{Value, json};

const AT: u64 = 1_800_000_000;
const ISSUER: &str = "https://issuer.example/";

const CONFIG: &str = r#"
[upstream]
url = "http://127.0.0.1:9"
[[issuers]]
issuer = "https://issuer.example/"
audiences = ["api"]
[headers]
claims = { sub = "X-Auth-Subject" }
[[routes]]
path = "/admin"
scopes = ["admin"]
"#;

struct Setup {
    dir: tempfile::TempDir,
    key: SigningKey,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::rsa("k1");
    std::fs::write(dir.path().join("jwks.json"), json!({"keys": [key.jwk()]}).to_string()).unwrap();
    std::fs::write(dir.path().join("jwtgate.toml"), CONFIG).unwrap();
    Setup { dir, key }
}

impl Setup {
    fn token(&self, changes: Value) -> String {
        let mut claims =
            json!({"iss": ISSUER, "aud": "api", "sub": "alice", "scope": "read", "iat": AT - 600, "exp": AT + 600});
        for (k, v) in changes.as_object().unwrap() {
            claims[k] = v.clone();
        }
        self.key.mint(&claims)
    }

    /// Runs explain with the token on standard input; its output and exit code.
    fn explain(&self, path: &str, token: &str) -> (String, i32) {
        let (out, _, code) = self.explain_with_stderr(path, token);
        (out, code)
    }

    fn explain_with_stderr(&self, path: &str, token: &str) -> (String, String, i32) {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_jwtgate"))
            .args(["explain", "-c"])
            .arg(self.dir.path().join("jwtgate.toml"))
            .args(["--path", path, "--offline", "--jwks"])
            .arg(self.dir.path().join("jwks.json"))
            .args(["--at", &AT.to_string(), "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(token.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.stderr.is_empty() || output.status.code().is_some(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        (
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
            output.status.code().unwrap(),
        )
    }
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("explain-{name}.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(actual, expected, "explain output differs from {}", path.display());
}

#[test]
fn an_expired_token() {
    let s = setup();
    let (out, code) = s.explain("/orders", &s.token(json!({"exp": AT - 180})));
    assert_eq!(code, 1);
    golden("expired", &out);
}

#[test]
fn a_wrong_audience() {
    let s = setup();
    let (out, code) = s.explain("/orders", &s.token(json!({"aud": "someone-else"})));
    assert_eq!(code, 1);
    golden("wrong-audience", &out);
}

#[test]
fn a_missing_scope() {
    let s = setup();
    let (out, code) = s.explain("/admin/users", &s.token(json!({})));
    assert_eq!(code, 1);
    golden("missing-scope", &out);
}

#[test]
fn an_allowed_request() {
    let s = setup();
    let (out, code) = s.explain("/orders?page=2", &s.token(json!({})));
    assert_eq!(code, 0);
    golden("allowed", &out);
}

/// Issue 15, point 5: each failed check names the config key to change,
/// and no log line mixes into the report.
#[test]
fn each_failure_names_the_key_to_change_and_no_log_line_mixes_in() {
    let s = setup();
    let (out, err, code) = s.explain_with_stderr("/orders", &s.token(json!({})));
    assert_eq!(code, 0);
    assert!(err.is_empty() && !out.contains("INFO"), "stdout:\n{out}\nstderr:\n{err}");

    let ed = SigningKey::ed25519("k1");
    std::fs::write(s.dir.path().join("jwks.json"), json!({"keys": [ed.jwk()]}).to_string()).unwrap();
    let claims = json!({"iss": ISSUER, "aud": "api", "sub": "alice", "iat": AT - 600, "exp": AT + 600});
    let (out, code) = s.explain("/orders", &ed.mint(&claims));
    assert_eq!(code, 1);
    assert!(out.contains("  fix   the token is signed with EdDSA: add \"EdDSA\" to issuers[0].algorithms\n"), "{out}");

    let mut claims = claims;
    claims["iss"] = json!(ISSUER.trim_end_matches('/'));
    let (out, code) = s.explain("/orders", &s.key.mint(&claims));
    assert_eq!(code, 1);
    assert!(
        out.contains("  fix   the token's iss is \"https://issuer.example\": write issuers[0].issuer = \"https://issuer.example\" (iss is compared exactly, trailing slash included)\n"),
        "{out}"
    );

    // Never advise allowing HMAC: its key would have to be public.
    let hs = crate::support::keys::hs256(
        b"secret",
        &json!({"alg": "HS256", "kid": "k1"}),
        &json!({"iss": ISSUER, "aud": "api", "iat": AT - 600, "exp": AT + 600}),
    );
    let (out, code) = s.explain("/orders", &hs);
    assert_eq!(code, 1);
    assert!(!out.contains("add \"HS256\""), "{out}");
    assert!(out.contains("  fix   the token's alg is one jwtgate never accepts"), "{out}");

    // --jwks replaces the configured key files: one missing here is no problem.
    std::fs::write(s.dir.path().join("jwks.json"), json!({"keys": [s.key.jwk()]}).to_string()).unwrap();
    let config = s.dir.path().join("jwtgate.toml");
    std::fs::write(
        &config,
        CONFIG.replace("audiences = [\"api\"]", "audiences = [\"api\"]\njwks_file = \"/nowhere/keys.json\""),
    )
    .unwrap();
    let (_, code) = s.explain("/orders", &s.token(json!({})));
    assert_eq!(code, 0);

    let (out, code) = s.explain("/orders", "opaque-access-token");
    assert_eq!(code, 1);
    assert!(out.contains("  fix   this is not a JWT (an opaque token?)"), "{out}");
}
