//! The verified-token cache: hits skip verification but never outlive the
//! token or its key, and never skip the route's checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use crate::support::*;
use serde_json::json;

async fn cache_counts(gateway: &TestGateway) -> HashMap<&'static str, f64> {
    let text = client().get(gateway.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    let value = |series: &str| {
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse::<f64>().ok())).unwrap_or(0.0)
    };
    HashMap::from([
        ("hit", value("jwtgate_token_cache_lookups_total{result=\"hit\"}")),
        ("miss", value("jwtgate_token_cache_lookups_total{result=\"miss\"}")),
        ("evicted", value("jwtgate_token_cache_evictions_total")),
    ])
}

#[tokio::test]
async fn a_repeated_token_is_served_from_the_cache_and_still_routed() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), &idp.issuer)
        .issuer("\n[[routes]]\npath = \"/admin\"\nscopes = [\"admin\"]\n")
        .start()
        .await;
    let token = key.mint(&claims(&idp.issuer, "api"));
    for _ in 0..3 {
        assert_eq!(get(&gateway.url("/"), Some(&token)).await.0, 200);
    }
    let counts = cache_counts(&gateway).await;
    assert_eq!((counts["miss"], counts["hit"]), (1.0, 2.0));
    // Cached or not, the route's demands apply.
    for _ in 0..2 {
        assert_eq!(get(&gateway.url("/admin"), Some(&token)).await.0, 403);
    }
    assert_eq!(cache_counts(&gateway).await["hit"], 4.0);
    assert_eq!(upstream.count(), 3);
}

#[tokio::test]
async fn a_cached_token_expires_on_time() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), &idp.issuer).issuer("leeway = \"0s\"").start().await;
    let mut c = claims(&idp.issuer, "api");
    c["exp"] = json!(now() + 2);
    let token = key.mint(&c);
    assert_eq!(get(&gateway.url("/"), Some(&token)).await.0, 200);
    assert_eq!(get(&gateway.url("/"), Some(&token)).await.0, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let answer = get(&gateway.url("/"), Some(&token)).await;
    assert_refused(&answer, 401, "invalid_token", "token expired");
}

#[tokio::test]
async fn a_cached_token_is_refused_once_its_key_is_withdrawn() {
    let (old, new) = (SigningKey::rsa("old"), SigningKey::rsa("new"));
    let idp = TestIdp::start(&[&old]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), &idp.issuer)
        .issuer("refresh_interval = \"100ms\"\nmin_refresh_interval = \"50ms\"")
        .start()
        .await;
    let token = old.mint(&claims(&idp.issuer, "api"));
    assert_eq!(get(&gateway.url("/"), Some(&token)).await.0, 200);
    assert_eq!(get(&gateway.url("/"), Some(&token)).await.0, 200);
    idp.set_keys(&[&new]);
    // The refresher swaps the keys within ~100 ms; allow for a busy machine.
    let answer = crate::support::get_until_refused(&gateway.url("/"), &token).await;
    assert_refused(&answer, 401, "invalid_token", "unknown signing key");
    assert_eq!(get(&gateway.url("/"), Some(&new.mint(&claims(&idp.issuer, "api")))).await.0, 200);
}

#[tokio::test]
async fn the_cache_is_bounded_and_can_be_turned_off() {
    let key = SigningKey::p256("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let small = toml(&upstream.url(), &idp.issuer)
        .issuer("algorithms = [\"ES256\"]\n\n[cache]\nmax_tokens = 16\n")
        .start()
        .await;
    for i in 0..200 {
        let mut c = claims(&idp.issuer, "api");
        c["jti"] = json!(i);
        assert_eq!(get(&small.url("/"), Some(&key.mint(&c))).await.0, 200);
    }
    let counts = cache_counts(&small).await;
    assert!(counts["evicted"] >= 150.0, "{counts:?}");

    let off = toml(&upstream.url(), &idp.issuer)
        .issuer("algorithms = [\"ES256\"]\n\n[cache]\nmax_tokens = 0\n")
        .start()
        .await;
    let token = key.mint(&claims(&idp.issuer, "api"));
    for _ in 0..3 {
        assert_eq!(get(&off.url("/"), Some(&token)).await.0, 200);
    }
    let counts = cache_counts(&off).await;
    assert_eq!((counts["hit"], counts["miss"]), (0.0, 0.0));
}
