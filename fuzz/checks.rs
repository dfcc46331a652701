//! What each fuzz target asserts of one input, beyond "no panic". Shared by
//! the fuzz targets and by `tests/fuzz_corpus.rs`, which replays the
//! committed corpus in `cargo test`.

use std::path::Path;

use http::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use jwtgate::auth::bearer::{MAX_TOKEN_BYTES, bearer_token};
use jwtgate::auth::token;
use jwtgate::config::Config;
use jwtgate::path::normalize;

/// The bytes as one `Authorization` header: a token taken from it is
/// non-empty, within the size bound and made only of RFC 6750 characters.
pub fn bearer(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(data) else { return };
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, value);
    if let Ok(Some(token)) = bearer_token(&headers, MAX_TOKEN_BYTES) {
        assert!(!token.is_empty() && token.len() <= MAX_TOKEN_BYTES, "{token:?}");
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)), "{token:?}");
    }
}

/// A token that parses is exactly `signing_input.signature`, with three
/// segments and a non-empty signature.
pub fn token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(parsed) = token::parse(text, jwtgate::auth::DEFAULT_MAX_JSON_DEPTH) {
        assert_eq!(text.len(), parsed.signing_input.len() + 1 + parsed.signature.len());
        assert!(text.starts_with(parsed.signing_input) && text.ends_with(parsed.signature));
        assert_eq!(text.split('.').count(), 3, "{text:?}");
        assert!(!parsed.signature.is_empty());
    }
}

/// A canonical path is a fixed point, starts with `/`, and keeps no dot
/// segment, encoded separator or `;`, backslash, empty segment or
/// parameter on an empty segment; every byte is a plain character, `/`,
/// `;` or an upper-case `%XX` escape.
pub fn path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(normal) = normalize(text) else { return };
    assert!(normal.starts_with('/'), "{text:?} -> {normal:?}");
    assert_eq!(normalize(&normal).as_deref(), Ok(&*normal), "not idempotent: {text:?}");
    assert!(jwtgate::path::is_canonical(&normal), "{text:?} -> {normal:?}");
    for segment in normal[1..].split('/') {
        let name = segment.split(';').next().unwrap_or(segment);
        assert!(name != "." && name != "..", "{text:?} -> {normal:?}");
        assert!(segment.is_empty() || !name.is_empty(), "parameter on an empty segment: {text:?} -> {normal:?}");
    }
    let bytes = normal.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = &bytes[i + 1..i + 3];
            assert!(hex.iter().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)), "{normal:?}");
            i += 3;
        } else {
            assert!(bytes[i].is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@/;".contains(&bytes[i]), "{normal:?}");
            i += 1;
        }
    }
    let upper = normal.to_ascii_uppercase();
    assert!(!upper.contains("%2F") && !upper.contains("%5C") && !upper.contains("%00"), "{normal:?}");
    assert!(!upper.contains("%3B"), "{normal:?}");
    let double = upper
        .as_bytes()
        .windows(5)
        .any(|w| w.starts_with(b"%25") && w[3].is_ascii_hexdigit() && w[4].is_ascii_hexdigit());
    assert!(!double, "double encoding kept: {normal:?}");
    assert!(!normal.contains('\\') && !normal.contains("//"), "{normal:?}");
}

/// Any text is either a configuration or a non-empty list of problems for
/// the file; every `${VAR}` resolves to the same short value.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse(text, "fuzz.toml", Path::new("/nonexistent"), &|_| Some("x".to_owned())) {
        Ok(_) => {}
        Err(error) => {
            assert_eq!(error.file, "fuzz.toml");
            assert!(!error.problems.is_empty());
            assert!(error.problems.iter().all(|p| !p.message.is_empty()), "{error}");
        }
    }
}
