//! `application/x-www-form-urlencoded` (query strings and form bodies), and
//! the names of cookies and multipart fields, read the way the most lenient
//! common framework reads them, so that a field the gateway looks for
//! (`_method`, a token parameter or cookie) cannot hide from it yet be found
//! by the backend:
//! - pairs are separated by `&` or `;` (Rack, and the CGI convention);
//! - names are percent- and `+`-decoded, leading and trailing spaces
//!   dropped (Rack, cookie parsers), `[` and `]` dropped (Rack's and PHP's
//!   nested names), `.` and a space count as `_` (PHP turns `.method` into
//!   `_method`), and letters compare without case.
//!
//! Hand-written because it must be exactly this lenient: form crates
//! implement one framework's reading, not the union of them.

/// The pairs of `text`, each as its raw bytes (separator excluded).
pub fn pairs(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&b| b == b'&' || b == b';').filter(|pair| !pair.is_empty())
}

/// Splits a pair at its first `=`.
pub fn split_pair(pair: &[u8]) -> (&[u8], &[u8]) {
    match pair.iter().position(|&b| b == b'=') {
        Some(i) => (&pair[..i], &pair[i + 1..]),
        None => (pair, &[]),
    }
}

/// Whether the raw `key` names the field `name` for some framework: both
/// folded alike. A key that cannot be decoded names nothing.
/// It runs for every cookie and query parameter of a request, so it
/// allocates only for a key with escapes.
pub fn key_is(key: &[u8], name: &str) -> bool {
    if !key.iter().any(|&b| b == b'%' || b == b'+') {
        // Without escapes, decoding is the identity.
        return fold(key).eq(fold(name.as_bytes()));
    }
    decode(key).is_some_and(|decoded| fold(&decoded).eq(fold(name.as_bytes())))
}

/// A decoded name as every framework's reading collapses it.
fn fold(decoded: &[u8]) -> impl Iterator<Item = u8> + '_ {
    decoded
        .trim_ascii()
        .iter()
        .filter(|&&b| b != b'[' && b != b']')
        .map(|&b| if b == b'.' || b == b' ' { b'_' } else { b.to_ascii_lowercase() })
}

/// The value of every field named `name` in `text`, decoded (`None` for a
/// value that cannot be decoded), in order: frameworks disagree on which of
/// several wins, so callers look at all of them.
pub fn fields(text: &[u8], name: &str) -> Vec<Option<Vec<u8>>> {
    pairs(text).map(split_pair).filter(|(key, _)| key_is(key, name)).map(|(_, value)| decode(value)).collect()
}

/// `text` without any pair whose key names `name`, other pairs and their
/// separators as they were.
pub fn without(text: &str, name: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for piece in text.split_inclusive(['&', ';']) {
        let pair = piece.trim_end_matches(['&', ';']);
        let (key, _) = split_pair(pair.as_bytes());
        if !key_is(key, name) {
            out.push_str(piece);
        }
    }
    out.trim_end_matches(['&', ';']).to_string()
}

/// `+` is a space, `%XX` a byte; `None` for a malformed escape.
pub fn decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(text.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_however_a_framework_would_spell_them() {
        for query in [
            "_method=PUT",
            "a=1&_method=PUT",
            "a=1;_method=PUT",
            "a=1; _method=PUT",
            "%5Fmethod=PUT",
            ".method=PUT",
            "+_method=PUT",
            "[_method]=PUT",
            "_method]=PUT",
            "_METHOD=PUT",
        ] {
            assert_eq!(fields(query.as_bytes(), "_method"), [Some(b"PUT".to_vec())], "{query}");
        }
        assert!(fields(b"x_method=PUT&a", "_method").is_empty());
        assert_eq!(fields(b"_method=%zz", "_method"), [None]);
        assert_eq!(fields(b"_method=POST&_method=DELETE", "_method").len(), 2);
    }

    #[test]
    fn without_removes_every_spelling_and_keeps_the_rest() {
        assert_eq!(without("a=1&access_token=x&b=2", "access_token"), "a=1&b=2");
        assert_eq!(without("a=1;access%5Ftoken=x;b=2", "access_token"), "a=1;b=2");
        assert_eq!(without("access_token=x&access.token=y&+access_token=z", "access_token"), "");
        assert_eq!(without("a=1&access_token=x", "access_token"), "a=1");
        assert_eq!(without("a=%zz&b", "access_token"), "a=%zz&b");
    }
}
