//! Values the configuration names and the request path uses: how a claim
//! is named, where a token may come from, which algorithms exist, and the
//! defaults other layers share. They live here, at the bottom, so that
//! `config` depends on no other jwtgate module.

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

/// Objects and arrays inside each other in a token's header or payload
/// (`limits.max_json_depth`), unless configured otherwise.
pub use super::defaults::MAX_JSON_DEPTH as DEFAULT_MAX_JSON_DEPTH;

/// RFC 9728 §3: where protected-resource metadata is published.
pub const WELL_KNOWN_RESOURCE_METADATA: &str = "/.well-known/oauth-protected-resource";

/// The algorithms jwtgate verifies: asymmetric only, since a JWKS is public.
pub const SUPPORTED_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A claim named in the configuration: a top-level claim as written
/// (Auth0's `https://example.com/roles` works as-is), or, when the name
/// starts with `/`, an RFC 6901 JSON Pointer into nested claims
/// (Keycloak's `/realm_access/roles`). Parsed once; lookups allocate nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    name: String,
    tokens: Vec<String>,
}

impl ClaimPath {
    pub fn parse(name: &str) -> Result<ClaimPath, String> {
        if name.is_empty() {
            return Err("a claim name must not be empty".into());
        }
        let Some(pointer) = name.strip_prefix('/') else {
            return Ok(ClaimPath { name: name.into(), tokens: vec![name.into()] });
        };
        let tokens = pointer
            .split('/')
            .map(|token| {
                // RFC 6901 §4: "~1" is "/", "~0" is "~", any other "~" is an error.
                let mut out = String::with_capacity(token.len());
                let mut chars = token.chars();
                while let Some(c) = chars.next() {
                    if c != '~' {
                        out.push(c);
                        continue;
                    }
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err(format!("{name:?} is not a JSON Pointer: '~' must be followed by 0 or 1")),
                    }
                }
                Ok(out)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ClaimPath { name: name.into(), tokens })
    }

    /// The nested claim at these member names (`["cnf", "jkt"]`: `/cnf/jkt`),
    /// for the claims the gateway itself reads.
    pub fn nested(members: &[&str]) -> ClaimPath {
        let escaped: Vec<String> = members.iter().map(|m| m.replace('~', "~0").replace('/', "~1")).collect();
        ClaimPath { name: format!("/{}", escaped.join("/")), tokens: members.iter().map(|m| m.to_string()).collect() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last member named: the claim's own name (`roles` for
    /// `/realm_access/roles`), as a signed assertion carries it.
    pub fn leaf(&self) -> &str {
        self.tokens.last().map_or(self.name.as_str(), String::as_str)
    }

    pub fn lookup<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let (first, rest) = self.tokens.split_first()?;
        let mut value = claims.get(first)?;
        for token in rest {
            value = match value {
                Value::Object(map) => map.get(token)?,
                Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(value)
    }
}

/// Where a token may be sent (`token_from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLocation {
    Header,
    Cookie(String),
    Query(String),
}

impl TokenLocation {
    /// `header`, `cookie:NAME` or `query:NAME`.
    pub fn parse(text: &str) -> Result<TokenLocation, String> {
        let valid_name = |name: &str| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~!$'*+^`|#".contains(&b))
        };
        match text.split_once(':') {
            None if text == "header" => Ok(TokenLocation::Header),
            Some(("cookie", name)) if valid_name(name) => Ok(TokenLocation::Cookie(name.to_string())),
            Some(("query", name)) if valid_name(name) => Ok(TokenLocation::Query(name.to_string())),
            _ => Err(format!("{text:?} is not \"header\", \"cookie:NAME\" or \"query:NAME\"")),
        }
    }
}
