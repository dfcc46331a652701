//! The gateway judges exactly what the backend serves: a differential
//! test against real backends (`tests/backends/`: CPython's wsgiref,
//! werkzeug, Express, Rack, PHP's built-in server, Node's bare `http`, and
//! Debian's nginx as an upstream), each started here behind its own jwtgate.
//!
//! A generated corpus of request targets (path parameters, empty segments,
//! encodings, dot segments, case, and the fuzzers' path corpus) goes
//! through the gateway with no token and with a token lacking the
//! protected routes' scopes, each request also forging the identity header
//! with `_` and `.` in its name. For every one: the backend never serves a
//! protected resource, and never hands the application a forged identity.
//! The same targets sent straight to each backend show that the corpus does
//! reach the protected handlers there, so the check is not vacuous.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::keys::{SigningKey, claims};
use crate::support::{Process, TestGateway, TestIdp, raw, status_of, toml};
use serde_json::json;

const ROUTES: &str = "\
[headers]
claims = { sub = \"X-Auth-Subject\" }
[[routes]]
path = \"/admin\"
scopes = [\"admin\"]
[[routes]]
path = \"/reports\"
methods = [\"GET\"]
scopes = [\"reports\"]
[[routes]]
path = \"/items\"
methods = [\"DELETE\"]
scopes = [\"admin\"]
[[routes]]
path = \"/\"
auth = \"public\"
";

fn backends_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/backends")
}

/// Runs `program args…` in `tests/backends` (with `{port}` and `{dir}`
/// replaced) and waits for its port.
async fn start(name: &'static str, program: &str, args: &[&str]) -> Process {
    let addr = crate::support::free_port();
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("{port}", &addr.port().to_string()).replace("{dir}", &dir.path().display().to_string()))
        .collect();
    let mut command = Command::new(program);
    command.args(&args).current_dir(backends_dir());
    Process::start(name, command, addr, dir).await
}

/// nginx as the backend: `location` blocks for each resource, with its
/// default `merge_slashes` and decoded `$uri`.
async fn nginx_backend() -> Process {
    let addr = crate::support::free_port();
    let answer = |resource: &str| {
        format!("return 200 \"served:{resource} method:$request_method subject:$http_x_auth_subject\\n\";")
    };
    let conf = format!(
        "pid {{dir}}/nginx.pid;\nevents {{}}\nhttp {{\n  {scratch}\n  default_type text/plain;\n  server {{\n    \
         listen {addr};\n    location = /admin {{ {admin} }}\n    location ^~ /admin/ {{ {admin} }}\n    \
         location = /reports {{ {reports} }}\n    location ^~ /reports/ {{ {reports} }}\n    \
         location / {{ {public} }}\n  }}\n}}\n",
        scratch = crate::support::NGINX_SCRATCH,
        admin = answer("admin"),
        reports = answer("reports"),
        public = answer("public"),
    );
    crate::support::nginx(&conf, addr).await
}

async fn all_backends() -> Vec<Process> {
    vec![
        start("wsgiref", "python3", &["wsgiref_app.py", "{port}"]).await,
        start("werkzeug", "python3", &["werkzeug_app.py", "{port}"]).await,
        start("express", "node", &["express_app.js", "{port}"]).await,
        start(
            "rack",
            "rackup",
            &["-s", "webrick", "-o", "127.0.0.1", "-p", "{port}", "-P", "{dir}/rack.pid", "rack_app.ru"],
        )
        .await,
        start("php", "php", &["-S", "127.0.0.1:{port}", "php_app.php"]).await,
        start("node-http", "node", &["node_http_app.js", "{port}"]).await,
        nginx_backend().await,
    ]
}

/// What a backend said it served.
#[derive(Debug, PartialEq, Eq)]
struct Served {
    status: u16,
    resource: String,
    method: String,
    subject: String,
}

fn served(answer: &str) -> Served {
    let line = answer.lines().find(|l| l.starts_with("served:")).unwrap_or("");
    let field = |name: &str| line.split(' ').find_map(|part| part.strip_prefix(name)).unwrap_or("").trim().to_string();
    Served {
        status: status_of(answer),
        resource: field("served:"),
        method: field("method:"),
        subject: field("subject:"),
    }
}

/// Sends one request; `head` is extra header lines (each ending in CRLF),
/// `body` what follows the blank line.
async fn send(addr: SocketAddr, method: &str, target: &str, token: Option<&str>, head: &str, body: &str) -> Served {
    send_bytes(addr, method, target, token, head, body.as_bytes()).await
}

async fn send_bytes(
    addr: SocketAddr,
    method: &str,
    target: &str,
    token: Option<&str>,
    head: &str,
    body: &[u8],
) -> Served {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n{auth}\
         X_Auth_Subject: admin\r\nX.Auth.Subject: admin\r\n{head}\r\n"
    )
    .into_bytes();
    request.extend_from_slice(body);
    served(&raw(addr, &request).await)
}

/// Request targets that servers read differently: built from the classes
/// the reviews found, plus the path fuzzer's corpus.
fn corpus() -> Vec<String> {
    let prefixes = [
        "",
        "/",
        "//",
        "/.",
        "/./",
        "/x/..",
        "/public/..",
        "/;",
        "/;x",
        "/public/;/..",
        "/x;y/..",
        "/%2e",
        "/%2e%2e",
        "/public/%2e%2e",
        "/%2F",
        "/.;",
        "/..;",
        "/%3B",
    ];
    let names = [
        "admin",
        "ADMIN",
        "Admin",
        "%61dmin",
        "%41DMIN",
        "adm%69n",
        "admin;x",
        "admin;",
        "admin%3b",
        "admin%3Bx",
        "admin.",
        "admin%20",
        "admin%2e",
        "reports",
        "Reports",
        "REPORTS;v=1",
        "reports%2f",
        "%72eports",
        "r%c3%a9ports",
    ];
    let suffixes = ["", "/", "/x", "//x", "/./x", "/x/..", "/..", ";x", "%2fx", "?q=1", "/x?_method=DELETE"];
    let mut out = Vec::new();
    for prefix in prefixes {
        for name in names {
            for suffix in ["", "/x"] {
                out.push(format!("{prefix}/{name}{suffix}"));
            }
        }
    }
    for name in names {
        for suffix in suffixes {
            out.push(format!("/{name}{suffix}"));
        }
    }
    let fuzzed = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/path");
    for entry in std::fs::read_dir(fuzzed).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        if bytes.len() < 200 && bytes.first() == Some(&b'/') && bytes.iter().all(|b| b.is_ascii_graphic() && *b != b'#')
        {
            out.push(String::from_utf8(bytes).unwrap());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// One backend's run of the corpus; returns the line for the report.
async fn differential(backend: &Process, gateway: &TestGateway, corpus: &[String], read: &str) -> String {
    let (mut protected_directly, mut refused, mut checked) = (0, 0, 0);
    let started = std::time::Instant::now();
    for target in corpus {
        // Method case and HEAD matter where a route restricts methods.
        let methods: &[&str] = if target.to_ascii_lowercase().contains("reports") {
            &["GET", "get", "HEAD", "POST"]
        } else {
            &["GET", "POST"]
        };
        for method in methods {
            let direct = send(backend.addr, method, target, None, "Content-Length: 0\r\n", "").await;
            if is_protected(&direct) {
                protected_directly += 1;
            }
            for token in [None, Some(read)] {
                let through = send(gateway.addr, method, target, token, "Content-Length: 0\r\n", "").await;
                checked += 1;
                if !(200..300).contains(&through.status) {
                    refused += 1;
                }
                assert!(
                    !is_protected(&through),
                    "{}: {method} {target} (token: {}) was served as {through:?}",
                    backend.name,
                    token.is_some()
                );
                assert!(
                    through.subject.is_empty() || through.subject == "alice",
                    "{}: {method} {target}: the app saw the identity {:?}",
                    backend.name,
                    through.subject
                );
                let path = target.split('?').next().unwrap_or(target);
                if is_protected(&direct) && jwtgate::path::is_canonical(path) {
                    // A canonical target is forwarded as it is: what the
                    // backend serves as protected, the gateway refuses (a
                    // token it needs, a scope, or the request itself). Other
                    // targets are forwarded canonicalised, checked above.
                    assert!(
                        matches!(through.status, 400 | 401 | 403),
                        "{}: {method} {target} is protected there but got {through:?}",
                        backend.name
                    );
                }
            }
        }
    }
    // The corpus reaches the protected handlers when sent straight to the
    // backend: the refusals above are about something.
    assert!(protected_directly >= 30, "{}: only {protected_directly} protected directly", backend.name);
    format!(
        "{}: {checked} requests through the gateway, {refused} refused, none served a protected resource; \
         {protected_directly} of the same targets reached one directly ({:.0?})",
        backend.name,
        started.elapsed()
    )
}

/// Whether `served` is a resource the route table protects for this
/// method, which a caller with only the `read` scope may not reach.
fn is_protected(served: &Served) -> bool {
    (200..300).contains(&served.status)
        && match served.resource.as_str() {
            "admin" | "delete-item" => true,
            "reports" => served.method == "GET" || served.method == "HEAD",
            _ => false,
        }
}

#[tokio::test]
#[ignore = "needs python3 with werkzeug, node with tests/backends/node_modules, Debian's ruby-rack, ruby-webrick, php-cli and nginx (.ci/run installs them)"]
async fn no_path_reaches_a_protected_handler_of_a_real_backend_without_its_scope() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let mut read = claims(&idp.issuer, "api");
    read["scope"] = json!("read");
    read["sub"] = json!("alice");
    let read = key.mint(&read);
    let corpus = std::sync::Arc::new(corpus());
    let mut runs = tokio::task::JoinSet::new();
    for backend in all_backends().await {
        let gateway: TestGateway = toml(&format!("http://{}", backend.addr), &idp.issuer).issuer(ROUTES).start().await;
        let (corpus, read) = (std::sync::Arc::clone(&corpus), read.clone());
        runs.spawn(async move { differential(&backend, &gateway, &corpus, &read).await });
    }
    let mut report = Vec::new();
    while let Some(run) = runs.join_next().await {
        report.push(run.unwrap());
    }
    report.sort();
    eprintln!("{}", report.join("\n"));
}

/// Issue 14, finding 3, with the frameworks that read overrides: Express's
/// `method-override` and Rack's `MethodOverride` run the DELETE handler for
/// a POST that asks for it.
#[tokio::test]
#[ignore = "needs node with tests/backends/node_modules and Debian's ruby-rack and ruby-webrick (.ci/run installs them)"]
async fn method_overrides_never_reach_a_delete_handler_of_express_or_rack() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let mut read = claims(&idp.issuer, "api");
    read["scope"] = json!("read");
    let read = key.mint(&read);
    let mut admin = claims(&idp.issuer, "api");
    admin["scope"] = json!("admin");
    let admin = key.mint(&admin);
    let form = |body: &[u8], kind: &str| {
        let head = if kind.is_empty() { String::new() } else { format!("Content-Type: {kind}\r\n") };
        (format!("{head}Content-Length: {}\r\n", body.len()), body.to_vec())
    };
    let empty = || ("Content-Length: 0\r\n".to_string(), Vec::new());
    let urlencoded = "application/x-www-form-urlencoded";
    let multipart_body = b"--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--b--\r\n";
    let decoy = b"Content-Disposition: form-data; name=\"_method\"\r\n\r\nPOST\r\n--b\r\n\
                  Content-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--b--\r\n";
    let attempts = [
        ("/items/7", ("X-HTTP-Method-Override: DELETE\r\nContent-Length: 0\r\n".to_string(), Vec::new())),
        ("/items/7", ("X-HTTP-Method-Override: delete\r\nContent-Length: 0\r\n".to_string(), Vec::new())),
        ("/items/7", form(b"_method=DELETE", urlencoded)),
        ("/items/7", form(b"a=1&_method=delete", urlencoded)),
        ("/items/7", form(b"%5Fmethod=DELETE", urlencoded)),
        ("/items/7", form(multipart_body, "multipart/form-data; boundary=b")),
        ("/items/7?_method=DELETE", empty()),
        // Found by red-teaming the first fix: each runs DELETE in Express or Rack.
        ("/items/7", form(b"_method=DELETE&x=\xff", urlencoded)),
        ("/items/7", form(b"_method=POST&_method=DELETE", urlencoded)),
        ("/items/7", form(b"[_method]=DELETE", urlencoded)),
        ("/items/7", form(b"_method=DELETE", "")),
        ("/items/7", form(b"_method=DELETE", "application/x-www-form-urlencoded, x")),
        ("/items/7", form(decoy, "multipart/form-data; boundary=b")),
        ("/items/7", form(multipart_body, "multipart/mixed; boundary=b")),
    ];
    for backend in [
        start("express", "node", &["express_app.js", "{port}"]).await,
        start(
            "rack",
            "rackup",
            &["-s", "webrick", "-o", "127.0.0.1", "-p", "{port}", "-P", "{dir}/rack.pid", "rack_app.ru"],
        )
        .await,
    ] {
        // Straight to the backend, each override does run the DELETE handler
        // (those the framework reads): what the gateway must prevent.
        let (head, body) = &attempts[2].1;
        let direct = send_bytes(backend.addr, "POST", "/items/7", None, head, body).await;
        assert_eq!(direct.resource, "delete-item", "{}: {direct:?}", backend.name);
        let gateway = toml(&format!("http://{}", backend.addr), &idp.issuer).issuer(ROUTES).start().await;
        let mut ran_delete_directly = Vec::new();
        for (i, (target, (head, body))) in attempts.iter().enumerate() {
            if send_bytes(backend.addr, "POST", target, None, head, body).await.resource == "delete-item" {
                ran_delete_directly.push(i);
            }
            let through = send_bytes(gateway.addr, "POST", target, Some(&read), head, body).await;
            assert_ne!(through.resource, "delete-item", "{}: {target} {head:?}: {through:?}", backend.name);
        }
        // Straight to the backend, these attempts do run the DELETE handler.
        eprintln!("{}: attempts {ran_delete_directly:?} ran DELETE when sent directly", backend.name);
        assert!(ran_delete_directly.len() >= 6, "{}: {ran_delete_directly:?}", backend.name);
        let allowed = send(gateway.addr, "DELETE", "/items/7", Some(&admin), "Content-Length: 0\r\n", "").await;
        assert_eq!(allowed.resource, "delete-item", "{}: {allowed:?}", backend.name);
        let plain = send(gateway.addr, "POST", "/items/7", Some(&read), "Content-Length: 0\r\n", "").await;
        assert_eq!((plain.status, plain.resource.as_str()), (200, "post-item"), "{}", backend.name);
    }
}
