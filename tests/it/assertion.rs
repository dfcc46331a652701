//! `[headers] assertion` end to end: a real backend
//! (`tests/backends/assertion_backend.py`) verifies every assertion with
//! PyJWT, an independent JOSE library, against the JWKS jwtgate publishes
//! on its admin listener; the key rotates on a reload and the old key stays
//! published until the assertions it signed have expired. The configuration
//! and `explain` are checked through the binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use base64::Engine;
use serde_json::{Value, json};

use crate::support::keys::{SigningKey, claims, now};
use crate::support::{Process, TestGateway, TestIdp, client, free_port, toml};

/// A fresh key of `alg` as PKCS#8 PEM.
fn key_pem(alg: &str) -> String {
    let rng = SystemRandom::new();
    let der = match alg {
        "ES256" => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap().as_ref().to_vec(),
        _ => Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref().to_vec(),
    };
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"))
}

/// The backend, on `addr`, verifying against the gateway's JWKS.
async fn backend(addr: std::net::SocketAddr, jwks_url: &str, aud: &str, iss: &str) -> Process {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new("python3");
    command
        .args(["assertion_backend.py", &addr.port().to_string(), jwks_url, aud, iss])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/backends"));
    Process::start("assertion backend", command, addr, dir).await
}

struct Setup {
    idp: TestIdp,
    key: SigningKey,
    gateway: TestGateway,
    _backend: Process,
    key_file: PathBuf,
    config_file: PathBuf,
    config: String,
    _dir: tempfile::TempDir,
    upstream: String,
}

async fn setup(alg: &str, assertion: &str, server: &str, iss: &str) -> Setup {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("assertion-key.pem");
    std::fs::write(&key_file, key_pem(alg)).unwrap();
    let upstream_addr = free_port();
    let upstream = format!("http://{upstream_addr}");
    let config = toml(&upstream, &idp.issuer)
        .server(server)
        .text()
        .replace(
            "[[issuers]]",
            &format!(
                "[headers]\nassertion = {{ key_file = {:?}, alg = \"{alg}\", {assertion} }}\n\
                 [[routes]]\npath = \"/public\"\nauth = \"public\"\n[[routes]]\npath = \"/maybe\"\nauth = \"optional\"\n\
                 [[issuers]]",
                key_file.display().to_string()
            ),
        );
    let config_file = dir.path().join("jwtgate.toml");
    std::fs::write(&config_file, &config).unwrap();
    let gateway = TestGateway::start(&config).await;
    gateway.wait_for_keys().await;
    let backend = backend(upstream_addr, &gateway.admin_url("/.well-known/jwks.json"), &upstream, iss).await;
    Setup { idp, key, gateway, _backend: backend, key_file, config_file, config, _dir: dir, upstream }
}

impl Setup {
    fn token(&self, sub: &str, extra: Value) -> String {
        let mut claims = claims(&self.idp.issuer, "api");
        claims["sub"] = json!(sub);
        for (name, value) in extra.as_object().unwrap() {
            claims[name] = value.clone();
        }
        self.key.mint(&claims)
    }

