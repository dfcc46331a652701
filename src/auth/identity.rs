//! Identity headers: the verified caller handed to an unmodified backend:
//! claims of its token, and the subject and SPIFFE ID of the client
//! certificate its connection presented. Every configured name is stripped
//! from every incoming request first, so a client can never supply its own
//! identity.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tracing::warn;

use super::claims::ClaimPath;
use super::{ClaimPlan, HeaderClaim, HeaderSlot, Verified};
use crate::client_cert::ClientCert;
use crate::config::HeadersConfig;

pub struct IdentityHeaders {
    /// Each claim with its header and where a verified token keeps its value.
    claims: Vec<(ClaimPath, HeaderName, HeaderSlot)>,
    payload: Option<HeaderName>,
    /// `client_cert_subject`, `client_spiffe_id`.
    cert_subject: Option<HeaderName>,
    spiffe_id: Option<HeaderName>,
    /// `[headers] assertion`'s header: signed elsewhere, stripped here.
    assertion: Option<HeaderName>,
}

impl IdentityHeaders {
    /// Registers in `plan` the claims these headers carry.
    pub fn new(config: &HeadersConfig, plan: &mut ClaimPlan) -> IdentityHeaders {
        let claims =
            config.claims.iter().map(|(path, name)| (path.clone(), name.clone(), plan.keep_header(path))).collect();
        if config.payload.is_some() {
            plan.keep_payload();
        }
        IdentityHeaders {
            claims,
            payload: config.payload.clone(),
            cert_subject: config.client_cert_subject.clone(),
            spiffe_id: config.client_spiffe_id.clone(),
            assertion: config.assertion.as_ref().map(|a| a.header.clone()),
        }
    }

    /// Removes every identity header the client sent, whatever the route.
    pub fn strip(&self, headers: &mut HeaderMap) {
        for name in self.names() {
            headers.remove(name);
        }
    }

    /// Every configured header name.
    pub fn names(&self) -> impl Iterator<Item = &HeaderName> {
        self.claims
            .iter()
            .map(|(_, name, _)| name)
            .chain(&self.payload)
            .chain(&self.cert_subject)
            .chain(&self.spiffe_id)
            .chain(&self.assertion)
    }

    /// Adds to `out` the headers for the client certificate `certificate`,
    /// verified in the connection's handshake, whatever the route.
    pub fn add_certificate(&self, certificate: &ClientCert, out: &mut Vec<(HeaderName, HeaderValue)>) {
        if let (Some(name), Some(subject)) = (&self.cert_subject, certificate.subject()) {
            out.push((name.clone(), subject.clone()));
        }
        if let (Some(name), Some(id)) = (&self.spiffe_id, certificate.spiffe_id()) {
            out.push((name.clone(), id.clone()));
        }
    }

    /// The headers to add for `verified`, which was read from `token`. A
    /// claim whose value cannot be a header value (CR, LF, NUL…) is left out
    /// and logged by name only.
    pub fn values(&self, verified: &Verified, token: &str) -> Vec<(HeaderName, HeaderValue)> {
        if self.claims.is_empty() && self.payload.is_none() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(self.claims.len() + 1);
        for (path, name, slot) in &self.claims {
            match verified.header(*slot) {
                Some(HeaderClaim::Ready(value)) => out.push((name.clone(), value.clone())),
                Some(HeaderClaim::Unrenderable) => {
                    warn!(claim = path.name(), header = %name, "claim value is not a valid header value; header left out")
                }
                Some(HeaderClaim::Absent) | None => {}
            }
        }
        // The token's own payload segment is exactly the verified JSON,
        // base64url-encoded without padding: no need to encode it again,
        // unless the gateway's `{tenant}` claim made the two differ (then
        // the verified token keeps it re-encoded).
        if let Some(name) = &self.payload {
            let value = match verified.rewritten_payload() {
                Some(HeaderClaim::Ready(value)) => Some(value.clone()),
                Some(HeaderClaim::Absent | HeaderClaim::Unrenderable) => None,
                None => token.split('.').nth(1).and_then(|segment| HeaderValue::from_str(segment).ok()),
            };
            if let Some(value) = value {
                out.push((name.clone(), value));
            }
        }
        out
    }

    /// Whether `name` (lower case) is one of the identity headers.
    pub fn is_identity(&self, name: &str) -> bool {
        self.names().any(|n| n.as_str() == name)
    }
}

/// Strings as they are, arrays joined with ",", anything else as compact JSON.
pub(super) fn header_value(value: &Value) -> Option<HeaderValue> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|item| match item {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            parts.join(",")
        }
        other => other.to_string(),
    };
    // At its exact length: a cached token keeps it.
    HeaderValue::from_maybe_shared(Bytes::from(text.into_boxed_str().into_boxed_bytes())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_claims_as_the_contract_says() {
        let text = |v: Value| header_value(&v).map(|h| h.to_str().unwrap().to_owned());
        assert_eq!(text(json!("user-1")).as_deref(), Some("user-1"));
        assert_eq!(text(json!(["a", "b", 3])).as_deref(), Some("a,b,3"));
        assert_eq!(text(json!({"k": [1, 2]})).as_deref(), Some(r#"{"k":[1,2]}"#));
        assert_eq!(text(json!(true)).as_deref(), Some("true"));
        assert_eq!(text(json!("evil\r\nX-Admin: 1")), None);
        assert_eq!(text(json!("nul\0")), None);
        assert_eq!(text(json!(["ok", "bad\n"])), None);
    }
}
