//! Structural parsing of a compact JWS before any cryptography: three
//! base64url segments, a JOSE header naming an algorithm, a JSON object payload.
//! Everything refused here costs no signature check.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::AuthFailure;
use super::strict_json::parse_object;

pub type Claims = Map<String, Value>;

/// A token split and decoded, signature not yet checked.
#[derive(Debug)]
pub struct Unverified<'a> {
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
    pub signature: &'a str,
    pub alg: Algorithm,
    pub kid: Option<String>,
    /// The header's `typ`, when it has one.
    pub typ: Option<String>,
    pub claims: Claims,
}

/// Splits and decodes `token`; its header and payload may nest objects and
/// arrays `max_depth` levels deep.
pub fn parse(token: &str, max_depth: usize) -> Result<Unverified<'_>, AuthFailure> {
    let mut parts = token.splitn(3, '.');
    let (Some(header), Some(payload), Some(signature)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(AuthFailure::NotJwt);
    };
    if signature.contains('.') || signature.is_empty() {
        return Err(AuthFailure::NotJwt);
    }
    let signing_input = &token[..header.len() + 1 + payload.len()];
    // Parsed once, strictly: duplicate names (two "alg"s) are refused like duplicate claims.
    // Only alg, kid and crit are read; `jku`, `x5u`, `jwk` and `x5c` are
    // deliberately ignored: keys come only from the issuer's configured JWKS.
    let header_bytes = URL_SAFE_NO_PAD.decode(header).map_err(|_| AuthFailure::BadHeader)?;
    let header = parse_object(&header_bytes, max_depth).map_err(|_| AuthFailure::BadHeader)?;
    // RFC 7515 §4.1.11: a recipient must refuse critical extensions it does not
    // understand, and jwtgate understands none; any `crit`, even null, is refused.
    if header.contains_key("crit") {
        return Err(AuthFailure::UnsupportedCritical);
    }
    let alg = header.get("alg").and_then(Value::as_str).ok_or(AuthFailure::BadHeader)?;
    let alg = alg.parse::<Algorithm>().map_err(|_| AuthFailure::AlgorithmNotAllowed)?;
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(AuthFailure::BadHeader),
    };
    let typ = match header.get("typ") {
        None | Some(Value::Null) => None,
        Some(Value::String(typ)) => Some(typ.clone()),
        Some(_) => return Err(AuthFailure::BadHeader),
    };
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| AuthFailure::BadPayload)?;
    let claims = parse_object(&payload, max_depth).map_err(|_| AuthFailure::BadPayload)?;
    Ok(Unverified { signing_input, signature, alg, kid, typ, claims })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(payload))
    }

    #[test]
    fn parses_a_well_formed_token() {
        let t = token(r#"{"alg":"RS256","kid":"k1","jku":"https://evil"}"#, r#"{"iss":"x"}"#);
        let parsed = parse(&t, 32).unwrap();
        assert_eq!(parsed.alg, Algorithm::RS256);
        assert_eq!(parsed.kid.as_deref(), Some("k1"));
        assert_eq!(parsed.claims["iss"], "x");
        assert_eq!(parsed.signature, "c2ln");
        assert!(t.starts_with(parsed.signing_input));
    }

    #[test]
    fn refuses_structural_problems() {
        let cases = [
            ("abc", AuthFailure::NotJwt),
            ("a.b", AuthFailure::NotJwt),
            ("a.b.c.d.e", AuthFailure::NotJwt),
            (&*format!("{}.{}.", b64(r#"{"alg":"RS256"}"#), b64("{}")), AuthFailure::NotJwt),
            (&*token("not json", "{}"), AuthFailure::BadHeader),
            (&*token(r#"{"kid":"k"}"#, "{}"), AuthFailure::BadHeader),
            (&*token(r#"{"alg":"none"}"#, "{}"), AuthFailure::AlgorithmNotAllowed),
            (&*token(r#"{"alg":"NONE"}"#, "{}"), AuthFailure::AlgorithmNotAllowed),
            (&*token(r#"{"alg":"RS256","crit":["exp"]}"#, "{}"), AuthFailure::UnsupportedCritical),
            (&*token(r#"{"alg":"RS256","crit":null}"#, "{}"), AuthFailure::UnsupportedCritical),
            (&*token(r#"{"alg":"RS256"}"#, "[1]"), AuthFailure::BadPayload),
            ("e30=.e30.c2ln", AuthFailure::BadHeader),
            (&*token(r#"{"alg":"RS256","alg":"none"}"#, "{}"), AuthFailure::BadHeader),
            (&*token(r#"{"alg":"RS256"}"#, r#"{"sub":"a","sub":"b"}"#), AuthFailure::BadPayload),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input, 32).unwrap_err(), expected, "{input}");
        }
    }
}
