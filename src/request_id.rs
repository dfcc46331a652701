//! Request ids: the client's `X-Request-Id` when it is a sensible token,
//! otherwise a new one unique to this process.

use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderName, HeaderValue};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// A client's request id longer than this is replaced.
const MAX_REQUEST_ID: usize = 128;

/// Request ids: the client's `X-Request-Id` when it is a sensible token,
/// otherwise a new one unique to this process (random prefix + counter).
pub(crate) struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl RequestIds {
    pub(crate) fn new() -> RequestIds {
        let mut seed = [0u8; 8];
        // Should the system RNG fail, the clock still separates restarts.
        let prefix = match aws_lc_rs::rand::fill(&mut seed) {
            Ok(()) => u64::from_le_bytes(seed),
            Err(_) => {
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
            }
        };
        RequestIds { prefix, next: AtomicU64::new(0) }
    }

    pub(crate) fn take_or_make(&self, headers: &http::HeaderMap) -> HeaderValue {
        if let Some(id) = headers.get(&X_REQUEST_ID).filter(|v| is_valid_request_id(v.as_bytes())) {
            return id.clone();
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // 16 hex digits of prefix, then the low 8 of the counter, written
        // by hand: `format!` costs more than the rest of this function.
        let mut id = [0u8; 24];
        hex_into(&mut id[..16], self.prefix);
        hex_into(&mut id[16..], n);
        HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    }
}

/// Writes the low `4 * out.len()` bits of `value` as lower-case hex.
fn hex_into(out: &mut [u8], mut value: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b"0123456789abcdef"[(value & 0xf) as usize];
        value >>= 4;
    }
}

/// Printable ASCII without spaces or quotes, at most 128 bytes: safe to log and forward.
fn is_valid_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.iter().all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        let ids = RequestIds::new();
        let mut headers = http::HeaderMap::new();
        let a = ids.take_or_make(&headers);
        let b = ids.take_or_make(&headers);
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        let prefix = format!("{:016x}", ids.prefix);
        assert_eq!(a.to_str().unwrap(), format!("{prefix}00000000"));
        assert_eq!(b.to_str().unwrap(), format!("{prefix}00000001"));
        headers.insert(&X_REQUEST_ID, HeaderValue::from_static("trace-123"));
        assert_eq!(ids.take_or_make(&headers), "trace-123");
        headers.insert(&X_REQUEST_ID, HeaderValue::from_static("has space"));
        assert_ne!(ids.take_or_make(&headers), "has space");
        headers.insert(&X_REQUEST_ID, HeaderValue::try_from("x".repeat(129)).unwrap());
        assert_eq!(ids.take_or_make(&headers).len(), 24);
    }
}
