//! The common rules evaluated without the interpreter. Most routes' rules
//! are string comparisons of a claim, a header, the method, the path or
//! the route (`==`, `!=`, `in` a list, `has`, `&&`, `||`, `!`); the `cel`
//! interpreter allocates every field name and literal on each evaluation
//! (about 1 µs for two comparisons), so such a rule is compiled here once
//! into a small tree that reads the request and the kept claims in place.
//!
//! Hand-written because no crate evaluates CEL without allocating; kept to
//! exactly CEL's meaning by answering only where that meaning is plain —
//! strings, lists of strings, presence — and giving the rest back to the
//! interpreter ([`Outcome::Interpret`]): a number, a boolean or a null
//! anywhere, in either operand. `&&` and `||` go left to right and stop
//! as the interpreter does (an error on the left is the answer). The
//! tests compare it with the interpreter on every combination of operands.

use cel::common::ast::operators::{EQUALS, IN, LOGICAL_AND, LOGICAL_NOT, LOGICAL_OR, NOT_EQUALS};
use cel::common::ast::{Expr, IdedExpr};
use cel::common::value::CelVal;
use serde_json::Value as Json;

use super::{Facts, Rule};

/// A rule this module evaluates.
#[derive(Debug)]
pub(super) enum Fast {
    Eq(Operand, Operand),
    Ne(Operand, Operand),
    /// Needle, haystack.
    In(Operand, Operand),
    /// `has(claims.NAME)`: the index of the claim in the rule's.
    Has(usize),
    And(Box<Fast>, Box<Fast>),
    Or(Box<Fast>, Box<Fast>),
    Not(Box<Fast>),
}

#[derive(Debug)]
pub(super) enum Operand {
    Text(String),
    List(Vec<String>),
    /// The index of the claim in the rule's.
    Claim(usize),
    /// The index of the header in the rule's.
    Header(usize),
    Method,
    Path,
    Route,
}

/// The value of one evaluation.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(super) enum Outcome {
    Value(bool),
    /// CEL's answer is an error (a missing claim or header, `in` a string).
    Error,
    /// Not plainly strings: the interpreter answers.
    Interpret,
}

