//! Request path canonicalisation, done before routing so that the gateway
//! and the upstream can never disagree about which path a request is for:
//! the canonical path is both what routes match and what the upstream
//! receives, and in forward-auth mode only a path already in this form is
//! approved. Hand-written: no crate canonicalises for *every* common server
//! family at once (Tomcat/Spring/Jetty, Express/Node, werkzeug/WSGI, Go,
//! ASP.NET, nginx) and refuses what they would read differently.
//!
//! The canonical form:
//! - Characters that every server decodes to the same thing (RFC 3986
//!   unreserved, sub-delims other than `;`, `:` and `@`) appear raw:
//!   `%61dmin` → `admin`, `items%3Apurge` → `items:purge`.
//! - Everything else is percent-encoded with upper-case hex (§6.2.2.1):
//!   `é` → `%C3%A9`, `%c3%a9` → `%C3%A9`, a raw `{` → `%7B`.
//! - `.` and `..` segments are resolved (§5.2.4) and repeated `/` merged.
//! - A segment's `;parameters` stay (Tomcat strips them, Express keeps them;
//!   routes judge a segment by its name before the `;`, which is how the
//!   servers that strip them read it).
//!
//! Refused, because two server families read them differently:
//! `%2F`/`%5C` (an encoded separator), `%3B` (an encoded parameter
//! separator), a raw `\`, NUL and other control characters raw or encoded,
//! malformed escapes, a `..` that would climb above the root, a parameter
//! on an empty segment (`/;x/admin`: Tomcat merges the empty segment away,
//! so a following `..` means something else to it), `.`/`..` carrying a
//! parameter (`/..;/`, which Java servers treat as `..`), a double-encoded
//! dot or separator (`%252e`, `%252f`, `%255c`) for servers that decode
//! twice, and escapes that are not valid UTF-8 once decoded (overlong
//! forms such as `%C0%AE`).

use std::borrow::Cow;

/// Why a path was refused; the text is the client's `error_description`.
pub type PathError = &'static str;

