//! Issue 18, shipping: the binary as it is packaged and installed.
//! `probe` is the image's HEALTHCHECK; completions and the man page come
//! from the clap definitions; `--version` names the commit. Then the
//! static build (`.ci/run` builds it and names it in $JWTGATE_STATIC_BIN)
//! runs from a root holding only itself, its config and a CA bundle, as in
//! the distroless image: version, check, a real proxied request with keys
//! fetched over plain http and over https, and probe.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hyper::{Request, Response};
use serde_json::json;

use crate::support::certs::TestCa;
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

// ---- the static build in an empty root ----

/// The static build `.ci/run` makes, named by $JWTGATE_STATIC_BIN.
fn static_binary() -> PathBuf {
    let Some(path) = std::env::var_os("JWTGATE_STATIC_BIN") else {
        panic!(
            "JWTGATE_STATIC_BIN is not set: build the static binary with \
             `cargo rustc --bin jwtgate -- -C target-feature=+crt-static`, copy target/debug/jwtgate \
             elsewhere and name the copy in JWTGATE_STATIC_BIN (.ci/run does all three)"
        )
    };
    let path = PathBuf::from(path);
    assert!(path.is_file(), "JWTGATE_STATIC_BIN={} is not a file", path.display());
    path
}

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NEEDED: u64 = 1;

fn u16_at(bytes: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap()))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// The program headers `(type, file offset, file size)` of a little-endian ELF64 file.
fn program_headers(elf: &[u8]) -> Vec<(u32, usize, usize)> {
    assert_eq!(&elf[..6], b"\x7fELF\x02\x01", "not a little-endian 64-bit ELF file");
    let (offset, size, count) = (u64_at(elf, 0x20) as usize, u16_at(elf, 0x36), u16_at(elf, 0x38));
    (0..count)
        .map(|i| {
            let header = &elf[offset + i * size..];
            let kind = u32::from_le_bytes(header[..4].try_into().unwrap());
            (kind, u64_at(header, 8) as usize, u64_at(header, 32) as usize)
        })
        .collect()
}

/// Static means: no program interpreter (ld-linux) to load it, and no
/// shared library named in its dynamic section (a static-pie has one, for
/// relocating itself).
#[test]
#[ignore = "needs root and the static build (.ci/run builds it)"]
fn static_build_needs_no_loader_and_no_shared_library() {
    let binary = static_binary();
    let elf = std::fs::read(&binary).unwrap();
    let headers = program_headers(&elf);
    assert!(headers.iter().all(|(kind, ..)| *kind != PT_INTERP), "{} asks for a program interpreter", binary.display());
    for (_, offset, size) in headers.iter().filter(|(kind, ..)| *kind == PT_DYNAMIC) {
        let needed = elf[*offset..offset + size].chunks_exact(16).filter(|entry| u64_at(entry, 0) == DT_NEEDED).count();
        assert_eq!(needed, 0, "{} needs {needed} shared libraries", binary.display());
    }
    // glibc's ldd agrees: "statically linked" (static-pie) or "not a dynamic executable".
    let out = Command::new("ldd").arg(&binary).output().unwrap();
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(said.contains("statically linked") || said.contains("not a dynamic executable"), "ldd: {said}");
    // And the host's debug build, for contrast, is dynamic: the check can tell.
    let dynamic = std::fs::read(env!("CARGO_BIN_EXE_jwtgate")).unwrap();
    assert!(program_headers(&dynamic).iter().any(|(kind, ..)| *kind == PT_INTERP));
}

fn assert_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap().split_whitespace().next().unwrap();
    assert_eq!(uid, "0", "chroot needs root: run this test as root (.ci/run runs as root)");
}

/// `chroot` from $PATH (the child's environment is emptied, so it cannot
/// look it up itself).
fn chroot() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("chroot"))
        .find(|candidate| candidate.is_file())
        .expect("chroot (coreutils) is installed")
}

/// A root directory holding only the static binary, a CA bundle and what
/// each step writes into it: what the distroless image has, less
/// /etc/passwd, /etc/nsswitch.conf and tzdata.
struct EmptyRoot {
    dir: tempfile::TempDir,
}

impl EmptyRoot {
    fn new(binary: &Path, ca_bundle: &str) -> EmptyRoot {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(binary, dir.path().join("jwtgate")).unwrap();
        std::fs::create_dir_all(dir.path().join("etc/ssl/certs")).unwrap();
        std::fs::write(dir.path().join("etc/ssl/certs/ca-certificates.crt"), ca_bundle).unwrap();
        EmptyRoot { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, contents: &str) {
        std::fs::write(self.dir.path().join(name), contents).unwrap();
    }

    /// Every file in the root, relative to it.
    fn files(&self) -> Vec<String> {
        let mut files = Vec::new();
        let mut todo = vec![self.path().to_path_buf()];
        while let Some(dir) = todo.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    todo.push(path);
                } else {
                    files.push(path.strip_prefix(self.path()).unwrap().display().to_string());
                }
            }
        }
        files.sort();
        files
    }

    /// `/jwtgate ARGS` inside the root, with an empty environment (none of
    /// this machine's SSL_CERT_FILE and co.).
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(chroot());
        command.arg(self.path()).arg("/jwtgate").args(args).env_clear().kill_on_drop(true);
        command
    }

    async fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().await.unwrap()
    }
}