/// An operand's value.
enum Seen<'a> {
    Text(&'a str),
    Texts(TextList<'a>),
}

enum TextList<'a> {
    Literal(&'a [String]),
    Claim(&'a [Json]),
}

/// `expr` as a fast rule, given the claim and header names the rule reads
/// (in the order `config::cel` found them); `None` when it uses anything else.
pub(super) fn compile(expr: &IdedExpr, claims: &[String], headers: Option<&[String]>) -> Option<Fast> {
    let Expr::Call(call) = &expr.expr else {
        return match &expr.expr {
            Expr::Select(select) if select.test => claim_index(&select.operand, &select.field, claims).map(Fast::Has),
            _ => None,
        };
    };
    if call.target.is_some() {
        return None;
    }
    let two = |make: fn(Operand, Operand) -> Fast| match call.args.as_slice() {
        [a, b] => Some(make(operand(a, claims, headers)?, operand(b, claims, headers)?)),
        _ => None,
    };
    let both = |make: fn(Box<Fast>, Box<Fast>) -> Fast| match call.args.as_slice() {
        [a, b] => Some(make(Box::new(compile(a, claims, headers)?), Box::new(compile(b, claims, headers)?))),
        _ => None,
    };
    match call.func_name.as_str() {
        EQUALS => two(Fast::Eq),
        NOT_EQUALS => two(Fast::Ne),
        IN => two(Fast::In),
        LOGICAL_AND => both(Fast::And),
        LOGICAL_OR => both(Fast::Or),
        LOGICAL_NOT => match call.args.as_slice() {
            [a] => Some(Fast::Not(Box::new(compile(a, claims, headers)?))),
            _ => None,
        },
        _ => None,
    }
}

fn claim_index(operand: &IdedExpr, field: &str, claims: &[String]) -> Option<usize> {
    matches!(&operand.expr, Expr::Ident(name) if name == "claims").then_some(())?;
    claims.iter().position(|name| name == field)
}

fn operand(expr: &IdedExpr, claims: &[String], headers: Option<&[String]>) -> Option<Operand> {
    let text = |e: &IdedExpr| match &e.expr {
        Expr::Literal(CelVal::String(text)) => Some(text.clone()),
        _ => None,
    };
    match &expr.expr {
        Expr::Literal(CelVal::String(text)) => Some(Operand::Text(text.clone())),
        Expr::List(list) => list.elements.iter().map(text).collect::<Option<Vec<_>>>().map(Operand::List),
        Expr::Ident(name) if name == "route" => Some(Operand::Route),
        Expr::Select(select) if !select.test => match &select.operand.expr {
            Expr::Ident(name) if name == "claims" => {
                claim_index(&select.operand, &select.field, claims).map(Operand::Claim)
            }
            Expr::Ident(name) if name == "request" => match select.field.as_str() {
                "method" => Some(Operand::Method),
                "path" => Some(Operand::Path),
                _ => None,
            },
            _ => None,
        },
        Expr::Call(call) if call.func_name == cel::common::ast::operators::INDEX && call.args.len() == 2 => {
            let name = text(&call.args[1])?;
            match &call.args[0].expr {
                Expr::Ident(ident) if ident == "claims" => claims.iter().position(|c| *c == name).map(Operand::Claim),
                Expr::Select(select)
                    if select.field == "headers"
                        && matches!(&select.operand.expr, Expr::Ident(request) if request == "request") =>
                {
                    headers?.iter().position(|h| *h == name).map(Operand::Header)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

impl Fast {
    pub(super) fn evaluate(&self, rule: &Rule, facts: &Facts<'_>) -> Outcome {
        match self {
            Fast::Eq(a, b) | Fast::Ne(a, b) => {
                let equal = match (seen(a, rule, facts), seen(b, rule, facts)) {
                    (Some(Ok(Seen::Text(a))), Some(Ok(Seen::Text(b)))) => a == b,
                    (Some(Err(Outcome::Error)), _) | (_, Some(Err(Outcome::Error))) => return Outcome::Error,
                    _ => return Outcome::Interpret,
                };
                Outcome::Value(equal == matches!(self, Fast::Eq(..)))
            }
            Fast::In(needle, haystack) => match (seen(needle, rule, facts), seen(haystack, rule, facts)) {
                (Some(Ok(Seen::Text(needle))), Some(Ok(Seen::Texts(list)))) => match list {
                    TextList::Literal(items) => Outcome::Value(items.iter().any(|item| item == needle)),
                    TextList::Claim(items) => {
                        let mut found = false;
                        for item in items {
                            match item {
                                Json::String(item) => found |= item == needle,
                                _ => return Outcome::Interpret,
                            }
                        }
                        Outcome::Value(found)
                    }
                },
                (Some(Err(Outcome::Error)), _) | (_, Some(Err(Outcome::Error))) => Outcome::Error,
                _ => Outcome::Interpret,
            },
            Fast::Has(index) => Outcome::Value(claim(rule, facts, *index).is_some()),
            // Left to right, as the interpreter: the right side only when
            // the left does not decide, and an error on the left is the answer.
            Fast::And(a, b) => match a.evaluate(rule, facts) {
                Outcome::Value(true) => b.evaluate(rule, facts),
                decided => decided,
            },
            Fast::Or(a, b) => match a.evaluate(rule, facts) {
                Outcome::Value(false) => b.evaluate(rule, facts),
                decided => decided,
            },
            Fast::Not(a) => match a.evaluate(rule, facts) {
                Outcome::Value(value) => Outcome::Value(!value),
                other => other,
            },
        }
    }
}

/// The claim at `index` of the rule's, as the token kept it.
fn claim<'a>(rule: &Rule, facts: &Facts<'a>, index: usize) -> Option<&'a Json> {
    let (_, slot) = rule.claims.get(index)?;
    facts.verified?.value(*slot)
}

/// An operand's value: `None` when it is not plainly a string or a list
/// of strings (the interpreter answers); `Err(Outcome::Error)` when CEL
/// would fail to read it.
fn seen<'a>(operand: &'a Operand, rule: &'a Rule, facts: &Facts<'a>) -> Option<Result<Seen<'a>, Outcome>> {
    Some(Ok(match operand {
        Operand::Text(text) => Seen::Text(text),
        Operand::List(items) => Seen::Texts(TextList::Literal(items)),
        Operand::Method => Seen::Text(facts.method.as_str()),
        Operand::Path => Seen::Text(facts.path),
        Operand::Route => Seen::Text(&rule.route_name),
        Operand::Claim(index) => match claim(rule, facts, *index) {
            None => return Some(Err(Outcome::Error)),
            Some(Json::String(text)) => Seen::Text(text),
            Some(Json::Array(items)) => Seen::Texts(TextList::Claim(items)),
            Some(_) => return None,
        },
        Operand::Header(index) => {
            let (name, _) = rule.headers.as_ref()?.get(*index)?;
            let mut values = facts.headers.get_all(name).iter();
            let Some(first) = values.next() else { return Some(Err(Outcome::Error)) };
            // Several values are joined by the interpreter's path; one is read in place.
            if values.next().is_some() {
                return None;
            }
            match first.to_str() {
                Ok(text) => Seen::Text(text),
                Err(_) => return Some(Err(Outcome::Error)),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ClaimPlan;
    use crate::config::cel::CelRule;
    use http::{HeaderMap, HeaderValue, Method};

    /// Every combination of operands and operators this module answers,
    /// alone and joined by `&&`, `||` and `!`: where it answers, it answers
    /// as the `cel` interpreter does (a value, or an error).
    #[test]
    fn answers_as_the_interpreter_does() {
        let operands = [
            r#""GET""#,
            r#""/orders/1""#,
            r#"["GET", "HEAD"]"#,
            r#"[]"#,
            "request.method",
            "request.path",
            "route",
            r#"request.headers["x-a"]"#,
            r#"request.headers["x-absent"]"#,
            r#"request.headers["x-many"]"#,
            "claims.sub",
        ];
        let mut atoms = Vec::new();
        for a in operands {
            for b in operands {
                for op in ["==", "!=", "in"] {
                    atoms.push(format!("{a} {op} {b}"));
                }
            }
        }
        atoms.push("has(claims.sub)".into());
        let mut expressions = atoms.clone();
        for (i, a) in atoms.iter().enumerate().step_by(7) {
            let b = &atoms[(i * 13 + 5) % atoms.len()];
            expressions.push(format!("{a} && {b}"));
            expressions.push(format!("{a} || {b}"));
            expressions.push(format!("!({a}) || !({b})"));
        }
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("GET"));
        headers.append("x-many", HeaderValue::from_static("1"));
        headers.append("x-many", HeaderValue::from_static("2"));
        let facts = Facts { method: &Method::GET, path: "/orders/1", host: None, headers: &headers, verified: None };
        let (mut answered, mut compiled) = (0, 0);
        for source in &expressions {
            let parsed = CelRule::parse(source).unwrap();
            let rule =
                Rule::new("routes[0].allow_if", "/orders", &parsed, "is false", &mut ClaimPlan::default()).unwrap();
            let Some(fast) = &rule.fast else { continue };
            compiled += 1;
            if rule.reads_ambiguous_header(facts.headers).is_some() {
                assert!(rule.evaluate(&facts).is_err(), "{source}");
                continue;
            }
            let interpreted = rule.interpret(&facts);
            match fast.evaluate(&rule, &facts) {
                Outcome::Value(value) => {
                    answered += 1;
                    assert_eq!(interpreted, Ok(value), "{source}");
                }
                Outcome::Error => {
                    answered += 1;
                    assert!(interpreted.is_err(), "{source}: the interpreter says {interpreted:?}");
                }
                Outcome::Interpret => {}
            }
        }
        assert!(compiled > 300 && answered > 200, "compiled {compiled}, answered {answered}");
    }
}

#[cfg(test)]
mod red_team {
    use super::*;
    use crate::auth::{Authenticator, ClaimPlan};
    use crate::config::Config;
    use crate::config::cel::CelRule;
    use crate::keys::{Fetcher, IssuerKeys, IssuerStore};
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use http::{HeaderMap, HeaderValue, Method};
    use std::sync::Arc;

    /// The fast path against the interpreter over a verified token whose
    /// claims are of every JSON type, and headers that are repeated, empty
    /// or not text.
    #[tokio::test]
    async fn fast_path_agrees_with_the_interpreter_on_claims_of_every_type() {
        let operands = [
            r#""admin""#,
            r#""1""#,
            r#"["admin", "1"]"#,
            "claims.sub",
            "claims.n",
            "claims.b",
            "claims.nul",
            "claims.roles",
            "claims.mixed",
            "claims.empty",
            "claims.obj",
            "claims.absent",
            r#"request.headers["x-bad"]"#,
            r#"request.headers["x-empty"]"#,
            r#"request.headers["x-many"]"#,
            r#"request.headers["x-a"]"#,
        ];
        let mut atoms = Vec::new();
        for a in operands {
            for b in operands {
                for op in ["==", "!=", "in"] {
                    atoms.push(format!("{a} {op} {b}"));
                }
            }
        }
        for c in ["sub", "n", "b", "nul", "roles", "absent", "obj"] {
            atoms.push(format!("has(claims.{c})"));
        }
        let mut sources = atoms.clone();
        for (i, a) in atoms.iter().enumerate() {
            let b = &atoms[(i * 31 + 7) % atoms.len()];
            sources.push(format!("{a} && {b}"));
            sources.push(format!("{a} || {b}"));
            sources.push(format!("!({a}) && !({b})"));
        }
        let mut plan = ClaimPlan::default();
        let rules: Vec<(String, Rule)> = sources
            .iter()
            .map(|s| {
                let parsed = CelRule::parse(s).unwrap();
                (s.clone(), Rule::new("routes[0].allow_if", "/orders", &parsed, "is false", &mut plan).unwrap())
            })
            .collect();

        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.json");
        std::fs::write(&file, format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"k","x":"{x}"}}]}}"#)).unwrap();
        let text = format!(
            "[upstream]\nurl = \"http://127.0.0.1:9\"\n[[issuers]]\nissuer = \"https://i/\"\naudiences = [\"a\"]\n\
             algorithms = [\"EdDSA\"]\njwks_file = {:?}\n",
            file.display().to_string()
        );
        let config = Config::parse(&text, "test.toml", std::path::Path::new("/"), &|_| None).unwrap();
        let keys = Arc::new(IssuerKeys::new(&config.issuers[0], Fetcher::new().unwrap()));
        keys.fetch().await.unwrap();
        let auth = Authenticator::new(&config.issuers, &[IssuerStore::Shared(keys)], None, plan, 32);
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","kid":"k"}"#);
        let claims = URL_SAFE_NO_PAD.encode(
            r#"{"iss":"https://i/","aud":"a","iat":900,"exp":2000,"sub":"admin","n":1,"b":true,"nul":null,
                "roles":["admin","1"],"mixed":["admin",1],"empty":[],"obj":{"admin":"1"}}"#,
        );
        let input = format!("{header}.{claims}");
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(pair.sign(input.as_bytes())));
        let verified = auth.verify_traced(&token, 1000, &mut ()).await.unwrap();

        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("admin"));
        headers.insert("x-empty", HeaderValue::from_static(""));
        headers.insert("x-bad", HeaderValue::from_bytes(b"adm\xffin").unwrap());
        headers.append("x-many", HeaderValue::from_static("admin"));
        headers.append("x-many", HeaderValue::from_static("1"));
        let mut disagreements = Vec::new();
        let mut answered = 0;
        for verified in [Some(&verified), None] {
            let facts = Facts { method: &Method::GET, path: "/orders/1", host: None, headers: &headers, verified };
            for (source, rule) in &rules {
                let Some(fast) = &rule.fast else { continue };
                // A header the rule reads that is not text, or sent twice:
                // not evaluated at all (refused).
                if rule.reads_ambiguous_header(facts.headers).is_some() {
                    assert!(rule.evaluate(&facts).is_err(), "{source}");
                    continue;
                }
                let interpreted = rule.interpret(&facts);
                let agrees = match fast.evaluate(rule, &facts) {
                    Outcome::Value(value) => {
                        answered += 1;
                        interpreted == Ok(value)
                    }
                    Outcome::Error => {
                        answered += 1;
                        interpreted.is_err()
                    }
                    Outcome::Interpret => true,
                };
                if !agrees {
                    disagreements.push(format!(
                        "{source} (token: {}): fast {:?}, interpreter {interpreted:?}",
                        verified.is_some(),
                        fast.evaluate(rule, &facts)
                    ));
                }
            }
        }
        assert!(answered > 500, "answered {answered}");
        assert!(disagreements.is_empty(), "{} disagreements:\n{}", disagreements.len(), disagreements.join("\n"));
    }
}
