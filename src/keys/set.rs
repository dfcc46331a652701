//! An immutable set of verification keys built once from a JWK Set document.
//! Every key is parsed here, off the request path, into aws-lc-rs public
//! keys ready to verify (one per algorithm the key may be used with), so a
//! request pays for the signature check alone; lookups allocate nothing.

use std::sync::Arc;

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, VerificationAlgorithm};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use serde::Deserialize;

/// Tokens without `kid` are tried against at most this many keys.
pub const MAX_KEYS_WITHOUT_KID: usize = 4;
/// Keys read from one JWKS; real issuers publish a handful.
/// The default of `limits.max_jwks_keys`.
pub const MAX_KEYS: usize = 100;

/// The kind of public key, which decides the algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    /// The key kind an algorithm needs.
    pub fn for_algorithm(alg: Algorithm) -> Option<KeyKind> {
        match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => Some(KeyKind::Rsa),
            Algorithm::ES256 => Some(KeyKind::P256),
            Algorithm::ES384 => Some(KeyKind::P384),
            Algorithm::EdDSA => Some(KeyKind::Ed25519),
            _ => None,
        }
    }
}

/// RSA moduli up to 8192 bits: the largest signature a JWS can carry here.
pub const MAX_SIGNATURE_BYTES: usize = 1024;

/// One usable public key with everything needed to verify with it.
#[derive(Clone)]
pub struct VerifyingKey {
    /// Its `kid` and fingerprint, shared with every cached verification
    /// the key made (a pointer in each cache entry instead of a copy).
    pub binding: Arc<KeyBinding>,
    pub kind: KeyKind,
    /// The JWK's own `alg`, which pins the only algorithm it may verify.
    pub alg: Option<Algorithm>,
    /// The key parsed once for each algorithm it accepts.
    verifiers: Vec<(Algorithm, ParsedPublicKey)>,
}

/// What a cached verification is bound to.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyBinding {
    pub kid: Option<Box<str>>,
    /// SHA-256 of the key's type and public key bytes, so a different key
    /// published under the same `kid` vouches for nothing verified with
    /// the old one.
    pub fingerprint: [u8; 32],
}

impl VerifyingKey {
    /// A key from one public JWK (a DPoP proof's `jwk`), checked as a
    /// JWKS's keys are; why it cannot be used, otherwise.
    pub fn from_jwk(jwk: serde_json::Value) -> Result<VerifyingKey, String> {
        parse_key(jwk, KeyPurpose::Tokens)
    }

    pub fn kid(&self) -> Option<&str> {
        self.binding.kid.as_deref()
    }

    /// Whether a token signed with `alg` may be verified by this key.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        KeyKind::for_algorithm(alg) == Some(self.kind) && self.alg.is_none_or(|pinned| pinned == alg)
    }

    /// Checks a JWS signature (base64url, as in the token) over `signing_input`.
    pub fn verify(&self, alg: Algorithm, signing_input: &[u8], signature_b64: &str) -> bool {
        let Some((_, key)) = self.verifiers.iter().find(|(a, _)| *a == alg) else { return false };
        // base64's decode_slice wants room for its estimate, a few bytes over the exact length.
        let mut signature = [0u8; MAX_SIGNATURE_BYTES + 8];
        match URL_SAFE_NO_PAD.decode_slice(signature_b64, &mut signature) {
            Ok(len) => key.verify_sig(signing_input, &signature[..len]).is_ok(),
            Err(_) => false,
        }
    }
}

/// The keys of one issuer at one point in time.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
    /// A SPIFFE bundle's `spiffe_refresh_hint`: refresh at least this often.
    refresh_hint: Option<std::time::Duration>,
}

/// What a document's keys are for, which decides the `use` they must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    /// An issuer's JWKS: `use` absent or `sig`.
    Tokens,
    /// A SPIFFE trust bundle: `use: "jwt-svid"` (its `x509-svid` keys are
    /// for certificates, not tokens), each with a `kid`.
    JwtSvid,
}