/// Issue 18's image, without Docker: the static binary, its config and a CA
/// bundle in an otherwise empty root. It names its version, passes
/// `check`, fetches keys from a discovery issuer over plain http and from a
/// JWKS over https (trusted through the bundle alone), proxies an
/// authorised request and refuses an anonymous one, answers its own
/// `probe`, and drains on SIGTERM.
#[tokio::test]
#[ignore = "needs root and the static build (.ci/run builds it)"]
async fn static_build_serves_from_a_root_holding_only_itself_and_a_ca_bundle() {
    let binary = static_binary();
    assert_root();

    // Keys over plain http on loopback (discovery, then jwks_uri) ...
    let key = SigningKey::rsa("ship-1");
    let idp = TestIdp::start(&[&key]).await;
    // ... and over https from a private CA, which only the root's bundle names.
    let ca = TestCa::new("jwtgate ship test CA");
    let tls_key = SigningKey::p256("ship-2");
    let jwks = json!({"keys": [tls_key.jwk()]}).to_string();
    let (tls_addr, _tls_task) = crate::support::http::serve_maybe_tls(
        move |_req: Request<hyper::body::Incoming>| {
            let jwks = jwks.clone();
            async move { Response::builder().header("content-type", "application/json").body(full(jwks)).unwrap() }
        },
        Some(ca.server().server_config(None)),
    )
    .await;
    let system_bundle = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap();
    let root = EmptyRoot::new(&binary, &format!("{system_bundle}\n{}", ca.pem()));
    let upstream = TestUpstream::start().await;
    let (listen, admin) = (free_port(), free_port());
    root.write(
        "config.toml",
        &format!(
            "[server]\nlisten = \"{listen}\"\nadmin_listen = \"{admin}\"\nshutdown_grace = \"1s\"\n\n\
             [upstream]\nurl = \"{}\"\n\n\
             [[issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\n\n\
             [[issuers]]\nissuer = \"https://tls-issuer.example/\"\naudiences = [\"api\"]\n\
             jwks_url = \"https://{tls_addr}/jwks.json\"\nalgorithms = [\"ES256\"]\n",
            upstream.url(),
            idp.issuer
        ),
    );
    assert_eq!(root.files(), ["config.toml", "etc/ssl/certs/ca-certificates.crt", "jwtgate"]);

    let out = root.run(&["--version"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    commit_of(text(&out.stdout).trim_end());

    let out = root.run(&["check", "-c", "/config.toml"]).await;
    assert!(out.status.success(), "check in the root: {}{}", text(&out.stdout), text(&out.stderr));

    let log = std::fs::File::create(root.path().join("gateway.log")).unwrap();
    let mut gateway = root.command(&["run", "-c", "/config.toml"]).stdout(Stdio::null()).stderr(log).spawn().unwrap();
    let gateway_log = || std::fs::read_to_string(root.path().join("gateway.log")).unwrap_or_default();
    let readyz = format!("http://{admin}/readyz");

    // Ready once both issuers' keys are in: the probe, run from the root, says so.
    let mut last = None;
    for _ in 0..100 {
        let out = root.run(&["probe", &readyz]).await;
        if out.status.success() {
            last = None;
            break;
        }
        last = Some(text(&out.stderr));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, None, "never ready; gateway log:\n{}", gateway_log());
    assert!(idp.fetches() >= 1);

    let token = key.mint(&claims(&idp.issuer, "api"));
    let (status, _, body) = get(&format!("http://{listen}/orders"), Some(&token)).await;
    assert_eq!(status, 200, "{body}\n{}", gateway_log());
    assert_eq!(upstream.last().uri, "/orders");
    let tls_token = tls_key.mint(&claims("https://tls-issuer.example/", "api"));
    assert_eq!(get(&format!("http://{listen}/orders"), Some(&tls_token)).await.0, 200);
    assert_eq!(upstream.count(), 2);
    let (status, _, body) = get(&format!("http://{listen}/orders"), None).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("missing_token")));
    assert_eq!(upstream.count(), 2, "the anonymous request did not reach the upstream");

    let out = root.run(&["probe", &format!("http://{admin}/healthz")]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Names: static glibc resolves with its built-in files and dns modules,
    // so localhost needs an /etc/hosts (Docker and Kubernetes mount one),
    // and nothing else (docs/operations.md, "The image").
    let by_name = format!("http://localhost:{}/healthz", admin.port());
    let out = root.run(&["probe", &by_name]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot resolve localhost"), "{}", text(&out.stderr));
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    root.write("etc/hosts", "127.0.0.1 localhost\n");
    let out = root.run(&["probe", &by_name]).await;
    assert!(out.status.success(), "with /etc/hosts: {}", text(&out.stderr));

    // SIGTERM: a clean drain and exit 0, as `docker stop` would see it.
    let pid = gateway.id().unwrap().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(10), gateway.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}; log:\n{}", gateway_log());
    let out = root.run(&["probe", &readyz]).await;
    assert_eq!(out.status.code(), Some(1), "nothing listens any more");
}
