//! RFC 9449 DPoP at the edge: a token bound to a key (`cnf.jkt`) is good
//! only with a proof, signed by that key, for this very request.
//!
//! Judged on every request after the token is verified or found in the
//! cache, so a cached verification never stands in for a proof. Proofs
//! are parsed with the project's strict JSON reader; their key is checked
//! as a JWKS key is (`VerifyingKey::from_jwk`), and never a private one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::{digest, hmac};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, Method};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::projection::{ClaimPlan, ValueSlot};
use super::strict_json::parse_object;
use super::verify::Verified;
use crate::config::{ClaimPath, DpopMode, PublicUrl, SUPPORTED_ALGORITHMS};
use crate::keys::VerifyingKey;
use crate::metrics::Reason;

/// A proof's `iat` may be this old…
pub const MAX_AGE_SECS: u64 = 300;
/// …and this far ahead of the gateway's clock.
pub const MAX_AHEAD_SECS: u64 = 60;
/// A nonce is good for the period it was made in and the next one.
const NONCE_PERIOD_SECS: u64 = 300;
/// `jti`s remembered at most, over all shards (about 40 bytes each).
const REPLAY_CAPACITY: usize = 1 << 20;
const SHARDS: usize = 16;
/// Proof headers and payloads nest no deeper than a JWK does.
const PROOF_DEPTH: usize = 4;
/// Members that make a JWK private (RFC 7517 §9.3, RFC 7518 §6).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

static DPOP: http::HeaderName = http::HeaderName::from_static("dpop");

/// Why a request's DPoP binding does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopFailure {
    /// A DPoP-bound token sent as a bearer token (RFC 9449 §7.1 downgrade).
    BoundAsBearer,
    /// A bearer token where DPoP is required.
    Required,
    /// The DPoP scheme where the issuer or route has DPoP off.
    NotAccepted,
    /// The DPoP scheme with a token bound to no key.
    NotBound,
    MissingProof,
    ManyProofs,
    Malformed,
    WrongType,
    AlgorithmNotAllowed,
    PrivateKey,
    BadKey,
    BadSignature,
    WrongMethod,
    WrongUrl,
    /// Neither `[server] public_url` nor a Host to build the URL from.
    UnknownUrl,
    Stale,
    Replayed,
    WrongAth,
    KeyMismatch,
    NonceRequired,
    /// The replay cache is full of live proofs.
    Busy,
}

impl DpopFailure {
    pub fn description(self) -> &'static str {
        match self {
            Self::BoundAsBearer => "token is DPoP-bound: send it as Authorization: DPoP with a DPoP proof",
            Self::Required => "this API requires DPoP-bound tokens sent with a DPoP proof",
            Self::NotAccepted => "DPoP is not accepted for this token here (dpop = \"off\")",
            Self::NotBound => "token sent with the DPoP scheme is not bound to a key (no cnf.jkt)",
            Self::MissingProof => "the DPoP header with a proof is missing",
            Self::ManyProofs => "more than one DPoP header",
            Self::Malformed => {
                "DPoP proof is not a JWS with a JSON header and payload and the claims RFC 9449 requires"
            }
            Self::WrongType => "DPoP proof typ is not dpop+jwt",
            Self::AlgorithmNotAllowed => "DPoP proof alg is not an accepted asymmetric algorithm",
            Self::PrivateKey => "DPoP proof jwk holds private key members",
            Self::BadKey => "DPoP proof jwk is not a usable public key for its alg",
            Self::BadSignature => "DPoP proof signature is invalid",
            Self::WrongMethod => "DPoP proof htm is not this request's method",
            Self::WrongUrl => "DPoP proof htu is not this request's URL",
            Self::UnknownUrl => {
                "the gateway cannot tell this request's URL to check the proof's htu ([server] public_url)"
            }
            Self::Stale => "DPoP proof iat is outside the accepted window",
            Self::Replayed => "DPoP proof was already used (jti seen before)",
            Self::WrongAth => "DPoP proof ath is not the hash of this access token",
            Self::KeyMismatch => "DPoP proof key is not the key the token is bound to (cnf.jkt)",
            Self::NonceRequired => "DPoP proof must carry the nonce this gateway issued (DPoP-Nonce)",
            Self::Busy => "too many DPoP proofs in the replay window; retry shortly",
        }
    }

    /// The challenge's `error`: the token's fault, the proof's, or a nonce to use.
    pub fn error(self) -> &'static str {
        match self {
            // The token without its proof: RFC 6750's invalid_token, as the contract says.
            Self::BoundAsBearer | Self::Required | Self::NotAccepted | Self::NotBound | Self::KeyMismatch => {
                "invalid_token"
            }
            Self::NonceRequired => "use_dpop_nonce",
            _ => "invalid_dpop_proof",
        }
    }

    pub fn reason(self) -> Reason {
        match self {
            Self::BoundAsBearer | Self::Required | Self::NotAccepted | Self::NotBound | Self::KeyMismatch => {
                Reason::DpopBinding
            }
            Self::Replayed => Reason::DpopReplayed,
            Self::NonceRequired => Reason::DpopNonce,
            _ => Reason::DpopProof,
        }
    }
}