impl KeyPurpose {
    /// What `issuer`'s key document holds keys for.
    pub fn of(issuer: &crate::config::IssuerConfig) -> KeyPurpose {
        if issuer.spiffe { KeyPurpose::JwtSvid } else { KeyPurpose::Tokens }
    }
}

/// Why the document as a whole is unusable (single bad keys are only skipped).
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("not a JWK Set ({{\"keys\": [ … ]}}): {0}")]
    NotJson(#[from] serde_json::Error),
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
    spiffe_refresh_hint: Option<u64>,
}

impl KeySet {
    /// Builds a set from a JWKS document. Keys that cannot be used (encryption
    /// keys, symmetric keys, unsupported types, bad parameters) are skipped
    /// and described in the returned list; the rest of the set still works.
    pub fn from_jwks(body: &[u8], max_keys: usize, purpose: KeyPurpose) -> Result<(KeySet, Vec<String>), JwksError> {
        let raw: RawSet = serde_json::from_slice(body)?;
        let refresh_hint = raw
            .spiffe_refresh_hint
            .filter(|_| purpose == KeyPurpose::JwtSvid)
            .map(|secs| std::time::Duration::from_secs(secs.max(1)));
        let mut keys = Vec::with_capacity(raw.keys.len().min(max_keys));
        let mut skipped = Vec::new();
        if raw.keys.len() > max_keys {
            skipped.push(format!(
                "keys[{max_keys}..{}]: more than {max_keys} keys (limits.max_jwks_keys); the rest are ignored",
                raw.keys.len()
            ));
        }
        for (i, value) in raw.keys.into_iter().take(max_keys).enumerate() {
            let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
            let name = kid.as_deref().map_or_else(|| format!("keys[{i}]"), |k| format!("kid {k:?}"));
            match parse_key(value, purpose) {
                Ok(key) => keys.push(key),
                Err(why) => skipped.push(format!("{name}: {why}")),
            }
        }
        Ok((KeySet { keys, refresh_hint }, skipped))
    }

