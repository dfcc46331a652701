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

/// Issue 15, point 3: the untouched template is not a working config.
#[test]
fn check_refuses_the_untouched_template_and_accepts_it_filled_in() {
    let template = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).unwrap();
    let (_dir, path) = write_config(&template);
    for command in ["check", "run"] {
        let out = jwtgate(&[command, "-c", &path]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "{path}:99:1: issuers[0].issuer: \"https://YOUR_TENANT.auth0.com/\" still holds the template's placeholder YOUR_TENANT — replace it"
            )),
            "{stderr}"
        );
    }
    let (_dir, path) = write_config(&template.replace("YOUR_TENANT", "acme"));
    let out = jwtgate(&["check", "-c", &path]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("is valid"));
    assert!(stdout.contains("https://acme.auth0.com/"));
}

/// Issue 15, point 2: a new user's file with four mistakes gets all four
/// in one run, in file order, as `FILE:LINE:COL: key: problem — fix`.
#[test]
fn every_config_problem_is_reported_at_once_in_plain_words() {
    let text = "[server]\nlisten = \"8080\"\ntimeout = \"30\"\n\n[upstream]\nurl = \"http://127.0.0.1:3000\"\ntimeout = 30\n\n[[issuers]]\nissuer = \"https://idp.example/\"\naudiences = [\"api\"]\nleeway = 30\n";
    let (_dir, path) = write_config(text);
    for command in ["check", "run"] {
        let out = jwtgate(&[command, "-c", &path]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        let expected = [
            format!(
                "{path}:2:1: server.listen: not an address (got \"8080\") — write listen = \"0.0.0.0:8080\" (all interfaces) or \"127.0.0.1:8080\" (this host only)"
            ),
            format!(
                "{path}:3:1: server.timeout: unknown key — the keys allowed here are listen, admin_listen, worker_threads, max_connections, request_timeout, header_read_timeout, max_header_bytes, shutdown_grace, realm, case_sensitive_routes, method_override, websocket_idle_timeout, tls"
            ),
            format!(
                "{path}:7:1: upstream.timeout: expected a duration such as \"30s\", found the number 30 — write timeout = \"30s\" (units: ms, s, m, h)"
            ),
            format!(
                "{path}:12:1: issuers[0].leeway: expected a duration such as \"30s\", found the number 30 — write leeway = \"30s\" (units: ms, s, m, h)"
            ),
        ];
        assert_eq!(stderr.lines().collect::<Vec<_>>(), expected, "{command}");
        for serde_words in ["invalid type", "expected i64", "expected a sequence", "unknown field"] {
            assert!(!stderr.contains(serde_words), "{stderr}");
        }
    }
}

/// Issue 15, point 3: a key file that is missing, not a JWKS, or holds no
/// key for the allowed algorithms is an error for `check` and `run` alike.
#[test]
fn unusable_jwks_files_are_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = SigningKey::rsa("k1");
    std::fs::write(dir.path().join("rsa.json"), serde_json::json!({"keys": [rsa.jwk()]}).to_string()).unwrap();
    std::fs::write(dir.path().join("html.json"), "<html>login</html>").unwrap();
    let cases = [
        ("missing.json", "", "issuers[0].jwks_file: ", "missing.json does not exist — write the path of a JWKS file"),
        ("html.json", "", "issuers[0].jwks_file: ", "html.json is not a JWK Set"),
        (
            "rsa.json",
            "algorithms = [\"ES256\"]\n",
            "issuers[0].jwks_file: ",
            "no key can verify the allowed algorithms (ES256); the keys are Rsa — list the algorithms they sign with in issuers[0].algorithms",
        ),
    ];
    for (file, extra, key, problem) in cases {
        let text = format!(
            "[upstream]\nurl = \"http://127.0.0.1:9\"\n[[issuers]]\nissuer = \"https://i/\"\naudiences = [\"a\"]\njwks_file = \"{file}\"\n{extra}"
        );
        let path = dir.path().join("jwtgate.toml");
        std::fs::write(&path, text).unwrap();
        let path = path.display().to_string();
        for command in ["check", "run"] {
            let out = jwtgate(&[command, "-c", &path]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {file}: {stderr}");
            assert!(stderr.starts_with(&format!("{path}:6:1: {key}")), "{command} {file}: {stderr}");
            assert!(stderr.contains(problem), "{command} {file}: {stderr}");
        }
    }
    let path = dir.path().join("jwtgate.toml");
    let text = "[upstream]\nurl = \"http://127.0.0.1:9\"\n[[issuers]]\nissuer = \"https://i/\"\naudiences = [\"a\"]\njwks_file = \"rsa.json\"\n";
    std::fs::write(&path, text).unwrap();
    let out = jwtgate(&["check", "-c", &path.display().to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

async fn check_online(text: String) -> (Option<i32>, String) {
    tokio::task::spawn_blocking(move || {
        let (_dir, path) = write_config(&text);
        let out = Command::new(env!("CARGO_BIN_EXE_jwtgate"))
            .args(["check", "--online", "-c", &path])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    })
    .await
    .unwrap()
}

/// Issue 15, point 3: what the issuer publishes contradicts the config —
/// exit 2, naming the key to change.
#[tokio::test]
async fn check_online_names_the_key_when_the_issuer_contradicts_the_config() {
    let rsa = SigningKey::rsa("rsa-key");
    let idp = TestIdp::start(&[&rsa]).await;
    let config = |issuer: &str, extra: &str| {
        format!(
            "[upstream]\nurl = \"http://127.0.0.1:9\"\n[[issuers]]\nissuer = \"{issuer}\"\naudiences = [\"a\"]\n{extra}"
        )
    };
    let without_slash = idp.issuer.trim_end_matches('/').to_string();
    let (code, out) = check_online(config(&without_slash, "")).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(&format!(
            "error: issuers[0].issuer: discovery at {without_slash}/.well-known/openid-configuration names the issuer {:?}, not the configured {without_slash:?}: tokens carry the published form — write issuer = {:?}",
            idp.issuer, idp.issuer
        )),
        "{out}"
    );
    let (code, out) = check_online(config(&idp.issuer, "algorithms = [\"ES256\", \"EdDSA\"]\n")).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("error: issuers[0].algorithms: no key can verify the allowed algorithms (ES256, EdDSA); the keys are Rsa — list the algorithms they sign with in issuers[0].algorithms"), "{out}");
    let (code, out) = check_online(config(&idp.issuer, "")).await;
    assert_eq!(code, Some(0), "{out}");
}

/// Issue 15, point 4: a key fetch that fails says why in words, not
/// `error sending request for url`.
#[tokio::test]
async fn key_fetch_errors_say_the_cause_in_words() {
    let idp = TestIdp::start(&[&SigningKey::rsa("k")]).await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    // Accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let untrusted = TestUpstream::start_tls(certs::TestCa::new("nobody trusts me").server().server_config(None)).await;
    let cases = [
        (
            format!("http://{closed}/keys"),
            format!("GET http://{closed}/keys: connection refused: nothing listens on 127.0.0.1 at that port"),
        ),
        (format!("http://{silent_addr}/keys"), format!("GET http://{silent_addr}/keys: timed out after 1s")),
        (format!("{}/keys", untrusted.url()), format!("GET {}/keys: TLS certificate not trusted: ", untrusted.url())),
        (
            format!("{}nowhere", idp.issuer),
            format!("GET {}nowhere answered HTTP 404 Not Found — is the URL right?", idp.issuer),
        ),
        (format!("{}.well-known/openid-configuration", idp.issuer), "not a JWK Set ({\"keys\": [ … ]})".to_string()),
    ];
    for (url, cause) in cases {
        let text = format!(
            "[upstream]\nurl = \"http://127.0.0.1:9\"\n[limits]\njwks_fetch_timeout = \"1s\"\n[[issuers]]\nissuer = \"https://i/\"\naudiences = [\"a\"]\njwks_url = \"{url}\"\n"
        );
        let (code, out) = check_online(text).await;
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains(&cause), "{url}: {out}");
        assert!(!out.contains("error sending request"), "{out}");
    }
}

#[test]
fn invalid_configs_exit_2_naming_file_key_and_problem() {
    let cases = [
        (
            "[upstream]\nurl = \"http://127.0.0.1:9\"\nretries = 3\n",
            "3:1: upstream.retries",
            "unknown key — the keys allowed",
        ),
        (
            "[upstream]\nurl = \"http://127.0.0.1:9\"\n[[issuers]]\nissuer = \"https://i/\"\naudiences = [\"a\"]\njwks_url = \"http://idp.example/keys\"\n",
            "6:1: issuers[0].jwks_url",
            "must be https",
        ),
        (
            "[[issuers]]\nissuer = \"https://i/\"\naudiences = [\"a\"]\n",
            "1:1: upstream",
            "required key is missing — add an [upstream] table",
        ),
    ];
    for (text, key, problem) in cases {
        let (_dir, path) = write_config(text);
        for command in ["check", "run"] {
            let out = jwtgate(&[command, "-c", &path]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
            assert!(stderr.contains(&format!("{path}:{key}: ")), "{command}: {stderr}");
            assert!(stderr.contains(problem), "{command}: {stderr}");
        }
    }
}

/// Issue 15, point 7: every option of every command says what it is for,
/// and no default is stated twice.
#[test]
fn every_option_has_a_description_and_defaults_appear_once() {
    for command in ["run", "check", "explain", "demo", "token"] {
        let out = jwtgate(&[command, "-h"]);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{help}");
        let options = help.split("Options:").nth(1).unwrap_or_else(|| panic!("{help}"));
        // Short help: one line per option, `  -c, --config <CONFIG>  Description [default: …]`.
        for line in options.lines().filter(|l| l.trim_start().starts_with('-')) {
            let flag_end = line.find(">  ").map(|i| i + 1).or_else(|| line.trim_start().find("  ").map(|i| i + line.len() - line.trim_start().len()));
            let description = flag_end.map_or("", |i| line[i..].trim());
            assert!(!description.is_empty() && !description.starts_with('['), "{command}: no description: {line:?}");
            assert!(line.matches("[default:").count() <= 1, "{command}: {line}");
            assert!(!line.contains("(default "), "{command}: a second default in the text: {line}");
        }
    }
}

/// Issue 15, point 6: `run` with no config file says how to name one and
/// where the template is.
#[test]
fn run_without_a_config_names_the_flag_the_variable_and_the_template() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_jwtgate"))
        .arg("run")
        .current_dir(dir.path())
        .env_remove("JWTGATE_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        "config.toml: no such file — name the configuration with -c FILE or $JWTGATE_CONFIG; to start one, copy the commented template config.toml from the repository (every key: docs/configuration.md)"
    );
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
    assert!(String::from_utf8_lossy(&out.stdout).contains("error: issuers[0]: cannot fetch the keys of"));
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