/// How the token came: the token, whether under the DPoP scheme, and the
/// headers its proof is in.
#[derive(Clone, Copy)]
pub struct TokenSent<'a> {
    pub token: &'a str,
    pub dpop_scheme: bool,
    pub headers: &'a HeaderMap,
}

/// The request a proof must be for.
pub struct ProofTarget<'a> {
    /// As the client sent it (before any method override).
    pub method: &'a Method,
    /// Canonical, as routes judge it.
    pub path: &'a str,
    /// Whether the listener spoke TLS; with the Host, the URL when there
    /// is no `public_url`.
    pub https: bool,
    /// `:authority` (HTTP/2) or `Host`; `None` in forward-auth mode.
    pub authority: Option<&'a str>,
}

/// DPoP as one configuration judges it.
pub struct Dpop {
    /// Where a verified token keeps `cnf.jkt`.
    jkt: ValueSlot,
    public_url: Option<PublicUrl>,
    nonces: Option<hmac::Key>,
    /// Shared with the configurations a reload puts in its place, so a
    /// reload never forgets a proof that could still be replayed.
    replay: Arc<ReplayCache>,
}

/// The clock, in seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The `algs` of a DPoP challenge.
pub fn algorithms_text() -> String {
    SUPPORTED_ALGORITHMS.iter().map(|alg| format!("{alg:?}")).collect::<Vec<_>>().join(" ")
}

impl Dpop {
    pub fn new(public_url: Option<PublicUrl>, nonces: bool, plan: &mut ClaimPlan) -> Dpop {
        Dpop {
            jkt: plan.keep_value(&ClaimPath::nested(&["cnf", "jkt"])),
            public_url,
            nonces: nonces.then(|| {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                hmac::Key::generate(hmac::HMAC_SHA256, &rng)
                    .unwrap_or_else(|_| hmac::Key::new(hmac::HMAC_SHA256, &[0; 32]))
            }),
            replay: Arc::default(),
        }
    }

    /// Takes over what `previous` (the configuration a reload replaces)
    /// remembers: the `jti`s of accepted proofs, and the nonce key when both
    /// use nonces, so nonces already handed out still hold.
    pub fn carry_over(&mut self, previous: &Dpop) {
        self.replay = Arc::clone(&previous.replay);
        if self.nonces.is_some()
            && let Some(key) = &previous.nonces
        {
            self.nonces = Some(key.clone());
        }
    }

