//! Taking the bearer token out of a request (RFC 6750 §2.1).

use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::CredentialError;

/// The default of `limits.max_token_bytes`.
pub use crate::config::defaults::MAX_TOKEN_BYTES;

/// The request's bearer token. `Ok(None)` when there is no `Authorization`
/// header or it uses another scheme: RFC 6750 §3.1 treats both as "no
/// credentials". Duplicate headers and malformed values are `invalid_request`.
/// Tokens longer than `max_bytes` are refused before any decoding.
pub fn bearer_token(headers: &HeaderMap, max_bytes: usize) -> Result<Option<&str>, CredentialError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(CredentialError::Malformed("more than one Authorization header"));
    }
    let value = value.as_bytes();
    // A tab ends the scheme too: servers that split on any whitespace
    // would find a token in `Bearer<TAB>x`, so it is malformed, not absent.
    let (scheme, rest) = match value.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, &value[value.len()..]),
    };
    // RFC 9449: `DPoP` carries a token as `Bearer` does; its proof is judged once the token is verified.
    if !scheme.eq_ignore_ascii_case(b"bearer") && !scheme.eq_ignore_ascii_case(b"dpop") {
        return Ok(None);
    }
    if rest.contains(&b'\t') {
        return Err(CredentialError::Malformed("the Bearer credentials contain a tab; write one space after Bearer"));
    }
    let token = trim_spaces(rest);
    if token.is_empty() {
        return Err(CredentialError::Malformed("the Bearer credentials are empty"));
    }
    if token.len() > max_bytes {
        return Err(CredentialError::TooLarge);
    }
    if !is_b64token(token) {
        return Err(CredentialError::Malformed("the Bearer token has characters RFC 6750 does not allow"));
    }
    // is_b64token admits ASCII only, so this cannot fail.
    std::str::from_utf8(token).map(Some).map_err(|_| CredentialError::Malformed("the Bearer token is not ASCII"))
}

/// Whether the request's (one) `Authorization` uses the DPoP scheme.
pub fn dpop_scheme(headers: &HeaderMap) -> bool {
    headers.get(AUTHORIZATION).is_some_and(|value| {
        let value = value.as_bytes();
        value.len() > 5 && value[..4].eq_ignore_ascii_case(b"dpop") && matches!(value[4], b' ' | b'\t')
    })
}

fn trim_spaces(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|&b| b != b' ').map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

/// RFC 6750 `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub(super) fn is_b64token(token: &[u8]) -> bool {
    let body_end = token.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    // A table lookup per byte: tokens are hundreds of bytes, on every request.
    body_end > 0 && token[..body_end].iter().all(|&b| B64TOKEN[usize::from(b)])
}

static B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn extract(values: &[&[u8]]) -> Result<Option<String>, CredentialError> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        bearer_token(&headers, MAX_TOKEN_BYTES).map(|t| t.map(str::to_owned))
    }

    #[test]
    fn takes_the_token_whatever_the_scheme_case() {
        for value in [&b"Bearer abc.def.ghi"[..], b"bearer abc.def.ghi", b"BEARER   abc.def.ghi"] {
            assert_eq!(extract(&[value]).unwrap().as_deref(), Some("abc.def.ghi"));
        }
        assert_eq!(extract(&[b"Bearer a-b_c~d+e/f=="]).unwrap().as_deref(), Some("a-b_c~d+e/f=="));
    }

    #[test]
    fn no_header_or_other_scheme_is_no_token() {
        assert_eq!(extract(&[]).unwrap(), None);
        assert_eq!(extract(&[b"Basic dXNlcjpwYXNz"]).unwrap(), None);
        assert_eq!(extract(&[b"Bearerx abc"]).unwrap(), None);
    }

    #[test]
    fn malformed_values_are_invalid_requests() {
        for value in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Bearer a b",
            b"Bearer a,b",
            b"Bearer =abc",
            b"Bearer a\"b",
            b"Bearer\tx",
            b"bearer \tx",
            b"Bearer x\t",
        ] {
            assert!(
                matches!(extract(&[value]), Err(CredentialError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
        assert!(matches!(extract(&[b"Bearer a", b"Bearer b"]), Err(CredentialError::Malformed(_))));
    }

    #[test]
    fn oversized_tokens_are_refused_unread() {
        let big = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert!(matches!(extract(&[big.as_bytes()]), Err(CredentialError::TooLarge)));
    }
}
