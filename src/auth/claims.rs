//! Claims: the registered-claim checks (RFC 7519 §4.1) made after the
//! signature holds, and [`ClaimPath`], how configuration names a claim.

use serde_json::Value;

use super::AuthFailure;
use super::token::Claims;

pub use crate::config::ClaimPath;

/// Whether `scope` is among the token's scopes: the union of the scope
/// claims, each a space-delimited string (`scope`, RFC 8693) or an array
/// of strings (`scp`, Auth0's `permissions`).
pub fn has_scope(claims: &Claims, scope_claims: &[ClaimPath], scope: &str) -> bool {
    scope_claims.iter().filter_map(|path| path.lookup(claims)).any(|value| match value {
        Value::String(s) => s.split_whitespace().any(|x| x == scope),
        Value::Array(items) => items.iter().any(|x| x.as_str() == Some(scope)),
        _ => false,
    })
}

/// A route's claim rule on the claim's `value` (`None`: the token has no
/// such claim): it equals `expected`, or is an array containing it.
pub fn claim_matches(value: Option<&Value>, expected: &Value) -> bool {
    match value {
        Some(Value::Array(items)) => items.contains(expected),
        Some(value) => value == expected,
        None => false,
    }
}

/// `exp` is required and `nbf` honoured, each with `leeway` seconds of skew.
pub fn check_times(claims: &Claims, now: u64, leeway: u64) -> Result<(), AuthFailure> {
    let now = now as f64;
    let leeway = leeway as f64;
    let exp = numeric_date(claims.get("exp"))?.ok_or(AuthFailure::MissingExp)?;
    if now >= exp + leeway {
        return Err(AuthFailure::Expired);
    }
    if let Some(nbf) = numeric_date(claims.get("nbf"))?
        && now + leeway < nbf
    {
        return Err(AuthFailure::NotYetValid);
    }
    Ok(())
}

/// RFC 9068 §2.2 with a bound: `iat` present and `exp - iat` at most `max` seconds.
pub fn check_lifetime(claims: &Claims, max: u64) -> Result<(), AuthFailure> {
    let exp = numeric_date(claims.get("exp"))?.ok_or(AuthFailure::MissingExp)?;
    let iat = numeric_date(claims.get("iat"))?.ok_or(AuthFailure::MissingRequiredClaim)?;
    if exp - iat > max as f64 { Err(AuthFailure::LifetimeTooLong) } else { Ok(()) }
}

/// RFC 7800 `cnf`: a token bound to a key or certificate is good only with
/// its proof, and the gateway checks two kinds of binding, on every
/// request: `jkt` (DPoP, RFC 9449) and `x5t#S256` (RFC 8705). A `cnf` that
/// holds neither (a `jwk`, `jku`, `kid`…) binds the token to a proof the
/// gateway cannot check, so the token is refused rather than taken as a
/// bearer token.
pub fn check_confirmation(claims: &Claims) -> Result<(), AuthFailure> {
    match claims.get("cnf") {
        None => Ok(()),
        Some(Value::Object(cnf)) if cnf.contains_key("jkt") || cnf.contains_key("x5t#S256") => Ok(()),
        Some(_) => Err(AuthFailure::BoundWithoutProof),
    }
}

/// Every claim in `required` is present (any value, `null` included).
pub fn check_required(claims: &Claims, required: &[ClaimPath]) -> Result<(), AuthFailure> {
    if required.iter().all(|path| path.lookup(claims).is_some()) {
        Ok(())
    } else {
        Err(AuthFailure::MissingRequiredClaim)
    }
}

/// RFC 7519 NumericDate: a JSON number of seconds, fractions allowed,
/// within the signed 64-bit range that Envoy, jsonwebtoken and most
/// backends read it into: `1e30` is malformed, not "never expires".
fn numeric_date(value: Option<&Value>) -> Result<Option<f64>, AuthFailure> {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    match value {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite() && (-LIMIT..LIMIT).contains(f))
            .map(Some)
            .ok_or(AuthFailure::BadTimeClaim),
        Some(_) => Err(AuthFailure::BadTimeClaim),
    }
}

