//! `application/x-www-form-urlencoded` (query strings and form bodies) read
//! the way the most lenient common framework reads it, so that a field the
//! gateway looks for (`_method`, a token parameter) cannot hide from it yet
//! be found by the backend: pairs are separated by `&` or `;` (Rack, and
//! the CGI convention), keys are percent- and `+`-decoded, and `.` or a
//! space in a key counts as `_` (PHP turns `.method` into `_method`).
//! Hand-written because it must be exactly this lenient: form crates
//! implement one framework's reading, not the union of them.

/// The pairs of `text`, each with its raw text (separator excluded).
pub fn pairs(text: &str) -> impl Iterator<Item = &str> {
    text.split(['&', ';']).filter(|pair| !pair.is_empty())
}

/// Whether `key` (raw, from a pair) names the field `name` for some
/// framework: decoded, leading spaces dropped (Rack), `.` and ` ` as `_`.
pub fn key_is(key: &str, name: &str) -> bool {
    decode(key).is_some_and(|decoded| {
        let folded: Vec<u8> =
            decoded.trim_ascii_start().iter().map(|&b| if b == b'.' || b == b' ' { b'_' } else { b }).collect();
        folded == name.as_bytes()
    })
}

/// The decoded value of the first field `name` in `text`; `Some(None)`
/// when the field is there but its value cannot be decoded.
pub fn field(text: &str, name: &str) -> Option<Option<Vec<u8>>> {
    pairs(text).find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        key_is(key, name).then(|| decode(value))
    })
}

/// `text` without any pair whose key names `name`, other pairs and their
/// separators as they were.
pub fn without(text: &str, name: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for piece in text.split_inclusive(['&', ';']) {
        let pair = piece.trim_end_matches(['&', ';']);
        let key = pair.split_once('=').map_or(pair, |(key, _)| key);
        if !key_is(key, name) {
            out.push_str(piece);
        }
    }
    out.trim_end_matches(['&', ';']).to_string()
}

/// `+` is a space, `%XX` a byte; `None` for a malformed escape.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
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
        ] {
            assert_eq!(field(query, "_method"), Some(Some(b"PUT".to_vec())), "{query}");
        }
        assert_eq!(field("x_method=PUT&a", "_method"), None);
        assert_eq!(field("_method=%zz", "_method"), Some(None));
    }

    #[test]
    fn without_removes_every_spelling_and_keeps_the_rest() {
        assert_eq!(without("a=1&access_token=x&b=2", "access_token"), "a=1&b=2");
        assert_eq!(without("a=1;access%5Ftoken=x;b=2", "access_token"), "a=1;b=2");
        assert_eq!(without("access_token=x&access.token=y", "access_token"), "");
        assert_eq!(without("a=1&access_token=x", "access_token"), "a=1");
        assert_eq!(without("a=%zz&b", "access_token"), "a=%zz&b");
    }
}
