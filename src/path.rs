//! Request path normalisation, done before routing so that the gateway and
//! the upstream can never disagree about which path a request is for: the
//! normalised path is both what routes match and what the upstream receives.
//!
//! - `%XX` escapes of unreserved characters (RFC 3986 §2.3) are decoded;
//!   other escapes are kept, with upper-case hex (§6.2.2.1).
//! - `.` and `..` segments are resolved (§5.2.4) and repeated `/` merged.
//! - Refused: `%2F`/`%5C` (an encoded separator means something different to
//!   different servers), raw `\`, NUL (raw or `%00`) and other encoded
//!   control characters (`%0D%0A`), malformed escapes,
//!   a `..` that would climb above the root, `.`/`..` carrying a `;`
//!   parameter (`/..;/`, which some Java servers treat as `..`), a
//!   double-encoded dot or separator (`%252e`, `%252f`, `%255c`) for servers
//!   that decode twice, and escapes that are not valid UTF-8 once decoded
//!   (overlong forms such as `%C0%AE`).

use std::borrow::Cow;

/// Why a path was refused; the text is the client's `error_description`.
pub type PathError = &'static str;

pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err("request path must start with /");
    }
    if is_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
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

/// The common case: nothing to decode, resolve or refuse.
fn is_normal(path: &str) -> bool {
    if path.bytes().any(|b| matches!(b, b'%' | b'\\' | 0)) {
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
        if name == "." || name == ".." {
            return false;
        }
    }
    true
}

fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    // The path as a server that decodes every escape would see it.
    let mut fully_decoded: Vec<u8> = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            0 => return Err("request path contains a NUL byte"),
            b'\\' => return Err("request path contains a backslash"),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or("request path has a malformed percent-escape")?;
                let value = hex_value(hex[0])
                    .zip(hex_value(hex[1]))
                    .map(|(h, l)| h << 4 | l)
                    .ok_or("request path has a malformed percent-escape")?;
                fully_decoded.push(value);
                match value {
                    b'/' | b'\\' => return Err("request path contains an encoded slash or backslash"),
                    0 => return Err("request path contains a NUL byte"),
                    v if v.is_ascii_control() => return Err("request path contains an encoded control character"),
                    v if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') => out.push(v as char),
                    v => {
                        out.push('%');
                        out.push(HEX[usize::from(v >> 4)] as char);
                        out.push(HEX[usize::from(v & 0xf)] as char);
                    }
                }
                i += 3;
                continue;
            }
            _ => {
                // Copy the run up to the next special byte as-is (it is valid UTF-8).
                let end = bytes[i..].iter().position(|&c| matches!(c, b'%' | b'\\' | 0)).map_or(bytes.len(), |p| i + p);
                out.push_str(&path[i..end]);
                fully_decoded.extend_from_slice(&bytes[i..end]);
                i = end;
                continue;
            }
        }
    }
    // Overlong or broken UTF-8 in escapes (`%C0%AE` for ".") is how some
    // decoders were talked into a dot or a slash.
    if std::str::from_utf8(&fully_decoded).is_err() {
        return Err("request path is not valid UTF-8 once decoded");
    }
    // Checked on the result, not the input: `%25` followed by `2` and an
    // escaped `e` (`%252%65`) only becomes `%252e` once decoded here.
    if has_double_encoded_separator(&out) {
        return Err("request path has a double-encoded dot, slash or backslash");
    }
    // A dot segment carrying a parameter is refused rather than guessed at.
    if out.split('/').any(|s| matches!(s.split_once(';'), Some((".", _)) | Some(("..", _)))) {
        return Err("request path has a dot segment with a ';' parameter");
    }
    Ok(out)
}

/// `%25` followed by the escape of `.`, `/` or `\\`: what a server that
/// decodes twice turns into that character.
fn has_double_encoded_separator(path: &str) -> bool {
    path.as_bytes().windows(5).any(|w| {
        w.starts_with(b"%25")
            && hex_value(w[3]).zip(hex_value(w[4])).is_some_and(|(h, l)| matches!(h << 4 | l, b'.' | b'/' | b'\\'))
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
            ("/é", "/é"),
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
                "\\", "%", "%0", "%0a", "%7f", "é", "~", "-",
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
                    for segment in normal.split('/') {
                        let name = segment.split(';').next().unwrap_or(segment);
                        prop_assert!(name != "." && name != "..", "{path:?} -> {normal:?}");
                    }
                    let upper = normal.to_ascii_uppercase();
                    prop_assert!(!upper.contains("%2F") && !upper.contains("%5C") && !upper.contains("%00"), "{normal:?}");
                    prop_assert!(!normal.contains('\\') && !normal.contains("//"), "{normal:?}");
                }
            }
        }
    }
}