    /// A SPIFFE bundle's `spiffe_refresh_hint`.
    pub fn refresh_hint(&self) -> Option<std::time::Duration> {
        self.refresh_hint
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    /// The key with this `kid`, if present (whatever its type).
    pub fn by_kid(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.iter().find(|k| k.kid() == Some(kid))
    }

    /// For a token without `kid`: the keys that could verify `alg`, at most
    /// [`MAX_KEYS_WITHOUT_KID`] of them.
    pub fn candidates(&self, alg: Algorithm) -> impl Iterator<Item = &VerifyingKey> {
        self.keys.iter().filter(move |k| k.accepts(alg)).take(MAX_KEYS_WITHOUT_KID)
    }
}

fn parse_key(value: serde_json::Value, purpose: KeyPurpose) -> Result<VerifyingKey, String> {
    let kty = value.get("kty").and_then(|k| k.as_str()).unwrap_or("").to_owned();
    if kty == "oct" {
        return Err("symmetric (oct) keys are never used".into());
    }
    let jwk: Jwk = serde_json::from_value(value).map_err(|e| format!("bad JWK: {e}"))?;
    match (purpose, &jwk.common.public_key_use) {
        (KeyPurpose::Tokens, None | Some(PublicKeyUse::Signature)) => {}
        (KeyPurpose::Tokens, Some(other)) => return Err(format!("use is {other:?}, not sig")),
        (KeyPurpose::JwtSvid, Some(PublicKeyUse::Other(use_))) if use_ == "jwt-svid" => {
            if jwk.common.key_id.is_none() {
                return Err("a jwt-svid key without kid (the SPIFFE bundle format requires one)".into());
            }
        }
        (KeyPurpose::JwtSvid, other) => return Err(format!("use is {other:?}, not jwt-svid (not for tokens)")),
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => KeyKind::P256,
            EllipticCurve::P384 => KeyKind::P384,
            ref other => return Err(format!("unsupported curve {other:?}")),
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => KeyKind::Ed25519,
            ref other => return Err(format!("unsupported curve {other:?}")),
        },
        _ => return Err(format!("unsupported key type {kty:?}")),
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(declared) => {
            let alg =
                signing_algorithm(declared).ok_or_else(|| format!("alg {declared:?} is not a signing algorithm"))?;
            if KeyKind::for_algorithm(alg) != Some(kind) {
                return Err(format!("alg {alg:?} does not fit a {kind:?} key"));
            }
            Some(alg)
        }
    };
    let public_key = public_key_bytes(&jwk.algorithm).ok_or("bad key parameters (not base64url)")?;
    let algorithms: Vec<Algorithm> = match alg {
        Some(pinned) => vec![pinned],
        None => SUPPORTED_ALGORITHMS.into_iter().filter(|a| KeyKind::for_algorithm(*a) == Some(kind)).collect(),
    };
    let verifiers = algorithms
        .into_iter()
        .map(|alg| {
            ParsedPublicKey::new(verification_algorithm(alg), &public_key)
                .map(|parsed| (alg, parsed))
                .map_err(|e| format!("key rejected for {alg:?}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut material = Vec::with_capacity(public_key.len() + 8);
    material.extend_from_slice(format!("{kind:?}:").as_bytes());
    material.extend_from_slice(&public_key);
    let mut fingerprint = [0u8; 32];
    fingerprint.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &material).as_ref());
    let binding = Arc::new(KeyBinding { kid: jwk.common.key_id.map(String::into_boxed_str), fingerprint });
    Ok(VerifyingKey { binding, kind, alg, verifiers })
}

pub use crate::config::SUPPORTED_ALGORITHMS;

fn verification_algorithm(alg: Algorithm) -> &'static dyn VerificationAlgorithm {
    match alg {
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &sig::ED25519,
        // RS256, and HS* which KeyKind never maps to a key.
        _ => &sig::RSA_PKCS1_2048_8192_SHA256,
    }
}

/// The public key in the form aws-lc-rs parses: PKCS#1 `RSAPublicKey` DER,
/// an uncompressed EC point, or the raw Ed25519 key.
fn public_key_bytes(params: &AlgorithmParameters) -> Option<Vec<u8>> {
    let b64 = |s: &str| URL_SAFE_NO_PAD.decode(s).ok();
    match params {
        AlgorithmParameters::RSA(rsa) => Some(rsa_public_key_der(&b64(&rsa.n)?, &b64(&rsa.e)?)),
        AlgorithmParameters::EllipticCurve(ec) => {
            let mut point = vec![0x04];
            point.extend(b64(&ec.x)?);
            point.extend(b64(&ec.y)?);
            Some(point)
        }
        AlgorithmParameters::OctetKeyPair(okp) => b64(&okp.x),
        _ => None,
    }
}

/// DER of `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017 A.1.1).
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn integer(out: &mut Vec<u8>, bytes: &[u8]) {
        let bytes = &bytes[bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len())..];
        // A leading 1 bit would make the integer negative: prefix a zero byte.
        let pad = bytes.first().is_none_or(|&b| b & 0x80 != 0);
        out.push(0x02);
        length(out, bytes.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(bytes);
    }
    fn length(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len() - 1);
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
    }
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    integer(&mut body, n);
    integer(&mut body, e);
    let mut der = Vec::with_capacity(body.len() + 4);
    der.push(0x30);
    length(&mut der, body.len());
    der.extend(body);
    der
}

