//! `routes[].allow_if` and `deny_if`: CEL expressions, read when the
//! configuration is loaded. Parsing is the `cel` crate's; this module checks what the
//! expression may refer to and finds which claims and headers it reads,
//! so that a verified token keeps exactly those claims (see
//! `auth::projection`) and a request's headers are copied only when read.

use cel::common::ast::operators::INDEX;
use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::common::value::CelVal as Val;

/// The variables a rule may use.
pub const VARIABLES: &str = "claims, request (method, path, host, headers) and route";
/// Bounds on a rule's text and on how deeply it nests brackets.
const MAX_SOURCE_BYTES: usize = 4096;
const MAX_NESTING: usize = 32;

/// The deepest nesting of `(`, `[` and `{` (string contents counted too,
/// which only errs on the safe side).
fn nesting(source: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for byte in source.bytes() {
        match byte {
            b'(' | b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The members of `request`.
const REQUEST_MEMBERS: [&str; 4] = ["method", "path", "host", "headers"];

/// A rule as configured, with what it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CelRule {
    /// The expression as written.
    pub source: String,
    /// Top-level claims it reads (`claims.NAME`, `claims["NAME"]`), each once.
    pub claims: Vec<String>,
    /// Request headers it reads by name (lower case), each once; `None`:
    /// it reads `request.headers` (or `request`) whole.
    pub headers: Option<Vec<String>>,
    /// It reads `request.host`.
    pub host: bool,
    /// The members of `request` it reads, each once (all when it reads
    /// `request` whole).
    pub request: Vec<String>,
}

impl CelRule {
    /// Parses `source` and finds what it reads; the message says what to change.
    pub fn parse(source: &str) -> Result<CelRule, String> {
        if source.trim().is_empty() {
            return Err("the expression is empty: write a CEL expression, or leave the key out".into());
        }
        // The parser, this walk and the evaluation all recurse per level:
        // a bound keeps a hostile file from overflowing the stack.
        if source.len() > MAX_SOURCE_BYTES || nesting(source) > MAX_NESTING {
            return Err(format!(
                "the expression is longer than {MAX_SOURCE_BYTES} bytes or nests deeper than {MAX_NESTING} levels: \
                 split it between allow_if and deny_if, or simplify it"
            ));
        }
        let expr = cel::parser::Parser::default().parse(source).map_err(|errors| {
            let first = errors.errors.first().map_or_else(|| "cannot be parsed".to_string(), |e| e.msg.clone());
            format!("not a CEL expression: {first} (in {source:?})")
        })?;
        let mut rule = CelRule {
            source: source.to_string(),
            claims: Vec::new(),
            headers: Some(Vec::new()),
            host: false,
            request: Vec::new(),
        };
        walk(&expr, &mut Vec::new(), &mut rule)?;
        Ok(rule)
    }
}

/// A string literal's value.
fn literal(expr: &IdedExpr) -> Option<&str> {
    match &expr.expr {
        Expr::Literal(Val::String(text)) => Some(text),
        _ => None,
    }
}

/// Whether `expr` is the free variable `name` (not a comprehension's own).
fn is_variable(expr: &IdedExpr, name: &str, bound: &[String]) -> bool {
    matches!(&expr.expr, Expr::Ident(ident) if ident == name && !bound.iter().any(|b| b == name))
}

fn add(list: &mut Vec<String>, name: &str) {
    if !list.iter().any(|known| known == name) {
        list.push(name.to_string());
    }
}

/// A member of `request` read by name.
fn request_member(rule: &mut CelRule, member: &str) -> Result<(), String> {
    if REQUEST_MEMBERS.contains(&member) {
        add(&mut rule.request, member);
    }
    match member {
        "headers" => rule.headers = None,
        "host" => rule.host = true,
        _ if REQUEST_MEMBERS.contains(&member) => {}
        _ => return Err(format!("request has no member {member:?}: it has method, path, host and headers")),
    }
    Ok(())
}

/// A header of `request.headers` read by name: lower case, as the map holds them.
fn header(rule: &mut CelRule, name: &str) -> Result<(), String> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "request.headers holds lower-case names: write {:?} for {name:?}",
            name.to_ascii_lowercase()
        ));
    }
    add(&mut rule.request, "headers");
    if let Some(headers) = &mut rule.headers {
        add(headers, name);
    }
    Ok(())
}

