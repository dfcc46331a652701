//! The key lifecycle: start-up, rotation, unknown-kid refetch limits,
//! outages, conditional requests, files, and refused documents.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::*;
use futures_util::future::join_all;
use jwtgate::Config;
use jwtgate::keys::{Fetcher, IssuerKeys};
use serde_json::json;

async fn status(gateway: &TestGateway, token: &str) -> u16 {
    get(&gateway.url("/"), Some(token)).await.0
}

#[tokio::test]
async fn rotated_keys_are_picked_up_by_one_refetch_shared_by_waiting_requests() {
    let (old, new) = (SigningKey::rsa("2026-01"), SigningKey::rsa("2026-02"));
    let idp = TestIdp::start(&[&old]).await;
    let upstream = TestUpstream::start().await;
    let gateway = TestGateway::for_idp(&idp, &upstream, "min_refresh_interval = \"200ms\"").await;
    let claims = claims(&idp.issuer, "api");
    assert_eq!(status(&gateway, &old.mint(&claims)).await, 200);
    assert_eq!(idp.fetches(), 1);

    idp.set_keys(&[&old, &new]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let token = new.mint(&claims);
    let answers = join_all((0..20).map(|_| status(&gateway, &token))).await;
    assert!(answers.iter().all(|&s| s == 200), "{answers:?}");
    assert_eq!(idp.fetches(), 2, "twenty requests with the new kid shared one refetch");
    assert_eq!(status(&gateway, &old.mint(&claims)).await, 200, "the old key still works");
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_at_most_once_per_min_refresh_interval() {
    let known = SigningKey::rsa("known");
    let idp = TestIdp::start(&[&known]).await;
    let upstream = TestUpstream::start().await;
    let gateway = TestGateway::for_idp(&idp, &upstream, "min_refresh_interval = \"2s\"").await;
    let claims = claims(&idp.issuer, "api");
    let strangers: Vec<String> = (0..30).map(|i| SigningKey::p256(&format!("unknown-{i}")).mint(&claims)).collect();

    // Right after start-up the last fetch is recent: refused without a fetch.
    let url = gateway.url("/");
    let answers = join_all(strangers.iter().map(|t| get(&url, Some(t)))).await;
    for answer in &answers {
        assert_refused(answer, 401, "invalid_token", "unknown signing key");
    }
    assert_eq!(idp.fetches(), 1);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    for _ in 0..3 {
        let answers = join_all(strangers.iter().map(|t| status(&gateway, t))).await;
        assert!(answers.iter().all(|&s| s == 401));
    }
    assert_eq!(idp.fetches(), 2, "ninety unknown-kid requests in one interval: one refetch");

    tokio::time::sleep(Duration::from_millis(2100)).await;
    join_all(strangers.iter().map(|t| status(&gateway, t))).await;
    assert_eq!(idp.fetches(), 3, "the next interval allows one more");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_jwks_server_is_down() {
    let key = SigningKey::ed25519("ed");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let extra = "refresh_interval = \"100ms\"\nmin_refresh_interval = \"50ms\"";
    let gateway = TestGateway::for_idp(&idp, &upstream, extra).await;
    idp.set_down(true);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(status(&gateway, &key.mint(&claims(&idp.issuer, "api"))).await, 200);
    // An unknown kid during the outage is refused, not an error page.
    let stranger = SigningKey::ed25519("new").mint(&claims(&idp.issuer, "api"));
    assert_eq!(status(&gateway, &stranger).await, 401);
}

#[tokio::test]
async fn no_keys_yet_is_503_with_retry_after_until_they_load() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    idp.set_down(true);
    let upstream = TestUpstream::start().await;
    let gateway = TestGateway::start(&toml(&upstream.url(), &idp.issuer).text()).await;
    let token = key.mint(&claims(&idp.issuer, "api"));
    let answer = get(&gateway.url("/"), Some(&token)).await;
    assert_refused(
        &answer,
        503,
        "temporarily_unavailable",
        "signing keys for this issuer are not loaded yet; retry shortly",
    );
    assert_eq!(answer.1["retry-after"], "5");
    // Tokens of other issuers are still plain 401s.
    let other = key.mint(&claims("https://elsewhere.example/", "api"));
    assert_eq!(get(&gateway.url("/"), Some(&other)).await.0, 401);

    idp.set_down(false);
    gateway.wait_for_keys().await;
    assert_eq!(status(&gateway, &token).await, 200);
}

#[tokio::test]
async fn etag_and_max_age_are_honoured() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    idp.state.etags.store(true, Ordering::SeqCst);
    *idp.state.cache_control.lock().unwrap() = Some("public, max-age=0".into());
    let upstream = TestUpstream::start().await;
    // max-age=0 shortens the 10 minute refresh, but not below 150 ms.
    let gateway = TestGateway::for_idp(&idp, &upstream, "min_refresh_interval = \"150ms\"").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let fetches = idp.fetches();
    // Without max-age there would be one fetch (refresh_interval is 10 min);
    // with it, one per 150 ms at most.
    assert!((2..=6).contains(&fetches), "{fetches} fetches in ~700 ms at one per 150 ms");
    assert_eq!(idp.state.not_modified.load(Ordering::SeqCst), fetches - 1, "every refresh after the first was a 304");
    assert_eq!(status(&gateway, &key.mint(&claims(&idp.issuer, "api"))).await, 200);
}

#[tokio::test]
async fn a_jwks_file_is_reread_when_it_changes() {
    let (first, second) = (SigningKey::rsa("one"), SigningKey::ed25519("two"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    std::fs::write(&path, json!({"keys": [first.jwk()]}).to_string()).unwrap();
    let upstream = TestUpstream::start().await;
    let issuer = "https://issuer.example/";
    let toml = format!(
        "[upstream]\nurl = \"{}\"\n[[issuers]]\nissuer = \"{issuer}\"\naudiences = [\"api\"]\n\
         jwks_file = \"{}\"\nalgorithms = [\"RS256\", \"EdDSA\"]\nmin_refresh_interval = \"0s\"\n",
        upstream.url(),
        path.display()
    );
    let gateway = TestGateway::start(&toml).await;
    gateway.wait_for_keys().await;
    assert_eq!(status(&gateway, &first.mint(&claims(issuer, "api"))).await, 200);
    assert_eq!(status(&gateway, &second.mint(&claims(issuer, "api"))).await, 401);

    std::fs::write(&path, json!({"keys": [first.jwk(), second.jwk()]}).to_string()).unwrap();
    let mut ok = false;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if status(&gateway, &second.mint(&claims(issuer, "api"))).await == 200 {
            ok = true;
            break;
        }
    }
    assert!(ok, "the new key in the file was not picked up within 3 s");
}

async fn fetch_error(issuer: &str) -> String {
    let toml =
        format!("[upstream]\nurl = \"http://127.0.0.1:1\"\n[[issuers]]\nissuer = \"{issuer}\"\naudiences = [\"a\"]\n");
    let config = Config::parse(&toml, "t.toml", std::path::Path::new("."), &|_| None).unwrap();
    let keys = IssuerKeys::new(&config.issuers[0], Fetcher::new().unwrap());
    let error = keys.fetch().await.expect_err("the fetch should fail").to_string();
    assert!(!keys.has_keys());
    error
}

#[tokio::test]
async fn discovery_must_speak_for_the_configured_issuer() {
    let idp = TestIdp::start(&[&SigningKey::p256("k")]).await;
    let without_slash = idp.issuer.trim_end_matches('/').to_string();
    let error = fetch_error(&without_slash).await;
    assert!(error.contains("names the issuer"), "{error}");
}

#[tokio::test]
async fn oversized_or_keyless_documents_are_refused() {
    let idp = TestIdp::start(&[&SigningKey::p256("k")]).await;
    *idp.state.jwks.lock().unwrap() = json!({"keys": [], "padding": "x".repeat(1024 * 1024)});
    let error = fetch_error(&idp.issuer).await;
    assert!(error.contains("larger than 1048576 bytes"), "{error}");

    *idp.state.jwks.lock().unwrap() = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
    let error = fetch_error(&idp.issuer).await;
    assert!(error.contains("no usable signing keys"), "{error}");
}

/// Issue 19, part 5: an issuer's keys served over https under a private CA
/// are fetched when the issuer names that CA in `ca_file` (by the gateway
/// and by `check --online`), and not trusted without it.
#[tokio::test]
async fn an_issuers_ca_file_trusts_a_private_ca_for_its_key_fetches() {
    let ca = crate::support::certs::TestCa::new("jwtgate test internal CA");
    let key = SigningKey::rsa("k");
    let jwks = json!({"keys": [key.jwk()]});
    let server_tls = ca.server().server_config(None);
    let (addr, _task) = crate::support::http::serve_maybe_tls(
        move |_request| {
            let jwks = jwks.clone();
            async move { json_response(200, &jwks) }
        },
        Some(server_tls),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("internal-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let upstream = TestUpstream::start().await;
    let issuer = "https://idp.internal.example/";
    let jwks_url = format!("https://127.0.0.1:{}/keys", addr.port());
    let token = key.mint(&claims(issuer, "api"));

    let trusting = toml(&upstream.url(), issuer)
        .issuer(&format!("jwks_url = \"{jwks_url}\"\nca_file = \"{}\"\n", ca_file.display()))
        .text();
    let gateway = TestGateway::start(&trusting).await;
    gateway.wait_for_keys().await;
    assert_eq!(status(&gateway, &token).await, 200);
    let config = Config::parse(&trusting, "t.toml", dir.path(), &|_| None).unwrap();
    let (report, found) = jwtgate::check::online(&config).await;
    assert_eq!(found, jwtgate::check::Online::Usable, "{report}");

    let system_roots_only = toml(&upstream.url(), issuer).issuer(&format!("jwks_url = \"{jwks_url}\"\n")).text();
    let gateway = TestGateway::start(&system_roots_only).await;
    let answer = get(&gateway.url("/"), Some(&token)).await;
    assert_eq!(answer.0, 503, "no keys without the CA: {answer:?}");
    let config = Config::parse(&system_roots_only, "t.toml", dir.path(), &|_| None).unwrap();
    let (report, found) = jwtgate::check::online(&config).await;
    assert_eq!(found, jwtgate::check::Online::Unreachable, "{report}");
    assert!(report.contains("not trusted"), "{report}");
}