fn signing_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // A real 2048-bit modulus is not needed to parse; any base64url works.
    fn rsa(kid: &str) -> serde_json::Value {
        json!({"kty": "RSA", "kid": kid, "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"})
    }

    #[test]
    fn unusable_keys_are_skipped_not_fatal() {
        let body = json!({"keys": [
            rsa("good"),
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "kid": "secp256k1", "crv": "secp256k1", "x": "AA", "y": "AA"},
            {"kty": "XYZ", "kid": "weird"},
            {"kty": "RSA", "kid": "pinned-wrong", "alg": "ES256", "n": "AQAB", "e": "AQAB"},
        ]});
        let (set, skipped) = KeySet::from_jwks(body.to_string().as_bytes(), MAX_KEYS, KeyPurpose::Tokens).unwrap();
        assert_eq!(set.len(), 1);
        assert!(set.by_kid("good").is_some());
        assert_eq!(skipped.len(), 5, "{skipped:?}");
    }

    #[test]
    fn key_accepts_only_matching_algorithms() {
        let mut with_alg = rsa("p");
        with_alg["alg"] = json!("RS256");
        let body = json!({"keys": [rsa("any"), with_alg]});
        let (set, _) = KeySet::from_jwks(body.to_string().as_bytes(), MAX_KEYS, KeyPurpose::Tokens).unwrap();
        let any = set.by_kid("any").unwrap();
        assert!(any.accepts(Algorithm::RS256) && any.accepts(Algorithm::PS512));
        assert!(!any.accepts(Algorithm::ES256) && !any.accepts(Algorithm::HS256));
        let pinned = set.by_kid("p").unwrap();
        assert!(pinned.accepts(Algorithm::RS256) && !pinned.accepts(Algorithm::RS512));
    }

    #[test]
    fn rsa_der_encoding() {
        // Small values: short-form lengths, a zero pad for the high bit.
        assert_eq!(rsa_public_key_der(&[0x80], &[1, 0, 1]), [0x30, 0x09, 0x02, 0x02, 0x00, 0x80, 0x02, 0x03, 1, 0, 1]);
        // Leading zeros are dropped; long-form lengths for big moduli.
        let der = rsa_public_key_der(&[vec![0, 0], vec![0x7f; 256]].concat(), &[3]);
        assert_eq!(&der[..4], [0x30, 0x82, 0x01, 0x07]);
        assert_eq!(&der[4..8], [0x02, 0x82, 0x01, 0x00]);
    }

    #[test]
    fn at_most_max_keys_are_read() {
        let keys: Vec<_> = (0..MAX_KEYS + 5).map(|i| rsa(&format!("k{i}"))).collect();
        let (set, skipped) =
            KeySet::from_jwks(json!({ "keys": keys }).to_string().as_bytes(), MAX_KEYS, KeyPurpose::Tokens).unwrap();
        assert_eq!(set.len(), MAX_KEYS);
        assert_eq!(skipped.len(), 1, "{skipped:?}");
    }

    #[test]
    fn not_a_jwks_is_an_error() {
        assert!(KeySet::from_jwks(b"{\"no\": 1}", MAX_KEYS, KeyPurpose::Tokens).is_err());
        assert!(KeySet::from_jwks(b"<html>", MAX_KEYS, KeyPurpose::Tokens).is_err());
    }

    /// A SPIFFE bundle lends its `jwt-svid` keys (with a `kid`) to tokens,
    /// never its `x509-svid` ones; an issuer's JWKS never a `jwt-svid` key.
    #[test]
    fn a_spiffe_bundle_gives_only_its_jwt_svid_keys() {
        let with_use = |kid: &str, use_: &str| {
            let mut key = rsa(kid);
            key["use"] = json!(use_);
            key
        };
        let mut no_kid = with_use("x", "jwt-svid");
        no_kid.as_object_mut().unwrap().remove("kid");
        let bundle = json!({
            "keys": [with_use("jwt", "jwt-svid"), with_use("x509", "x509-svid"), rsa("plain"), no_kid],
            "spiffe_sequence": 3,
            "spiffe_refresh_hint": 60,
        });
        let body = bundle.to_string();
        let (set, skipped) = KeySet::from_jwks(body.as_bytes(), MAX_KEYS, KeyPurpose::JwtSvid).unwrap();
        assert_eq!(set.keys().iter().map(|k| k.kid()).collect::<Vec<_>>(), [Some("jwt")]);
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert_eq!(set.refresh_hint(), Some(std::time::Duration::from_secs(60)));
        let (set, _) = KeySet::from_jwks(body.as_bytes(), MAX_KEYS, KeyPurpose::Tokens).unwrap();
        assert_eq!(set.keys().iter().map(|k| k.kid()).collect::<Vec<_>>(), [Some("plain")]);
        assert_eq!(set.refresh_hint(), None, "a hint means something only in a SPIFFE bundle");
    }
}
