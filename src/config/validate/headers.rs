//! `[headers]`: identity headers added for verified tokens.

use std::path::Path;
use std::time::Duration;

use http::HeaderName;

use super::Problems;
use crate::config::raw::{RawAssertion, RawHeaders};
use crate::config::{AssertionAlg, AssertionConfig, ClaimPath, HeadersConfig};

/// Claims jwtgate sets in an assertion itself: `claims` may not name them.
const ASSERTION_OWN_CLAIMS: [&str; 6] = ["iss", "aud", "iat", "exp", "nbf", "jti"];
/// Assertions are short-lived: a backend trusts one until it expires.
const MAX_ASSERTION_TTL: Duration = Duration::from_secs(3600);

/// Headers that identity headers may never be: they carry the request
/// itself, or are hop-by-hop.
const RESERVED_HEADERS: [&str; 14] = [
    "authorization",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
    "cookie",
    "x-forwarded-for",
];

pub(super) fn headers(raw: &RawHeaders, base_dir: &Path, p: &mut Problems) -> HeadersConfig {
    let mut seen: Vec<HeaderName> = Vec::new();
    let mut header = |key: &str, name: &str, p: &mut Problems| -> Option<HeaderName> {
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            p.add(key, format!("not a valid header name: {name:?}"));
            return None;
        };
        if RESERVED_HEADERS.contains(&header.as_str()) {
            p.add(key, format!("{name} cannot carry identity"));
            return None;
        }
        if seen.contains(&header) {
            p.add(key, format!("{name} is used twice"));
            return None;
        }
        seen.push(header.clone());
        Some(header)
    };
    let mut claims = Vec::new();
    for (claim, name) in raw.claims.iter().flatten() {
        let key = format!("headers.claims.{claim:?}");
        let path = ClaimPath::parse(claim).map_err(|e| p.add(&key, e)).ok();
        if let (Some(path), Some(name)) = (path, header(&key, name, p)) {
            claims.push((path, name));
        }
    }
    let payload = raw.payload.as_deref().and_then(|name| header("headers.payload", name, p));
    let client_cert_subject =
        raw.client_cert_subject.as_deref().and_then(|name| header("headers.client_cert_subject", name, p));
    let client_spiffe_id = raw.client_spiffe_id.as_deref().and_then(|name| header("headers.client_spiffe_id", name, p));
    let assertion = raw.assertion.as_ref().and_then(|raw| {
        let name = raw.header.as_deref().unwrap_or("X-Jwtgate-Assertion");
        let header = header("headers.assertion.header", name, p);
        assertion(raw, header, base_dir, p)
    });
    HeadersConfig { claims, payload, client_cert_subject, client_spiffe_id, assertion }
}

/// `assertion = { … }`; the key file itself is read by `check::files` and
/// when the gateway is built.
fn assertion(
    raw: &RawAssertion,
    header: Option<HeaderName>,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<AssertionConfig> {
    let key_file = p.required("headers.assertion.key_file", raw.key_file.as_ref()).map(|file| base_dir.join(file));
    let alg = match raw.alg.as_deref().unwrap_or("ES256") {
        "ES256" => Some(AssertionAlg::Es256),
        "EdDSA" => Some(AssertionAlg::EdDsa),
        other => {
            p.add(
                "headers.assertion.alg",
                format!("{other:?} is not an algorithm jwtgate signs with — write alg = \"ES256\" (P-256) or \"EdDSA\" (Ed25519)"),
            );
            None
        }
    };
    let ttl = p.duration("headers.assertion.ttl", raw.ttl.as_deref(), Duration::from_secs(60));
    if ttl < Duration::from_secs(2) || ttl > MAX_ASSERTION_TTL || ttl.subsec_nanos() != 0 {
        p.add(
            "headers.assertion.ttl",
            "must be whole seconds from 2s to 1h (an assertion is reused until half of it is left) — write ttl = \"60s\"",
        );
    }
    let mut claims: Vec<ClaimPath> = Vec::new();
    for name in raw.claims.as_deref().unwrap_or(&["sub".to_string()]) {
        let key = format!("headers.assertion.claims[{name:?}]");
        let path = match ClaimPath::parse(name) {
            Ok(path) => path,
            Err(e) => {
                p.add(&key, e);
                continue;
            }
        };
        if ASSERTION_OWN_CLAIMS.contains(&path.leaf()) {
            p.add(&key, format!("{} is set by jwtgate in every assertion — remove it from claims", path.leaf()));
        } else if claims.iter().any(|kept| kept.leaf() == path.leaf()) {
            p.add(&key, format!("another claim is also carried as {:?} — list each claim name once", path.leaf()));
        } else {
            claims.push(path);
        }
    }
    Some(AssertionConfig { header: header?, key_file: key_file?, alg: alg?, ttl, claims })
}