    /// Whether `verified`, sent with `token` under the DPoP scheme or not,
    /// may pass under `mode`: a bound token only with a proof of its key
    /// for `target`, made within the window, never seen before.
    pub fn judge(
        &self,
        mode: DpopMode,
        verified: &Verified,
        sent: &TokenSent<'_>,
        target: &ProofTarget<'_>,
        now: impl FnOnce() -> u64,
    ) -> Result<(), DpopFailure> {
        let TokenSent { token, dpop_scheme, headers } = *sent;
        let bound = verified.value(self.jkt).map(|jkt| jkt.as_str().unwrap_or_default());
        if !dpop_scheme {
            return match (bound, mode) {
                (Some(_), _) => Err(DpopFailure::BoundAsBearer),
                (None, DpopMode::Required) => Err(DpopFailure::Required),
                (None, _) => Ok(()),
            };
        }
        if mode == DpopMode::Off {
            return Err(DpopFailure::NotAccepted);
        }
        let bound = bound.ok_or(DpopFailure::NotBound)?;
        let mut proofs = headers.get_all(&DPOP).iter();
        let proof = proofs.next().ok_or(DpopFailure::MissingProof)?;
        if proofs.next().is_some() {
            return Err(DpopFailure::ManyProofs);
        }
        let proof = proof.to_str().map_err(|_| DpopFailure::Malformed)?;
        self.check_proof(proof, bound, token, target, now())
    }

    /// A nonce for a `use_dpop_nonce` challenge, when nonces are on.
    pub fn nonce(&self, now: u64) -> Option<HeaderValue> {
        let key = self.nonces.as_ref()?;
        HeaderValue::try_from(make_nonce(key, now / NONCE_PERIOD_SECS)).ok()
    }

    fn check_proof(
        &self,
        proof: &str,
        bound: &str,
        token: &str,
        target: &ProofTarget<'_>,
        now: u64,
    ) -> Result<(), DpopFailure> {
        let mut parts = proof.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(DpopFailure::Malformed);
        };
        let decode = |segment: &str| -> Result<Map<String, Value>, DpopFailure> {
            let bytes = URL_SAFE_NO_PAD.decode(segment).map_err(|_| DpopFailure::Malformed)?;
            parse_object(&bytes, PROOF_DEPTH).map_err(|_| DpopFailure::Malformed)
        };
        let header = decode(header)?;
        if !header.get("typ").and_then(Value::as_str).is_some_and(|typ| typ.eq_ignore_ascii_case("dpop+jwt")) {
            return Err(DpopFailure::WrongType);
        }
        if header.contains_key("crit") {
            return Err(DpopFailure::Malformed);
        }
        let alg = header.get("alg").and_then(Value::as_str).and_then(|alg| alg.parse::<Algorithm>().ok());
        let alg = alg.filter(|alg| SUPPORTED_ALGORITHMS.contains(alg)).ok_or(DpopFailure::AlgorithmNotAllowed)?;
        let jwk = header.get("jwk").and_then(Value::as_object).ok_or(DpopFailure::Malformed)?;
        if PRIVATE_MEMBERS.iter().any(|member| jwk.contains_key(*member)) {
            return Err(DpopFailure::PrivateKey);
        }
        let thumbprint = thumbprint(jwk).ok_or(DpopFailure::BadKey)?;
        let key = VerifyingKey::from_jwk(Value::Object(jwk.clone())).map_err(|_| DpopFailure::BadKey)?;
        if !key.accepts(alg) {
            return Err(DpopFailure::BadKey);
        }
        let signing_input = &proof[..header_len(proof)];
        if !key.verify(alg, signing_input.as_bytes(), signature) {
            return Err(DpopFailure::BadSignature);
        }
        let claims = decode(payload)?;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).ok_or(DpopFailure::Malformed);
        let jti = text("jti")
            .and_then(|jti| if (1..=256).contains(&jti.len()) { Ok(jti) } else { Err(DpopFailure::Malformed) })?;
        if text("htm")? != target.method.as_str() {
            return Err(DpopFailure::WrongMethod);
        }
        self.check_url(text("htu")?, target)?;
        let iat = claims.get("iat").and_then(Value::as_f64).ok_or(DpopFailure::Malformed)?;
        if iat < now.saturating_sub(MAX_AGE_SECS) as f64 || iat > (now + MAX_AHEAD_SECS) as f64 {
            return Err(DpopFailure::Stale);
        }
        let ath = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, token.as_bytes()));
        if text("ath").map_err(|_| DpopFailure::WrongAth)? != ath {
            return Err(DpopFailure::WrongAth);
        }
        if thumbprint != bound {
            return Err(DpopFailure::KeyMismatch);
        }
        if let Some(key) = &self.nonces
            && !claims.get("nonce").and_then(Value::as_str).is_some_and(|nonce| nonce_holds(key, nonce, now))
        {
            return Err(DpopFailure::NonceRequired);
        }
        // Last: only a proof that passed everything uses up its jti. It
        // passes the iat check up to now + MAX_AHEAD + MAX_AGE inclusive, so
        // it is remembered one second past that (`first_use` forgets at `expires`).
        self.replay.first_use(&thumbprint, jti, now + MAX_AGE_SECS + MAX_AHEAD_SECS + 1, now)
    }

    /// `htu` against the URL the request was made to: scheme, host and
    /// port as `public_url` (or the listener and Host) say, and the path
    /// canonicalised as routes judge it; query and fragment ignored.
    fn check_url(&self, htu: &str, target: &ProofTarget<'_>) -> Result<(), DpopFailure> {
        let htu = url::Url::parse(htu).map_err(|_| DpopFailure::WrongUrl)?;
        let expected = match &self.public_url {
            Some(public) => public.clone(),
            None => {
                let authority = target.authority.ok_or(DpopFailure::UnknownUrl)?;
                let scheme = if target.https { "https" } else { "http" };
                let own = url::Url::parse(&format!("{scheme}://{authority}/")).map_err(|_| DpopFailure::UnknownUrl)?;
                PublicUrl {
                    scheme: scheme.to_string(),
                    host: own.host_str().unwrap_or_default().to_ascii_lowercase(),
                    port: own.port_or_known_default().unwrap_or(0),
                    base_path: String::new(),
                }
            }
        };
        let host = htu.host_str().unwrap_or_default().to_ascii_lowercase();
        if htu.scheme() != expected.scheme
            || host != expected.host
            || htu.port_or_known_default() != Some(expected.port)
        {
            return Err(DpopFailure::WrongUrl);
        }
        let path = htu.path().strip_prefix(expected.base_path.as_str()).ok_or(DpopFailure::WrongUrl)?;
        let path = if path.is_empty() { "/" } else { path };
        match crate::path::normalize(path) {
            Ok(canonical) if path.starts_with('/') && canonical == target.path => Ok(()),
            _ => Err(DpopFailure::WrongUrl),
        }
    }
}