/// Checks every free variable and records what is read, by name.
fn walk(expr: &IdedExpr, bound: &mut Vec<String>, rule: &mut CelRule) -> Result<(), String> {
    let is_headers = |e: &IdedExpr, bound: &[String]| matches!(&e.expr, Expr::Select(s) if s.field == "headers" && is_variable(&s.operand, "request", bound));
    match &expr.expr {
        Expr::Ident(name) if bound.iter().any(|b| b == name) || name == "route" => Ok(()),
        Expr::Ident(name) if name == "claims" => {
            Err("read claims by name, claims.NAME or claims[\"NAME\"] (jwtgate keeps only the claims rules name)"
                .into())
        }
        Expr::Ident(name) if name == "request" => {
            rule.headers = None;
            rule.host = true;
            REQUEST_MEMBERS.iter().for_each(|member| add(&mut rule.request, member));
            Ok(())
        }
        Expr::Ident(name) => Err(format!("unknown variable {name:?}: rules can use {VARIABLES}")),
        Expr::Select(select) if is_variable(&select.operand, "claims", bound) => {
            add(&mut rule.claims, &select.field);
            Ok(())
        }
        Expr::Select(select) if is_variable(&select.operand, "request", bound) => request_member(rule, &select.field),
        Expr::Select(select) if is_headers(&select.operand, bound) => header(rule, &select.field),
        Expr::Select(select) => walk(&select.operand, bound, rule),
        Expr::Call(call) if call.func_name == INDEX && call.target.is_none() && call.args.len() == 2 => {
            let (operand, index) = (&call.args[0], &call.args[1]);
            match literal(index) {
                Some(name) if is_variable(operand, "claims", bound) => add(&mut rule.claims, name),
                Some(member) if is_variable(operand, "request", bound) => request_member(rule, member)?,
                Some(name) if is_headers(operand, bound) => header(rule, name)?,
                _ => {
                    walk(operand, bound, rule)?;
                    walk(index, bound, rule)?;
                }
            }
            Ok(())
        }
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                walk(target, bound, rule)?;
            }
            call.args.iter().try_for_each(|arg| walk(arg, bound, rule))
        }
        Expr::Comprehension(c) => {
            walk(&c.iter_range, bound, rule)?;
            walk(&c.accu_init, bound, rule)?;
            let depth = bound.len();
            bound.push(c.iter_var.clone());
            bound.extend(c.iter_var2.clone());
            bound.push(c.accu_var.clone());
            let inner = [&c.loop_cond, &c.loop_step, &c.result].into_iter().try_for_each(|e| walk(e, bound, rule));
            bound.truncate(depth);
            inner
        }
        Expr::List(list) => list.elements.iter().try_for_each(|e| walk(e, bound, rule)),
        Expr::Map(map) => map.entries.iter().try_for_each(|entry| entry_walk(&entry.expr, bound, rule)),
        Expr::Struct(s) => s.entries.iter().try_for_each(|entry| entry_walk(&entry.expr, bound, rule)),
        Expr::Literal(_) => Ok(()),
        #[allow(unreachable_patterns)]
        _ => Err("this expression uses a construct jwtgate does not evaluate".into()),
    }
}

fn entry_walk(entry: &EntryExpr, bound: &mut Vec<String>, rule: &mut CelRule) -> Result<(), String> {
    match entry {
        EntryExpr::StructField(field) => walk(&field.value, bound, rule),
        EntryExpr::MapEntry(entry) => {
            walk(&entry.key, bound, rule)?;
            walk(&entry.value, bound, rule)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_the_claims_and_headers_they_read() {
        let rule =
            CelRule::parse(r#"claims.tenant == request.headers["x-tenant"] && "admin" in claims["roles"]"#).unwrap();
        assert_eq!(rule.claims, ["tenant", "roles"]);
        assert_eq!(rule.headers, Some(vec!["x-tenant".to_string()]));
        assert_eq!(rule.request, ["headers"]);
        let rule =
            CelRule::parse(r#"has(claims.org) && claims.roles.exists(r, r == route) && request.method == "GET""#)
                .unwrap();
        assert_eq!(rule.claims, ["org", "roles"]);
        assert_eq!(rule.headers, Some(vec![]));
        let all = CelRule::parse(r#""x-debug" in request.headers"#).unwrap();
        assert_eq!(all.headers, None, "the headers whole");
    }

    #[test]
    fn unknown_variables_whole_claims_and_bad_syntax_are_refused() {
        for (source, said) in [
            ("user == 1", "unknown variable \"user\""),
            ("\"x\" in claims", "read claims by name"),
            ("claims[request.path] == 1", "read claims by name"),
            ("request.cookies == 1", "request has no member \"cookies\""),
            ("request.headers[\"X-Tenant\"] == \"a\"", "write \"x-tenant\""),
            ("claims.a ==", "not a CEL expression"),
            ("  ", "the expression is empty"),
            ("[1].exists(x, y == x)", "unknown variable \"y\""),
        ] {
            let error = CelRule::parse(source).unwrap_err();
            assert!(error.contains(said), "{source}: {error}");
        }
        assert!(CelRule::parse("[1, 2].all(x, x > 0)").is_ok(), "a comprehension's own variable");
        let deep = format!("{}1{}", "(".repeat(200), ")".repeat(200));
        assert!(CelRule::parse(&deep).unwrap_err().contains("nests deeper than 32"));
        assert!(CelRule::parse(&"!".repeat(5000)).unwrap_err().contains("longer than 4096 bytes"));
        // Unary operators nest without brackets: within the byte bound, no overflow.
        let unary = format!("{}true", "!".repeat(4000));
        let _ = CelRule::parse(&unary);
        // Each of these panicked cel-interpreter 0.10's parser.
        for source in ["1 +", "((", "\"x", "!", "claims.a ==", "a ? b", "claims[", "a.b.", "}{", "1 in", "[1,"] {
            assert!(CelRule::parse(source).unwrap_err().contains("not a CEL expression"), "{source}");
        }
    }
}
