//! The verification path, one token at a time on one core: the whole of
//! `Authenticator::verify` (parse, issuer, key lookup, signature, claims)
//! per algorithm, a verified-token cache hit, the parts on their own, and
//! `jsonwebtoken::decode` with the same key for reference.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../tests/it/support/keys.rs"]
mod keys;

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use jwtgate::auth::{Authenticator, ClaimPlan};
use jwtgate::keys::{Fetcher, IssuerKeys};
use keys::{SigningKey, claims};
use serde_json::json;

const ISSUER: &str = "https://issuer.example/";

fn verification(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (rsa, ec, ed) = (SigningKey::rsa("rsa"), SigningKey::p256("ec"), SigningKey::ed25519("ed"));
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [rsa.jwk(), ec.jwk(), ed.jwk()]}).to_string()).unwrap();
    let toml = format!(
        "[upstream]\nurl = \"http://127.0.0.1:9\"\n[[issuers]]\nissuer = \"{ISSUER}\"\naudiences = [\"api\"]\n\
         jwks_file = \"{}\"\nalgorithms = [\"RS256\", \"ES256\", \"EdDSA\"]\n",
        jwks.display()
    );
    let config = jwtgate::Config::parse(&toml, "bench.toml", Path::new("."), &|_| None).unwrap();
    let store = Arc::new(IssuerKeys::new(&config.issuers[0], Fetcher::new().unwrap()));
    runtime.block_on(store.fetch()).unwrap();
    let store = jwtgate::keys::IssuerStore::Shared(store);
    let metrics = Arc::new(jwtgate::metrics::Metrics::default());
    let depth = config.limits.max_json_depth;
    let auth = Authenticator::new(&config.issuers, std::slice::from_ref(&store), None, ClaimPlan::default(), depth);
    let cached = Authenticator::new(
        &config.issuers,
        &[store],
        jwtgate::auth::cache::TokenCache::new(10_000, Arc::clone(&metrics)),
        ClaimPlan::default(),
        depth,
    );

    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Elements(1));
    for key in [&rsa, &ec, &ed] {
        let token = key.mint(&claims(ISSUER, "api"));
        runtime.block_on(auth.verify(&token)).unwrap();
        group.bench_function(key.alg(), |b| b.iter(|| runtime.block_on(auth.verify(black_box(&token))).unwrap()));
    }
    // A token seen before: hash, cache lookup, expiry and key checks.
    let token = rsa.mint(&claims(ISSUER, "api"));
    runtime.block_on(cached.verify(&token)).unwrap();
    group.bench_function("RS256 cache hit", |b| b.iter(|| runtime.block_on(cached.verify(black_box(&token))).unwrap()));

    // The parts: structural parsing alone, and the signature check alone.
    let (set, _) = jwtgate::keys::KeySet::from_jwks(
        json!({"keys": [rsa.jwk(), ec.jwk(), ed.jwk()]}).to_string().as_bytes(),
        100,
        jwtgate::keys::set::KeyPurpose::Tokens,
    )
    .unwrap();
    for key in [&rsa, &ec, &ed] {
        let token = key.mint(&claims(ISSUER, "api"));
        let parsed = jwtgate::auth::token::parse(&token, depth).unwrap();
        let verifying = set.by_kid(&key.kid).unwrap();
        assert!(verifying.verify(parsed.alg, parsed.signing_input.as_bytes(), parsed.signature));
        group.bench_function(format!("{} signature only", key.alg()), |b| {
            b.iter(|| verifying.verify(parsed.alg, black_box(parsed.signing_input.as_bytes()), parsed.signature))
        });
    }
    let token = rsa.mint(&claims(ISSUER, "api"));
    group.bench_function("parse only", |b| b.iter(|| jwtgate::auth::token::parse(black_box(&token), depth).unwrap()));

    // Reference: jsonwebtoken::decode with a key built once.
    let token = rsa.mint(&claims(ISSUER, "api"));
    let jwk: Jwk = serde_json::from_value(rsa.jwk()).unwrap();
    let key = DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["api"]);
    validation.set_issuer(&[ISSUER]);
    group.bench_function("RS256 jsonwebtoken::decode", |b| {
        b.iter(|| jsonwebtoken::decode::<serde_json::Value>(black_box(&token), &key, &validation).unwrap())
    });
    group.finish();
}

criterion_group!(benches, verification);
criterion_main!(benches);
