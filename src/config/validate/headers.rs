//! `[headers]`: identity headers added for verified tokens.

use http::HeaderName;

use super::Problems;
use crate::config::raw::RawHeaders;
use crate::config::{ClaimPath, HeadersConfig};

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

pub(super) fn headers(raw: &RawHeaders, p: &mut Problems) -> HeadersConfig {
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
    HeadersConfig { claims, payload, client_cert_subject, client_spiffe_id }
}
