//! CORS as a real browser applies it: Debian's headless Chromium loads a
//! page from one loopback origin and `fetch`es through jwtgate on another.
//! From the allowed origin, a request with a token reads the 200 body (after
//! the preflight its `Authorization` header causes), and one without reads
//! the 401's status, its `WWW-Authenticate` challenge (exposed although
//! `expose_headers` does not list it) and the RFC 9728 metadata the
//! challenge points at. From an origin not allowed, `fetch` rejects both.
//! Each page posts what it could read back to its own origin's server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::{Request, Response};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::support::http::{TestBody, full, serve};
use crate::support::keys::{SigningKey, claims};
use crate::support::{TestGateway, TestIdp, TestUpstream, toml};

const CHROMIUM: &str = "/usr/bin/chromium";

/// The page: each fetch's outcome as the browser lets the script see it.
fn page(gateway: &str, token: &str) -> String {
    format!(
        r#"<!doctype html><title>cors</title><script>
const gateway = {gateway:?};
const token = {token:?};
async function attempt(run) {{
  try {{ return await run(); }} catch (error) {{ return {{ rejected: String(error) }}; }}
}}
(async () => {{
  const out = {{ origin: location.origin }};
  out.with_token = await attempt(async () => {{
    const r = await fetch(gateway + "/api/items", {{ headers: {{ Authorization: "Bearer " + token }} }});
    return {{ status: r.status, body: await r.json() }};
  }});
  out.without_token = await attempt(async () => {{
    const r = await fetch(gateway + "/api/items");
    return {{ status: r.status, challenge: r.headers.get("WWW-Authenticate"), body: await r.json() }};
  }});
  out.metadata = await attempt(async () => {{
    const url = /resource_metadata="([^"]+)"/.exec(out.without_token.challenge || "")[1];
    const r = await fetch(url);
    return {{ url, status: r.status, body: await r.json() }};
  }});
  await fetch("/report", {{ method: "POST", body: JSON.stringify(out) }});
}})();
</script>"#
    )
}

type Reports = mpsc::UnboundedReceiver<Value>;

/// One page server on two listeners (two origins): `/` serves the page
/// (set once the gateway it calls is known), `POST /report` hands its body
/// to the test.
async fn page_server(html: Arc<OnceLock<String>>) -> (Vec<SocketAddr>, Reports, Vec<tokio::task::JoinHandle<()>>) {
    let (reports, received) = mpsc::unbounded_channel();
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (html, reports) = (Arc::clone(&html), reports.clone());
        let handler = move |request: Request<hyper::body::Incoming>| {
            let (html, reports) = (Arc::clone(&html), reports.clone());
            async move {
                if request.uri().path() == "/report" {
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    let _ = reports.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    return Response::new(full(""));
                }
                if request.uri().path() != "/" {
                    return Response::builder().status(404).body(full("")).unwrap();
                }
                let html = html.get().cloned().unwrap_or_default();
                let response: Response<TestBody> =
                    Response::builder().header("content-type", "text/html").body(full(html)).unwrap();
                response
            }
        };
        let (addr, task) = serve(handler).await;
        addrs.push(addr);
        tasks.push(task);
    }
    (addrs, received, tasks)
}

/// Headless Chromium on `url`, with a profile of its own (removed after
/// it, on drop); killed on drop.
struct Browser {
    child: std::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn open(url: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(CHROMIUM)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions"])
            .args(["--disable-background-networking", "--disable-sync", "--disable-dev-shm-usage"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{CHROMIUM}: cannot start it ({e}); .ci/run installs chromium"));
        Browser { child, _profile: profile }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn report_from(url: &str, reports: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    let _browser = Browser::open(url);
    tokio::time::timeout(Duration::from_secs(60), reports.recv())
        .await
        .unwrap_or_else(|_| panic!("the page at {url} reported nothing within 60 s"))
        .unwrap()
}

#[tokio::test]
#[ignore = "needs chromium (.ci/run installs it)"]
async fn a_browser_on_an_allowed_origin_reads_answers_and_challenges_and_another_origin_cannot() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let token = key.mint(&claims(&idp.issuer, "api"));
    let html = Arc::new(OnceLock::new());
    let (origins, mut reports, _tasks) = page_server(Arc::clone(&html)).await;
    let (allowed, other) = (format!("http://{}", origins[0]), format!("http://{}", origins[1]));
    // The resource's URL is the gateway's, known once it listens: a placeholder first.
    let config = |resource: &str| {
        toml(&upstream.url(), &idp.issuer).text().replace(
            "[[issuers]]",
            &format!(
                "[resource_metadata]\nresource = \"{resource}\"\n\
                 [[routes]]\npath = \"/api\"\n[routes.cors]\nallow_origins = [\"{allowed}\"]\n\
                 allow_methods = [\"GET\"]\nallow_headers = [\"authorization\"]\nexpose_headers = [\"x-request-id\"]\n\
                 [[issuers]]"
            ),
        )
    };
    let gateway = TestGateway::start(&config("http://127.0.0.1/api")).await;
    gateway.wait_for_keys().await;
    let gateway_url = gateway.url("");
    let resource = format!("{gateway_url}/api");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwtgate.toml");
    std::fs::write(&file, config(&resource)).unwrap();
    let running = jwtgate::Config::parse(&config(&resource), "jwtgate.toml", Path::new("."), &|_| None).unwrap();
    assert!(jwtgate::reload::Reloader::new(file, Arc::clone(&gateway.shared), running, None).reload());
    html.set(page(&gateway_url, &token)).unwrap();

    let seen = report_from(&format!("{allowed}/"), &mut reports).await;
    assert_eq!(seen["origin"], allowed.as_str());
    assert_eq!(seen["with_token"]["status"], 200, "{seen}");
    assert_eq!(seen["with_token"]["body"]["message"], "hello from upstream", "{seen}");
    assert_eq!(seen["without_token"]["status"], 401, "{seen}");
    assert_eq!(seen["without_token"]["body"]["error"], "missing_token", "{seen}");
    let challenge = seen["without_token"]["challenge"].as_str().unwrap_or_else(|| panic!("unreadable: {seen}"));
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    let metadata_url = format!("{gateway_url}/.well-known/oauth-protected-resource/api");
    assert!(challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")), "{challenge}");
    assert_eq!(seen["metadata"]["url"], metadata_url.as_str());
    assert_eq!(seen["metadata"]["status"], 200, "{seen}");
    assert_eq!(seen["metadata"]["body"]["resource"], resource.as_str(), "{seen}");

    let seen = report_from(&format!("{other}/"), &mut reports).await;
    assert_eq!(seen["origin"], other.as_str());
    for fetch in ["with_token", "without_token"] {
        let rejected = seen[fetch]["rejected"].as_str().unwrap_or_else(|| panic!("{fetch} was readable: {seen}"));
        assert!(rejected.contains("TypeError"), "{rejected}");
    }
    gateway.stop().await;
}
