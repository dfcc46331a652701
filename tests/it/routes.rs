//! Authorisation: routes, scopes, claims and identity headers, and the path
//! tricks that try to walk around them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct World {
    auth0: SigningKey,
    keycloak: SigningKey,
    a: TestIdp,
    b: TestIdp,
    upstream: TestUpstream,
    gateway: TestGateway,
}

async fn world() -> World {
    let (auth0, keycloak) = (SigningKey::rsa("auth0"), SigningKey::rsa("keycloak"));
    let a = TestIdp::start(&[&auth0]).await;
    let b = TestIdp::start(&[&keycloak]).await;
    let upstream = TestUpstream::start().await;
    let toml = format!(
        r#"
[upstream]
url = "{upstream}"

[[issuers]]
issuer = "{a}"
audiences = ["api"]

[[issuers]]
issuer = "{b}"
audiences = ["api"]
scope_claims = ["scope", "/realm_access/roles"]

[[routes]]
path = "/public"
auth = "public"

[[routes]]
path = "/optional"
auth = "optional"

[[routes]]
path = "/admin"
scopes = ["admin:all"]

[[routes]]
path = "/reports"
any_scopes = ["reports:read", "admin:all"]

[[routes]]
path = "/tenant"
claims = {{ "https://example.com/tenant" = "acme" }}

[[routes]]
path = "/ops"
claims = {{ "/realm_access/roles" = "ops" }}

[[routes]]
path = "/write"
methods = ["POST", "PUT"]
scopes = ["write:messages"]

[[routes]]
path = "/keycloak-only"
issuers = ["{b}"]

[[routes]]
path = "/cors"
cors_preflight = "public"

[headers]
claims = {{ sub = "X-Auth-Subject", scope = "X-Auth-Scope", "/realm_access/roles" = "X-Auth-Roles", "https://example.com/tenant" = "X-Auth-Tenant", level = "X-Auth-Level" }}
payload = "X-Auth-Claims"
"#,
        upstream = upstream.url(),
        a = a.issuer,
        b = b.issuer
    );
    let gateway = TestGateway::start(&toml).await;
    gateway.wait_for_keys().await;
    World { auth0, keycloak, a, b, upstream, gateway }
}

impl World {
    /// An Auth0-style token: RBAC `permissions` plus `extra` claims.
    fn auth0(&self, permissions: &[&str], extra: Value) -> String {
        let mut c = claims(&self.a.issuer, "api");
        c["permissions"] = json!(permissions);
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        self.auth0.mint(&c)
    }

    /// A Keycloak-style token: realm roles.
    fn keycloak(&self, roles: &[&str]) -> String {
        let mut c = claims(&self.b.issuer, "api");
        c["realm_access"] = json!({"roles": roles});
        self.keycloak.mint(&c)
    }

