//! Regression tests for the two outside reviews (issues 13 and 14), one
//! per finding and named after it: each walked around the gateway because
//! it judged one reading of a request while the backend served another.
//! Requests go over raw sockets so that no client library tidies them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::support::keys::{SigningKey, claims};
use crate::support::{TestGateway, TestIdp, TestUpstream, raw, status_of, toml};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROUTES: &str = "\
token_from = [\"header\", \"cookie:access_token\", \"query:access_token\"]
[headers]
claims = { sub = \"X-Auth-Subject\", scope = \"X-Auth-Scope\" }
[[routes]]
path = \"/public\"
auth = \"public\"
[[routes]]
path = \"/ws\"
auth = \"public\"
websocket = true
[[routes]]
path = \"/optional\"
auth = \"optional\"
[[routes]]
path = \"/admin\"
scopes = [\"admin\"]
[[routes]]
path = \"/reports\"
methods = [\"GET\"]
scopes = [\"reports\"]
[[routes]]
path = \"/v1/items:purge\"
scopes = [\"admin\"]
[[routes]]
path = \"/café/admin\"
scopes = [\"admin\"]
[[routes]]
path = \"/items\"
methods = [\"DELETE\"]
scopes = [\"admin\"]
[[routes]]
path = \"/files\"
methods = [\"LINK\"]
scopes = [\"admin\"]
[[routes]]
path = \"/api\"
cors_preflight = \"public\"
[[routes]]
path = \"/cors\"
methods = [\"GET\", \"POST\"]
cors_preflight = \"public\"
[routes.cors]
allow_origins = [\"https://app.example\"]
max_age = \"10m\"
[[routes]]
path = \"/cors2/items\"
methods = [\"DELETE\"]
scopes = [\"admin\"]
[[routes]]
path = \"/cors2\"
[routes.cors]
allow_origins = [\"https://app.example\"]
allow_methods = [\"GET\", \"DELETE\"]
";

struct World {
    key: SigningKey,
    idp: TestIdp,
    upstream: TestUpstream,
    gateway: TestGateway,
}

impl World {
    async fn new() -> World {
        World::with("", "").await
    }

    /// With extra `[server]` and `[upstream]` lines.
    async fn with(server: &str, upstream_lines: &str) -> World {
        let key = SigningKey::rsa("k");
        let idp = TestIdp::start(&[&key]).await;
        let upstream = TestUpstream::start().await;
        let gateway =
            toml(&upstream.url(), &idp.issuer).server(server).upstream(upstream_lines).issuer(ROUTES).start().await;
        World { key, idp, upstream, gateway }
    }

    fn token(&self, scope: &str) -> String {
        let mut claims = claims(&self.idp.issuer, "api");
        claims["scope"] = json!(scope);
        claims["sub"] = json!("alice");
        self.key.mint(&claims)
    }

    /// `METHOD target` with `headers` (and a bearer `token`), verbatim.
    async fn send(&self, method: &str, target: &str, token: Option<&str>, headers: &[&str]) -> String {
        let mut request = format!("{method} {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n");
        if let Some(token) = token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        for header in headers {
            request.push_str(header);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        raw(self.gateway.addr, request.as_bytes()).await
    }

    async fn status(&self, method: &str, target: &str, token: Option<&str>) -> u16 {
        status_of(&self.send(method, target, token, &[]).await)
    }
}

/// Issue 13, finding 1: Tomcat drops an empty segment's `;params` and
/// merges the empty segment, so `/;/admin/x` is its `/admin/x`.
#[tokio::test]
async fn empty_named_path_parameters_never_reach_a_protected_servlet() {
    let w = World::new().await;
    let read = w.token("read");
    for path in ["/;/admin/x", "/;x/admin/x", "/api/;/admin", "/public/;/../admin/x", "//;x/admin", "/public/;x"] {
        let answer = w.send("GET", path, None, &[]).await;
        assert_eq!(status_of(&answer), 400, "{path}: {answer}");
        assert_eq!(w.status("GET", path, Some(&read)).await, 400, "{path}");
    }
    // A parameter on a named segment is that segment, as Tomcat reads it.
    assert_eq!(w.status("GET", "/admin;jsessionid=1/x", Some(&read)).await, 403);
    assert_eq!(w.status("GET", "/public;x/../admin", Some(&read)).await, 403);
    assert_eq!(w.upstream.count(), 0);
}

/// Issue 13, finding 4: Flask upper-cases methods and runs the GET view
/// for HEAD.
#[tokio::test]
async fn method_case_and_head_are_judged_as_the_backend_serves_them() {
    let w = World::new().await;
    let (read, reports) = (w.token("read"), w.token("reports"));
    for method in ["get", "Get", "HEAD", "head"] {
        assert_eq!(w.status(method, "/reports", Some(&read)).await, 403, "{method}");
    }
    assert_eq!(w.upstream.count(), 0);
    assert_eq!(w.status("get", "/reports", Some(&reports)).await, 200);
    assert_eq!(w.upstream.last().method, "GET", "forwarded in the form it was judged in");
}

/// Issue 13, finding 5: the backend decodes `%3A` and `%C3%A9`.
#[tokio::test]
async fn percent_encoded_route_literals_are_judged_by_their_route() {
    let w = World::new().await;
    let read = w.token("read");
    for path in [
        "/v1/items%3Apurge",
        "/v1/items%3apurge",
        "/v1/items:purge",
        "/caf%C3%A9/admin",
        "/caf%c3%a9/admin",
        "/café/admin",
        "/CAF%C3%89/ADMIN",
        "/%63af%C3%A9/admin/x",
    ] {
        assert_eq!(w.status("GET", path, Some(&read)).await, 403, "{path}");
    }
    assert_eq!(w.upstream.count(), 0);
    let admin = w.token("admin");
    assert_eq!(w.status("GET", "/caf%c3%a9/admin", Some(&admin)).await, 200);
    assert_eq!(w.upstream.last().uri, "/caf%C3%A9/admin");
    assert_eq!(w.status("GET", "/v1/items%3Apurge?x=%3A", Some(&admin)).await, 200);
    assert_eq!(w.upstream.last().uri, "/v1/items:purge?x=%3A");
}

/// Issue 13, finding 6, and issue 14, finding 6a: WSGI and PHP fold `_`,
/// `.` and `-` alike, so `X_Auth_Subject` would arrive as the gateway's own
/// header. On every kind of route and over HTTP/1.1 and h2c alike.
#[tokio::test]
async fn identity_spoofing_through_underscores_and_dots() {
    let w = World::new().await;
    let read = w.token("read");
    let spoofs = ["X_Auth_Subject: admin", "X.Auth.Subject: admin", "x_auth_scope: admin", "Some_Other: 1"];
    for (path, token) in [("/public/x", None), ("/optional/x", None), ("/optional/x", Some(&read)), ("/x", Some(&read))]
    {
        let answer = w.send("GET", path, token.map(String::as_str), &spoofs).await;
        assert_eq!(status_of(&answer), 200, "{path}");
        let seen = w.upstream.last();
        let names: Vec<&str> = seen.headers.keys().map(|k| k.as_str()).collect();
        assert!(names.iter().all(|n| !n.contains('_') && !n.contains('.')), "{path}: {names:?}");
        let subject: Vec<_> = seen.headers.get_all("x-auth-subject").iter().collect();
        assert!(subject.len() <= 1 && subject.iter().all(|v| *v == "alice"), "{path}: {subject:?}");
    }
    let status = h2c_get(
        w.gateway.addr,
        "http://gw/x",
        &[("authorization", &format!("Bearer {read}")), ("x_auth_subject", "admin"), ("x.auth.subject", "admin")],
    )
    .await;
    assert_eq!(status, 200);
    let seen = w.upstream.last();
    assert_eq!(seen.headers.get_all("x-auth-subject").iter().collect::<Vec<_>>(), ["alice"]);
    assert!(seen.headers.keys().all(|n| !n.as_str().contains('_') && !n.as_str().contains('.')));
}

/// Issue 13, finding 7: the issuer withdraws a key and publishes another
/// under the same `kid`; a token signed by the old one is verified again.
#[tokio::test]
async fn a_cached_verdict_is_bound_to_its_key_not_its_kid() {
    let (old, new) = (SigningKey::rsa("same"), SigningKey::rsa("same"));
    let idp = TestIdp::start(&[&old]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), &idp.issuer)
        .issuer("refresh_interval = \"100ms\"\nmin_refresh_interval = \"50ms\"")
        .start()
        .await;
    let token = old.mint(&claims(&idp.issuer, "api"));
    assert_eq!(crate::support::get(&gateway.url("/"), Some(&token)).await.0, 200);
    assert_eq!(crate::support::get(&gateway.url("/"), Some(&token)).await.0, 200, "now cached");
    idp.set_keys(&[&new]);
    let answer = crate::support::get_until_refused(&gateway.url("/"), &token).await;
    crate::support::assert_refused(&answer, 401, "invalid_token", "token signature is invalid");
    assert_eq!(crate::support::get(&gateway.url("/"), Some(&new.mint(&claims(&idp.issuer, "api")))).await.0, 200);
}

/// Issue 13, finding 8a: with `forward_authorization = false` no forged
/// cookie or query token travels beside the verified one, and a tab after
/// `Bearer` is malformed rather than "no token".
#[tokio::test]
async fn every_credential_location_is_stripped_and_a_tab_is_malformed() {
    let w = World::new().await;
    let read = w.token("read");
    let answer =
        w.send("GET", "/x?access_token=forged&keep=1", Some(&read), &["Cookie: access_token=forged; session=s1"]).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    let seen = w.upstream.last();
    assert_eq!(seen.uri, "/x?keep=1");
    assert_eq!(seen.headers["cookie"], "session=s1");
    assert!(!seen.headers.contains_key("authorization"));
    // On a public route too.
    w.send("GET", "/public/x?access_token=forged", None, &["Cookie: access_token=forged"]).await;
    let seen = w.upstream.last();
    assert_eq!(seen.uri, "/public/x");
    assert!(!seen.headers.contains_key("cookie"));

    let count = w.upstream.count();
    // (A tab at the end is trailing whitespace every server trims.)
    for value in [format!("Bearer\t{read}"), format!("Bearer \t{read}"), format!("bearer\t\t{read}")] {
        let answer = w.send("GET", "/public/x", None, &[&format!("Authorization: {value}")]).await;
        // Public routes never look at the token, and never forward one either.
        assert_eq!(status_of(&answer), 200);
        assert!(!w.upstream.last().headers.contains_key("authorization"));
        let answer = w.send("GET", "/x", None, &[&format!("Authorization: {value}")]).await;
        assert_eq!(status_of(&answer), 400, "{value:?}: {answer}");
        assert!(answer.contains("invalid_request"));
    }
    assert_eq!(w.upstream.count(), count + 3);
}

/// Issue 13, finding 8b: with a `{tenant}` issuer, the payload header is
/// the verified identity, not the token's own `{tenant}` claim.
#[tokio::test]
async fn the_payload_header_agrees_with_the_verified_tenant() {
    const TEMPLATE: &str = "https://login.example.com/{tenant}/v2.0";
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), TEMPLATE)
        .issuer(&format!("tenants = [\"*\"]\njwks_url = \"{}\"\n", idp.jwks_url()))
        .issuer(&format!("[[issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\n", idp.issuer))
        .issuer("[headers]\npayload = \"X-Auth-Claims\"\n")
        .start()
        .await;
    let payload = |upstream: &TestUpstream| -> Value {
        let seen = upstream.last();
        let text = seen.headers["x-auth-claims"].to_str().unwrap().to_owned();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).unwrap()).unwrap()
    };
    let mut spoofed = claims(&TEMPLATE.replace("{tenant}", "acme"), "api");
    spoofed["{tenant}"] = json!("globex");
    assert_eq!(crate::support::get(&gateway.url("/x"), Some(&key.mint(&spoofed))).await.0, 200);
    assert_eq!(payload(&upstream)["{tenant}"], "acme");
    let mut plain = claims(&idp.issuer, "api");
    plain["{tenant}"] = json!("acme");
    assert_eq!(crate::support::get(&gateway.url("/x"), Some(&key.mint(&plain))).await.0, 200);
    assert!(payload(&upstream).get("{tenant}").is_none());
}

/// Issue 13, finding 8c: only the gateway says where a request came from.
#[tokio::test]
async fn client_forwarding_headers_are_removed() {
    let w = World::new().await;
    let spoofs = [
        "Forwarded: for=10.0.0.1;proto=https",
        "X-Real-IP: 10.0.0.1",
        "X-Forwarded-Prefix: /admin",
        "X-Original-URL: /admin",
        "X-Rewrite-URL: /admin",
        "X-Forwarded-Host: evil.example",
        "X-Forwarded-Proto: https",
    ];
    assert_eq!(status_of(&w.send("GET", "/public/x", None, &spoofs).await), 200);
    let seen = w.upstream.last();
    for name in ["forwarded", "x-real-ip", "x-forwarded-prefix", "x-original-url", "x-rewrite-url"] {
        assert!(!seen.headers.contains_key(name), "{name}");
    }
    assert_eq!(seen.headers["x-forwarded-host"], "gw");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
}

/// An upstream that answers every request with `answer` (then keeps the
/// connection open) and records every byte it receives.
async fn raw_upstream(answer: &'static str) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Arc<Mutex<Vec<u8>>> = Arc::default();
    let seen = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut answered = false;
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                    if !answered {
                        answered = true;
                        let _ = stream.write_all(answer.as_bytes()).await;
                    }
                }
            });
        }
    });
    (addr, received)
}

/// Issue 14, finding 2: a 101 that is not a real handshake opens no tunnel
/// (Express answered a bare 101 from `?code=101`).
#[tokio::test]
async fn any_upstream_101_does_not_open_a_tunnel() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upgrade = "GET /ws/status?code=101 HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                   Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let smuggled = "GET /admin HTTP/1.1\r\nHost: gw\r\nX-Auth-Subject: admin\r\nConnection: close\r\n\r\n";
    for answer in [
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Accept: wrongwrongwrongwrongwrongwro\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
    ] {
        let (addr, received) = raw_upstream(answer).await;
        let gateway = toml(&format!("http://{addr}"), &idp.issuer).issuer(ROUTES).start().await;
        let reply = raw(gateway.addr, format!("{upgrade}{smuggled}").as_bytes()).await;
        assert_eq!(status_of(&reply), 502, "{answer:?}: {reply}");
        let received = String::from_utf8_lossy(&received.lock().unwrap()).into_owned();
        assert!(!received.contains("/admin"), "{answer:?}: the upstream saw {received}");
    }
    // A 101 the client never asked for is no answer either.
    let (addr, _) = raw_upstream("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n").await;
    let gateway = toml(&format!("http://{addr}"), &idp.issuer).issuer(ROUTES).start().await;
    let reply = raw(gateway.addr, b"GET /public/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status_of(&reply), 502, "{reply}");
}

/// Issue 14, finding 2: a public route opens no tunnel unless it says so.
#[tokio::test]
async fn upgrades_are_off_on_public_routes_by_default() {
    let w = World::new().await;
    let upgrade = ["Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: a2V5"];
    let answer = w.send("GET", "/public/chat", None, &upgrade).await;
    assert_eq!(status_of(&answer), 400, "{answer}");
    assert!(answer.contains("routes[].websocket"));
    assert_eq!(w.upstream.count(), 0);
}

/// Issue 14, finding 3: Express's method-override, Rack and Laravel run
/// the DELETE handler for a POST that asks for it.
#[tokio::test]
async fn method_overrides_never_skip_method_rules() {
    let w = World::new().await;
    let read = w.token("read");
    // Headers are removed: the backend serves the POST it was judged as.
    for header in ["X-HTTP-Method-Override: DELETE", "X-HTTP-Method: DELETE", "X-Method-Override: DELETE"] {
        let answer = w.send("POST", "/items/7", Some(&read), &[header, "Content-Length: 0"]).await;
        assert_eq!(status_of(&answer), 200, "{header}");
        let seen = w.upstream.last();
        assert!(seen.headers.keys().all(|n| !n.as_str().contains("method")), "{header}: {:?}", seen.headers);
    }
    let count = w.upstream.count();
    // A _method that would change the route is refused.
    let form = "_method=DELETE";
    let urlencoded =
        ["Content-Type: application/x-www-form-urlencoded", &format!("Content-Length: {}", form.len()) as &str];
    let answer = raw(
        w.gateway.addr,
        format!(
            "POST /items/7 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nAuthorization: Bearer {read}\r\n{}\r\n{}\r\n\r\n{form}",
            urlencoded[0], urlencoded[1]
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&answer), 400, "{answer}");
    let multipart = "--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\ndelete\r\n--b--\r\n";
    let answer = raw(
        w.gateway.addr,
        format!(
            "POST /items/7 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nAuthorization: Bearer {read}\r\n\
             Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {}\r\n\r\n{multipart}",
            multipart.len()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&answer), 400, "{answer}");
    assert_eq!(w.status("POST", "/items/7?_method=DELETE", Some(&read)).await, 400);
    assert_eq!(w.upstream.count(), count);
    // A form without _method, or one that changes nothing, goes through whole.
    let body = "name=x&_method=POST";
    let answer = raw(
        w.gateway.addr,
        format!(
            "POST /echo HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nAuthorization: Bearer {read}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(answer.contains(body));
}

/// Issue 14, finding 3, with `method_override = "honour"`: the request is
/// judged as the method it asks for.
#[tokio::test]
async fn honoured_method_overrides_are_judged_as_the_overridden_method() {
    let w = World::with("method_override = \"honour\"", "").await;
    let (read, admin) = (w.token("read"), w.token("admin"));
    let header = ["X-HTTP-Method-Override: DELETE", "Content-Length: 0"];
    assert_eq!(status_of(&w.send("POST", "/items/7", Some(&read), &header).await), 403);
    assert_eq!(status_of(&w.send("POST", "/items/7", Some(&admin), &header).await), 200);
    assert_eq!(w.upstream.last().headers["x-http-method-override"], "DELETE");
    assert_eq!(w.status("POST", "/items/7?_method=delete", Some(&read)).await, 403);
}

/// Issue 14, finding 4: a preflight let through without a token is only
/// a preflight: PHP front controllers and Django views run on any method.
#[tokio::test]
async fn a_tokenless_preflight_carries_no_body() {
    let w = World::new().await;
    let preflight = ["Origin: https://app.example", "Access-Control-Request-Method: POST"];
    let answer = w.send("OPTIONS", "/api/data?id=7", None, &preflight).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    let count = w.upstream.count();
    for framing in [&["Content-Length: 4"][..], &["Transfer-Encoding: chunked"]] {
        let mut request = String::from("OPTIONS /api/data?id=7 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n");
        for header in preflight.iter().chain(framing) {
            request.push_str(&format!("{header}\r\n"));
        }
        request.push_str(if framing[0].starts_with("Content") { "\r\nid=7" } else { "\r\n4\r\nid=7\r\n0\r\n\r\n" });
        let answer = raw(w.gateway.addr, request.as_bytes()).await;
        assert_eq!(status_of(&answer), 400, "{framing:?}: {answer}");
    }
    assert_eq!(w.upstream.count(), count);
}

/// Issue 14, finding 5: a chunked HTTP/1.1 request's trailer section
/// carries no header to the upstream, over HTTP/1.1 or h2c.
#[tokio::test]
async fn identity_headers_in_chunked_request_trailers_never_reach_the_upstream() {
    for protocol in ["http1", "h2c"] {
        let w = World::with("", &format!("protocol = \"{protocol}\"")).await;
        let read = w.token("read");
        let request = format!(
            "POST /echo HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nAuthorization: Bearer {read}\r\nTE: trailers\r\n\
             Transfer-Encoding: chunked\r\nTrailer: X-Auth-Subject\r\n\r\n7\r\npayload\r\n0\r\nX-Auth-Subject: admin\r\n\r\n"
        );
        let answer = raw(w.gateway.addr, request.as_bytes()).await;
        assert_eq!(status_of(&answer), 200, "{protocol}: {answer}");
        assert!(answer.contains("payload"), "{protocol}: {answer}");
        assert!(answer.to_ascii_lowercase().contains("x-request-trailers: none"), "{protocol}: {answer}");
    }
}

/// Issue 14, finding 6b: `Connection` cannot make the gateway drop what it
/// set (the request id, `X-Forwarded-*`, identity) or the framing.
#[tokio::test]
async fn connection_cannot_remove_what_the_gateway_sets() {
    let w = World::new().await;
    let read = w.token("read");
    for named in
        ["x-request-id", "X-Forwarded-For", "x-auth-subject", "content-length", "host, close", "Transfer-Encoding"]
    {
        let answer = w.send("GET", "/x", Some(&read), &[&format!("Connection: {named}")]).await;
        assert_eq!(status_of(&answer), 400, "{named}: {answer}");
    }
    assert_eq!(w.upstream.count(), 0);
    let answer = w.send("GET", "/x", Some(&read), &["Connection: x-private", "X-Private: 1"]).await;
    assert_eq!(status_of(&answer), 200);
    let seen = w.upstream.last();
    assert!(!seen.headers.contains_key("x-private"));
    assert!(seen.headers.contains_key("x-request-id"));
}

/// Issue 14, finding 6d: the absolute-form or h2 authority and `Host`
/// name one host, or the request is refused.
#[tokio::test]
async fn host_and_authority_must_agree() {
    let w = World::with("", "preserve_host = true").await;
    let read = w.token("read");
    let request = format!(
        "GET http://api.example/x HTTP/1.1\r\nHost: admin.example\r\nAuthorization: Bearer {read}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(status_of(&raw(w.gateway.addr, request.as_bytes()).await), 400);
    let request = format!(
        "GET http://api.example/x HTTP/1.1\r\nHost: api.example\r\nAuthorization: Bearer {read}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(status_of(&raw(w.gateway.addr, request.as_bytes()).await), 200);
    assert_eq!(w.upstream.last().headers["host"], "api.example");

    let auth = format!("Bearer {read}");
    let status =
        h2c_get(w.gateway.addr, "http://api.example/x", &[("host", "admin.example"), ("authorization", &auth)]).await;
    assert_eq!(status, 400);
    assert_eq!(h2c_get(w.gateway.addr, "http://api.example/x", &[("authorization", &auth)]).await, 200);
}

/// A GET over h2c with prior knowledge: the status.
async fn h2c_get(addr: SocketAddr, uri: &str, headers: &[(&str, &str)]) -> u16 {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let mut request = http::Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (response, _) = client.send_request(request.body(()).unwrap(), true).unwrap();
    response.await.unwrap().status().as_u16()
}

/// Issue 14, finding 6e: Express, ASP.NET and IIS serve `/ADMIN` as `/admin`.
#[tokio::test]
async fn routes_match_case_insensitively_by_default() {
    let w = World::new().await;
    let read = w.token("read");
    for path in ["/ADMIN", "/Admin/x", "/aDmIn;x=1/y", "/REPORTS"] {
        assert_eq!(w.status("GET", path, Some(&read)).await, 403, "{path}");
    }
    assert_eq!(w.status("GET", "/PUBLIC/x", None).await, 200, "public routes too");
    let exact = World::with("case_sensitive_routes = true", "").await;
    assert_eq!(exact.status("GET", "/ADMIN", Some(&exact.token("read"))).await, 200, "opted out");
}

/// Issue 13: for any path the gateway forwards, what the upstream receives
/// is a fixed point of canonicalisation and holds none of the refused
/// constructs, so no backend downstream can read it two ways.
#[test]
fn forwarded_paths_are_canonical_fixed_points() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let w = runtime.block_on(World::new());
    let piece = prop::sample::select(vec![
        "/", "//", ".", "..", "%2e", "%2E", "%2f", "%5c", "%25", "%41", "%7e", "%20", "%c0%ae", ";", ";x=1", "a", "B",
        "%3b", "%3a", ":", "@", "%c3%a9", "%C3%89", "{", "|", "~", "-", "admin", "public", "%00", "%0a", "\\", "%",
    ]);
    let paths = prop::collection::vec(piece, 0..10).prop_map(|pieces| format!("/public/{}", pieces.concat()));
    let config = ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(path in paths)| {
        let before = w.upstream.count();
        let answer = runtime.block_on(w.send("GET", &path, None, &[]));
        let status = status_of(&answer);
        if w.upstream.count() == before {
            prop_assert!(status == 400 || status == 401 || status == 403, "{path:?}: {answer}");
            return Ok(());
        }
        let uri = w.upstream.last().uri;
        let forwarded = uri.split('?').next().unwrap_or(&uri).to_owned();
        prop_assert!(jwtgate::path::is_canonical(&forwarded), "{path:?} -> {forwarded:?}");
        let upper = forwarded.to_ascii_uppercase();
        for refused in ["//", "%2F", "%5C", "%3B", "%00", "\\", "/;", "/./", "/../"] {
            prop_assert!(!upper.contains(refused), "{path:?} -> {forwarded:?} has {refused}");
        }
        prop_assert!(!forwarded.ends_with("/.") && !forwarded.ends_with("/.."), "{path:?} -> {forwarded:?}");
        // And it is judged by the route the upstream will serve it as.
        prop_assert!(forwarded.to_ascii_lowercase().starts_with("/public"), "{path:?} -> {forwarded:?}");
    });
    assert!(w.upstream.count() >= 50, "only {} of the generated paths were forwarded", w.upstream.count());
}

/// A POST with `head` lines and `body`, with the `read` token, verbatim.
async fn post(w: &World, target: &str, head: &str, body: &[u8]) -> String {
    let read = w.token("read");
    let mut request = format!(
        "POST {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nAuthorization: Bearer {read}\r\n{head}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    raw(w.gateway.addr, &request).await
}

/// The red-team pass over the fix for issue 14, finding 3: overrides a
/// framework reads however the form is spelled, encoded or repeated.
#[tokio::test]
async fn method_overrides_that_hide_from_a_strict_reader_are_refused() {
    let w = World::new().await;
    let urlencoded = "Content-Type: application/x-www-form-urlencoded\r\n";
    let cases: [(&str, &[u8]); 13] = [
        (urlencoded, b"_method=DELETE&x=\xff"),
        (urlencoded, b"_method=%ZZ"),
        (urlencoded, b"_method=POST&_method=DELETE"),
        (urlencoded, b"[_method]=DELETE"),
        (urlencoded, b".method=DELETE"),
        (urlencoded, b"a=1;_method=DELETE"),
        ("", b"_method=DELETE"),
        ("Content-Type: application/x-www-form-urlencoded, x\r\n", b"_method=DELETE"),
        ("Content-Type: multipart/mixed; boundary=b\r\n", b"--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--b--\r\n"),
        (
            "Content-Type: multipart/form-data; boundary=b\r\n",
            b"Content-Disposition: form-data; name=\"_method\"\r\n\r\nPOST\r\n--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--b--\r\n",
        ),
        ("Content-Type: multipart/form-data; boundary=b\r\n", b"--b\r\nContent-Disposition: form-data; name='_method'\r\n\r\nDELETE\r\n--b--\r\n"),
        ("Content-Type: application/x-www-form-urlencoded\r\nContent-Encoding: gzip\r\n", b"\x1f\x8b\x08\x00"),
        ("Content-Type: text/é\r\n", b"_method=DELETE"),
    ];
    for (head, body) in cases {
        let answer = post(&w, "/items/7", head, body).await;
        assert_eq!(status_of(&answer), 400, "{head:?} {:?}: {answer}", String::from_utf8_lossy(body));
    }
    // Any method a route names counts (Rack honours LINK).
    let answer = post(&w, "/files/1", urlencoded, b"_method=LINK").await;
    assert_eq!(status_of(&answer), 400, "{answer}");
    assert_eq!(w.upstream.count(), 0);
    // Where the routes do not depend on the method, nothing is read or refused.
    let answer = post(&w, "/x", urlencoded, b"_method=DELETE").await;
    assert_eq!(status_of(&answer), 200, "{answer}");
}

/// With `"honour"`, only an override every framework reads the same way.
#[tokio::test]
async fn honoured_overrides_must_be_unambiguous() {
    let w = World::with("method_override = \"honour\"", "").await;
    let urlencoded = "Content-Type: application/x-www-form-urlencoded\r\n";
    for (target, head, body) in [
        ("/items/7?_method=GET", "X-HTTP-Method-Override: DELETE\r\n", &b""[..]),
        ("/items/7", urlencoded, b"_method=+DELETE"),
        ("/items/7", urlencoded, b"_method=FOO"),
        ("/items/7", urlencoded, b"_method=GET&_method=DELETE"),
        ("/items/7?_method=OPTIONS", "Origin: https://a.example\r\nAccess-Control-Request-Method: GET\r\n", b""),
    ] {
        let answer = post(&w, target, head, body).await;
        assert_eq!(status_of(&answer), 400, "{target} {head:?} {body:?}: {answer}");
    }
    assert_eq!(w.upstream.count(), 0);
}

/// `Connection` cannot remove what the decision read (a preflight's
/// marks, the override, the form's type, credentials) after it was read.
#[tokio::test]
async fn connection_cannot_remove_what_the_decision_read() {
    let w = World::new().await;
    let read = w.token("read");
    for named in ["origin", "access-control-request-method", "x-http-method-override", "content-type", "cookie"] {
        let answer = w
            .send(
                "OPTIONS",
                "/api/x",
                None,
                &["Origin: https://a.example", "Access-Control-Request-Method: GET", &format!("Connection: {named}")],
            )
            .await;
        assert_eq!(status_of(&answer), 400, "{named}: {answer}");
        let answer = w.send("GET", "/x", Some(&read), &[&format!("Connection: {named}")]).await;
        assert_eq!(status_of(&answer), 400, "{named}: {answer}");
    }
    assert_eq!(w.upstream.count(), 0);
}

/// Credentials spelled as some framework would still read them are
/// stripped too; several of the same name are refused.
#[tokio::test]
async fn look_alike_credentials_are_stripped_and_duplicates_refused() {
    let w = World::new().await;
    let read = w.token("read");
    let answer = w
        .send(
            "GET",
            "/x?access%5Ftoken=F&keep=1;access_token=G&+access_token=H",
            Some(&read),
            &["Cookie: access_token =F; access.token=G; session=s1"],
        )
        .await;
    // The header's token is the one used; every look-alike goes.
    assert_eq!(status_of(&answer), 200, "{answer}");
    let seen = w.upstream.last();
    assert_eq!(seen.uri, "/x?keep=1");
    assert_eq!(seen.headers["cookie"], "session=s1");
    // Read from a cookie or the query, two of one name are refused.
    let answer = w.send("GET", "/x", None, &["Cookie: access_token=a.b.c; access.token=d.e.f"]).await;
    assert_eq!(status_of(&answer), 400, "{answer}");
    assert_eq!(w.status("GET", "/x?access_token=a.b.c&access_token=d.e.f", None).await, 400);
}

/// Letters that Java folds onto ASCII, and escapes a twice-decoding server
/// turns into letters, are refused rather than judged one way.
#[tokio::test]
async fn folding_letters_and_double_escapes_are_refused() {
    let w = World::new().await;
    let read = w.token("read");
    for path in ["/adm%C4%B1n", "/adm%C4%B0n/x", "/admin%C5%BF", "/%2561dmin", "/%25252e%25252e/admin"] {
        assert_eq!(w.status("GET", path, Some(&read)).await, 400, "{path}");
    }
    assert_eq!(w.upstream.count(), 0);
}

/// Issue 14, finding 4: a route with CORS configured in jwtgate answers
/// preflights itself (they never reach a handler, body or not), and every
/// answer to an allowed origin, refusals included, carries the CORS
/// headers a browser needs to read it.
#[tokio::test]
async fn a_route_with_cors_answers_preflights_itself() {
    let w = World::new().await;
    let preflight = [
        "Origin: https://app.example",
        "Access-Control-Request-Method: GET",
        "Access-Control-Request-Headers: authorization",
    ];
    let answer = w.send("OPTIONS", "/cors/data?id=7", None, &preflight).await;
    assert_eq!(status_of(&answer), 204, "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("access-control-allow-origin: https://app.example"), "{answer}");
    assert!(lower.contains("access-control-allow-headers: authorization, content-type"), "{answer}");
    assert!(lower.contains("access-control-max-age: 600"), "{answer}");
    let evil = ["Origin: https://evil.example", "Access-Control-Request-Method: GET"];
    let answer = w.send("OPTIONS", "/cors/data", None, &evil).await;
    assert_eq!(status_of(&answer), 403, "{answer}");
    assert!(answer.contains("cors_not_allowed"));
    let delete = ["Origin: https://app.example", "Access-Control-Request-Method: DELETE"];
    // DELETE is judged by the default route (the CORS route lists GET and
    // POST): a token is needed, so the preflight fails as the browser should.
    assert_eq!(status_of(&w.send("OPTIONS", "/cors/data", None, &delete).await), 401);
    // The route for DELETE has no CORS of its own: the preflight is still
    // answered here, by the policy of the route that serves OPTIONS.
    let nested = ["Origin: https://app.example", "Access-Control-Request-Method: delete"];
    assert_eq!(status_of(&w.send("OPTIONS", "/cors2/items?x=1", None, &nested).await), 204);
    assert_eq!(w.upstream.count(), 0, "no preflight reached the backend");

    // The browser can read the challenge of a refusal, and the answer.
    let answer = w.send("GET", "/cors/data", None, &["Origin: https://app.example"]).await;
    assert_eq!(status_of(&answer), 401);
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("access-control-allow-origin: https://app.example"), "{answer}");
    assert!(lower.contains("access-control-expose-headers: www-authenticate"), "{answer}");
    let answer = w.send("GET", "/cors/data", Some(&w.token("read")), &["Origin: https://app.example"]).await;
    assert_eq!(status_of(&answer), 200);
    assert!(answer.to_ascii_lowercase().contains("access-control-allow-origin: https://app.example"));
    let answer = w.send("GET", "/cors/data", Some(&w.token("read")), &["Origin: https://evil.example"]).await;
    assert!(!answer.to_ascii_lowercase().contains("access-control-allow-origin"), "{answer}");
}
