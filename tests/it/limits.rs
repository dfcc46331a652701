//! `[limits]`: every bound on what clients and key servers can make the
//! gateway hold or do can be set, and each one holds where it is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::keys::{SigningKey, claims};
use crate::support::{TestIdp, TestUpstream, assert_refused, get, toml};
use serde_json::json;

#[tokio::test]
async fn token_size_and_nesting_bounds_are_configurable() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), &idp.issuer)
        .issuer("[limits]\nmax_token_bytes = 1024\nmax_json_depth = 3\n")
        .start()
        .await;
    let with = |extra: serde_json::Value| {
        let mut c = claims(&idp.issuer, "api");
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        key.mint(&c)
    };
    // Three levels: the payload, an object, an array.
    let (status, _, _) = get(&gateway.url("/"), Some(&with(json!({"a": {"b": [1]}})))).await;
    assert_eq!(status, 200);
    let answer = get(&gateway.url("/"), Some(&with(json!({"a": {"b": [[1]]}})))).await;
    assert_refused(&answer, 401, "invalid_token", "token payload is not a base64url JSON object");

    let big = with(json!({"pad": "x".repeat(700)}));
    assert!(big.len() > 1024);
    let answer = get(&gateway.url("/"), Some(&big)).await;
    assert_refused(&answer, 401, "invalid_token", "token is larger than this gateway accepts (limits.max_token_bytes)");
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn key_set_bounds_are_configurable() {
    let (k1, k2, k3) = (SigningKey::rsa("k1"), SigningKey::rsa("k2"), SigningKey::rsa("k3"));
    let idp = TestIdp::start(&[&k1, &k2, &k3]).await;
    let upstream = TestUpstream::start().await;

    // Only the first two keys of the set are taken.
    let gateway = toml(&upstream.url(), &idp.issuer).issuer("[limits]\nmax_jwks_keys = 2\n").start().await;
    let (status, _, _) = get(&gateway.url("/"), Some(&k2.mint(&claims(&idp.issuer, "api")))).await;
    assert_eq!(status, 200);
    let answer = get(&gateway.url("/"), Some(&k3.mint(&claims(&idp.issuer, "api")))).await;
    assert_refused(&answer, 401, "invalid_token", "unknown signing key");

    // Three RSA keys are more than 1 KiB of JSON: the set is refused whole.
    let gateway = crate::support::TestGateway::start(
        &toml(&upstream.url(), &idp.issuer).issuer("[limits]\nmax_jwks_bytes = 1024\n").text(),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(gateway.gateway.issuer_keys().iter().all(|k| !k.has_keys()));
    let answer = get(&gateway.url("/"), Some(&k1.mint(&claims(&idp.issuer, "api")))).await;
    assert_eq!(answer.0, 503);
}

#[tokio::test]
async fn http2_stream_limit_is_configurable() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway =
        toml(&upstream.url(), &idp.issuer).issuer("[limits]\nhttp2_max_concurrent_streams = 10\n").start().await;
    assert_eq!(crate::support::h2c_stream_limit(gateway.addr).await, 10);
}
