//! SPIFFE IDs (`spiffe://trust-domain/path`) and the patterns routes allow
//! them by. Hand-written: the rules are a dozen lines of the SPIFFE-ID
//! specification (§2), and no maintained crate checks exactly them without
//! pulling in a URL parser that would accept more (ports, userinfo,
//! percent-escapes, upper-case trust domains) than a SPIFFE ID may hold.

/// The longest SPIFFE ID accepted (the specification's URI bound).
const MAX_ID_BYTES: usize = 2048;
/// The longest trust domain accepted (a DNS name's bound).
const MAX_TRUST_DOMAIN_BYTES: usize = 255;

/// The trust domain of a valid SPIFFE ID (`spiffe://TD` or
/// `spiffe://TD/segments`), or why it is not one.
pub fn trust_domain(id: &str) -> Result<&str, &'static str> {
    if id.len() > MAX_ID_BYTES {
        return Err("is longer than 2048 bytes");
    }
    let rest = id.strip_prefix("spiffe://").ok_or("does not start with spiffe://")?;
    let (domain, path) = rest.split_once('/').map_or((rest, None), |(d, p)| (d, Some(p)));
    if domain.is_empty() || domain.len() > MAX_TRUST_DOMAIN_BYTES {
        return Err("has no trust domain, or one longer than 255 bytes");
    }
    if !domain.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')) {
        return Err("has a trust domain with characters other than a-z, 0-9, '.', '-' and '_'");
    }
    if let Some(path) = path {
        for segment in path.split('/') {
            if segment.is_empty() || segment == "." || segment == ".." {
                return Err("has an empty, '.' or '..' path segment (or a trailing '/')");
            }
            if !segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) {
                return Err("has a path with characters other than letters, digits, '.', '-' and '_'");
            }
        }
    }
    Ok(domain)
}

/// An allowed SPIFFE ID: exactly `spiffe://TD/path`, or with `/*` every
/// ID below it (`spiffe://TD/ns/billing/*` takes `…/billing/api` and
/// `…/billing/api/v2`, not `…/billing` itself nor `…/billing-old`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffePattern {
    /// The ID, or the prefix up to and including the `/` before `*`.
    text: String,
    below: bool,
}

impl SpiffePattern {
    pub fn parse(text: &str) -> Result<SpiffePattern, String> {
        let (id, below) = match text.strip_suffix("/*") {
            Some(prefix) => (prefix, true),
            None => (text, false),
        };
        trust_domain(id)
            .map_err(|why| format!("{text:?} {why}; write spiffe://TRUST_DOMAIN/PATH, or PATH/* for every ID below"))?;
        let text = if below { format!("{id}/") } else { id.to_string() };
        Ok(SpiffePattern { text, below })
    }

    /// The trust domain the pattern is in.
    pub fn trust_domain(&self) -> &str {
        let rest = &self.text["spiffe://".len()..];
        rest.split('/').next().unwrap_or(rest)
    }

    /// Whether `id`, a valid SPIFFE ID, is allowed.
    pub fn matches(&self, id: &str) -> bool {
        if self.below { id.len() > self.text.len() && id.starts_with(&self.text) } else { id == self.text }
    }
}

/// As written: the ID, or `prefix/*`.
impl std::fmt::Display for SpiffePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)?;
        if self.below { f.write_str("*") } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_are_held_to_the_specification() {
        assert_eq!(trust_domain("spiffe://example.org/ns/billing/sa/api"), Ok("example.org"));
        assert_eq!(trust_domain("spiffe://example.org"), Ok("example.org"));
        for bad in [
            "https://example.org/x",
            "spiffe://",
            "spiffe:///x",
            "spiffe://Example.org/x",
            "spiffe://example.org:8443/x",
            "spiffe://user@example.org/x",
            "spiffe://example.org/",
            "spiffe://example.org//x",
            "spiffe://example.org/a/../b",
            "spiffe://example.org/a/./b",
            "spiffe://example.org/a%2Fb",
            "spiffe://example.org/a?b",
            "spiffe://example.org/a#b",
        ] {
            assert!(trust_domain(bad).is_err(), "{bad}");
        }
        assert!(trust_domain(&format!("spiffe://example.org/{}", "a".repeat(2040))).is_err());
    }

    #[test]
    fn patterns_take_the_id_or_everything_below_it() {
        let exact = SpiffePattern::parse("spiffe://example.org/ns/billing/api").unwrap();
        assert!(exact.matches("spiffe://example.org/ns/billing/api"));
        assert!(!exact.matches("spiffe://example.org/ns/billing/api/v2"));
        let below = SpiffePattern::parse("spiffe://example.org/ns/billing/*").unwrap();
        assert_eq!(below.trust_domain(), "example.org");
        assert_eq!(below.to_string(), "spiffe://example.org/ns/billing/*");
        assert_eq!(exact.to_string(), "spiffe://example.org/ns/billing/api");
        assert!(below.matches("spiffe://example.org/ns/billing/api"));
        assert!(below.matches("spiffe://example.org/ns/billing/api/v2"));
        assert!(!below.matches("spiffe://example.org/ns/billing"));
        assert!(!below.matches("spiffe://example.org/ns/billing-old/api"));
        assert!(!below.matches("spiffe://other.org/ns/billing/api"));
        let domain = SpiffePattern::parse("spiffe://example.org/*").unwrap();
        assert!(domain.matches("spiffe://example.org/anything"));
        assert!(!domain.matches("spiffe://example.org.evil/anything"));
        for bad in ["spiffe://example.org/ns/*/api", "spiffe://example.org/ns*", "example.org/*", "spiffe://*"] {
            assert!(SpiffePattern::parse(bad).is_err(), "{bad}");
        }
    }
}
