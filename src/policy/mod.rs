//! `routes[].allow_if` and `deny_if`: CEL rules evaluated after the token
//! checks, over `claims`, `request` (`method`, `path`, `host`, `headers`)
//! and `route`. Compiled once per configuration (the `cel` crate); each
//! evaluation builds only what the rule reads (see `config::cel`): the
//! claims it names, from what the verified token kept, and the headers it
//! names. A rule that cannot be evaluated (a missing claim or header, a
//! non-boolean result) refuses the request, `deny_if` included: an error
//! is never taken as permission.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};

use cel::objects::{Key, Map};
use cel::{Context, Program, Value};
use http::{HeaderMap, HeaderName, Method};

mod fast;

use crate::auth::{ClaimPlan, Trace, ValueSlot, Verified};
use crate::config::ClaimPath;
use crate::config::cel::CelRule;
use crate::error::ScopeFailure;

/// The built-in functions and macros, made once; each evaluation adds its
/// variables in a child scope.
static ROOT: LazyLock<Context<'static>> = LazyLock::new(Context::default);

/// A route's rules.
pub struct Policy {
    allow_if: Option<Rule>,
    deny_if: Option<Rule>,
}

struct Rule {
    program: Program,
    /// As written, for `explain`.
    source: String,
    /// Each claim the rule names, with where a verified token keeps it.
    claims: Box<[(Key, ValueSlot)]>,
    /// The headers the rule names; `None`: all of them.
    headers: Option<Box<[(HeaderName, Key)]>>,
    /// The members of `request` it reads.
    request: Box<[Member]>,
    /// `route`: the route's path as configured.
    route: Value,
    route_name: String,
    /// The rule compiled to [`fast`], when it is plain string comparisons.
    fast: Option<fast::Fast>,
    /// The refusal descriptions: the rule's value was not the one that
    /// lets the request through, or it could not be evaluated.
    refused: &'static str,
    failed: &'static str,
}

/// What a rule is evaluated over.
pub struct Facts<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub host: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// `None`: no token (an optional or public route).
    pub verified: Option<&'a Verified>,
}

impl Policy {
    /// The rules of the route at `key` (`routes[N]`), with the claims they
    /// read registered in `plan`; `None` when it has none.
    pub fn new(
        key: &str,
        route: &str,
        allow_if: Option<&CelRule>,
        deny_if: Option<&CelRule>,
        plan: &mut ClaimPlan,
    ) -> Result<Option<Policy>, String> {
        if allow_if.is_none() && deny_if.is_none() {
            return Ok(None);
        }
        let mut rule = |rule: Option<&CelRule>, name: &str, refused: &str| {
            rule.map(|rule| Rule::new(&format!("{key}.{name}"), route, rule, refused, plan)).transpose()
        };
        Ok(Some(Policy {
            allow_if: rule(allow_if, "allow_if", "is false")?,
            deny_if: rule(deny_if, "deny_if", "is true")?,
        }))
    }

    /// Whether the request may pass: `allow_if` true and `deny_if` false.
    /// Each rule's value goes to `trace` (`jwtgate explain`).
    pub fn judge(&self, facts: &Facts<'_>, trace: &mut impl Trace) -> Result<(), ScopeFailure> {
        if let Some(rule) = &self.allow_if {
            rule.judge(facts, true, "allow_if", trace)?;
        }
        if let Some(rule) = &self.deny_if {
            rule.judge(facts, false, "deny_if", trace)?;
        }
        Ok(())
    }
}

