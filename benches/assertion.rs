//! `[headers] assertion`: the cost of signing one (ES256, EdDSA), and what
//! a request with a cached token pays when its assertion is reused, as the
//! difference between judging it with and without an assertion configured.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;
use http::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use jwtgate::assertion::Signer;
use jwtgate::config::AssertionAlg;
use jwtgate::gateway::Asked;
use jwtgate::{Config, Gateway};
use serde_json::json;

const AT: u64 = 1_800_000_000;
const ISSUER: &str = "https://bench.jwtgate.local/";

fn pem(der: &[u8]) -> String {
    format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", STANDARD.encode(der))
}

fn assertion(c: &mut Criterion) {
    let mut group = c.benchmark_group("assertion");
    let rng = SystemRandom::new();
    let p256 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let ed = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let claims = json!({"sub": "user-12345", "scope": "read write", "iss": "https://api.example.com",
        "aud": "http://backend:8080", "iat": AT, "exp": AT + 60});
    let claims = claims.as_object().unwrap();
    for (der, alg) in [(p256.as_ref(), AssertionAlg::Es256), (ed.as_ref(), AssertionAlg::EdDsa)] {
        let signer = Signer::from_pkcs8(der, alg).unwrap();
        group.bench_function(format!("sign one ({})", alg.name()), |b| {
            b.iter(|| signer.sign(black_box(claims)).unwrap())
        });
    }

    // A gateway judging one cached EdDSA token, with and without an assertion.
    let issuer_key = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(issuer_key.as_ref()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    std::fs::write(
        dir.path().join("jwks.json"),
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": x}]}).to_string(),
    )
    .unwrap();
    std::fs::write(dir.path().join("assertion-key.pem"), pem(p256.as_ref())).unwrap();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","kid":"k"}"#);
    let payload = json!({"iss": ISSUER, "aud": "bench", "sub": "user-12345", "scope": "read write",
        "iat": AT - 60, "exp": AT + 3600});
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload.to_string()));
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(pair.sign(input.as_bytes())));
    let base = format!(
        "[upstream]\nurl = \"http://127.0.0.1:9\"\n[[issuers]]\nissuer = \"{ISSUER}\"\naudiences = [\"bench\"]\n\
         algorithms = [\"EdDSA\"]\njwks_file = \"jwks.json\"\n"
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Building a gateway starts its key refreshers: inside the runtime.
    let _inside = runtime.enter();
    let variants = [
        ("cached token, no assertion", base.clone()),
        (
            "cached token, assertion reused",
            format!(
                "{base}[headers]\nassertion = {{ key_file = \"assertion-key.pem\", claims = [\"sub\", \"scope\"] }}\n"
            ),
        ),
    ];
    for (name, text) in variants {
        let config = Config::parse(&text, "bench.toml", dir.path(), &|_| None).unwrap();
        let gateway = Gateway::new(&config).unwrap();
        runtime.block_on(async {
            for keys in gateway.issuer_keys() {
                if let jwtgate::keys::IssuerStore::Shared(keys) = keys {
                    keys.fetch().await.unwrap();
                }
            }
        });
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::try_from(format!("Bearer {token}")).unwrap());
        let judge = || {
            let decision = runtime.block_on(gateway.decide(
                Asked { method: &Method::GET, host: None, path_and_query: "/orders" },
                headers.clone(),
                AT,
                None,
                &mut (),
            ));
            decision.result.unwrap()
        };
        let identity = judge();
        assert_eq!(identity.len(), usize::from(name.contains("reused")), "{name}");
        group.bench_function(name, |b| b.iter(|| black_box(judge())));
    }
    group.finish();
}

criterion_group!(benches, assertion);
criterion_main!(benches);
