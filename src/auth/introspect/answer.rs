//! An RFC 7662 §2.2 answer, read with the strict JSON rules of token
//! payloads: one object, no member named twice at any depth, bounded
//! nesting. Only `active` is required; it must be a JSON boolean.

use serde_json::Value;

use crate::auth::strict_json::parse_object;
use crate::auth::token::Claims;

/// What the endpoint said about one token.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// `active: true`, with every member of the answer (`active` included).
    Active(Claims),
    /// `active: false`: expired, revoked, unknown, or not for this caller.
    Inactive,
}

/// Reads the body of a 200 answer; `Err` says why it is no answer at all
/// (the request then gets 503, never an allow).
pub fn parse(body: &[u8], max_depth: usize) -> Result<Answer, &'static str> {
    let members = parse_object(body, max_depth)
        .map_err(|_| "the answer is not one JSON object without repeated members (RFC 7662 §2.2)")?;
    match members.get("active") {
        Some(Value::Bool(true)) => Ok(Answer::Active(members)),
        Some(Value::Bool(false)) => Ok(Answer::Inactive),
        Some(_) => Err("the answer's active member is not a JSON boolean"),
        None => Err("the answer has no active member"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Answer, &'static str> {
        parse(text.as_bytes(), 8)
    }

    #[test]
    fn an_active_answer_keeps_every_member() {
        let Ok(Answer::Active(claims)) =
            read(r#"{"active":true,"sub":"u1","client_id":"c","scope":"a b","exp":2000,"ext":{"x":[1]}}"#)
        else {
            panic!("active")
        };
        assert_eq!(claims["sub"], "u1");
        assert_eq!(claims["scope"], "a b");
        assert_eq!(claims["ext"]["x"][0], 1);
    }

    #[test]
    fn active_false_is_inactive_whatever_else_it_says() {
        assert_eq!(read(r#"{"active":false}"#), Ok(Answer::Inactive));
        assert_eq!(read(r#"{"active":false,"sub":"u1","exp":99999999999}"#), Ok(Answer::Inactive));
    }

    /// Parsers disagree on which duplicate wins: an answer naming `active`
    /// (or any member) twice is no answer.
    #[test]
    fn a_repeated_member_makes_the_answer_unusable() {
        assert!(read(r#"{"active":false,"active":true}"#).is_err());
        assert!(read(r#"{"active":true,"sub":"a","sub":"b"}"#).is_err());
        assert!(read(r#"{"active":true,"ext":{"r":1,"r":2}}"#).is_err());
    }

    /// Only the JSON boolean `true` is active: a string, a number or a
    /// missing member is an unusable answer (503), never an allow.
    #[test]
    fn active_must_be_a_json_boolean() {
        for text in [r#"{"active":"true"}"#, r#"{"active":1}"#, r#"{"active":null}"#, r#"{"sub":"u"}"#] {
            assert!(read(text).is_err(), "{text}");
        }
    }

    #[test]
    fn anything_but_one_json_object_is_unusable() {
        for text in ["", "null", "[true]", "<html>", r#"{"active":true} {}"#, r#"{"active":true"#] {
            assert!(read(text).is_err(), "{text:?}");
        }
        let deep = format!("{{\"active\":true,\"a\":{}1{}}}", "[".repeat(20), "]".repeat(20));
        assert!(read(&deep).is_err(), "nesting is bounded");
    }
}