impl Rule {
    fn new(key: &str, route: &str, rule: &CelRule, refused: &str, plan: &mut ClaimPlan) -> Result<Rule, String> {
        let program = Program::compile(&rule.source).map_err(|errors| format!("{key}: {errors}"))?;
        let claims = rule
            .claims
            .iter()
            .map(|name| (Key::from(name.clone()), plan.keep_value(&ClaimPath::nested(&[name.as_str()]))))
            .collect();
        let headers: Option<Box<[(HeaderName, Key)]>> = rule.headers.as_ref().map(|names| {
            names
                .iter()
                .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok().map(|h| (h, Key::from(name.clone()))))
                .collect()
        });
        let request = rule
            .request
            .iter()
            .filter_map(|member| match member.as_str() {
                "method" => Some(Member::Method),
                "path" => Some(Member::Path),
                "host" => Some(Member::Host),
                "headers" => Some(Member::Headers),
                _ => None,
            })
            .collect();
        // Header names that are not header names (never sent) leave the
        // interpreter to find them missing.
        let header_count = headers.as_deref().map(<[_]>::len);
        let fast = (rule.headers.as_ref().map(Vec::len) == header_count)
            .then(|| cel::parser::Parser::default().parse(&rule.source).ok())
            .flatten()
            .and_then(|expr| fast::compile(&expr, &rule.claims, rule.headers.as_deref()));
        Ok(Rule {
            fast,
            route_name: route.to_string(),
            program,
            source: rule.source.clone(),
            claims,
            headers,
            request,
            route: Value::from(route),
            refused: interned(format!("the route's rule {key} {refused}")),
            failed: interned(format!(
                "the route's rule {key} could not be evaluated (a claim or header it reads is missing, or it is not true or false)"
            )),
        })
    }

    /// Passes when the rule's value is `passes`.
    fn judge(&self, facts: &Facts<'_>, passes: bool, name: &str, trace: &mut impl Trace) -> Result<(), ScopeFailure> {
        let value = self.evaluate(facts);
        trace.value(&|| match &value {
            Ok(value) => format!("rule  {name} {} = {value}", self.source),
            Err(error) => format!("rule  {name} {} could not be evaluated: {error}", self.source),
        });
        match value {
            Ok(value) if value == passes => Ok(()),
            Ok(_) => Err(ScopeFailure::Rule(self.refused)),
            Err(_) => Err(ScopeFailure::Rule(self.failed)),
        }
    }

    fn evaluate(&self, facts: &Facts<'_>) -> Result<bool, String> {
        if let Some(why) = self.reads_ambiguous_header(facts.headers) {
            return Err(why.into());
        }
        match self.fast.as_ref().map(|fast| fast.evaluate(self, facts)) {
            Some(fast::Outcome::Value(value)) => return Ok(value),
            Some(fast::Outcome::Error) => {
                return Err("a claim or header it reads is missing, or an operand has no such operator".into());
            }
            Some(fast::Outcome::Interpret) | None => {}
        }
        self.interpret(facts)
    }

    /// The `cel` interpreter's value.
    fn interpret(&self, facts: &Facts<'_>) -> Result<bool, String> {
        let variables = Variables { rule: self, facts, claims: OnceLock::new(), request: OnceLock::new() };
        let mut context = ROOT.new_inner_scope();
        context.set_variable_resolver(&variables);
        match self.program.execute(&context) {
            Ok(Value::Bool(value)) => Ok(value),
            Ok(other) => Err(format!("the value is {other:?}, not true or false")),
            Err(error) => Err(error.to_string()),
        }
    }

    /// Why a header the rule reads cannot be read as the upstream will:
    /// - a value that is not text: the upstream gets the header, so the rule
    ///   must not read it as absent (`"x-debug" in request.headers` false);
    /// - sent more than once: backends differ on which value counts (Go's
    ///   `Header.Get` takes the first, others the last or all joined), so a
    ///   rule comparing one value could judge another than the backend reads.
    ///   `Cookie` is the exception: HTTP/2 splits it into several fields,
    ///   which are one value joined by "; " (RFC 9113 §8.2.3).
    ///
    /// Either way the rule is not evaluated, and the request refused.
    fn reads_ambiguous_header(&self, headers: &HeaderMap) -> Option<&'static str> {
        if !self.request.iter().any(|member| matches!(member, Member::Headers)) {
            return None;
        }
        let unreadable = |value: &http::HeaderValue| value.to_str().is_err();
        let repeated =
            |name: &HeaderName| name != http::header::COOKIE && headers.get_all(name).iter().nth(1).is_some();
        let (unreadable, repeated) = match &self.headers {
            Some(names) => (
                names.iter().any(|(name, _)| headers.get_all(name).iter().any(unreadable)),
                names.iter().any(|(name, _)| repeated(name)),
            ),
            None => (headers.values().any(unreadable), headers.keys().any(repeated)),
        };
        if unreadable {
            Some(UNREADABLE_HEADER)
        } else if repeated {
            Some(REPEATED_HEADER)
        } else {
            None
        }
    }

    /// `claims`: what the rule names, as the token kept it.
    fn claims(&self, verified: Option<&Verified>) -> Value {
        let claims: HashMap<Key, Value> = match verified {
            None => HashMap::new(),
            Some(verified) => self
                .claims
                .iter()
                .filter_map(|(name, slot)| verified.value(*slot).map(|value| (name.clone(), from_json(value))))
                .collect(),
        };
        Value::Map(Map { map: Arc::new(claims) })
    }

    /// `request`: the members the rule reads.
    fn request(&self, facts: &Facts<'_>) -> Value {
        let keys = &*REQUEST_KEYS;
        let mut request = HashMap::with_capacity(self.request.len());
        for member in &self.request {
            let (key, value) = match member {
                Member::Method => (&keys[0], method_value(facts.method)),
                Member::Path => (&keys[1], Value::from(facts.path)),
                Member::Host => (&keys[2], facts.host.map_or(Value::Null, Value::from)),
                Member::Headers => (&keys[3], self.headers_value(facts.headers)),
            };
            request.insert(key.clone(), value);
        }
        Value::Map(Map { map: Arc::new(request) })
    }

    fn headers_value(&self, headers: &HeaderMap) -> Value {
        let map: HashMap<Key, Value> = match &self.headers {
            Some(names) => {
                names.iter().filter_map(|(name, key)| joined(headers, name).map(|value| (key.clone(), value))).collect()
            }
            None => headers
                .keys()
                .filter_map(|name| joined(headers, name).map(|value| (Key::from(name.as_str().to_string()), value)))
                .collect(),
        };
        Value::Map(Map { map: Arc::new(map) })
    }
}