/// `aud` (a string or an array of strings) must contain an accepted audience.
pub fn check_audience(claims: &Claims, accepted: &[String]) -> Result<(), AuthFailure> {
    let ok = match claims.get("aud") {
        None => return Err(AuthFailure::MissingAudience),
        Some(Value::String(aud)) => accepted.contains(aud),
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str().is_some_and(|a| accepted.iter().any(|x| x == a))),
        Some(_) => false,
    };
    if ok { Ok(()) } else { Err(AuthFailure::WrongAudience) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn time_checks() {
        let now = 1_000_000;
        let ok = |v| check_times(&claims(v), now, 30);
        assert_eq!(ok(json!({"exp": now + 60})), Ok(()));
        assert_eq!(ok(json!({"exp": now - 10})), Ok(()), "inside leeway");
        assert_eq!(ok(json!({"exp": now - 30})), Err(AuthFailure::Expired));
        assert_eq!(ok(json!({"exp": (now - 31) as f64 + 0.5})), Err(AuthFailure::Expired));
        assert_eq!(ok(json!({})), Err(AuthFailure::MissingExp));
        assert_eq!(ok(json!({"exp": "2099-01-01"})), Err(AuthFailure::BadTimeClaim));
        assert_eq!(ok(json!({"exp": now + 60, "nbf": now + 20})), Ok(()), "nbf inside leeway");
        assert_eq!(ok(json!({"exp": now + 600, "nbf": now + 60})), Err(AuthFailure::NotYetValid));
        assert_eq!(ok(json!({"exp": now + 60, "nbf": null})), Err(AuthFailure::BadTimeClaim));
        assert_eq!(ok(json!({"exp": 1e300})), Err(AuthFailure::BadTimeClaim));
        assert_eq!(ok(json!({"exp": 1e30})), Err(AuthFailure::BadTimeClaim));
        assert_eq!(
            ok(json!({"exp": 9_223_372_036_854_775_807u64})),
            Err(AuthFailure::BadTimeClaim),
            "2^63 once a float"
        );
        assert_eq!(ok(json!({"exp": 9_000_000_000_000_000_000u64})), Ok(()), "far future, in range");
        assert_eq!(ok(json!({"exp": now + 60, "nbf": -1e19})), Err(AuthFailure::BadTimeClaim));
    }

    #[test]
    fn claim_paths() {
        let c = claims(json!({
            "https://example.com/roles": ["admin"],
            "realm_access": {"roles": ["user", "ops"]},
            "a/b": {"~x": 1},
            "list": [{"id": 7}],
        }));
        let get = |name: &str| ClaimPath::parse(name).unwrap().lookup(&c).cloned();
        assert_eq!(get("https://example.com/roles"), Some(json!(["admin"])));
        assert_eq!(get("/realm_access/roles"), Some(json!(["user", "ops"])));
        assert_eq!(get("/a~1b/~0x"), Some(json!(1)));
        assert_eq!(get("/list/0/id"), Some(json!(7)));
        assert_eq!(get("/list/x"), None);
        assert_eq!(get("/realm_access/missing"), None);
        assert!(ClaimPath::parse("/bad~2").is_err());
        assert!(ClaimPath::parse("").is_err());
    }

    #[test]
    fn scopes_from_every_claim_shape() {
        let paths: Vec<ClaimPath> =
            ["scope", "scp", "permissions"].iter().map(|n| ClaimPath::parse(n).unwrap()).collect();
        let c = claims(json!({"scope": "read:a  write:a", "scp": ["scp:x"], "permissions": ["perm:y"]}));
        for scope in ["read:a", "write:a", "scp:x", "perm:y"] {
            assert!(has_scope(&c, &paths, scope), "{scope}");
        }
        assert!(!has_scope(&c, &paths, "read"));
        assert!(!has_scope(&claims(json!({"scope": 1})), &paths, "1"));
        let nested = [ClaimPath::parse("/realm_access/roles").unwrap()];
        assert!(has_scope(&claims(json!({"realm_access": {"roles": ["admin"]}})), &nested, "admin"));
    }

    #[test]
    fn claim_rules() {
        let c = claims(json!({"tenant": "acme", "groups": ["a", "b"], "level": 3, "admin": true}));
        let rule = |name: &str, v: Value| claim_matches(ClaimPath::parse(name).unwrap().lookup(&c), &v);
        assert!(rule("tenant", json!("acme")));
        assert!(!rule("tenant", json!("other")));
        assert!(rule("groups", json!("b")));
        assert!(rule("level", json!(3)));
        assert!(rule("admin", json!(true)));
        assert!(!rule("missing", json!("acme")));
    }

    #[test]
    fn audience_checks() {
        let accepted = vec!["api".to_string(), "other".to_string()];
        let check = |v| check_audience(&claims(v), &accepted);
        assert_eq!(check(json!({"aud": "api"})), Ok(()));
        assert_eq!(check(json!({"aud": ["x", "other"]})), Ok(()));
        assert_eq!(check(json!({"aud": ["x", 1]})), Err(AuthFailure::WrongAudience));
        assert_eq!(check(json!({"aud": "API"})), Err(AuthFailure::WrongAudience));
        assert_eq!(check(json!({"aud": {"api": true}})), Err(AuthFailure::WrongAudience));
        assert_eq!(check(json!({})), Err(AuthFailure::MissingAudience));
    }
}