    /// What the backend made of the request's assertion.
    async fn call(&self, path: &str, token: Option<&str>, forged: Option<&str>) -> Value {
        let mut request = client().get(self.gateway.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(forged) = forged {
            request = request.header("x-jwtgate-assertion", forged);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
    }

    /// The backend's verdict on `assertion` sent to it directly.
    async fn verify_directly(&self, assertion: &str) -> Value {
        let response = client().get(format!("{}/direct", self.upstream)).header("x-jwtgate-assertion", assertion);
        serde_json::from_slice(&response.send().await.unwrap().bytes().await.unwrap()).unwrap()
    }

    async fn jwks_kids(&self) -> Vec<String> {
        let answer = client().get(self.gateway.admin_url("/.well-known/jwks.json")).send().await.unwrap();
        let jwks: Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
        jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect()
    }
}

fn verified(answer: &Value) -> &Value {
    assert_eq!(answer["verified"], true, "the backend refused the assertion: {answer}");
    &answer["claims"]
}

/// ES256: PyJWT verifies the claims jwtgate vouches for; the assertion is
/// reused while more than half its ttl is left, then signed again; never
/// outlives the token; and no anonymous request carries one, forged or not.
#[tokio::test]
#[ignore = "needs python3 with PyJWT and cryptography (.ci/run installs tests/backends/requirements.txt)"]
async fn a_real_backend_verifies_the_assertion_with_pyjwt() {
    let s = setup("ES256", "ttl = \"4s\", claims = [\"sub\", \"scope\", \"/org/id\"]", "", "jwtgate").await;
    let token = s.token("alice", json!({"scope": "read write", "org": {"id": 7}, "email": "a@example.com"}));
    let first = s.call("/orders", Some(&token), Some("forged.by.client")).await;
    let claims = verified(&first);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["scope"], "read write");
    assert_eq!(claims["id"], 7, "a JSON Pointer claim under its own name");
    assert_eq!(claims["iss"], "jwtgate");
    assert_eq!(claims["aud"], s.upstream);
    assert!(claims.get("email").is_none(), "only the listed claims: {claims}");
    let iat = claims["iat"].as_u64().unwrap();
    assert_eq!(claims["exp"].as_u64().unwrap(), iat + 4);
    assert!(iat.abs_diff(now()) <= 1);
    assert_eq!(first["header"]["alg"], "ES256");
    assert_eq!(first["kid_is_thumbprint"], true, "{first}");

    // Reused while fresh: the very same JWS.
    let again = s.call("/orders", Some(&token), None).await;
    assert_eq!(again["raw"], first["raw"]);
    // Another token, another assertion.
    let bob = s.call("/orders", Some(&s.token("bob", json!({}))), None).await;
    assert_eq!(verified(&bob)["sub"], "bob");
    assert_ne!(bob["raw"], first["raw"]);

    // Half the ttl later (2 s, whole seconds): signed again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let later = s.call("/orders", Some(&token), None).await;
    assert_ne!(later["raw"], first["raw"]);
    assert!(verified(&later)["iat"].as_u64().unwrap() >= iat + 2);

    // Never past the token's own exp.
    let token_exp = now() + 2;
    let short = s.token("carol", json!({"exp": token_exp}));
    let capped = s.call("/orders", Some(&short), None).await;
    assert_eq!(verified(&capped)["exp"].as_u64().unwrap(), token_exp);

    // Anonymous: no assertion, and the client's own never reaches the backend.
    for path in ["/public", "/maybe"] {
        let anonymous = s.call(path, None, Some("forged.by.client")).await;
        assert_eq!(anonymous, json!({"assertion": null}), "{path}");
    }
    // A token on an optional route: vouched for.
    assert_eq!(verified(&s.call("/maybe", Some(&token), None).await)["sub"], "alice");
    s.gateway.stop().await;
}

/// EdDSA, and rotation: after a reload with a new key the new key signs,
/// and the old one stays in the JWKS (an assertion it signed still
/// verifies) until its assertions have expired, then leaves it.
#[tokio::test]
#[ignore = "needs python3 with PyJWT and cryptography (.ci/run installs tests/backends/requirements.txt)"]
async fn the_key_rotates_on_reload_and_the_old_one_stays_until_its_assertions_expire() {
    let s = setup(
        "EdDSA",
        "ttl = \"3s\"",
        "public_url = \"https://api.example.com\"\nrequest_timeout = \"1s\"",
        "https://api.example.com",
    )
    .await;
    let token = s.token("alice", json!({}));
    let old = s.call("/orders", Some(&token), None).await;
    assert_eq!(verified(&old)["iss"], "https://api.example.com");
    assert_eq!(old["header"]["alg"], "EdDSA");
    let old_kid = old["header"]["kid"].as_str().unwrap().to_string();
    assert_eq!(s.jwks_kids().await, std::slice::from_ref(&old_kid));

    std::fs::write(&s.key_file, key_pem("EdDSA")).unwrap();
    let running = jwtgate::Config::parse(&s.config, "jwtgate.toml", Path::new("."), &|_| None).unwrap();
    let reloader = jwtgate::reload::Reloader::new(s.config_file.clone(), Arc::clone(&s.gateway.shared), running, None);
    assert!(reloader.reload());
    let switched = Instant::now();

    let new = s.call("/orders", Some(&token), None).await;
    verified(&new);
    let new_kid = new["header"]["kid"].as_str().unwrap().to_string();
    assert_ne!(new_kid, old_kid, "the new key signs, even for a token whose old assertion was fresh");
    assert_eq!(s.jwks_kids().await, [new_kid.clone(), old_kid.clone()]);
    // An assertion of the old key, still unexpired, verifies against a JWKS fetched now.
    verified(&s.verify_directly(old["raw"].as_str().unwrap()).await);

    // Published for ttl + request_timeout + 1 s after the switch (5 s), then gone.
    let mut gone = None;
    while switched.elapsed() < Duration::from_secs(8) {
        if s.jwks_kids().await == [new_kid.clone()] {
            gone = Some(switched.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gone = gone.expect("the old key is still published 8 s after the switch");
    assert!(gone >= Duration::from_secs(3), "withdrawn after {gone:?}, before its assertions could expire");
    let refused = s.verify_directly(old["raw"].as_str().unwrap()).await;
    assert_eq!(refused["verified"], false, "{refused}");
    verified(&s.call("/orders", Some(&token), None).await);
    s.gateway.stop().await;
}

/// `jwtgate check` reports the key file's problems under their key, with
/// the line, and the shape of the table's values; `explain` shows the
/// assertion a request would carry.
#[test]
fn check_reports_assertion_problems_and_explain_shows_the_assertion() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let key = SigningKey::rsa("k1");
    std::fs::write(&jwks, json!({"keys": [key.jwk()]}).to_string()).unwrap();
    let base = "[upstream]\nurl = \"http://127.0.0.1:9\"\n[[issuers]]\nissuer = \"https://issuer.example/\"\n\
                audiences = [\"api\"]\njwks_file = \"jwks.json\"\n[headers]\n";
    let check = |assertion: &str| {
        let file = dir.path().join("jwtgate.toml");
        std::fs::write(&file, format!("{base}assertion = {{ {assertion} }}\n")).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_jwtgate")).arg("check").arg("-c").arg(&file).output().unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stderr).to_string())
    };
    let (code, err) = check("key_file = \"missing.pem\"");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("jwtgate.toml:8:"), "{err}");
    assert!(err.contains("headers.assertion.key_file: "), "{err}");
    assert!(err.contains("missing.pem does not exist — create one with `openssl genpkey"), "{err}");

    std::fs::write(dir.path().join("ed.pem"), key_pem("EdDSA")).unwrap();
    let (_, err) = check("key_file = \"ed.pem\"");
    assert!(err.contains("is an EdDSA key, and alg = \"ES256\" needs a P-256 key"), "{err}");
    let (_, err) = check("key_file = \"ed.pem\", alg = \"RS256\", ttl = \"1s\", claims = [\"exp\"], colour = 1");
    assert!(err.contains("colour"), "unknown keys are errors: {err}");
    let (_, err) =
        check("key_file = \"ed.pem\", alg = \"RS256\", ttl = \"1s\", claims = [\"exp\", \"sub\", \"/a/sub\"]");
    assert!(err.contains("headers.assertion.alg: \"RS256\" is not an algorithm jwtgate signs with"), "{err}");
    assert!(err.contains("headers.assertion.ttl: must be whole seconds from 2s to 1h"), "{err}");
    assert!(err.contains("exp is set by jwtgate in every assertion"), "{err}");
    assert!(err.contains("another claim is also carried as \"sub\""), "{err}");
    let (_, err) = check("alg = \"EdDSA\"");
    assert!(err.contains("headers.assertion.key_file: required key is missing"), "{err}");
    let (code, err) = check("key_file = \"ed.pem\", alg = \"EdDSA\", header = \"Authorization\"");
    assert_eq!(code, Some(2));
    assert!(err.contains("headers.assertion.header: Authorization cannot carry identity"), "{err}");
    let (code, err) = check("key_file = \"ed.pem\", alg = \"EdDSA\", claims = [\"sub\", \"scope\"]");
    assert_eq!(code, Some(0), "{err}");

    let at = 1_800_000_000u64;
    let token = key.mint(&json!({"iss": "https://issuer.example/", "aud": "api", "sub": "alice",
        "scope": "read", "iat": at - 60, "exp": at + 30}));
    let output = Command::new(env!("CARGO_BIN_EXE_jwtgate"))
        .args(["explain", "-c"])
        .arg(dir.path().join("jwtgate.toml"))
        .args(["--path", "/orders", "--offline", "--jwks"])
        .arg(&jwks)
        .args(["--at", &at.to_string(), &token])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{out}{}", String::from_utf8_lossy(&output.stderr));
    assert!(out.contains("x-jwtgate-assertion: ey"), "{out}");
    assert!(out.contains("the signed assertion for the backend (docs/assertion.md): {\"alg\":\"EdDSA\""), "{out}");
    let expected = format!(
        "claims {{\"aud\":\"http://127.0.0.1:9\",\"exp\":{},\"iat\":{at},\"iss\":\"jwtgate\",\"scope\":\"read\",\"sub\":\"alice\"}}",
        at + 30
    );
    assert!(out.contains(&expected), "capped at the token's exp: {out}");
}

/// Forward-auth: the check's answer carries the assertion for the edge to
/// copy (for `aud`, the route's upstream), verifiable with the published
/// key; a public route's answer overwrites any client's with an empty one.
/// Verified here with aws-lc-rs directly, so this runs without Python.
#[tokio::test]
async fn a_forward_auth_answer_carries_a_verifiable_assertion() {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
    let b64 = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).unwrap();
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("assertion-key.pem");
    std::fs::write(&key_file, key_pem("ES256")).unwrap();
    let gateway = toml("http://127.0.0.1:9", &idp.issuer)
        .issuer(&format!(
            "[forward_auth]\npath = \"/auth\"\n[headers]\nassertion = {{ key_file = {:?}, claims = [\"sub\"] }}\n\
             [[routes]]\npath = \"/public\"\nauth = \"public\"\n",
            key_file.display().to_string()
        ))
        .start()
        .await;
    let mut token_claims = claims(&idp.issuer, "api");
    token_claims["sub"] = json!("alice");
    let token = key.mint(&token_claims);
    let check = |uri: &'static str, token: Option<&str>| {
        let mut request = client()
            .get(gateway.url("/auth"))
            .header("x-original-uri", uri)
            .header("x-original-method", "GET")
            .header("x-jwtgate-assertion", "forged.by.client");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let answer = check("/orders", Some(&token)).await.unwrap();
    assert_eq!(answer.status(), 200);
    let jws = answer.headers()["x-jwtgate-assertion"].to_str().unwrap().to_string();
    let (input, signature) = jws.rsplit_once('.').unwrap();
    let (header, payload) = input.split_once('.').unwrap();
    let header: Value = serde_json::from_slice(&b64(header)).unwrap();
    let payload: Value = serde_json::from_slice(&b64(payload)).unwrap();
    assert_eq!(payload["sub"], "alice");
    assert_eq!(payload["aud"], "http://127.0.0.1:9");
    assert_eq!(payload["iss"], "jwtgate");

    let answer = client().get(gateway.admin_url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(answer.headers()["content-type"], "application/jwk-set+json");
    let jwks: Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == header["kid"]).expect("kid published");
    let point = [vec![4u8], b64(jwk["x"].as_str().unwrap()), b64(jwk["y"].as_str().unwrap())].concat();
    let verified = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(input.as_bytes(), &b64(signature));
    assert!(verified.is_ok(), "the published key verifies the assertion");

    let answer = check("/public", None).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-jwtgate-assertion"], "", "the client's own is overwritten");
    gateway.stop().await;
}
