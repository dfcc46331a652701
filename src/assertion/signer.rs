//! The assertion key: read from a PKCS#8 PEM file, named by its RFC 7638
//! thumbprint, published as a JWK, and signing JWS (RFC 7515) compact
//! serialisations with aws-lc-rs.

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Map, Value, json};

use crate::auth::dpop::thumbprint;
use crate::config::{AssertionAlg, Problem};

/// The configuration key a key-file problem is reported under.
const KEY: &str = "headers.assertion.key_file";
/// A PEM private key is a few hundred bytes; anything far larger is not one.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

enum Pair {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

/// One signing key, with what a verifier needs to find its public half.
pub struct Signer {
    pair: Pair,
    rng: SystemRandom,
    /// RFC 7638 thumbprint of the public key: the JWS `kid`.
    kid: String,
    /// The public key as published in the JWKS.
    jwk: Value,
    /// base64url of the JWS header `{"alg","typ","kid"}` and its `.`:
    /// the same for every assertion, encoded once.
    header: String,
}

impl Signer {
    /// Reads `file` and makes a signer of `alg` with it; a problem names
    /// what is wrong with the file and how to make a usable one.
    pub fn load(file: &Path, alg: AssertionAlg) -> Result<Signer, Problem> {
        let shown = file.display();
        let problem = |message: String| Problem::new(KEY, message);
        let metadata = std::fs::metadata(file).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => problem(format!(
                "{shown} does not exist — create one with `{}` (relative to the config file's folder)",
                generate_command(alg)
            )),
            _ => problem(format!("cannot read {shown}: {e}")),
        })?;
        if !metadata.is_file() || metadata.len() > MAX_KEY_FILE_BYTES {
            return Err(problem(format!("{shown} is not a PEM private key file")));
        }
        let text = std::fs::read(file).map_err(|e| problem(format!("cannot read {shown}: {e}")))?;
        let der = match PrivateKeyDer::from_pem_slice(&text) {
            Ok(PrivateKeyDer::Pkcs8(der)) => der,
            Ok(_) => {
                return Err(problem(format!(
                    "{shown} is not in PKCS#8 form (BEGIN PRIVATE KEY) — convert it with \
                     `openssl pkcs8 -topk8 -nocrypt -in OLD -out {shown}`"
                )));
            }
            Err(_) => {
                return Err(problem(format!(
                    "{shown} holds no PEM private key — create one with `{}`",
                    generate_command(alg)
                )));
            }
        };
        Signer::from_pkcs8(der.secret_pkcs8_der(), alg).map_err(|other| {
            let found = match other {
                Some(other) => format!("an {} key", other.name()),
                None => "neither a P-256 nor an Ed25519 key".to_string(),
            };
            problem(format!(
                "{shown} is {found}, and alg = \"{}\" needs {} — set alg to match the key, or create one with `{}`",
                alg.name(),
                key_kind(alg),
                generate_command(alg)
            ))
        })
    }

    /// A signer of `alg` from a PKCS#8 DER key; `Err(Some(other))` when
    /// the key is one for the other algorithm.
    pub fn from_pkcs8(der: &[u8], alg: AssertionAlg) -> Result<Signer, Option<AssertionAlg>> {
        let es256 = || EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).ok();
        let eddsa = || Ed25519KeyPair::from_pkcs8(der).ok();
        let pair = match alg {
            AssertionAlg::Es256 => es256().map(Pair::Es256),
            AssertionAlg::EdDsa => eddsa().map(Pair::EdDsa),
        };
        let Some(pair) = pair else {
            return Err(match alg {
                AssertionAlg::Es256 => eddsa().map(|_| AssertionAlg::EdDsa),
                AssertionAlg::EdDsa => es256().map(|_| AssertionAlg::Es256),
            });
        };
        let mut jwk = match &pair {
            Pair::Es256(pair) => {
                // An uncompressed SEC1 point: 0x04, then x and y, 32 bytes each.
                let point = pair.public_key().as_ref();
                let (x, y) = point.get(1..).unwrap_or_default().split_at(point.len().saturating_sub(1) / 2);
                json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)})
            }
            Pair::EdDsa(pair) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())})
            }
        };
        let kid = jwk.as_object().and_then(thumbprint).unwrap_or_default();
        if let Some(members) = jwk.as_object_mut() {
            members.insert("kid".into(), Value::String(kid.clone()));
            members.insert("use".into(), Value::String("sig".into()));
            members.insert("alg".into(), Value::String(alg.name().into()));
        }
        let header = json!({"alg": alg.name(), "typ": "JWT", "kid": kid});
        let header = format!("{}.", URL_SAFE_NO_PAD.encode(header.to_string()));
        Ok(Signer { pair, rng: SystemRandom::new(), kid, jwk, header })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (with `kid`, `use` and `alg`).
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The compact JWS of `claims`; `None` only if the system's random
    /// source fails (ECDSA needs it).
    pub fn sign(&self, claims: &Map<String, Value>) -> Option<String> {
        let payload = serde_json::to_vec(claims).ok()?;
        // header. payload . signature: sized once, the signature's 86 characters included.
        let mut jws = String::with_capacity(self.header.len() + payload.len() * 4 / 3 + 92);
        jws.push_str(&self.header);
        URL_SAFE_NO_PAD.encode_string(&payload, &mut jws);
        let signature = match &self.pair {
            Pair::Es256(pair) => pair.sign(&self.rng, jws.as_bytes()).ok()?,
            Pair::EdDsa(pair) => pair.sign(jws.as_bytes()),
        };
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut jws);
        Some(jws)
    }
}

