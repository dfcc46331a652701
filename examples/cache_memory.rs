//! Heap bytes per verified-token cache entry, counted exactly by a counting
//! global allocator: COUNT distinct RS256 tokens built like `benches/load.sh`'s
//! (see `bench_token.rs`), each judged once by a gateway with load.sh's
//! configuration (then with one that also has route rules and identity
//! headers, and one with a signed assertion), so each ends up cached; the
//! heap that stays live, divided by COUNT.
//!
//!     cargo run --release --example cache_memory [COUNT]

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Method;
use http::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use jwtgate::gateway::Asked;
use jwtgate::{Config, Gateway};
use serde_json::json;

#[global_allocator]
static ALLOCATOR: count_alloc::Counting = count_alloc::Counting;

const ISSUER: &str = "https://bench.jwtgate.local/";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: usize = std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(10_000);
    let key = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| "key generation failed")?;
    let public = RsaPublicKeyComponents::<Vec<u8>>::from(key.public_key());
    let jwks = json!({"keys": [{"kty": "RSA", "kid": "bench", "use": "sig", "alg": "RS256",
        "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e)}]});
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("jwks.json"), jwks.to_string())?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let warm_up = mint(&key, "warm-up", now)?;
    let tokens = (0..count).map(|i| mint(&key, &format!("client-{i}"), now)).collect::<Result<Vec<_>, _>>()?;

    let issuer = format!(
        "[upstream]\nurl = \"http://127.0.0.1:9\"\n[[issuers]]\nissuer = \"{ISSUER}\"\naudiences = [\"bench\"]\n\
         jwks_file = \"jwks.json\"\n[[routes]]\npath = \"/public\"\nauth = \"public\"\n"
    );
    // One more cache slot for the warm-up token.
    let cache = format!("[cache]\nmax_tokens = {}\n", count + 1);
    let variants = [
        ("load.sh's configuration", format!("{issuer}{cache}")),
        (
            "with a route's scope and claim rule, and identity headers",
            format!(
                "{issuer}[[routes]]\npath = \"/\"\nscopes = [\"read\"]\nclaims = {{ aud = \"bench\" }}\n\
                 [headers]\nclaims = {{ sub = \"X-User\", scope = \"X-Scopes\" }}\npayload = \"X-Jwt-Payload\"\n{cache}"
            ),
        ),
    ];
    // [headers] assertion: each token's first request signs its assertion, kept in the entry.
    let p256 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &SystemRandom::new(),
    )
    .map_err(|_| "key generation failed")?;
    let pem = base64::engine::general_purpose::STANDARD.encode(p256.as_ref());
    std::fs::write(
        dir.path().join("assertion-key.pem"),
        format!("-----BEGIN PRIVATE KEY-----\n{pem}\n-----END PRIVATE KEY-----\n"),
    )?;
    let variants = [
        variants[0].clone(),
        variants[1].clone(),
        (
            "with an ES256 assertion of sub and scope, signed and kept",
            format!(
                "{issuer}[headers]\nassertion = {{ key_file = \"assertion-key.pem\", claims = [\"sub\", \"scope\"] }}\n{cache}"
            ),
        ),
    ];
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    for (name, text) in variants {
        let config = Config::parse(&text, "cache_memory.toml", dir.path(), &|_| None)?;
        let (empty, full) = runtime.block_on(measure(&config, &warm_up, &tokens, now))?;
        let per = |after: usize, before: usize| (after as f64 - before as f64) / count as f64;
        println!("{name}: {count} cached tokens, live heap per entry:");
        println!("  {:.1} bytes asked for", per(full.bytes, empty.bytes));
        println!(
            "  {:.1} bytes as malloc holds them (8-byte header, 16-byte rounding)",
            per(full.chunk_bytes, empty.chunk_bytes)
        );
        println!("  {:.2} blocks", per(full.blocks, empty.blocks));
    }
    Ok(())
}

/// The live heap with only the warm-up token cached, and with every token cached too.
async fn measure(
    config: &Config,
    warm_up: &str,
    tokens: &[String],
    now: u64,
) -> Result<(count_alloc::Live, count_alloc::Live), Box<dyn std::error::Error>> {
    let gateway = Gateway::new(config)?;
    for keys in gateway.issuer_keys() {
        if let jwtgate::keys::IssuerStore::Shared(keys) = keys {
            keys.fetch().await?;
        }
    }
    let judge = |token: &str| {
        let mut headers = HeaderMap::new();
        let value = HeaderValue::try_from(format!("Bearer {token}"));
        async {
            headers.insert(AUTHORIZATION, value?);
            let decision = gateway
                .decide(Asked { method: &Method::GET, host: None, path_and_query: "/" }, headers, now, None, &mut ())
                .await;
            match decision.result {
                Ok(_) => Ok::<_, Box<dyn std::error::Error>>(()),
                Err(refusal) => Err(format!("refused: {}", refusal.description()).into()),
            }
        }
    };
    // Whatever the first request sets up once is not an entry's cost.
    judge(warm_up).await?;
    let empty = count_alloc::live();
    for token in tokens {
        judge(token).await?;
    }
    Ok((empty, count_alloc::live()))
}

fn mint(key: &RsaKeyPair, subject: &str, now: u64) -> Result<String, Box<dyn std::error::Error>> {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "bench"});
    let claims = json!({"iss": ISSUER, "aud": "bench", "sub": subject, "scope": "read", "iat": now, "exp": now + 7200});
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut signature)
        .map_err(|_| "signing failed")?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}
