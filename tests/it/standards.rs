//! RFC 9068 (JWT access tokens: `typ`, lifetime, required claims) and
//! RFC 9728 (protected-resource metadata, and `resource_metadata` in every
//! 401), as clients of those standards see them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::keys::{SigningKey, claims, now};
use crate::support::{TestIdp, TestUpstream, assert_refused, client, get, toml};
use serde_json::{Value, json};

#[tokio::test]
async fn rfc_9068_typ_lifetime_and_required_claims() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), &idp.issuer)
        .issuer("require_typ = \"at+jwt\"\nmax_lifetime = \"1h\"\nrequired_claims = [\"sub\", \"client_id\"]\n")
        .start()
        .await;
    let token = |typ: Option<&str>, extra: Value| {
        let mut header = json!({"alg": "RS256", "kid": "k"});
        if let Some(typ) = typ {
            header["typ"] = json!(typ);
        }
        let mut c = claims(&idp.issuer, "api");
        c.as_object_mut().unwrap().extend([
            ("iat".to_string(), json!(now())),
            ("exp".to_string(), json!(now() + 600)),
            ("sub".to_string(), json!("svc")),
            ("client_id".to_string(), json!("c1")),
        ]);
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        key.sign(&header, &c)
    };
    let url = gateway.url("/");
    for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        assert_eq!(get(&url, Some(&token(Some(typ), json!({})))).await.0, 200, "{typ}");
    }
    for typ in [Some("JWT"), Some("application/jwt"), None] {
        let answer = get(&url, Some(&token(typ, json!({})))).await;
        assert_refused(&answer, 401, "invalid_token", "token type (typ header) is not the one this issuer requires");
    }
    let answer = get(&url, Some(&token(Some("at+jwt"), json!({"exp": now() + 7200})))).await;
    assert_refused(&answer, 401, "invalid_token", "token lifetime (exp - iat) is longer than this issuer allows");
    for missing in ["iat", "client_id", "sub"] {
        let answer = get(&url, Some(&token(Some("at+jwt"), json!({ missing: null })))).await;
        assert_refused(&answer, 401, "invalid_token", "token lacks a claim this issuer requires");
    }
    assert_eq!(upstream.count(), 3);
    // Issue 18: these reasons were counted as `other`.
    let metrics = gateway.metrics_text().await;
    for (reason, count) in [("wrong_type", 3), ("lifetime_too_long", 1), ("missing_claim", 3)] {
        let line = format!("jwtgate_auth_failures_total{{issuer=\"{}\",reason=\"{reason}\"}} {count}\n", idp.issuer);
        assert!(metrics.contains(&line), "{line} missing from:\n{metrics}");
    }
    assert!(!metrics.contains("reason=\"other\""), "{metrics}");
}

#[tokio::test]
async fn rfc_9728_metadata_is_served_and_every_401_points_at_it() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), &idp.issuer)
        .issuer(
            "[resource_metadata]\nresource = \"https://mcp.example.com/mcp\"\n\
             scopes_supported = [\"tools:read\"]\nresource_documentation = \"https://docs.example.com/mcp\"\n",
        )
        .start()
        .await;

    let expected = json!({
        "resource": "https://mcp.example.com/mcp",
        "authorization_servers": [idp.issuer],
        "scopes_supported": ["tools:read"],
        "bearer_methods_supported": ["header"],
        "resource_documentation": "https://docs.example.com/mcp",
    });
    for path in ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"] {
        let response = client().get(gateway.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(body, expected, "{path}");
    }
    assert_eq!(upstream.count(), 0, "served by jwtgate itself");

    let metadata = "resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\"";
    let (status, headers, _) = get(&gateway.url("/mcp"), None).await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], format!("Bearer realm=\"jwtgate\", {metadata}"));
    let (status, headers, _) = get(&gateway.url("/mcp"), Some("a.b.c")).await;
    assert_eq!(status, 401);
    assert!(headers["www-authenticate"].to_str().unwrap().contains(metadata));
}
