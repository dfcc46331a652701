//! CEL rules (issue 20, part 1): `routes[].allow_if` and `deny_if` over
//! `claims`, `request` and `route`, after the token checks; a false
//! `allow_if` or a true `deny_if` is 403 `insufficient_scope` naming the rule.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::*;
use serde_json::{Value, json};

struct World {
    key: SigningKey,
    idp: TestIdp,
    gateway: TestGateway,
    _upstream: TestUpstream,
}

async fn world() -> World {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), &idp.issuer)
        .issuer(
            "[[routes]]\npath = \"/tenants\"\n\
             allow_if = 'claims.tenant == request.headers[\"x-tenant\"] && request.method in [\"GET\", \"HEAD\"]'\n\
             [[routes]]\npath = \"/open\"\nauth = \"optional\"\n\
             allow_if = 'request.path.startsWith(route) && (has(claims.sub) || request.host == \"public.example\")'\n\
             [[routes]]\npath = \"/\"\ndeny_if = '\"banned\" in claims.roles'\n",
        )
        .start()
        .await;
    World { key, idp, gateway, _upstream: upstream }
}

impl World {
    fn token(&self, extra: Value) -> String {
        let mut claims = claims(&self.idp.issuer, "api");
        for (name, value) in extra.as_object().unwrap() {
            claims[name] = value.clone();
        }
        self.key.mint(&claims)
    }

    async fn send(&self, path: &str, token: Option<&str>, headers: &[(&str, &str)]) -> (u16, String) {
        let mut request = client().get(self.gateway.url(path));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null);
        (status, body["error_description"].as_str().unwrap_or_default().to_string())
    }
}

#[tokio::test]
async fn allow_if_and_deny_if_judge_claims_and_the_request_after_the_token() {
    let w = world().await;
    let acme = w.token(json!({"tenant": "acme", "roles": ["user"]}));
    // True: passes, from the verified-token cache as well.
    for _ in 0..2 {
        assert_eq!(w.send("/tenants/1", Some(&acme), &[("x-tenant", "acme")]).await, (200, String::new()));
    }
    let metrics = w.gateway.metrics_text().await;
    assert!(metrics.contains("jwtgate_token_cache_lookups_total{result=\"hit\"} 1"), "{metrics}");
    assert_eq!(
        w.send("/tenants/1", Some(&acme), &[("x-tenant", "globex")]).await,
        (403, "the route's rule routes[0].allow_if is false".to_string())
    );
    // A header it reads is missing: not evaluated, so refused.
    let (status, said) = w.send("/tenants/1", Some(&acme), &[]).await;
    assert_eq!(status, 403);
    assert!(said.starts_with("the route's rule routes[0].allow_if could not be evaluated"), "{said}");
    // A claim it reads is missing: the same.
    let none = w.token(json!({}));
    assert_eq!(w.send("/tenants/1", Some(&none), &[("x-tenant", "acme")]).await.0, 403);
    // A bad token is refused by the token checks first: 401, not the rule.
    assert_eq!(w.send("/tenants/1", Some("x.y.z"), &[("x-tenant", "acme")]).await.0, 401);

    // deny_if: true refuses; not evaluable (no roles) refuses too.
    let banned = w.token(json!({"roles": ["user", "banned"]}));
    assert_eq!(
        w.send("/orders", Some(&banned), &[]).await,
        (403, "the route's rule routes[2].deny_if is true".to_string())
    );
    assert_eq!(w.send("/orders", Some(&acme), &[]).await.0, 200);
    let (status, said) = w.send("/orders", Some(&none), &[]).await;
    assert!(status == 403 && said.contains("routes[2].deny_if could not be evaluated"), "{said}");

    // Without a token on an optional route: claims is empty.
    assert_eq!(w.send("/open/x", None, &[]).await.0, 403);
    assert_eq!(w.send("/open/x", Some(&acme), &[]).await.0, 200);
    let metrics = w.gateway.metrics_text().await;
    assert!(metrics.contains("reason=\"rule_denied\""), "{metrics}");
}

/// `request.host` is the host as routes read it (lower case, without the
/// port), and `request.path` the canonical path.
#[tokio::test]
async fn a_rule_reads_the_canonical_host_and_path() {
    let w = world().await;
    // The host as routes read it: lower case, without the port.
    let response = client().get(w.gateway.url("/open/%78")).header("host", "PUBLIC.example:8080").send().await.unwrap();
    assert_eq!(response.status(), 200, "request.host is public.example");
    let response = client().get(w.gateway.url("/open/x")).header("host", "public.example.").send().await.unwrap();
    assert_eq!(response.status(), 400, "a host servers read differently is refused where a rule reads it");
}

