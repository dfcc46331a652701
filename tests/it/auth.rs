//! Token verification through the running gateway: every row of the
//! contract's refusal table for tokens, and the classic JWT attacks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::*;
use serde_json::json;

struct World {
    rsa: SigningKey,
    ec: SigningKey,
    ed: SigningKey,
    idp: TestIdp,
    upstream: TestUpstream,
    gateway: TestGateway,
}

async fn world() -> World {
    let (rsa, ec, ed) = (SigningKey::rsa("rsa-1"), SigningKey::p256("ec-1"), SigningKey::ed25519("ed-1"));
    let idp = TestIdp::start(&[&rsa, &ec, &ed]).await;
    let upstream = TestUpstream::start().await;
    let gateway = TestGateway::for_idp(&idp, &upstream, "").await;
    World { rsa, ec, ed, idp, upstream, gateway }
}

impl World {
    fn claims(&self) -> serde_json::Value {
        claims(&self.idp.issuer, "api")
    }

    async fn get(&self, token: &str) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        get(&self.gateway.url("/orders"), Some(token)).await
    }

    async fn assert_invalid(&self, token: &str, description: &str) {
        let answer = self.get(token).await;
        assert_refused(&answer, 401, "invalid_token", description);
        let www = answer.1["www-authenticate"].to_str().unwrap();
        assert_eq!(
            www,
            format!("Bearer realm=\"jwtgate\", error=\"invalid_token\", error_description=\"{description}\"")
        );
    }
}

#[tokio::test]
async fn a_valid_token_reaches_the_upstream_for_every_key_type() {
    let w = world().await;
    for key in [&w.rsa, &w.ec, &w.ed] {
        let (status, _, body) = w.get(&key.mint(&w.claims())).await;
        assert_eq!(status, 200, "{} token: {body}", key.alg());
        assert_eq!(body["message"], "hello from upstream");
    }
    assert_eq!(w.upstream.count(), 3);
}

#[tokio::test]
async fn missing_and_malformed_credentials() {
    let w = world().await;
    let url = w.gateway.url("/orders");

    let answer = get(&url, None).await;
    assert_refused(&answer, 401, "missing_token", "this route needs a bearer token in the Authorization header");
    assert_eq!(answer.1["www-authenticate"], "Bearer realm=\"jwtgate\"");

    let basic = client().get(&url).header("authorization", "Basic dXNlcjpwYXNz").send().await.unwrap();
    assert_eq!(basic.status(), 401);
    assert_eq!(basic.headers()["www-authenticate"], "Bearer realm=\"jwtgate\"");

    let token = w.rsa.mint(&w.claims());
    let twice = client()
        .get(&url)
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), 400);
    assert!(twice.headers()["www-authenticate"].to_str().unwrap().contains("error=\"invalid_request\""));
    let body: serde_json::Value = serde_json::from_slice(&twice.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"], "invalid_request");

    for value in ["Bearer", "Bearer ", "Bearer a b", "Bearer {json}"] {
        let response = client().get(&url).header("authorization", value).send().await.unwrap();
        assert_eq!(response.status(), 400, "{value:?}");
    }
    assert_eq!(w.upstream.count(), 0);
}

#[tokio::test]
async fn time_claims() {
    let w = world().await;
    let now = now();
    let with = |patch: serde_json::Value| {
        let mut c = w.claims();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        w.rsa.mint(&c)
    };
    w.assert_invalid(&with(json!({"exp": now - 60})), "token expired").await;
    assert_eq!(w.get(&with(json!({"exp": now - 10}))).await.0, 200, "expired 10 s ago is inside the 30 s leeway");
    w.assert_invalid(&with(json!({"nbf": now + 120})), "token is not valid yet (nbf is in the future)").await;
    assert_eq!(w.get(&with(json!({"nbf": now + 10}))).await.0, 200, "nbf inside leeway");
    w.assert_invalid(&with(json!({"exp": null})), "token has no exp claim").await;
    w.assert_invalid(
        &with(json!({"exp": "tomorrow"})),
        "token exp, nbf or iat is not a number of seconds within the signed 64-bit range",
    )
    .await;
}

#[tokio::test]
async fn issuer_and_audience() {
    let w = world().await;
    let mut c = w.claims();
    c["iss"] = json!("https://evil.example/");
    w.assert_invalid(&w.rsa.mint(&c), "token issuer is not accepted").await;
    c["iss"] = json!(w.idp.issuer.trim_end_matches('/'));
    w.assert_invalid(&w.rsa.mint(&c), "token issuer is not accepted").await;

    let mut c = w.claims();
    c["aud"] = json!("other-api");
    w.assert_invalid(&w.rsa.mint(&c), "audience not accepted").await;
    c["aud"] = json!(["other-api", "api"]);
    assert_eq!(w.get(&w.rsa.mint(&c)).await.0, 200, "aud array containing an accepted audience");
    c.as_object_mut().unwrap().remove("aud");
    w.assert_invalid(&w.rsa.mint(&c), "token has no aud claim").await;
}

