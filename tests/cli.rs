//! The `jwtgate` binary: `check` and `run` as an operator meets them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Output, Stdio};

use support::*;

fn jwtgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jwtgate")).args(args).env_remove("JWTGATE_CONFIG").output().unwrap()
}

fn write_config(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwtgate.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path.display().to_string())
}

#[test]
fn check_accepts_the_repository_template() {
    let out = jwtgate(&["check", "-c", concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("is valid"));
    assert!(stdout.contains("https://YOUR_TENANT.auth0.com/"));
}

#[test]
fn invalid_configs_exit_2_naming_file_key_and_problem() {
    let cases = [
        ("[upstream]\nurl = \"http://127.0.0.1:9\"\nretries = 3\n", "upstream", "unknown field `retries`"),
        (
            "[upstream]\nurl = \"http://127.0.0.1:9\"\n[[issuers]]\nissuer = \"https://i/\"\naudiences = [\"a\"]\njwks_url = \"http://idp.example/keys\"\n",
            "issuers[0].jwks_url",
            "must be https",
        ),
        ("[[issuers]]\nissuer = \"https://i/\"\naudiences = [\"a\"]\n", "upstream", "required key is missing"),
    ];
    for (text, key, problem) in cases {
        let (_dir, path) = write_config(text);
        for command in ["check", "run"] {
            let out = jwtgate(&[command, "-c", &path]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
            assert!(stderr.contains(&format!("{path}: {key}")), "{command}: {stderr}");
            assert!(stderr.contains(problem), "{command}: {stderr}");
        }
    }
}

#[test]
fn config_path_comes_from_the_environment() {
    let (_dir, path) = write_config(
        "[upstream]\nurl = \"http://127.0.0.1:9\"\n[[issuers]]\nissuer = \"https://i/\"\naudiences = [\"${AUD}\"]\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_jwtgate"))
        .arg("check")
        .env("JWTGATE_CONFIG", &path)
        .env("AUD", "https://api")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("audiences https://api"));
}

#[tokio::test]
async fn check_online_lists_keys_or_exits_1() {
    let (rsa, ed) = (SigningKey::rsa("rsa-key"), SigningKey::ed25519("ed-key"));
    let idp = TestIdp::start(&[&rsa, &ed]).await;
    let text = format!(
        "[upstream]\nurl = \"http://127.0.0.1:9\"\n[[issuers]]\nissuer = \"{}\"\naudiences = [\"a\"]\n",
        idp.issuer
    );
    let (_dir, path) = write_config(&text);
    let run = |path: String| {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_jwtgate"))
                .args(["check", "--online", "-c", &path])
                .stdin(Stdio::null())
                .output()
                .unwrap()
        })
    };
    let out = run(path.clone()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("kid rsa-key  type Rsa  alg RS256"), "{stdout}");
    assert!(stdout.contains("kid ed-key  type Ed25519"), "{stdout}");

    idp.set_down(true);
    let out = run(path).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cannot fetch keys"));
}

/// Issue 14, finding 6f: nginx's `location /admin` also serves `/adminx`;
/// `check` names every protected route whose string-prefix extensions
/// jwtgate judges by a less demanding route.
#[test]
fn check_warns_when_string_prefix_extensions_fall_to_a_weaker_route() {
    let base = "[upstream]\nurl = \"http://127.0.0.1:9\"\n[[issuers]]\nissuer = \"https://i/\"\naudiences = [\"a\"]\n";
    let weak = format!(
        "{base}[[routes]]\npath = \"/admin\"\nscopes = [\"admin\"]\n[[routes]]\npath = \"/\"\nauth = \"public\"\n"
    );
    let (_dir, path) = write_config(&weak);
    let out = jwtgate(&["check", "-c", &path]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("warning     routes[0] /admin: /adminx is judged by the less demanding route /"),
        "{stdout}"
    );
    assert!(!stdout.contains("routes[1]"), "{stdout}");

    // Covered: the extensions have a route at least as strict.
    let covered = format!(
        "{base}[[routes]]\npath = \"/admin\"\nscopes = [\"admin\"]\n[[routes]]\npath = \"/public\"\nauth = \"public\"\n"
    );
    let (_dir, path) = write_config(&format!("{covered}[[routes]]\npath = \"/adminx\"\nscopes = [\"admin\"]\n"));
    let stdout = String::from_utf8_lossy(&jwtgate(&["check", "-c", &path]).stdout).into_owned();
    assert!(stdout.contains("routes[0] /admin: /admin.json is judged by"), "{stdout}");
    let (_dir, path) = write_config(&format!("{base}[[routes]]\npath = \"/public\"\nauth = \"public\"\n"));
    let stdout = String::from_utf8_lossy(&jwtgate(&["check", "-c", &path]).stdout).into_owned();
    assert!(!stdout.contains("warning"), "a public route has nothing to lose: {stdout}");
}