#[tokio::test]
async fn explain_prints_each_rules_value() {
    let w = world().await;
    let config = jwtgate::config::Config::parse(
        &format!(
            "[upstream]\nurl = \"http://127.0.0.1:9\"\n[[issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\n\
             [[routes]]\npath = \"/\"\nallow_if = 'claims.tenant == \"acme\"'\ndeny_if = '\"banned\" in claims.roles'\n",
            w.idp.issuer
        ),
        "rules.toml",
        std::path::Path::new("."),
        &|_| None,
    )
    .unwrap();
    let options = jwtgate::explain::Options { path: "/orders".into(), ..Default::default() };
    let token = w.token(json!({"tenant": "acme", "roles": ["banned"]}));
    let (report, allowed) = jwtgate::explain::explain(&config, &token, &options).await.unwrap();
    assert!(!allowed, "{report}");
    assert!(report.contains("  rule  allow_if claims.tenant == \"acme\" = true"), "{report}");
    assert!(report.contains("  rule  deny_if \"banned\" in claims.roles = true"), "{report}");
    assert!(report.contains("the route's rule routes[0].deny_if is true"), "{report}");
}

/// A header whose value is not text (obs-text bytes) still reaches the
/// upstream, so a rule must not read it as absent: `"x-debug" in
/// request.headers` and `has(request.headers.debug)` in a `deny_if` were
/// false for `X-Debug: \xff`, and the request went through with it.
#[tokio::test]
async fn a_header_that_is_not_text_is_not_absent_to_a_rule() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), &idp.issuer)
        .issuer(
            "[[routes]]\npath = \"/whole\"\ndeny_if = '\"x-debug\" in request.headers'\n\
             [[routes]]\npath = \"/named\"\ndeny_if = 'has(request.headers.debug)'\n",
        )
        .start()
        .await;
    let token = key.mint(&claims(&idp.issuer, "api"));
    for (path, name) in [("/whole", "x-debug"), ("/named", "debug")] {
        let send = |value: reqwest::header::HeaderValue| {
            client()
                .get(gateway.url(path))
                .header("authorization", format!("Bearer {token}"))
                .header(name, value)
                .send()
        };
        let text = send(reqwest::header::HeaderValue::from_static("1")).await.unwrap();
        assert_eq!(text.status().as_u16(), 403, "{path}: a text value is seen");
        let before = upstream.count();
        let bytes = send(reqwest::header::HeaderValue::from_bytes(b"\xff").unwrap()).await.unwrap();
        assert_eq!(
            (bytes.status().as_u16(), upstream.count()),
            (403, before),
            "{path}: a value that is not text is not absent (the upstream gets it)"
        );
    }
}

/// Red team, not fixed (a design decision for the maintainers): a rule
/// reads a repeated header as its values joined with ", ", but Go's
/// `Header.Get`, and every framework built on it, reads the first. So
/// `deny_if = 'request.headers["x-role"] == "admin"'` is false for
/// `X-Role: admin` + `X-Role: user` ("admin, user"), and the request
/// reaches a backend that reads `admin`.
#[tokio::test]
async fn a_repeated_header_does_not_slip_past_a_deny_if_that_compares_it() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), &idp.issuer)
        .issuer("[[routes]]\npath = \"/\"\ndeny_if = 'request.headers[\"x-role\"] == \"admin\"'\n")
        .start()
        .await;
    let token = key.mint(&claims(&idp.issuer, "api"));
    let send = |values: &'static [&'static str]| {
        let mut request = client().get(gateway.url("/orders")).header("authorization", format!("Bearer {token}"));
        for value in values {
            request = request.header("x-role", *value);
        }
        request.send()
    };
    assert_eq!(send(&["admin"]).await.unwrap().status().as_u16(), 403);
    let before = upstream.count();
    let status = send(&["admin", "user"]).await.unwrap().status().as_u16();
    let seen = (upstream.count() > before).then(|| upstream.last().headers.get("x-role").cloned()).flatten();
    assert_eq!((status, seen), (403, None), "the upstream got X-Role whose first value is admin");
}