#[tokio::test]
async fn forged_and_confused_tokens() {
    let w = world().await;
    let good = w.rsa.mint(&w.claims());
    let (header, rest) = good.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();

    // Tampered payload: the signature no longer covers it.
    let mut elevated = w.claims();
    elevated["sub"] = json!("admin");
    let tampered = format!("{header}.{}.{signature}", b64(elevated.to_string()));
    w.assert_invalid(&tampered, "token signature is invalid").await;

    // Stripped signature.
    let stripped = format!("{header}.{}.", b64(w.claims().to_string()));
    w.assert_invalid(&stripped, "token is not a JWT (expected three base64url segments)").await;

    // alg none, any case, no signature.
    for alg in ["none", "None", "NONE"] {
        let header = b64(json!({"alg": alg, "kid": "rsa-1"}).to_string());
        let token = format!("{header}.{}.AAAA", b64(w.claims().to_string()));
        w.assert_invalid(&token, "token algorithm is not allowed for this issuer").await;
    }

    // HS256 with the RSA public key as the HMAC secret (algorithm confusion).
    let forged = hs256(&w.rsa.public_bytes(), &json!({"alg": "HS256", "kid": "rsa-1"}), &w.claims());
    w.assert_invalid(&forged, "token algorithm is not allowed for this issuer").await;
    let jwk_secret = w.rsa.jwk().to_string();
    let forged = hs256(jwk_secret.as_bytes(), &json!({"alg": "HS256"}), &w.claims());
    w.assert_invalid(&forged, "token algorithm is not allowed for this issuer").await;

    // An allowed algorithm that does not fit the named key.
    let token = w.ec.sign(&json!({"alg": "ES256", "kid": "rsa-1"}), &w.claims());
    w.assert_invalid(&token, "token algorithm does not match its signing key").await;

    // A key the issuer never published.
    let stranger = SigningKey::rsa("rsa-1");
    w.assert_invalid(&stranger.mint(&w.claims()), "token signature is invalid").await;

    // Unknown critical header; keys offered in the header are never used.
    let token = w.rsa.sign(&json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"], "exp": 1}), &w.claims());
    w.assert_invalid(&token, "token has critical header parameters that are not supported").await;
    let attacker = SigningKey::rsa("attacker");
    let token = attacker.sign(&json!({"alg": "RS256", "jwk": attacker.jwk()}), &w.claims());
    w.assert_invalid(&token, "token signature is invalid").await;

    // Not a JWT at all.
    w.assert_invalid("abc.def", "token is not a JWT (expected three base64url segments)").await;
    assert_eq!(w.upstream.count(), 0, "no forged token reached the upstream");
}

#[tokio::test]
async fn tokens_without_kid_are_tried_against_matching_keys() {
    let w = world().await;
    for key in [&w.rsa, &w.ec, &w.ed] {
        let token = key.sign(&json!({"alg": key.alg()}), &w.claims());
        assert_eq!(w.get(&token).await.0, 200, "{} without kid", key.alg());
    }
    let stranger = SigningKey::p256("x");
    let token = stranger.sign(&json!({"alg": "ES256"}), &w.claims());
    w.assert_invalid(&token, "token signature is invalid").await;
}

#[tokio::test]
async fn algorithms_not_configured_are_refused() {
    let rsa = SigningKey::rsa("rsa-1");
    let ec = SigningKey::p256("ec-1");
    let idp = TestIdp::start(&[&rsa, &ec]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), &idp.issuer).start().await;
    let claims = claims(&idp.issuer, "api");
    let answer = get(&gateway.url("/"), Some(&ec.mint(&claims))).await;
    assert_refused(&answer, 401, "invalid_token", "token algorithm is not allowed for this issuer");
    assert_eq!(get(&gateway.url("/"), Some(&rsa.mint(&claims))).await.0, 200, "RS256 is the default");
}

#[tokio::test]
async fn oversized_tokens_are_refused_before_decoding() {
    let rsa = SigningKey::rsa("rsa-1");
    let idp = TestIdp::start(&[&rsa]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), &idp.issuer).server("max_header_bytes = 65536").start().await;
    let answer = get(&gateway.url("/"), Some(&"a".repeat(16 * 1024 + 1))).await;
    assert_refused(&answer, 401, "invalid_token", "token is larger than this gateway accepts (limits.max_token_bytes)");

    // With the default 16 KiB head limit such a request never gets that far.
    let small = toml(&upstream.url(), &idp.issuer).start().await;
    let answer = get(&small.url("/"), Some(&"a".repeat(17 * 1024))).await;
    assert_eq!(answer.0, 431);
    assert_eq!(upstream.count(), 0);
}