/// The canonical form of `path`, borrowed when `path` already is canonical.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err("request path must start with /");
    }
    if is_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode(path)?;
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded[1..].split('/') {
        trailing_slash = false;
        match segment {
            "" | "." => trailing_slash = true,
            ".." => {
                if segments.pop().is_none() {
                    return Err("request path climbs above the root");
                }
                trailing_slash = true;
            }
            s if s.starts_with(';') => return Err("request path has a ';' parameter on an empty segment"),
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// Whether `path` is exactly its own canonical form: what forward-auth
/// mode asks of an original URI before it can be approved.
pub fn is_canonical(path: &str) -> bool {
    normalize(path).is_ok_and(|normal| normal == path)
}

/// Characters that appear raw in the canonical form, and that an escape
/// is decoded to: every server reads them the same, raw or escaped.
fn is_plain(b: u8) -> bool {
    CLASS[usize::from(b)] == PLAIN
}

/// Bytes that stand for themselves in the canonical form: plain
/// characters and the separators `/` and `;`.
fn is_raw(b: u8) -> bool {
    CLASS[usize::from(b)] != OTHER
}

const OTHER: u8 = 0;
const PLAIN: u8 = 1;
const SEPARATOR: u8 = 2;

/// A table per byte: one lookup on every byte of every path.
static CLASS: [u8; 256] = {
    let mut table = [OTHER; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = if c.is_ascii_alphanumeric() {
            PLAIN
        } else {
            match c {
                b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'='
                | b':' | b'@' => PLAIN,
                b'/' | b';' => SEPARATOR,
                _ => OTHER,
            }
        };
        b += 1;
    }
    table
};

/// The common case: nothing to decode, encode, resolve or refuse.
fn is_normal(path: &str) -> bool {
    if !path.bytes().all(is_raw) {
        return false;
    }
    let mut segments = path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        if segment.is_empty() {
            if segments.peek().is_some() {
                return false;
            }
            continue;
        }
        let name = segment.split(';').next().unwrap_or(segment);
        if name.is_empty() || name == "." || name == ".." {
            return false;
        }
    }
    true
}

fn decode(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len() + 8);
    // The path as a server that decodes every escape would see it.
    let mut fully_decoded: Vec<u8> = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        // A run of bytes that stand for themselves is copied whole.
        if is_raw(b) {
            let end = bytes[i..].iter().position(|&c| !is_raw(c)).map_or(bytes.len(), |p| i + p);
            out.push_str(&path[i..end]);
            fully_decoded.extend_from_slice(&bytes[i..end]);
            i = end;
            continue;
        }
        let (value, escaped) = if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or("request path has a malformed percent-escape")?;
            let value = hex_value(hex[0])
                .zip(hex_value(hex[1]))
                .map(|(h, l)| h << 4 | l)
                .ok_or("request path has a malformed percent-escape")?;
            i += 3;
            (value, true)
        } else {
            i += 1;
            (b, false)
        };
        fully_decoded.push(value);
        match value {
            0 => return Err("request path contains a NUL byte"),
            b'\\' if escaped => return Err("request path contains an encoded slash or backslash"),
            b'\\' => return Err("request path contains a backslash"),
            b'/' if escaped => return Err("request path contains an encoded slash or backslash"),
            b';' if escaped => return Err("request path contains an encoded ';'"),
            v if v.is_ascii_control() => return Err("request path contains a control character"),
            b'/' | b';' => out.push(value as char),
            v if is_plain(v) => out.push(v as char),
            v => {
                out.push('%');
                out.push(HEX[usize::from(v >> 4)] as char);
                out.push(HEX[usize::from(v & 0xf)] as char);
            }
        }
    }
    // Overlong or broken UTF-8 in escapes (`%C0%AE` for ".") is how some
    // decoders were talked into a dot or a slash.
    match std::str::from_utf8(&fully_decoded) {
        Err(_) => return Err("request path is not valid UTF-8 once decoded"),
        Ok(text) if has_asymmetric_case(text) => {
            return Err("request path has a letter that servers fold onto another letter's case (such as ı or ſ)");
        }
        Ok(_) => {}
    }
    // Checked on the result, not the input: `%25` followed by `2` and an
    // escaped `e` (`%252%65`) only becomes `%252e` once decoded here.
    if has_double_encoding(&out) {
        return Err("request path has a double-encoded escape (%25 followed by hex digits)");
    }
    // A dot segment carrying a parameter is refused rather than guessed at.
    if out.split('/').any(|s| matches!(s.split_once(';'), Some((".", _)) | Some(("..", _)))) {
        return Err("request path has a dot segment with a ';' parameter");
    }
    Ok(out)
}

/// `%25` followed by two hex digits: an escape that a server decoding twice
/// turns into a character (`%2561` is `a` to it, `%252e` a dot), so the
/// path it serves is not the one judged here.
fn has_double_encoding(path: &str) -> bool {
    path.as_bytes().windows(5).any(|w| w.starts_with(b"%25") && hex_value(w[3]).is_some() && hex_value(w[4]).is_some())
}