/// Why a rule that reads a header sent with a value that is not text is not evaluated.
const UNREADABLE_HEADER: &str = "a header it reads has a value that is not text";
/// Why a rule that reads a header sent more than once is not evaluated.
const REPEATED_HEADER: &str = "a header it reads is sent more than once, and backends differ on which value counts";

/// A member of `request`.
#[derive(Clone, Copy)]
enum Member {
    Method,
    Path,
    Host,
    Headers,
}

/// `request`'s keys, made once: a key is a reference count to copy.
static REQUEST_KEYS: LazyLock<[Key; 4]> =
    LazyLock::new(|| ["method", "path", "host", "headers"].map(|name| Key::from(name.to_string())));

/// The common methods as values, made once.
fn method_value(method: &Method) -> Value {
    static COMMON: LazyLock<Vec<(Method, Value)>> = LazyLock::new(|| {
        [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::HEAD, Method::OPTIONS]
            .into_iter()
            .map(|m| {
                let value = Value::from(m.as_str());
                (m, value)
            })
            .collect()
    });
    COMMON.iter().find(|(m, _)| m == method).map_or_else(|| Value::from(method.as_str()), |(_, v)| v.clone())
}

/// The variables of one evaluation, made when the expression first reads
/// each (a rule that reads no header builds no header map).
struct Variables<'r, 'f> {
    rule: &'r Rule,
    facts: &'r Facts<'f>,
    claims: OnceLock<Value>,
    request: OnceLock<Value>,
}

impl cel::context::VariableResolver for Variables<'_, '_> {
    fn resolve(&self, name: &str) -> Option<Value> {
        match name {
            "claims" => Some(self.claims.get_or_init(|| self.rule.claims(self.facts.verified)).clone()),
            "request" => Some(self.request.get_or_init(|| self.rule.request(self.facts)).clone()),
            "route" => Some(self.rule.route.clone()),
            _ => None,
        }
    }
}

/// A header's value; `None` when absent or not text. Only `Cookie` can be
/// here more than once (a rule reading any other repeated header is not
/// evaluated): its fields are joined by "; " as RFC 9113 §8.2.3 says.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<Value> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?.to_str().ok()?;
    let mut text = first.to_string();
    for value in values {
        text.push_str("; ");
        text.push_str(value.to_str().ok()?);
    }
    Some(Value::from(text))
}

/// A JSON claim as a CEL value: integers as `int` (or `uint` above
/// `i64`), other numbers as `double`.
fn from_json(value: &serde_json::Value) -> Value {
    use serde_json::Value as Json;
    match value {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::List(Arc::new(items.iter().map(from_json).collect())),
        Json::Object(members) => Value::Map(Map {
            map: Arc::new(members.iter().map(|(k, v)| (Key::from(k.clone()), from_json(v))).collect()),
        }),
    }
}

/// Refusal descriptions are `&'static str`; a rule's are made when the
/// configuration is loaded and kept once per distinct text, so reloads do
/// not add up.
fn interned(text: String) -> &'static str {
    static SEEN: LazyLock<Mutex<HashSet<&'static str>>> = LazyLock::new(Mutex::default);
    let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = seen.get(text.as_str()) {
        return known;
    }
    let leaked: &'static str = Box::leak(text.into_boxed_str());
    seen.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn rule(source: &str) -> Rule {
        Rule::new(
            "routes[0].allow_if",
            "/tenants",
            &CelRule::parse(source).unwrap(),
            "is false",
            &mut ClaimPlan::default(),
        )
        .unwrap()
    }

    fn facts(headers: &HeaderMap) -> Facts<'_> {
        Facts { method: &Method::GET, path: "/tenants/1", host: Some("api.example.com"), headers, verified: None }
    }

    #[test]
    fn rules_see_the_request_and_route() {
        let mut headers = HeaderMap::new();
        headers.insert("x-tenant", HeaderValue::from_static("acme"));
        headers.append("cookie", HeaderValue::from_static("a=1"));
        headers.append("cookie", HeaderValue::from_static("b=2"));
        for source in [
            r#"request.method in ["GET", "HEAD"]"#,
            r#"request.headers["x-tenant"] == "acme""#,
            r#"request.headers["cookie"] == "a=1; b=2""#,
            r#"request.path.startsWith(route) && request.host == "api.example.com""#,
            "size(request.headers) == 2",
        ] {
            assert_eq!(rule(source).evaluate(&facts(&headers)), Ok(true), "{source}");
        }
        assert!(rule("request.headers[\"x-other\"] == \"1\"").evaluate(&facts(&headers)).is_err());
        assert!(rule("1").evaluate(&facts(&headers)).unwrap_err().contains("not true or false"));
        // Sent twice: backends differ on which value counts, so no rule reads it.
        headers.append("x-tenant", HeaderValue::from_static("globex"));
        for source in [r#"request.headers["x-tenant"] == "acme""#, r#""x-tenant" in request.headers"#] {
            assert_eq!(rule(source).evaluate(&facts(&headers)), Err(REPEATED_HEADER.to_string()), "{source}");
        }
        assert_eq!(
            rule("request.method == \"GET\"").evaluate(&facts(&headers)),
            Ok(true),
            "a rule that reads no header"
        );
    }
}