fn key_kind(alg: AssertionAlg) -> &'static str {
    match alg {
        AssertionAlg::Es256 => "a P-256 key",
        AssertionAlg::EdDsa => "an Ed25519 key",
    }
}

/// How to make a key file for `alg` (PKCS#8 PEM).
pub fn generate_command(alg: AssertionAlg) -> &'static str {
    match alg {
        AssertionAlg::Es256 => "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out assertion-key.pem",
        AssertionAlg::EdDsa => "openssl genpkey -algorithm ed25519 -out assertion-key.pem",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ED25519, UnparsedPublicKey};

    fn write(dir: &Path, name: &str, contents: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn pem(der: &[u8]) -> String {
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"))
    }

    /// Each algorithm signs what its own public JWK verifies, and `kid` is
    /// the JWK's thumbprint.
    #[test]
    fn signs_what_the_published_key_verifies() {
        let rng = SystemRandom::new();
        let p256 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ed = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        for (der, alg) in [(p256.as_ref(), AssertionAlg::Es256), (ed.as_ref(), AssertionAlg::EdDsa)] {
            let signer = Signer::from_pkcs8(der, alg).unwrap();
            let claims = json!({"sub": "alice", "n": 1});
            let jws = signer.sign(claims.as_object().unwrap()).unwrap();
            let (input, signature) = jws.rsplit_once('.').unwrap();
            let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
            let jwk = signer.jwk();
            let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
            let verified = match alg {
                AssertionAlg::Es256 => {
                    let y = URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap();
                    let point = [&[4u8][..], &x, &y].concat();
                    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(input.as_bytes(), &signature)
                }
                AssertionAlg::EdDsa => UnparsedPublicKey::new(&ED25519, x).verify(input.as_bytes(), &signature),
            };
            assert!(verified.is_ok(), "{alg:?}");
            let header: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jws.split('.').next().unwrap()).unwrap()).unwrap();
            assert_eq!(header, json!({"alg": alg.name(), "typ": "JWT", "kid": signer.kid()}));
            let mut bare = jwk.as_object().unwrap().clone();
            bare.retain(|name, _| !["kid", "use", "alg"].contains(&name.as_str()));
            assert_eq!(thumbprint(&bare).as_deref(), Some(signer.kid()));
            assert_eq!(signer.kid().len(), 43, "base64url of a SHA-256");
        }
    }

    #[test]
    fn key_file_problems_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let rng = SystemRandom::new();
        let ed = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed_file = write(dir.path(), "ed.pem", pem(ed.as_ref()).as_bytes());
        assert!(Signer::load(&ed_file, AssertionAlg::EdDsa).is_ok());
        let message = |file: &Path, alg| Signer::load(file, alg).err().unwrap().message;

        let wrong = message(&ed_file, AssertionAlg::Es256);
        assert!(wrong.contains("is an EdDSA key, and alg = \"ES256\" needs a P-256 key"), "{wrong}");
        let missing = message(&dir.path().join("nope.pem"), AssertionAlg::Es256);
        assert!(missing.contains("does not exist — create one with `openssl genpkey -algorithm EC"), "{missing}");
        let garbage = write(dir.path(), "garbage.pem", b"not a key\n");
        assert!(message(&garbage, AssertionAlg::EdDsa).contains("holds no PEM private key"));
        let sec1 =
            write(dir.path(), "sec1.pem", b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n");
        assert!(message(&sec1, AssertionAlg::Es256).contains("not in PKCS#8 form"));
        assert!(message(dir.path(), AssertionAlg::Es256).contains("is not a PEM private key file"));
        let rsa = write(dir.path(), "rsa.pem", pem(&[0x30, 0x03, 0x02, 0x01, 0x00]).as_bytes());
        assert!(message(&rsa, AssertionAlg::Es256).contains("neither a P-256 nor an Ed25519 key"));
    }
}