    async fn send(&self, method: &str, path: &str, token: Option<&str>) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = client().request(method.parse().unwrap(), self.gateway.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        (status, headers, serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn each_route_kind_with_and_without_tokens() {
    let w = world().await;
    let plain = w.auth0(&[], json!({}));
    let admin = w.auth0(&["admin:all"], json!({}));
    let reports = w.auth0(&["reports:read"], json!({}));
    let acme = w.auth0(&[], json!({"https://example.com/tenant": "acme"}));
    let acme_in_array = w.auth0(&[], json!({"https://example.com/tenant": ["other", "acme"]}));
    let globex = w.auth0(&[], json!({"https://example.com/tenant": "globex"}));
    let writer = w.auth0(&["write:messages"], json!({}));
    let ops = w.keycloak(&["ops"]);
    let kc_admin = w.keycloak(&["admin:all"]);
    let expired = {
        let mut c = claims(&w.a.issuer, "api");
        c["exp"] = json!(now() - 3600);
        w.auth0.mint(&c)
    };
    // (method, path, token, status, error code)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, u16, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("GET", "/public/x", None, 200, None),
        ("GET", "/public/x", Some("garbage"), 200, None),
        ("GET", "/optional", None, 200, None),
        ("GET", "/optional", Some(&plain), 200, None),
        ("GET", "/optional", Some(&expired), 401, Some("invalid_token")),
        ("GET", "/admin", None, 401, Some("missing_token")),
        ("GET", "/admin", Some(&plain), 403, Some("insufficient_scope")),
        ("GET", "/admin/users", Some(&admin), 200, None),
        ("GET", "/admin", Some(&kc_admin), 200, None),
        ("GET", "/reports", Some(&reports), 200, None),
        ("GET", "/reports", Some(&admin), 200, None),
        ("GET", "/reports", Some(&plain), 403, Some("insufficient_scope")),
        ("GET", "/tenant", Some(&acme), 200, None),
        ("GET", "/tenant", Some(&acme_in_array), 200, None),
        ("GET", "/tenant", Some(&globex), 403, Some("insufficient_scope")),
        ("GET", "/ops", Some(&ops), 200, None),
        ("GET", "/ops", Some(&kc_admin), 403, Some("insufficient_scope")),
        ("POST", "/write", Some(&writer), 200, None),
        ("POST", "/write", Some(&plain), 403, Some("insufficient_scope")),
        ("GET", "/write", Some(&plain), 200, None),
        ("GET", "/keycloak-only", Some(&ops), 200, None),
        ("GET", "/keycloak-only", Some(&admin), 403, Some("insufficient_scope")),
        ("GET", "/unlisted", Some(&plain), 200, None),
        ("GET", "/unlisted", None, 401, Some("missing_token")),
        ("GET", "/publicity", None, 401, Some("missing_token")),
    ];
    for (method, path, token, status, error) in cases {
        let (got, _, body) = w.send(method, path, token).await;
        assert_eq!(got, status, "{method} {path}: {body}");
        assert_eq!(body.get("error").and_then(Value::as_str), error, "{method} {path}: {body}");
    }
}

#[tokio::test]
async fn refusals_for_scopes_say_what_the_route_needs() {
    let w = world().await;
    let (status, headers, body) = w.send("GET", "/admin", Some(&w.auth0(&["read"], json!({})))).await;
    assert_eq!(status, 403);
    assert_eq!(
        headers["www-authenticate"],
        "Bearer realm=\"jwtgate\", error=\"insufficient_scope\", error_description=\"token lacks a scope this route requires\", scope=\"admin:all\""
    );
    assert_eq!(
        body,
        json!({"error": "insufficient_scope", "error_description": "token lacks a scope this route requires"})
    );
    let (_, headers, _) = w.send("GET", "/reports", Some(&w.auth0(&[], json!({})))).await;
    assert!(headers["www-authenticate"].to_str().unwrap().ends_with("scope=\"reports:read admin:all\""));
    let (_, _, body) = w.send("GET", "/keycloak-only", Some(&w.auth0(&[], json!({})))).await;
    assert_eq!(body["error_description"], "token issuer is not accepted on this route");
    assert_eq!(w.upstream.count(), 0);
}

#[tokio::test]
async fn scopes_come_from_every_claim_shape() {
    let w = world().await;
    for scopes in [json!({"scope": "read admin:all"}), json!({"scp": ["admin:all"]}), json!({"scp": "admin:all other"})]
    {
        let token = w.auth0(&[], scopes.clone());
        assert_eq!(w.send("GET", "/admin", Some(&token)).await.0, 200, "{scopes}");
    }
}

#[tokio::test]
async fn cors_preflights_pass_only_where_allowed() {
    let w = world().await;
    let preflight = |path: &str| {
        client()
            .request(reqwest::Method::OPTIONS, w.gateway.url(path))
            .header("origin", "https://app.example")
            .header("access-control-request-method", "POST")
    };
    assert_eq!(preflight("/cors/items").send().await.unwrap().status(), 200);
    assert_eq!(preflight("/admin").send().await.unwrap().status(), 401);
    let no_origin = client().request(reqwest::Method::OPTIONS, w.gateway.url("/cors")).send().await.unwrap();
    assert_eq!(no_origin.status(), 401);
}

#[tokio::test]
async fn identity_headers_are_ours_alone() {
    let w = world().await;
    let spoof = |request: reqwest::RequestBuilder| {
        request
            .header("x-auth-subject", "admin")
            .header("X-Auth-Roles", "admin")
            .header("x-auth-claims", "e30")
            .header("x-auth-level", "99")
    };
    // Public route: stripped, nothing added.
    let response = spoof(client().get(w.gateway.url("/public"))).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = w.upstream.last();
    for name in ["x-auth-subject", "x-auth-roles", "x-auth-claims", "x-auth-level"] {
        assert!(!seen.headers.contains_key(name), "{name} reached the upstream from a public request");
    }
    // Optional route without a token: same.
    spoof(client().get(w.gateway.url("/optional"))).send().await.unwrap();
    assert!(!w.upstream.last().headers.contains_key("x-auth-subject"));

    // Protected route: only the verified values, once each.
    let token = w.keycloak(&["ops", "dev"]);
    let response = spoof(client().get(w.gateway.url("/ops"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = w.upstream.last();
    let values =
        |name: &str| seen.headers.get_all(name).iter().map(|v| v.to_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(values("x-auth-subject"), ["user-1"]);
    assert_eq!(values("x-auth-roles"), ["ops,dev"]);
    assert!(values("x-auth-level").is_empty(), "absent claims add no header");
    let payload = token.split('.').nth(1).unwrap();
    assert_eq!(values("x-auth-claims"), [payload]);
}

#[tokio::test]
async fn claim_values_that_are_not_header_values_are_left_out() {
    let w = world().await;
    let token = w.auth0(&[], json!({"sub": "evil\r\nX-Admin: 1", "level": {"n": [1, 2]}, "scope": "a b"}));
    let (status, _, _) = w.send("GET", "/unlisted", Some(&token)).await;
    assert_eq!(status, 200);
    let seen = w.upstream.last();
    assert!(!seen.headers.contains_key("x-auth-subject"));
    assert!(!seen.headers.contains_key("x-admin"));
    assert_eq!(seen.headers["x-auth-level"], r#"{"n":[1,2]}"#);
    assert_eq!(seen.headers["x-auth-scope"], "a b");
}

/// Sends `path` verbatim over a raw socket (no client-side normalisation).
async fn raw_status(w: &World, path: &str, token: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(w.gateway.addr).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).lines().next().unwrap_or("").to_owned()
}

#[tokio::test]
async fn path_tricks_never_reach_admin_without_the_scope() {
    let w = world().await;
    let plain = w.auth0(&[], json!({}));
    let tricks = [
        "/admin",
        "/admin/",
        "//admin",
        "/./admin",
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2e/admin",
        "/public/.%2e/admin",
        "/public/..%2fadmin",
        "/public/%2e%2e%2fadmin",
        "/public/..%5cadmin",
        "/public/..;/admin",
        "/public;/../admin",
        "/admin;jsessionid=x",
        "/admin;/users",
        "/%61dmin",
        "/%61%64%6D%69%6E/users",
        "/public/%252e%252e/admin",
        "/public/%c0%ae%c0%ae/admin",
        "/public/%e0%80%ae%e0%80%ae/admin",
        "/public\\..\\admin",
        "/public/%00/../admin",
        "/public/../../admin",
        "/admin#fragment",
    ];
    for path in tricks {
        let status = raw_status(&w, path, &plain).await;
        assert!(!status.contains(" 200 "), "{path}: {status}");
    }
    let seen: Vec<String> = w.upstream.seen.lock().unwrap().iter().map(|s| s.uri.clone()).collect();
    assert!(seen.iter().all(|uri| !uri.starts_with("/admin")), "the upstream saw {seen:?}");

    // The same tricks from a public route without any token fare no better.
    let (status, _, _) = w.send("GET", "/public/%2e%2e/admin", None).await;
    assert_eq!(status, 401);
    // And with the scope, the normalised form is what arrives.
    let admin = w.auth0(&["admin:all"], json!({}));
    assert!(raw_status(&w, "/public/%2e%2e/%61dmin//users/.", &admin).await.contains(" 200 "));
    assert_eq!(w.upstream.last().uri, "/admin/users/");
}