/// The length of `header.payload`, the bytes a JWS signature covers.
fn header_len(proof: &str) -> usize {
    proof.rfind('.').unwrap_or(0)
}

/// RFC 7638: base64url(SHA-256) of the key's required members, in
/// lexicographic order, without whitespace.
pub fn thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str).and_then(|v| serde_json::to_string(v).ok());
    let canonical = match jwk.get("kty").and_then(Value::as_str)? {
        "RSA" => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, member("e")?, member("n")?),
        "EC" => format!(r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#, member("crv")?, member("x")?, member("y")?),
        "OKP" => format!(r#"{{"crv":{},"kty":"OKP","x":{}}}"#, member("crv")?, member("x")?),
        _ => return None,
    };
    Some(URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes())))
}

/// A nonce: the period it was made in and a MAC of it, so any replica
/// with the key can check it without storing it.
fn make_nonce(key: &hmac::Key, period: u64) -> String {
    let tag = hmac::sign(key, &period.to_be_bytes());
    let mut bytes = period.to_be_bytes().to_vec();
    bytes.extend_from_slice(&tag.as_ref()[..16]);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn nonce_holds(key: &hmac::Key, nonce: &str, now: u64) -> bool {
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(nonce) else { return false };
    let Some((period, tag)) = bytes.split_first_chunk::<8>() else { return false };
    let period_value = u64::from_be_bytes(*period);
    let current = now / NONCE_PERIOD_SECS;
    // The period is the client's to write: u64::MAX + 1 must not overflow.
    let fresh = period_value == current || period_value.checked_add(1) == Some(current);
    let expected = hmac::sign(key, period);
    fresh && tag.len() == 16 && aws_lc_rs::constant_time::verify_slices_are_equal(tag, &expected.as_ref()[..16]).is_ok()
}

/// The `jti`s of accepted proofs until their window closes. A lock per
/// shard, held for one hash-map step: only DPoP requests come here, and
/// remembering a proof is a write every one of them must make.
struct ReplayCache {
    shards: [Mutex<HashMap<u128, u64>>; SHARDS],
    /// Hashed before each key and `jti`: a client cannot choose `jti`s
    /// that land in one shard and fill it (the bound is per shard), so
    /// crowding others out takes filling them all, `REPLAY_CAPACITY`
    /// proofs in one window.
    salt: [u8; 32],
}

impl Default for ReplayCache {
    fn default() -> Self {
        let mut salt = [0u8; 32];
        // The system's randomness failing leaves a fixed salt: the cache
        // still works, only its shards can be aimed at again.
        let _ = aws_lc_rs::rand::fill(&mut salt);
        ReplayCache { shards: std::array::from_fn(|_| Mutex::new(HashMap::new())), salt }
    }
}

impl ReplayCache {
    /// Remembers the key's `jti` until `expires`; `Replayed` if it is remembered already.
    fn first_use(&self, thumbprint: &str, jti: &str, expires: u64, now: u64) -> Result<(), DpopFailure> {
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(&self.salt);
        context.update(thumbprint.as_bytes());
        context.update(&[0]);
        context.update(jti.as_bytes());
        let hash = context.finish();
        let hash = hash.as_ref();
        let mut id = [0u8; 16];
        id.copy_from_slice(&hash[..16]);
        let shard = &self.shards[usize::from(hash[16]) % SHARDS];
        let mut seen = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.get(&u128::from_le_bytes(id)).is_some_and(|until| *until > now) {
            return Err(DpopFailure::Replayed);
        }
        if seen.len() >= REPLAY_CAPACITY / SHARDS {
            seen.retain(|_, until| *until > now);
            if seen.len() >= REPLAY_CAPACITY / SHARDS {
                return Err(DpopFailure::Busy);
            }
        }
        seen.insert(u128::from_le_bytes(id), expires);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1's example key and thumbprint.
    #[test]
    fn thumbprints_follow_rfc_7638() {
        let jwk = serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let jwk = jwk.as_object().unwrap();
        assert_eq!(thumbprint(jwk).as_deref(), Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"));
    }

    #[test]
    fn nonces_hold_for_their_period_and_the_next_and_only_with_the_key() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).unwrap();
        let other = hmac::Key::generate(hmac::HMAC_SHA256, &rng).unwrap();
        let now = 1_800_000_000;
        let nonce = make_nonce(&key, now / NONCE_PERIOD_SECS);
        assert!(nonce_holds(&key, &nonce, now));
        assert!(nonce_holds(&key, &nonce, now + NONCE_PERIOD_SECS));
        assert!(!nonce_holds(&key, &nonce, now + 2 * NONCE_PERIOD_SECS));
        assert!(!nonce_holds(&other, &nonce, now));
        assert!(!nonce_holds(&key, "not-a-nonce", now));
    }

    /// A P-256 key, its public JWK's thumbprint, and a proof by it for
    /// `GET https://api.example.com/orders` with `token`'s `ath`.
    fn signed_proof(token: &str, jti: &str, iat: u64) -> (String, String) {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])
        });
        let ath = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, token.as_bytes()));
        let header = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        let claims = serde_json::json!({
            "jti": jti, "htm": "GET", "htu": "https://api.example.com/orders", "iat": iat, "ath": ath
        });
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = pair.sign(&rng, input.as_bytes()).unwrap();
        let proof = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
        (proof, thumbprint(jwk.as_object().unwrap()).unwrap())
    }

    fn public_dpop(nonces: bool) -> Dpop {
        let public =
            PublicUrl { scheme: "https".into(), host: "api.example.com".into(), port: 443, base_path: String::new() };
        Dpop::new(Some(public), nonces, &mut ClaimPlan::default())
    }

    /// Red team: a proof dated `MAX_AHEAD_SECS` ahead passes the `iat`
    /// check until `MAX_AGE_SECS` after its `iat`, inclusive; its `jti`
    /// must be remembered that long, not a second less.
    #[test]
    fn dpop_proof_cannot_be_replayed_in_the_last_second_of_its_window() {
        let dpop = public_dpop(false);
        let target = ProofTarget { method: &Method::GET, path: "/orders", https: true, authority: None };
        let first_use = 1_800_000_000;
        let iat = first_use + MAX_AHEAD_SECS;
        let (proof, jkt) = signed_proof("tok", "j-1", iat);
        assert_eq!(dpop.check_proof(&proof, &jkt, "tok", &target, first_use), Ok(()));
        for later in [first_use + 1, iat + MAX_AGE_SECS - 1, iat + MAX_AGE_SECS] {
            assert_eq!(
                dpop.check_proof(&proof, &jkt, "tok", &target, later),
                Err(DpopFailure::Replayed),
                "{} s after first use",
                later - first_use
            );
        }
        assert_eq!(
            dpop.check_proof(&proof, &jkt, "tok", &target, iat + MAX_AGE_SECS + 1),
            Err(DpopFailure::Stale),
            "then too old anyway"
        );
    }

    /// Red team: a nonce is any base64url string an attacker writes; its
    /// period (the first 8 bytes) is theirs too, and `u64::MAX` must be a
    /// stale nonce, not an overflow (a panic where overflow is checked).
    #[test]
    fn dpop_nonce_with_the_largest_period_is_refused_not_a_panic() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).unwrap();
        let mut bytes = u64::MAX.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 16]);
        let nonce = URL_SAFE_NO_PAD.encode(bytes);
        assert!(!nonce_holds(&key, &nonce, 1_800_000_000));
    }

    /// Red team: the bound is per shard and the shard was the hash of the
    /// key's thumbprint and a `jti` the client chooses, so one client with
    /// one bound token could fill a single shard with
    /// `REPLAY_CAPACITY / SHARDS` (65 536) proofs in the 360 s window,
    /// about 180 requests a second, and every other client's proofs that
    /// landed there (1 in 16) were refused `Busy`. With the cache's secret
    /// salt hashed first, `jti`s aimed at one shard spread over all.
    #[test]
    fn dpop_replay_shard_cannot_be_filled_by_one_key() {
        let cache = ReplayCache::default();
        let shard_of = |thumbprint: &str, jti: &str| {
            let mut context = digest::Context::new(&digest::SHA256);
            context.update(thumbprint.as_bytes());
            context.update(&[0]);
            context.update(jti.as_bytes());
            usize::from(context.finish().as_ref()[16]) % SHARDS
        };
        let (now, expires) = (1_800_000_000, 1_800_000_361);
        let mut filled = 0;
        let mut n = 0u64;
        while filled < REPLAY_CAPACITY / SHARDS {
            n += 1;
            let jti = n.to_string();
            if shard_of("attacker", &jti) == 0 {
                assert_eq!(cache.first_use("attacker", &jti, expires, now), Ok(()));
                filled += 1;
            }
        }
        let victim_jti = (0u64..).map(|i| format!("v{i}")).find(|jti| shard_of("victim", jti) == 0).unwrap();
        assert_eq!(cache.first_use("victim", &victim_jti, expires, now + 1), Ok(()), "another client's proof");
    }

    #[test]
    fn a_jti_is_used_once_per_key_until_its_window_closes() {
        let cache = ReplayCache::default();
        assert_eq!(cache.first_use("key-a", "1", 100, 10), Ok(()));
        assert_eq!(cache.first_use("key-a", "1", 100, 20), Err(DpopFailure::Replayed));
        assert_eq!(cache.first_use("key-b", "1", 100, 20), Ok(()), "another key's jti is another proof");
        assert_eq!(cache.first_use("key-a", "1", 200, 100), Ok(()), "remembered only until it expires");
    }
}
