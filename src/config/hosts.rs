//! Host names routes match on (`routes[].hosts`), and the one spelling of a
//! request's host they are compared with.
//!
//! A host is compared the way virtual-hosting servers read it: letters
//! case-folded, the port ignored, internationalised names as their ASCII
//! (IDNA, punycode) form. What two servers could read differently — a
//! trailing dot, non-ASCII bytes, percent-escapes, userinfo, an empty
//! host — is refused rather than guessed at (see [`request_host`]).

use std::borrow::Cow;

/// A configured host: exactly one name, or `*.suffix` for every name
/// below `suffix` (any number of labels: `*.example.com` takes
/// `api.example.com` and `a.b.example.com`, not `example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// ASCII, lower-case; for a wildcard, `.suffix` with its leading dot.
    name: String,
    wildcard: bool,
}

impl HostPattern {
    /// Reads a configured host, IDNA-normalised (`Café.example` is
    /// `xn--caf-dma.example`).
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let fix = "write a host name such as \"api.example.com\" or \"*.example.com\"";
        let (rest, wildcard) = match text.strip_prefix("*.") {
            Some(rest) => (rest, true),
            None => (text, false),
        };
        if rest.contains('*') {
            return Err(format!("{text:?}: '*' may only be the whole first label (\"*.example.com\") — {fix}"));
        }
        if rest.contains(':') && !rest.starts_with('[') {
            return Err(format!("{text:?}: the port is not part of a host match (ports are ignored) — remove it"));
        }
        if rest.ends_with('.') {
            return Err(format!("{text:?}: remove the trailing dot"));
        }
        if rest.contains('%') {
            return Err(format!("{text:?}: write the name without percent-escapes"));
        }
        let name = match url::Host::parse(rest) {
            Ok(url::Host::Domain(name)) => name,
            Ok(url::Host::Ipv4(ip)) if !wildcard => ip.to_string(),
            Ok(url::Host::Ipv6(ip)) if !wildcard => format!("[{ip}]"),
            Ok(_) => return Err(format!("{text:?}: a wildcard needs a domain name after \"*.\" — {fix}")),
            Err(why) => return Err(format!("{text:?} is not a host name ({why}) — {fix}")),
        };
        if name.is_empty() || !name.bytes().all(is_host_byte) {
            return Err(format!("{text:?} is not a host name — {fix}"));
        }
        Ok(HostPattern { name: if wildcard { format!(".{name}") } else { name }, wildcard })
    }

    /// Whether `host`, a request's host as [`request_host`] gives it, is
    /// this one.
    pub fn matches(&self, host: &str) -> bool {
        if self.wildcard { host.len() > self.name.len() && host.ends_with(&self.name) } else { host == self.name }
    }

    /// A host this one takes: its name, or one below a wildcard's suffix.
    pub fn example(&self) -> String {
        if self.wildcard { format!("probe{}", self.name) } else { self.name.clone() }
    }

    /// Whether every host this one takes, `other` takes too.
    pub fn within(&self, other: &HostPattern) -> bool {
        match (self.wildcard, other.wildcard) {
            (_, false) => !self.wildcard && self.name == other.name,
            (false, true) => other.matches(&self.name),
            (true, true) => self.name.ends_with(&other.name),
        }
    }
}

/// As configured, normalised: `api.example.com` or `*.example.com`.
impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.wildcard { write!(f, "*{}", self.name) } else { f.write_str(&self.name) }
    }
}

/// The bytes a host name is made of once normalised: letters, digits,
/// `-`, `.`, `_` (which real names use), and an IPv6 literal's brackets,
/// hex digits and colons.
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_' | b'[' | b']' | b':')
}

/// The host a request is addressed to — its authority, or its `Host`
/// (the two agree or the request was refused already) — without the port
/// and lower-cased, allocating only when it has upper-case letters. What
/// servers could read as different hosts is refused: non-ASCII or escaped
/// names (one server decodes, another does not), a trailing dot (nginx
/// drops it when matching `server_name`, others keep it), userinfo, and an
/// empty host.
pub fn request_host(raw: &str) -> Result<Cow<'_, str>, &'static str> {
    let host = if let Some(literal) = raw.strip_prefix('[') {
        // An IPv6 literal, `[...]` then an optional port.
        let end = literal.find(']').ok_or("the request's host is not a host name")?;
        let after = &literal[end + 1..];
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))) {
            return Err("the request's host is not a host name");
        }
        &raw[..end + 2]
    } else {
        match raw.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            Some(_) => return Err("the request's host is not a host name"),
            None => raw,
        }
    };
    if host.is_empty() {
        return Err("the request has no host (Host or :authority)");
    }
    if host.ends_with('.') {
        return Err("the request's host ends with a dot, which servers read differently; send it without the dot");
    }
    if !host.bytes().all(|b| is_host_byte(b.to_ascii_lowercase())) {
        return Err(
            "the request's host has characters other than letters, digits, '-', '.' and '_' (send IDNA names as xn--…)",
        );
    }
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    };
    if !is_canonical_address(&host) {
        return Err("the request's host is an IP address not written in its one usual form (as 127.0.0.1 or [::1])");
    }
    Ok(host)
}

