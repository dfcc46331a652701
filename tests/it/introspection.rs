//! RFC 7662 token introspection (issue 19, part 1), against the real node
//! `oidc-provider` (tests/idp/oidc_provider.mjs with INTROSPECTION=1)
//! issuing opaque client-credentials tokens, and against a local stub
//! endpoint for the answers a real provider never gives (another issuer,
//! duplicate members) and for `introspect = "always"`: oidc-provider
//! refuses to introspect JWTs (400, "Structured JWT Tokens cannot be
//! introspected").

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::support::{Process, SigningKey, TestGateway, TestIdp, TestUpstream, assert_refused, client, get, now};

const NEEDS_NODE: &str = "needs node with tests/idp/node_modules (.ci/run installs it)";

/// oidc-provider with introspection and revocation on; each introspection
/// answer waits `delay_ms` first.
fn provider(delay_ms: u64) -> (Process, String) {
    let mut command = std::process::Command::new("node");
    command
        .arg(format!("{}/tests/idp/oidc_provider.mjs", env!("CARGO_MANIFEST_DIR")))
        .env("PORT", "0")
        .env("INTROSPECTION", "1")
        .env("INTROSPECTION_DELAY_MS", delay_ms.to_string());
    Process::start_announced("oidc_provider.mjs", command, tempfile::tempdir().unwrap())
}

/// POSTs a form to `url`: the status and the JSON answer (null if none).
async fn post_form(url: &str, pairs: &[(&str, &str)]) -> (u16, Value) {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    let response =
        client().post(url).header("content-type", "application/x-www-form-urlencoded").body(body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null))
}

/// An opaque client-credentials token of `jwtgate-post` with `scope`.
async fn opaque_token(issuer: &str, scope: &str) -> String {
    let pairs = [
        ("grant_type", "client_credentials"),
        ("client_id", "jwtgate-post"),
        ("client_secret", "post-secret"),
        ("scope", scope),
    ];
    let (_, answer) = post_form(&format!("{issuer}/token"), &pairs).await;
    let token = answer["access_token"].as_str().unwrap_or_else(|| panic!("no token: {answer}")).to_string();
    assert_eq!(token.matches('.').count(), 0, "oidc-provider issues opaque tokens without resource=");
    token
}

async fn revoke(issuer: &str, token: &str) {
    let pairs = [("client_id", "jwtgate-post"), ("client_secret", "post-secret"), ("token", token)];
    assert_eq!(post_form(&format!("{issuer}/token/revocation"), &pairs).await.0, 200);
}

/// Introspection requests the provider has answered so far.
async fn calls(issuer: &str) -> u64 {
    let body = client().get(format!("{issuer}/__introspections")).send().await.unwrap().bytes().await.unwrap();
    serde_json::from_slice::<Value>(&body).unwrap()["calls"].as_u64().unwrap()
}

/// The gateway's configuration: `issuer` introspected at `endpoint`, with
/// `lines` added to the issuer's table, routes /read (scope read) and
/// /write (scope write), and identity headers.
fn config(upstream: &TestUpstream, issuer: &str, introspection: &str, lines: &str) -> String {
    format!(
        "[upstream]\nurl = \"{}\"\ntimeout = \"2s\"\n\
         [[issuers]]\nissuer = \"{issuer}\"\naudiences = [\"api\"]\nintrospection = {introspection}\n{lines}\n\
         [[routes]]\npath = \"/read\"\nscopes = [\"read\"]\n\
         [[routes]]\npath = \"/write\"\nscopes = [\"write\"]\n\
         [[routes]]\npath = \"/acme\"\nclaims = {{ \"https://jwtgate.test/tenant\" = \"acme\" }}\n\
         [headers]\nclaims = {{ sub = \"X-Auth-Subject\", client_id = \"X-Auth-Client\", scope = \"X-Auth-Scope\" }}\n",
        upstream.url()
    )
}

fn post_auth(issuer: &str) -> String {
    format!(
        "{{ url = \"{issuer}/token/introspection\", client_id = \"jwtgate-post\", client_secret = \"post-secret\", auth = \"post\" }}"
    )
}

