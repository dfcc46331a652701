//! Keys and a token for `benches/load.sh`: writes into DIR a JWKS
//! (`jwks.json`, for jwtgate), the public key as PEM (`public.pem`, for
//! HAProxy's jwt_verify) and an RS256 token valid for two hours (`token`);
//! with COUNT, also COUNT distinct tokens, one per line (`tokens`).
//!
//!     bench_token DIR [COUNT]

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;

pub const ISSUER: &str = "https://bench.jwtgate.local/";
pub const AUDIENCE: &str = "bench";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).ok_or("usage: bench_token DIR [COUNT]")?);
    let count: usize = std::env::args().nth(2).map(|n| n.parse()).transpose()?.unwrap_or(0);
    let key = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| "key generation failed")?;
    let public = RsaPublicKeyComponents::<Vec<u8>>::from(key.public_key());
    let jwks = json!({"keys": [{"kty": "RSA", "kid": "bench", "use": "sig", "alg": "RS256",
        "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e)}]});
    std::fs::write(dir.join("jwks.json"), jwks.to_string())?;

    let spki = key.public_key().as_der().map_err(|_| "cannot encode the public key")?;
    let b64 = STANDARD.encode(spki.as_ref());
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or("")).collect();
    std::fs::write(
        dir.join("public.pem"),
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n")),
    )?;

    std::fs::write(dir.join("token"), mint(&key, "bench-client")?)?;
    if count > 0 {
        let tokens = (0..count).map(|i| mint(&key, &format!("client-{i}"))).collect::<Result<Vec<_>, _>>()?;
        std::fs::write(dir.join("tokens"), tokens.join("\n") + "\n")?;
    }
    Ok(())
}

fn mint(key: &RsaKeyPair, subject: &str) -> Result<String, Box<dyn std::error::Error>> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "bench"});
    let claims =
        json!({"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "scope": "read", "iat": now, "exp": now + 7200});
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut signature)
        .map_err(|_| "signing failed")?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}