/// A letter whose upper and lower case do not map back to each other
/// (dotless `ı`, long `ſ`, the Kelvin sign, dotted `İ`…): Java's
/// `equalsIgnoreCase` and Spring's case-insensitive matching fold them onto
/// ASCII letters (`/adm%C4%B1n` is `/admin` to them), so no one
/// case-insensitive comparison agrees with every server.
fn has_asymmetric_case(text: &str) -> bool {
    // The one-character (simple) case mapping, as Java's `Character` has it.
    fn single(mut chars: impl Iterator<Item = char>) -> Option<char> {
        match (chars.next(), chars.next()) {
            (Some(c), None) => Some(c),
            _ => None,
        }
    }
    text.chars().filter(|c| !c.is_ascii()).any(|c| {
        if c == '\u{130}' {
            return true;
        }
        let upper = single(c.to_uppercase()).unwrap_or(c);
        let lower = single(c.to_lowercase()).unwrap_or(c);
        single(upper.to_lowercase()).unwrap_or(upper) != lower || single(lower.to_uppercase()).unwrap_or(lower) != upper
    })
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths_are_borrowed() {
        for path in ["/", "/a", "/a/b/", "/a;x=1/b", "/.well-known/x", "/a..b/..c"] {
            assert!(matches!(normalize(path), Ok(Cow::Borrowed(p)) if p == path), "{path}");
        }
    }

    #[test]
    fn resolves_and_decodes() {
        let cases = [
            ("//a///b", "/a/b"),
            ("/a/./b/../c", "/a/c"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/a/", "/a/"),
            ("/%61dmin", "/admin"),
            ("/a/%2e%2E/b", "/b"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/a%20b", "/a%20b"),
            ("/a%3fb", "/a%3Fb"),
            ("/100%25/x", "/100%25/x"),
            ("/%E2%82%AC", "/%E2%82%AC"),
            ("/x/%7e", "/x/~"),
            ("/é", "/%C3%A9"),
            ("/caf%c3%a9/admin", "/caf%C3%A9/admin"),
            ("/v1/items%3Apurge", "/v1/items:purge"),
            ("/a%40b%2b%21", "/a@b+!"),
            ("/a{b}|", "/a%7Bb%7D%7C"),
            ("/a;x/../b", "/b"),
            ("/admin;jsessionid=1/x", "/admin;jsessionid=1/x"),
            ("/stra%C3%9Fe/%C3%89t%C3%A9", "/stra%C3%9Fe/%C3%89t%C3%A9"),
            ("/100%25", "/100%25"),
            ("/100%25z", "/100%25z"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize(input).unwrap(), expected, "{input}");
        }
    }

    #[test]
    fn refuses_tricks() {
        for path in [
            "/..",
            "/a/../..",
            "/%2e%2e",
            "/a%2fb",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
            "/a%00b",
            "/a%",
            "/a%g1",
            "/a/..;/b",
            "/a/.;x/b",
            "*",
            "",
            "a/b",
            "/a%252e%252e/b",
            "/a%252F",
            "/x/%252%652p",
            "/%25%32%65",
            "/%25%32%46",
            "/;/admin",
            "/;x/admin/x",
            "/api/;/admin",
            "/public/;/../admin/x",
            "//;x/admin",
            "/a%3Bb",
            "/a%3bb/x",
            "/a%253Bb",
            "/a%0d%0a",
            "/a%7f",
            "/%2561dmin",
            "/%25252e%25252e/",
            "/adm%C4%B1n",
            "/admin%C5%BF",
            "/adm%C4%B0n",
            "/%E2%84%AA",
            "/adm\u{131}n",
        ] {
            assert!(normalize(path).is_err(), "{path:?} should be refused");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Paths built from the characters that matter to normalisation.
        fn tricky_path() -> impl Strategy<Value = String> {
            let piece = prop::sample::select(vec![
                "/", "//", ".", "..", "%2e", "%2E", "%2f", "%5c", "%25", "%41", "%7e", "%20", "%c0%ae", ";", "a", "b",
                "\\", "%", "%0", "%0a", "%7f", "é", "~", "-", "%3b", "%3a", ";x", "{", "%c3%a9", "A",
            ]);
            prop::collection::vec(piece, 0..12).prop_map(|pieces| format!("/{}", pieces.concat()))
        }

        proptest! {
            #[test]
            fn normalisation_is_idempotent_and_leaves_no_tricks(path in tricky_path()) {
                if let Ok(normal) = normalize(&path) {
                    prop_assert!(normal.starts_with('/'));
                    let again = normalize(&normal);
                    prop_assert!(matches!(&again, Ok(p) if *p == normal), "{path:?} -> {normal:?} -> {again:?}");
                    prop_assert!(is_canonical(&normal));
                    for segment in normal.split('/').skip(1) {
                        let name = segment.split(';').next().unwrap_or(segment);
                        prop_assert!(name != "." && name != "..", "{path:?} -> {normal:?}");
                        prop_assert!(segment.is_empty() || !name.is_empty(), "{path:?} -> {normal:?}");
                    }
                    prop_assert!(normal.bytes().all(|b| is_plain(b) || b"/;%".contains(&b)), "{normal:?}");
                    let upper = normal.to_ascii_uppercase();
                    prop_assert!(!upper.contains("%2F") && !upper.contains("%5C") && !upper.contains("%00"), "{normal:?}");
                    prop_assert!(!normal.contains('\\') && !normal.contains("//"), "{normal:?}");
                }
            }
        }
    }
}