/// Whether `host` (lower case), when it is an IP address as a URL parser
/// reads one, is written as configured patterns are: `[::1]`, not
/// `[0:0::1]`; `127.0.0.1`, not `127.1` or `0x7f.0.0.1` (which WHATWG
/// URL parsers read as 127.0.0.1, and nginx's `server_name` does not).
/// A route for the address must not be passed over for another spelling.
fn is_canonical_address(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').unwrap_or(inner);
        return inner.parse::<std::net::Ipv6Addr>().is_ok_and(|ip| ip.to_string() == inner);
    }
    // Brackets and colons belong to an IPv6 literal only (`a:b:80`, `::1`, `a]`).
    if host.bytes().any(|b| matches!(b, b'[' | b']' | b':')) {
        return false;
    }
    // Only a name whose last label is a number can be an IPv4 address.
    let last = host.rsplit('.').next().unwrap_or(host);
    let numeric = last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x");
    !numeric || !matches!(url::Host::parse(host), Ok(url::Host::Ipv4(ip)) if ip.to_string() != host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> HostPattern {
        HostPattern::parse(text).unwrap()
    }

    #[test]
    fn configured_hosts_are_case_folded_and_idna_normalised() {
        assert_eq!(pattern("API.Example.com").to_string(), "api.example.com");
        assert_eq!(pattern("Café.example").to_string(), "xn--caf-dma.example");
        assert_eq!(pattern("*.Café.example").to_string(), "*.xn--caf-dma.example");
        assert_eq!(pattern("127.0.0.1").to_string(), "127.0.0.1");
        assert_eq!(pattern("[::1]").to_string(), "[::1]");
        for bad in [
            "api.example.com:8443",
            "a.*.example.com",
            "*example.com",
            "*.*.example.com",
            "",
            "api.example.com.",
            "a b",
            "*.127.0.0.1",
            "ex%41mple.com",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_wildcard_takes_every_name_below_its_suffix_and_not_the_suffix() {
        let any = pattern("*.example.com");
        assert!(any.matches("api.example.com"));
        assert!(any.matches("a.b.example.com"));
        assert!(!any.matches("example.com"));
        assert!(!any.matches("evilexample.com"));
        assert!(!any.matches("api.example.com.evil"));
        let one = pattern("api.example.com");
        assert!(one.matches("api.example.com") && !one.matches("x.api.example.com"));
        assert!(one.within(&any) && !any.within(&one));
        assert!(pattern("*.a.example.com").within(&any));
        assert!(!pattern("*.example.org").within(&any));
        assert!(one.within(&pattern("api.example.com")));
    }

    #[test]
    fn request_hosts_lose_the_port_and_case_and_ambiguities_are_refused() {
        assert_eq!(request_host("API.example.com:8080").unwrap(), "api.example.com");
        assert!(matches!(request_host("api.example.com").unwrap(), Cow::Borrowed("api.example.com")));
        assert_eq!(request_host("[::1]:443").unwrap(), "[::1]");
        assert_eq!(request_host("127.0.0.1").unwrap(), "127.0.0.1");
        for bad in [
            "",
            ":80",
            "api.example.com.",
            "api.example.com.:443",
            "caf\u{e9}.example",
            "ex%41mple.com",
            "user@api.example.com",
            "api.example.com:x",
            "[::1",
            "[::1]x",
            "a b",
        ] {
            assert!(request_host(bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod red_team {
    use super::*;

    /// An IP literal has many spellings that every server reads as the same
    /// address; a route for `[::1]` or `127.0.0.1` must not be skipped (and
    /// an any-host route chosen instead) because the request spelled it
    /// another way.
    #[test]
    fn ip_literal_spellings_are_one_host_or_refused() {
        for (configured, sent) in [
            ("[::1]", "[0:0:0:0:0:0:0:1]"),
            ("[::1]", "[::0001]:443"),
            ("[2001:db8::1]", "[2001:DB8:0::1]"),
            ("127.0.0.1", "127.1"),
            ("127.0.0.1", "127.000.000.001"),
            ("127.0.0.1", "0x7f.0.0.1"),
        ] {
            let pattern = HostPattern::parse(configured).unwrap();
            if let Ok(host) = request_host(sent) {
                assert!(pattern.matches(&host), "{sent} is {configured} but is read as {host}");
            }
        }
        // Not an address at all, between brackets.
        assert!(request_host("[api.example.com]").is_err());
        // Brackets or colons outside one, or a bare IPv6 address.
        for bad in ["a:b:80", "::1", "2001:db8::1", "api.example.com]", "a[b"] {
            assert!(request_host(bad).is_err(), "{bad}");
        }
    }
}