/// The Basic client's secret `b@sic:secret+/%` must be form-encoded before
/// Basic encoding (RFC 6749 §2.3.1), or oidc-provider refuses the caller.
fn basic_auth(issuer: &str) -> String {
    format!(
        "{{ url = \"{issuer}/token/introspection\", client_id = \"jwtgate-basic\", client_secret = \"b@sic:secret+/%\", auth = \"basic\" }}"
    )
}

async fn gateway(text: &str) -> TestGateway {
    let gateway = TestGateway::start(text).await;
    gateway.wait_for_keys().await;
    gateway
}

fn header(seen: &crate::support::Seen, name: &str) -> Option<String> {
    seen.headers.get(name).map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
#[ignore = "needs node with tests/idp/node_modules (.ci/run installs it)"]
async fn an_opaque_token_is_admitted_with_its_identity_and_the_routes_checks() {
    let _ = NEEDS_NODE;
    let (_op, issuer) = provider(0);
    let upstream = TestUpstream::start().await;
    let gateway = gateway(&config(&upstream, &issuer, &basic_auth(&issuer), "")).await;
    let token = opaque_token(&issuer, "read").await;

    let (status, _, body) = get(&gateway.url("/read"), Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    let seen = upstream.last();
    assert_eq!(header(&seen, "x-auth-subject").as_deref(), Some("svc-jwtgate-post"));
    assert_eq!(header(&seen, "x-auth-client").as_deref(), Some("jwtgate-post"));
    assert_eq!(header(&seen, "x-auth-scope").as_deref(), Some("read"));
    assert!(seen.headers.get("authorization").is_none(), "the token is not forwarded");

    // The same route checks as for a JWT: scopes, and claims of the answer.
    let refused = get(&gateway.url("/write"), Some(&token)).await;
    assert_refused(&refused, 403, "insufficient_scope", "token lacks a scope this route requires");
    assert_eq!(get(&gateway.url("/acme"), Some(&token)).await.0, 200);
    assert_eq!(calls(&issuer).await, 1, "one answer, reused for the three requests");
}

#[tokio::test]
#[ignore = "needs node with tests/idp/node_modules (.ci/run installs it)"]
async fn client_authentication_post_sends_the_credentials_in_the_form() {
    let (_op, issuer) = provider(0);
    let upstream = TestUpstream::start().await;
    let gateway = gateway(&config(&upstream, &issuer, &post_auth(&issuer), "")).await;
    let token = opaque_token(&issuer, "read").await;
    assert_eq!(get(&gateway.url("/read"), Some(&token)).await.0, 200);
    assert_eq!(header(&upstream.last(), "x-auth-client").as_deref(), Some("jwtgate-post"));
}

/// A caller the endpoint does not accept gets no verdict: 503, never an allow.
#[tokio::test]
#[ignore = "needs node with tests/idp/node_modules (.ci/run installs it)"]
async fn a_wrong_client_secret_is_503_never_an_allow() {
    let (_op, issuer) = provider(0);
    let upstream = TestUpstream::start().await;
    let wrong = basic_auth(&issuer).replace("b@sic:secret+/%", "b@sic:secret");
    let gateway = gateway(&config(&upstream, &issuer, &wrong, "")).await;
    let token = opaque_token(&issuer, "read").await;
    let refused = get(&gateway.url("/read"), Some(&token)).await;
    assert_refused(
        &refused,
        503,
        "temporarily_unavailable",
        "the token introspection endpoint did not answer usably; retry shortly",
    );
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
#[ignore = "needs node with tests/idp/node_modules (.ci/run installs it)"]
async fn an_unknown_opaque_token_is_refused_as_not_active() {
    let (_op, issuer) = provider(0);
    let upstream = TestUpstream::start().await;
    let gateway = gateway(&config(&upstream, &issuer, &post_auth(&issuer), "")).await;
    let refused = get(&gateway.url("/read"), Some("not-a-token-the-provider-issued")).await;
    assert_refused(&refused, 401, "invalid_token", "token is not active");
    assert!(refused.1["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));
    assert_eq!(upstream.count(), 0);
    let metrics = gateway.metrics_text().await;
    assert!(metrics.contains("reason=\"inactive_token\""), "{metrics}");
}

/// Revocation takes effect when the cached answer ends: at most
/// `cache_ttl` after it, and never earlier than the answer was given.
#[tokio::test]
#[ignore = "needs node with tests/idp/node_modules (.ci/run installs it)"]
async fn a_revoked_token_is_refused_once_its_cached_answer_ends() {
    let (_op, issuer) = provider(0);
    let upstream = TestUpstream::start().await;
    let gateway = gateway(&config(&upstream, &issuer, &post_auth(&issuer), "cache_ttl = \"1s\"")).await;
    let token = opaque_token(&issuer, "read").await;
    assert_eq!(get(&gateway.url("/read"), Some(&token)).await.0, 200);
    revoke(&issuer, &token).await;
    assert_eq!(get(&gateway.url("/read"), Some(&token)).await.0, 200, "the answer is reused within cache_ttl");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let refused = get(&gateway.url("/read"), Some(&token)).await;
    assert_refused(&refused, 401, "invalid_token", "token is not active");
    // The refusal is remembered (5 s): no new call for the retry.
    let before = calls(&issuer).await;
    assert_eq!(get(&gateway.url("/read"), Some(&token)).await.0, 401);
    assert_eq!(calls(&issuer).await, before, "a refused token's verdict is reused");
}

#[tokio::test]
#[ignore = "needs node with tests/idp/node_modules (.ci/run installs it)"]
async fn the_endpoint_down_is_503_with_retry_after_never_an_allow() {
    let (op, issuer) = provider(0);
    let upstream = TestUpstream::start().await;
    let gateway = gateway(&config(&upstream, &issuer, &post_auth(&issuer), "")).await;
    let token = opaque_token(&issuer, "read").await;
    drop(op); // the provider is gone; the keys stay loaded
    let refused = get(&gateway.url("/read"), Some(&token)).await;
    assert_refused(
        &refused,
        503,
        "temporarily_unavailable",
        "the token introspection endpoint did not answer usably; retry shortly",
    );
    assert_eq!(refused.1["retry-after"], "1");
    assert_eq!(upstream.count(), 0);
    let metrics = gateway.metrics_text().await;
    assert!(metrics.contains("reason=\"introspection_unavailable\""), "{metrics}");
}

/// Single-flight: requests with one token while it is being asked wait for
/// that one answer. cache_ttl = 0 so that nothing but the shared call can
/// explain a single count, and a second wave asks again.
#[tokio::test]
#[ignore = "needs node with tests/idp/node_modules (.ci/run installs it)"]
async fn concurrent_requests_with_one_token_make_one_introspection_call() {
    let (_op, issuer) = provider(400);
    let upstream = TestUpstream::start().await;
    let gateway = gateway(&config(&upstream, &issuer, &post_auth(&issuer), "cache_ttl = \"0s\"")).await;
    let token = opaque_token(&issuer, "read").await;
    let url = gateway.url("/read");
    let wave = || futures_util::future::join_all((0..10).map(|_| get(&url, Some(&token))));
    let statuses: Vec<u16> = wave().await.into_iter().map(|answer| answer.0).collect();
    assert_eq!(statuses, vec![200; 10]);
    assert_eq!(calls(&issuer).await, 1, "ten concurrent requests, one introspection call");
    let statuses: Vec<u16> = wave().await.into_iter().map(|answer| answer.0).collect();
    assert_eq!(statuses, vec![200; 10]);
    assert_eq!(calls(&issuer).await, 2, "cache_ttl = 0s: a later wave asks again, once");
}

#[tokio::test]
#[ignore = "needs node with tests/idp/node_modules (.ci/run installs it)"]
async fn an_active_answer_is_reused_for_cache_ttl_and_no_longer() {
    let (_op, issuer) = provider(0);
    let upstream = TestUpstream::start().await;
    let gateway = gateway(&config(&upstream, &issuer, &post_auth(&issuer), "cache_ttl = \"1s\"")).await;
    let token = opaque_token(&issuer, "read").await;
    for _ in 0..3 {
        assert_eq!(get(&gateway.url("/read"), Some(&token)).await.0, 200);
    }
    assert_eq!(calls(&issuer).await, 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&gateway.url("/read"), Some(&token)).await.0, 200);
    assert_eq!(calls(&issuer).await, 2, "asked again once cache_ttl passed");
}

/// A local RFC 7662 endpoint answering `answer` (status, body), counting calls.
struct Stub {
    url: String,
    answer: Arc<Mutex<(u16, String)>>,
    calls: Arc<AtomicUsize>,
    /// The last request's Authorization header and form body.
    last: Arc<Mutex<(Option<String>, String)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Stub {
    async fn start() -> Stub {
        let answer = Arc::new(Mutex::new((200, json!({"active": true}).to_string())));
        let calls = Arc::new(AtomicUsize::new(0));
        let last = Arc::new(Mutex::new((None, String::new())));
        let (a, c, l) = (Arc::clone(&answer), Arc::clone(&calls), Arc::clone(&last));
        let (addr, task) = crate::support::http::serve(move |req: hyper::Request<hyper::body::Incoming>| {
            let (answer, calls, last) = (Arc::clone(&a), Arc::clone(&c), Arc::clone(&l));
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let auth = req.headers().get("authorization").map(|v| v.to_str().unwrap().to_string());
                let body = req.into_body().collect().await.unwrap().to_bytes();
                *last.lock().unwrap() = (auth, String::from_utf8_lossy(&body).into_owned());
                let (status, text) = answer.lock().unwrap().clone();
                hyper::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(crate::support::full(text))
                    .unwrap()
            }
        })
        .await;
        Stub { url: format!("http://{addr}/introspect"), answer, calls, last, task }
    }

    fn answer(&self, status: u16, body: &str) {
        *self.answer.lock().unwrap() = (status, body.to_string());
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn stub_gateway(idp: &TestIdp, stub: &Stub, upstream: &TestUpstream, lines: &str) -> TestGateway {
    let introspection =
        format!("{{ url = \"{}\", client_id = \"gw\", client_secret = \"s e/cret\", auth = \"basic\" }}", stub.url);
    // Answers are not reused unless a test says so.
    let ttl = if lines.contains("cache_ttl") { "" } else { "cache_ttl = \"0s\"\n" };
    let text = config(upstream, &idp.issuer, &introspection, &format!("algorithms = [\"RS256\"]\n{ttl}{lines}"));
    gateway(&text).await
}

/// introspect = "always": a JWT whose signature and claims hold is still
/// refused once the endpoint says it is not active (revoked).
#[tokio::test]
async fn introspect_always_refuses_a_revoked_jwt() {
    let key = SigningKey::rsa("k1");
    let idp = TestIdp::start(&[&key]).await;
    let stub = Stub::start().await;
    let upstream = TestUpstream::start().await;
    let gateway = stub_gateway(&idp, &stub, &upstream, "introspect = \"always\"").await;
    let mut claims = crate::support::claims(&idp.issuer, "api");
    claims["scope"] = json!("read");
    let jwt = key.mint(&claims);

    stub.answer(200, &json!({"active": true, "scope": "read"}).to_string());
    assert_eq!(get(&gateway.url("/read"), Some(&jwt)).await.0, 200);
    assert_eq!(stub.calls(), 1, "a JWT of an always issuer is introspected");
    // The verified-token cache holds the JWT, yet the endpoint is asked again.
    stub.answer(200, r#"{"active": false}"#);
    let refused = get(&gateway.url("/read"), Some(&jwt)).await;
    assert_refused(&refused, 401, "invalid_token", "token is not active");
    assert_eq!(stub.calls(), 2);
    // The identity is the JWT's own: its sub, not the answer's.
    stub.answer(200, &json!({"active": true, "sub": "someone-else"}).to_string());
    tokio::time::sleep(Duration::from_millis(5100)).await; // the refusal's 5 s
    assert_eq!(get(&gateway.url("/read"), Some(&jwt)).await.0, 200);
    assert_eq!(header(&upstream.last(), "x-auth-subject").as_deref(), Some("user-1"));
}

/// introspect = "opaque" (the default): JWTs are verified locally only.
#[tokio::test]
async fn introspect_opaque_leaves_jwts_to_their_signature() {
    let key = SigningKey::rsa("k1");
    let idp = TestIdp::start(&[&key]).await;
    let stub = Stub::start().await;
    let upstream = TestUpstream::start().await;
    let gateway = stub_gateway(&idp, &stub, &upstream, "").await;
    let mut claims = crate::support::claims(&idp.issuer, "api");
    claims["scope"] = json!("read");
    assert_eq!(get(&gateway.url("/read"), Some(&key.mint(&claims))).await.0, 200);
    assert_eq!(stub.calls(), 0);
}

/// RFC 6749 §2.3.1: Basic credentials are form-encoded first; the token
/// travels in the form body with its hint.
#[tokio::test]
async fn basic_client_authentication_form_encodes_id_and_secret() {
    let idp = TestIdp::start(&[&SigningKey::rsa("k1")]).await;
    let stub = Stub::start().await;
    let upstream = TestUpstream::start().await;
    let gateway = stub_gateway(&idp, &stub, &upstream, "").await;
    stub.answer(200, &json!({"active": true, "scope": "read"}).to_string());
    assert_eq!(get(&gateway.url("/read"), Some("opaque-1")).await.0, 200);
    let (auth, body) = stub.last.lock().unwrap().clone();
    use base64::Engine;
    let expected = base64::engine::general_purpose::STANDARD.encode("gw:s+e%2Fcret");
    assert_eq!(auth, Some(format!("Basic {expected}")));
    assert_eq!(body, "token=opaque-1&token_type_hint=access_token");
}

/// Each active answer is judged like a JWT's claims; each failure is its
/// own refusal, and an answer that is no answer is 503, never an allow.
#[tokio::test]
async fn an_active_answer_must_hold_like_a_jwt() {
    let idp = TestIdp::start(&[&SigningKey::rsa("k1")]).await;
    let stub = Stub::start().await;
    let upstream = TestUpstream::start().await;
    let gateway = stub_gateway(&idp, &stub, &upstream, "").await;
    let past = now() - 120;
    let cases: Vec<(u16, String, u16, &str)> = vec![
        (
            200,
            json!({"active": true, "iss": "https://other.example/"}).to_string(),
            401,
            "token issuer is not accepted",
        ),
        (200, json!({"active": true, "aud": "other"}).to_string(), 401, "audience not accepted"),
        (200, json!({"active": true, "exp": past}).to_string(), 401, "token expired"),
        (
            200,
            json!({"active": true, "cnf": {"jkt": "x"}}).to_string(),
            401,
            "token is DPoP-bound: send it as Authorization: DPoP with a DPoP proof",
        ),
        (
            200,
            json!({"active": true, "cnf": {"jwk": {"kty": "EC"}}}).to_string(),
            401,
            "token is bound (cnf) by a method this gateway cannot check: only cnf.jkt (DPoP) and cnf.x5t#S256 (a client certificate) are",
        ),
        (
            200,
            r#"{"active": false, "active": true}"#.to_string(),
            503,
            "the token introspection endpoint did not answer usably; retry shortly",
        ),
        (
            200,
            r#"{"active": "true"}"#.to_string(),
            503,
            "the token introspection endpoint did not answer usably; retry shortly",
        ),
        (
            200,
            "<html>ok</html>".to_string(),
            503,
            "the token introspection endpoint did not answer usably; retry shortly",
        ),
        (
            500,
            json!({"active": true}).to_string(),
            503,
            "the token introspection endpoint did not answer usably; retry shortly",
        ),
    ];
    for (i, (status, body, expected, description)) in cases.into_iter().enumerate() {
        stub.answer(status, &body);
        // A fresh token each time: verdicts are remembered per token.
        let answer = get(&gateway.url("/read"), Some(&format!("opaque-{i}"))).await;
        let code = if expected == 503 { "temporarily_unavailable" } else { "invalid_token" };
        assert_refused(&answer, expected, code, description);
    }
    assert_eq!(upstream.count(), 0);
    // An answer with the issuer's own iss and audience passes.
    stub.answer(
        200,
        &json!({"active": true, "iss": idp.issuer, "aud": ["api"], "exp": now() + 60, "scope": "read"}).to_string(),
    );
    assert_eq!(get(&gateway.url("/read"), Some("opaque-ok")).await.0, 200);
}

/// The endpoint at a closed port: 503 with Retry-After, the upstream untouched.
#[tokio::test]
async fn an_unreachable_endpoint_is_503_with_retry_after() {
    let idp = TestIdp::start(&[&SigningKey::rsa("k1")]).await;
    let upstream = TestUpstream::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let introspection =
        format!("{{ url = \"http://{closed}/introspect\", client_id = \"gw\", client_secret = \"s\" }}");
    let gateway = gateway(&config(&upstream, &idp.issuer, &introspection, "")).await;
    let refused = get(&gateway.url("/read"), Some("opaque")).await;
    assert_refused(
        &refused,
        503,
        "temporarily_unavailable",
        "the token introspection endpoint did not answer usably; retry shortly",
    );
    assert_eq!(refused.1["retry-after"], "1");
    assert_eq!(upstream.count(), 0);
}

/// `jwtgate explain` reports the introspection verdict and names the key to change.
#[tokio::test]
async fn explain_reports_the_introspection_answer() {
    let idp = TestIdp::start(&[&SigningKey::rsa("k1")]).await;
    let stub = Stub::start().await;
    let upstream = TestUpstream::start().await;
    let introspection = format!("{{ url = \"{}\", client_id = \"gw\", client_secret = \"s\" }}", stub.url);
    let text = config(&upstream, &idp.issuer, &introspection, "");
    let config = jwtgate::Config::parse(&text, "t.toml", std::path::Path::new("."), &|_| None).unwrap();
    let options = jwtgate::explain::Options { path: "/read".into(), ..Default::default() };

    stub.answer(200, &json!({"active": true, "sub": "svc-1", "scope": "read"}).to_string());
    let (report, allowed) = jwtgate::explain::explain(&config, "opaque-1", &options).await.unwrap();
    assert!(allowed, "{report}");
    assert!(report.contains(&format!("asked of issuers[0].introspection.url {}", stub.url)), "{report}");
    assert!(report.contains("pass  introspection: active"), "{report}");
    assert!(report.contains("x-auth-subject: svc-1"), "{report}");

    stub.answer(200, r#"{"active": false}"#);
    let (report, allowed) = jwtgate::explain::explain(&config, "opaque-2", &options).await.unwrap();
    assert!(!allowed);
    assert!(report.contains("FAIL  token is not active"), "{report}");
    assert!(report.contains("fix   issuers[0].introspection.url says the token is not active"), "{report}");

    stub.answer(502, "bad gateway");
    let (report, _) = jwtgate::explain::explain(&config, "opaque-3", &options).await.unwrap();
    assert!(report.contains("HTTP 503"), "{report}");
    assert!(report.contains("fix   issuers[0].introspection.url gave no usable answer"), "{report}");
}

/// Only tokens that are not three segments are opaque: a JWT-shaped token
/// that does not decode, or a JWT of an issuer not configured, is refused
/// as before and never shown to the endpoint.
#[tokio::test]
async fn a_broken_or_foreign_jwt_is_never_sent_to_the_endpoint() {
    let key = SigningKey::rsa("k1");
    let idp = TestIdp::start(&[&key]).await;
    let stub = Stub::start().await;
    let upstream = TestUpstream::start().await;
    let gateway = stub_gateway(&idp, &stub, &upstream, "introspect = \"always\"").await;
    let broken = get(&gateway.url("/read"), Some("eyJub3QiOiJqc29uIn0.e30.c2ln")).await;
    assert_refused(&broken, 401, "invalid_token", "token header is not valid base64url JSON with an alg");
    let foreign = key.mint(&crate::support::claims("https://other.example/", "api"));
    let foreign = get(&gateway.url("/read"), Some(&foreign)).await;
    assert_refused(&foreign, 401, "invalid_token", "token issuer is not accepted");
    let mut expired = crate::support::claims(&idp.issuer, "api");
    expired["exp"] = json!(now() - 600);
    let expired = get(&gateway.url("/read"), Some(&key.mint(&expired))).await;
    assert_refused(&expired, 401, "invalid_token", "token expired");
    assert_eq!(stub.calls(), 0, "only a JWT that verifies locally is introspected");
}

/// `check --online` asks each endpoint about a token nobody issued.
#[tokio::test]
async fn check_online_probes_the_introspection_endpoint() {
    use jwtgate::check::Online;
    let idp = TestIdp::start(&[&SigningKey::rsa("k1")]).await;
    let stub = Stub::start().await;
    let upstream = TestUpstream::start().await;
    let introspection = format!("{{ url = \"{}\", client_id = \"gw\", client_secret = \"s\" }}", stub.url);
    let text = config(&upstream, &idp.issuer, &introspection, "");
    let config = jwtgate::Config::parse(&text, "t.toml", std::path::Path::new("."), &|_| None).unwrap();

    stub.answer(200, r#"{"active": false}"#);
    let (report, found) = jwtgate::check::online(&config).await;
    assert_eq!(found, Online::Usable, "{report}");
    assert!(report.contains(&format!("introspection answers at {}", stub.url)), "{report}");
    assert!(stub.last.lock().unwrap().1.starts_with("token=jwtgate-check-online-probe&"));

    stub.answer(401, r#"{"error": "invalid_client"}"#);
    let (report, found) = jwtgate::check::online(&config).await;
    assert_eq!(found, Online::Misconfigured, "{report}");
    assert!(
        report.contains("error: issuers[0].introspection: ")
            && report.contains("the endpoint answered HTTP 401 Unauthorized (expected 200) — check the url, client_id, client_secret and auth"),
        "{report}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let text = text.replace(&stub.url, &format!("http://{closed}/introspect"));
    let config = jwtgate::Config::parse(&text, "t.toml", std::path::Path::new("."), &|_| None).unwrap();
    let (report, found) = jwtgate::check::online(&config).await;
    assert_eq!(found, Online::Unreachable, "{report}");
    assert!(report.contains("error: issuers[0].introspection: cannot reach"), "{report}");
}

/// `check --online` against the real endpoint: the right credentials
/// answer, a wrong secret is named as a configuration problem.
#[tokio::test]
#[ignore = "needs node with tests/idp/node_modules (.ci/run installs it)"]
async fn check_online_against_oidc_provider_names_a_wrong_secret() {
    use jwtgate::check::Online;
    let (_op, issuer) = provider(0);
    let upstream = TestUpstream::start().await;
    let parse = |text: &str| jwtgate::Config::parse(text, "t.toml", std::path::Path::new("."), &|_| None).unwrap();
    let good = parse(&config(&upstream, &issuer, &basic_auth(&issuer), ""));
    let (report, found) = jwtgate::check::online(&good).await;
    assert_eq!(found, Online::Usable, "{report}");
    assert!(report.contains("introspection answers at"), "{report}");
    let wrong = parse(&config(&upstream, &issuer, &basic_auth(&issuer).replace("b@sic:secret+/%", "wrong"), ""));
    let (report, found) = jwtgate::check::online(&wrong).await;
    assert_eq!(found, Online::Misconfigured, "{report}");
    assert!(report.contains("HTTP 401 Unauthorized"), "{report}");
}

/// An answer is reused until min(cache_ttl, exp): never past the token's
/// own expiry, when it is asked again (and refused as expired).
#[tokio::test]
async fn an_answer_is_not_reused_past_its_exp() {
    let idp = TestIdp::start(&[&SigningKey::rsa("k1")]).await;
    let stub = Stub::start().await;
    let upstream = TestUpstream::start().await;
    let gateway = stub_gateway(&idp, &stub, &upstream, "cache_ttl = \"60s\"\nleeway = \"0s\"").await;
    stub.answer(200, &json!({"active": true, "scope": "read", "exp": now() + 2}).to_string());
    assert_eq!(get(&gateway.url("/read"), Some("opaque-exp")).await.0, 200);
    assert_eq!(get(&gateway.url("/read"), Some("opaque-exp")).await.0, 200);
    assert_eq!(stub.calls(), 1, "reused within exp and cache_ttl");
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let refused = get(&gateway.url("/read"), Some("opaque-exp")).await;
    assert_refused(&refused, 401, "invalid_token", "token expired");
    assert_eq!(stub.calls(), 2, "asked again once exp passed");
}

/// Red team: a SPIFFE trust domain may introspect, and an answer's `sub`
/// was taken as the workload's SPIFFE ID unchecked, so `spiffe_ids`
/// matched a `sub` that is no SPIFFE ID of the trust domain (dot segments
/// below an allowed prefix, or another trust domain). A JWT-SVID's `sub`
/// is held to that; an answer's must be too.
#[tokio::test]
async fn introspected_spiffe_sub_outside_the_trust_domain_is_not_a_spiffe_id() {
    let stub = Stub::start().await;
    let upstream = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.json");
    let mut jwk = SigningKey::p256("jwt-a").jwk();
    jwk["use"] = json!("jwt-svid");
    std::fs::write(&bundle, json!({"keys": [jwk]}).to_string()).unwrap();
    let text = format!(
        "[upstream]\nurl = \"{}\"\n[[issuers]]\nissuer = \"spiffe://example.org\"\naudiences = [\"api\"]\n\
         spiffe_bundle_file = \"{}\"\ncache_ttl = \"0s\"\n\
         introspection = {{ url = \"{}\", client_id = \"gw\", client_secret = \"s\" }}\n\
         [[routes]]\npath = \"/billing\"\nspiffe_ids = [\"spiffe://example.org/ns/billing/*\"]\n",
        upstream.url(),
        bundle.display(),
        stub.url
    );
    let gateway = gateway(&text).await;
    stub.answer(200, &json!({"active": true, "sub": "spiffe://example.org/ns/billing/api"}).to_string());
    assert_eq!(get(&gateway.url("/billing"), Some("opaque-good")).await.0, 200);
    for (i, sub) in
        ["spiffe://example.org/ns/billing/../../ops/sa/admin", "spiffe://other.org/ns/billing/api"].iter().enumerate()
    {
        stub.answer(200, &json!({"active": true, "sub": sub}).to_string());
        let answer = get(&gateway.url("/billing"), Some(&format!("opaque-{i}"))).await;
        assert_eq!(answer.0, 401, "{sub} admitted as a SPIFFE ID of example.org");
    }
}

/// An introspection answer bound to a DPoP key (RFC 9449 §6.2 `cnf.jkt`)
/// passes with a proof of that key, and only with one, as a bound JWT does:
/// the binding is checked after every verification, introspected or not.
#[tokio::test]
async fn an_introspected_dpop_bound_token_passes_only_with_its_proof() {
    let idp = TestIdp::start(&[&SigningKey::rsa("k1")]).await;
    let stub = Stub::start().await;
    let upstream = TestUpstream::start().await;
    let gateway = stub_gateway(&idp, &stub, &upstream, "dpop = \"allowed\"").await;
    let client_key = SigningKey::p256("client");
    let jkt = jwtgate::auth::dpop::thumbprint(client_key.jwk().as_object().unwrap()).unwrap();
    stub.answer(200, &json!({"active": true, "sub": "svc", "cnf": {"jkt": jkt}}).to_string());
    let token = "opaque-bound-token";
    let url = gateway.url("/orders");
    let send = |scheme: &str, proof: Option<String>| {
        let mut request = client().get(&url).header("authorization", format!("{scheme} {token}"));
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let proof = crate::dpop::local_proof(&client_key, &url, token, "j1", crate::support::keys::now());
    assert_eq!(send("DPoP", Some(proof.clone())).await, 200);
    assert_eq!(send("DPoP", Some(proof)).await, 401, "replayed");
    assert_eq!(send("Bearer", None).await, 401, "the bound token as a bearer token");
    let stranger = SigningKey::p256("stranger");
    let proof = crate::dpop::local_proof(&stranger, &url, token, "j2", crate::support::keys::now());
    assert_eq!(send("DPoP", Some(proof)).await, 401, "a proof of another key");
}
