//! The registered-claim checks (RFC 7519 §4.1) made after the signature holds.

use serde_json::Value;

use super::AuthFailure;
use super::token::Claims;

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

/// RFC 7519 NumericDate: a JSON number of seconds, fractions allowed.
fn numeric_date(value: Option<&Value>) -> Result<Option<f64>, AuthFailure> {
    match value {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_f64().filter(|f| f.is_finite()).map(Some).ok_or(AuthFailure::BadTimeClaim),
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
        assert_eq!(ok(json!({"exp": 1e300})), Ok(()));
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
