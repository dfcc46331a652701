//! Fixtures for the integration tests: a JWKS/discovery issuer, an upstream
//! that reports what it received, and a gateway started from TOML text —
//! all real servers on 127.0.0.1:0 inside the test process.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

pub mod certs;
pub mod http;
pub mod keys;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use jwtgate::{Config, Gateway};
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

pub use self::http::{TestBody, full, json_response};
pub use self::keys::{SigningKey, b64, claims, hs256, now};

/// A development issuer: OIDC discovery and a JWKS endpoint that counts fetches.
pub struct TestIdp {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT/`, as the tokens' `iss`.
    pub issuer: String,
    pub state: Arc<IdpState>,
    task: JoinHandle<()>,
}

#[derive(Default)]
pub struct IdpState {
    pub jwks: Mutex<Value>,
    pub jwks_fetches: AtomicUsize,
    pub not_modified: AtomicUsize,
    /// Answer 503 to every request.
    pub down: AtomicBool,
    pub cache_control: Mutex<Option<String>>,
    pub etags: AtomicBool,
}

impl TestIdp {
    pub async fn start(keys: &[&SigningKey]) -> TestIdp {
        let state = Arc::new(IdpState::default());
        *state.jwks.lock().unwrap() = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
        let issuer_cell: Arc<Mutex<String>> = Arc::default();
        let (addr, task) = {
            let state = Arc::clone(&state);
            let issuer_cell = Arc::clone(&issuer_cell);
            http::serve(move |req: Request<hyper::body::Incoming>| {
                let state = Arc::clone(&state);
                let issuer = issuer_cell.lock().unwrap().clone();
                async move { idp_answer(&state, &issuer, &req) }
            })
            .await
        };
        let issuer = format!("http://{addr}/");
        *issuer_cell.lock().unwrap() = issuer.clone();
        TestIdp { addr, issuer, state, task }
    }

    pub fn jwks_url(&self) -> String {
        format!("{}jwks.json", self.issuer)
    }

    pub fn set_keys(&self, keys: &[&SigningKey]) {
        *self.state.jwks.lock().unwrap() = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
    }

    pub fn fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn idp_answer(state: &IdpState, issuer: &str, req: &Request<hyper::body::Incoming>) -> Response<TestBody> {
    if state.down.load(Ordering::SeqCst) {
        return json_response(503, &json!({"error": "down"}));
    }
    match req.uri().path() {
        "/.well-known/openid-configuration" => {
            json_response(200, &json!({"issuer": issuer, "jwks_uri": format!("{issuer}jwks.json")}))
        }
        "/jwks.json" => {
            state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let body = state.jwks.lock().unwrap().to_string();
            let etag = format!("\"{:x}\"", fxhash(&body));
            if state.etags.load(Ordering::SeqCst)
                && req.headers().get("if-none-match").is_some_and(|v| v.as_bytes() == etag.as_bytes())
            {
                state.not_modified.fetch_add(1, Ordering::SeqCst);
                return Response::builder().status(304).body(full("")).unwrap();
            }
            let mut response = Response::builder().header("content-type", "application/json");
            if state.etags.load(Ordering::SeqCst) {
                response = response.header("etag", etag);
            }
            if let Some(cc) = state.cache_control.lock().unwrap().clone() {
                response = response.header("cache-control", cc);
            }
            response.body(full(body)).unwrap()
        }
        _ => json_response(404, &json!({"error": "not found"})),
    }
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3))
}

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: hyper::HeaderMap,
    pub version: hyper::Version,
}

/// An upstream that records requests. Paths:
/// `/slow` (or any path ending so) waits 3 s; `/echo` answers with the request body and
/// names the request trailers it got (`x-request-trailers`, header and trailer);
/// `/bytes/N` streams N bytes; `/gated` and `/upload` prove streaming (see
/// the fields); anything else answers JSON describing the request.
pub struct TestUpstream {
    pub addr: SocketAddr,
    scheme: &'static str,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// `/gated` sends its second chunk only after this is notified.
    pub gate: Arc<Notify>,
    /// Notified when `/upload` has received its first body chunk.
    pub got_first: Arc<Notify>,
    task: JoinHandle<()>,
}

impl TestUpstream {
    pub async fn start() -> TestUpstream {
        TestUpstream::start_maybe_tls(None).await
    }

    /// An upstream served over TLS with this configuration: its URL is https://.
    pub async fn start_tls(tls: Arc<rustls::ServerConfig>) -> TestUpstream {
        TestUpstream::start_maybe_tls(Some(tls)).await
    }

    async fn start_maybe_tls(tls: Option<Arc<rustls::ServerConfig>>) -> TestUpstream {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (gate, got_first): (Arc<Notify>, Arc<Notify>) = Default::default();
        let (addr, task) = {
            let (seen, gate, got_first) = (Arc::clone(&seen), Arc::clone(&gate), Arc::clone(&got_first));
            let handler = move |req: Request<hyper::body::Incoming>| {
                let (seen, gate, got_first) = (Arc::clone(&seen), Arc::clone(&gate), Arc::clone(&got_first));
                async move { upstream_answer(&seen, &gate, &got_first, req).await }
            };
            http::serve_maybe_tls(handler, tls).await
        };
        TestUpstream { addr, scheme, seen, gate, got_first, task }
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().expect("the upstream saw no request")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn upstream_answer(
    seen: &Mutex<Vec<Seen>>,
    gate: &Arc<Notify>,
    got_first: &Notify,
    req: Request<hyper::body::Incoming>,
) -> Response<TestBody> {
    let record = Seen {
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        headers: req.headers().clone(),
        version: req.version(),
    };
    seen.lock().unwrap().push(record);
    let path = req.uri().path().to_string();
    if path.ends_with("/slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
        return json_response(200, &json!({"slow": true}));
    }
    if path == "/gated" {
        let gate = Arc::clone(gate);
        let frames = futures_util::stream::unfold(0, move |step| {
            let gate = Arc::clone(&gate);
            async move {
                let chunk: &'static [u8] = match step {
                    0 => b"first;",
                    1 => {
                        gate.notified().await;
                        b"second"
                    }
                    _ => return None,
                };
                Some((
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(Bytes::from_static(chunk))),
                    step + 1,
                ))
            }
        });
        return Response::new(StreamBody::new(frames).boxed());
    }
    if path == "/upload" {
        let mut body = req.into_body();
        let mut received = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                if received.is_empty() {
                    got_first.notify_one();
                }
                received.extend_from_slice(&data);
            }
        }
        return Response::new(full(received));
    }
    if path == "/echo" {
        // The request's data frames back, then trailers of the upstream's
        // own naming every request trailer that arrived.
        let mut request_trailers = Vec::new();
        let mut data = Vec::new();
        let mut incoming = req.into_body();
        while let Some(Ok(frame)) = incoming.frame().await {
            match frame.into_data() {
                Ok(chunk) => data.extend_from_slice(&chunk),
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        request_trailers.extend(trailers.keys().map(|k| k.to_string()));
                    }
                }
            }
        }
        let mut trailers = hyper::HeaderMap::new();
        let seen = if request_trailers.is_empty() { "none".to_string() } else { request_trailers.join(",") };
        trailers.insert("x-request-trailers", seen.parse().unwrap());
        let seen_header = seen.clone();
        let frames = vec![
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(Bytes::from(data))),
            Ok(Frame::trailers(trailers)),
        ];
        let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
        return Response::builder()
            .header("x-request-trailers", seen_header)
            .header("connection", "x-upstream-hop")
            .header("x-upstream-hop", "1")
            .body(body)
            .unwrap();
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        let total: usize = n.parse().unwrap();
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let frames = (0..total.div_ceil(chunk.len())).map(move |i| {
            let len = (total - i * chunk.len()).min(chunk.len());
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(chunk.slice(..len)))
        });
        return Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed());
    }
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .keys()
        .map(|name| {
            let values: Vec<Value> =
                req.headers().get_all(name).iter().map(|v| Value::from(v.to_str().unwrap_or("?"))).collect();
            (name.to_string(), Value::Array(values))
        })
        .collect();
    json_response(200, &json!({"message": "hello from upstream", "path": req.uri().to_string(), "headers": headers}))
}

/// Configuration text for one issuer (audience `api`) in front of one
/// upstream, with extra lines for each table.
#[derive(Default)]
pub struct Toml {
    upstream_url: String,
    issuer: String,
    server: String,
    upstream: String,
    issuer_extra: String,
}

pub fn toml(upstream_url: &str, issuer: &str) -> Toml {
    Toml { upstream_url: upstream_url.into(), issuer: issuer.into(), ..Toml::default() }
}

impl Toml {
    pub fn server(mut self, lines: &str) -> Toml {
        self.server.push_str(lines);
        self
    }

    pub fn upstream(mut self, lines: &str) -> Toml {
        self.upstream.push_str(lines);
        self
    }

    pub fn issuer(mut self, lines: &str) -> Toml {
        self.issuer_extra.push_str(lines);
        self
    }

    pub fn text(&self) -> String {
        format!(
            "[server]\n{}\n[upstream]\nurl = \"{}\"\n{}\n[[issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\n{}\n",
            self.server, self.upstream_url, self.upstream, self.issuer, self.issuer_extra
        )
    }

    /// Starts a gateway from this text and waits for its keys.
    pub async fn start(&self) -> TestGateway {
        let gateway = TestGateway::start(&self.text()).await;
        gateway.wait_for_keys().await;
        gateway
    }
}

/// A gateway started from TOML text on a fresh loopback port, with its
/// admin endpoints on another.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    pub shared: jwtgate::gateway::SharedGateway,
    /// The listener's certificate, with `[server.tls]`.
    pub tls: Option<jwtgate::tls::ServerTls>,
    /// Started as `jwtgate run` starts it.
    app: Option<jwtgate::app::App>,
}

impl TestGateway {
    pub async fn start(toml: &str) -> TestGateway {
        let config = Config::parse(toml, "test.toml", Path::new("."), &|name| std::env::var(name).ok())
            .unwrap_or_else(|e| panic!("test config is invalid:\n{e}"));
        let listeners = jwtgate::app::Listeners {
            proxy: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            admin: Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()),
        };
        let app = jwtgate::app::App::start(&config, listeners, None).await.unwrap();
        TestGateway {
            addr: app.addr,
            admin_addr: app.admin_addr.unwrap(),
            gateway: app.gateway(),
            shared: Arc::clone(&app.shared),
            tls: app.tls.clone(),
            app: Some(app),
        }
    }

    /// A gateway for one issuer served by `idp` (RS256, ES256 and EdDSA
    /// allowed) in front of `upstream`, with extra lines for the issuer table.
    pub async fn for_idp(idp: &TestIdp, upstream: &TestUpstream, issuer_extra: &str) -> TestGateway {
        toml(&upstream.url(), &idp.issuer)
            .upstream("timeout = \"1s\"")
            .issuer("algorithms = [\"RS256\", \"ES256\", \"EdDSA\"]\n")
            .issuer(issuer_extra)
            .start()
            .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin_addr)
    }

    /// The admin listener's `/metrics` page.
    pub async fn metrics_text(&self) -> String {
        client().get(self.admin_url("/metrics")).send().await.unwrap().text().await.unwrap()
    }

    pub async fn wait_for_keys(&self) {
        for _ in 0..500 {
            if self.gateway.issuer_keys().iter().all(|k| k.has_keys()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the gateway did not load its keys within 5 s");
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
    }
}

thread_local! {
    // One client per test thread (each #[tokio::test] has its own thread and
    // runtime): building a client per request is slow enough to skew timings.
    static CLIENT: reqwest::Client = reqwest::Client::builder().no_proxy().build().unwrap();
}

pub fn client() -> reqwest::Client {
    CLIENT.with(Clone::clone)
}

/// Opens an h2c connection to `addr` and sends one request without a token
/// (a 401), so the server's SETTINGS have been read; returns the number of
/// concurrent streams the server allows.
pub async fn h2c_stream_limit(addr: SocketAddr) -> usize {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = hyper::Request::get(format!("http://{addr}/")).body(()).unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 401);
    client.current_max_send_streams()
}

/// GET `url` with `Authorization: Bearer token` (when given); status and JSON body.
pub async fn get(url: &str, token: Option<&str>) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = client().get(url);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, headers, json)
}

/// Asserts a refusal's status, `error` code and `error_description`.
pub fn assert_refused(answer: &(u16, reqwest::header::HeaderMap, Value), status: u16, error: &str, description: &str) {
    let (got_status, headers, body) = answer;
    assert_eq!(*got_status, status, "status; body {body}");
    assert_eq!(body["error"], error, "error code; body {body}");
    assert_eq!(body["error_description"], description, "description; body {body}");
    assert_eq!(headers["content-type"], "application/json");
}

/// Sends raw bytes to `addr` and returns everything answered until the
/// connection closes (or 5 s pass): for requests no client library would
/// send as written.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status code of a raw answer, 0 when there is none.
pub fn status_of(answer: &str) -> u16 {
    answer.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

/// A free loopback port (bound and released: the process started next takes it).
pub fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A real server process a test started (nginx, Caddy, a backend): killed
/// on drop, with the scratch directory it was given.
pub struct Process {
    pub name: String,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Process {
    /// Spawns `command` (output discarded) and waits up to 10 s until
    /// `addr` accepts connections. `dir` lives as long as the process.
    pub async fn start(
        name: &str,
        mut command: std::process::Command,
        addr: SocketAddr,
        dir: tempfile::TempDir,
    ) -> Process {
        let child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start it ({e}); .ci/run installs it"));
        let process = Process { name: name.to_string(), addr, dir, child };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return process;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(process.dir.path().join("error.log")).unwrap_or_default();
        panic!("{name} did not start listening on {addr}: {log}");
    }
}

impl Process {
    /// Spawns `command`, a server that picks its own port and says so with
    /// one stdout line `listening URL`, and waits up to 10 s for that line.
    /// Its stderr goes to `error.log` in `dir`, shown if it never announces.
    pub fn start_announced(
        name: &str,
        mut command: std::process::Command,
        dir: tempfile::TempDir,
    ) -> (Process, String) {
        use std::io::BufRead as _;
        let log = std::fs::File::create(dir.path().join("error.log")).unwrap();
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start it ({e}); .ci/run installs it"));
        let stdout = child.stdout.take().unwrap();
        let (lines, line) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stdout);
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let _ = lines.send(first);
            // Keep draining: a closed pipe would fail the server's next write.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let mut process = Process { name: name.to_string(), addr: SocketAddr::from(([127, 0, 0, 1], 0)), dir, child };
        let first = line.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        let Some(url) = first.trim().strip_prefix("listening ").map(str::to_owned) else {
            let _ = process.child.kill();
            let _ = process.child.wait();
            let log = std::fs::read_to_string(process.dir.path().join("error.log")).unwrap_or_default();
            panic!("{name} did not announce `listening URL` (got {first:?}): {log}");
        };
        let authority = url.split("://").nth(1).unwrap_or_default().split('/').next().unwrap_or_default();
        process.addr = authority.parse().unwrap_or_else(|e| panic!("{name}: {url}: {e}"));
        (process, url)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One of tests/idp's node launchers (a real identity provider) on a free
/// port, with `env` set: the process and the URL it announced.
pub fn node_idp(script: &str, env: &[(&str, &str)]) -> (Process, String) {
    let mut command = std::process::Command::new("node");
    command
        .arg(format!("{}/tests/idp/{script}", env!("CARGO_MANIFEST_DIR")))
        .env("PORT", "0")
        .envs(env.iter().copied());
    Process::start_announced(script, command, tempfile::tempdir().unwrap())
}

/// Debian's nginx with `conf` (`{dir}` replaced by its scratch directory,
/// where its pid, temp files and error.log go), listening on `addr`.
pub async fn nginx(conf: &str, addr: SocketAddr) -> Process {
    let dir = tempfile::tempdir().unwrap();
    let conf = conf.replace("{dir}", &dir.path().display().to_string());
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let mut command = std::process::Command::new("/usr/sbin/nginx");
    command.arg("-p").arg(dir.path()).arg("-e").arg(dir.path().join("error.log")).arg("-c").arg(&path);
    command.args(["-g", "daemon off; master_process off;"]);
    Process::start("nginx", command, addr, dir).await
}

/// What every nginx config of the tests needs in its `http` block to run
/// unprivileged from a scratch directory.
pub const NGINX_SCRATCH: &str = "client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; \
     fastcgi_temp_path {dir}/fastcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi; access_log off;";

/// GETs `url` with `token` every 100 ms, for up to 5 s, until the answer is
/// not a 200 (a background key refresh has taken effect); the last answer.
pub async fn get_until_refused(url: &str, token: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut answer = get(url, Some(token)).await;
    for _ in 0..50 {
        if answer.0 != 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = get(url, Some(token)).await;
    }
    answer
}
