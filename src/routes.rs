//! The route table: which rules apply to a request, decided on the
//! normalised path. Compiled once per configuration; matching allocates
//! nothing. The first matching route wins; a path that matches none needs a
//! valid token and no particular scope.

use http::{HeaderMap, Method, header};
use serde_json::Value;

use crate::auth::Verified;
use crate::auth::claims::{ClaimPath, claim_matches, has_scope};
use crate::config::{AuthMode, RouteConfig};
use crate::error::{Refusal, ScopeFailure};

pub struct Route {
    /// The path prefix as configured, for logs; `(default)` for unmatched paths.
    name: String,
    segments: Vec<String>,
    methods: Option<Vec<Method>>,
    auth: AuthMode,
    scopes: Vec<String>,
    any_scopes: Vec<String>,
    claims: Vec<(ClaimPath, Value)>,
    issuers: Option<Vec<String>>,
    public_preflight: bool,
    /// The `scope` attribute of a 403 (RFC 6750 §3): what this route asks for.
    scope_hint: String,
    /// Index into the gateway's upstreams: 0 is `[upstream]`, then
    /// `[upstreams.NAME]` in configuration order.
    upstream: usize,
}

pub struct RouteTable {
    routes: Vec<Route>,
    default: Route,
}

impl RouteTable {
    /// `upstreams`: the names of `[upstreams.NAME]`, in the order of the
    /// gateway's upstreams after the default.
    pub fn new(configs: &[RouteConfig], upstreams: &[&str]) -> RouteTable {
        let default = RouteConfig {
            path: "/".into(),
            methods: None,
            auth: AuthMode::Required,
            scopes: Vec::new(),
            any_scopes: Vec::new(),
            claims: Vec::new(),
            issuers: None,
            public_preflight: false,
            upstream: None,
        };
        let mut default = Route::new(&default, upstreams);
        default.name = "(default)".into();
        RouteTable { routes: configs.iter().map(|config| Route::new(config, upstreams)).collect(), default }
    }

    /// The first route whose prefix and methods match; the default otherwise.
    pub fn find(&self, method: &Method, path: &str) -> &Route {
        self.routes.iter().find(|r| r.matches(method, path)).unwrap_or(&self.default)
    }
}

impl Route {
    fn new(config: &RouteConfig, upstreams: &[&str]) -> Route {
        // Validation guarantees the name exists.
        let upstream = config
            .upstream
            .as_deref()
            .and_then(|name| upstreams.iter().position(|known| *known == name))
            .map_or(0, |i| i + 1);
        let scope_hint = if config.scopes.is_empty() { config.any_scopes.join(" ") } else { config.scopes.join(" ") };
        Route {
            name: config.path.clone(),
            segments: config.path.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            methods: config.methods.clone(),
            auth: config.auth,
            scopes: config.scopes.clone(),
            any_scopes: config.any_scopes.clone(),
            claims: config.claims.clone(),
            issuers: config.issuers.clone(),
            public_preflight: config.public_preflight,
            scope_hint,
            upstream,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The route's demands, for `jwtgate explain`.
    pub fn describe(&self) -> String {
        let auth = match self.auth {
            AuthMode::Required => "required",
            AuthMode::Optional => "optional",
            AuthMode::Public => "public",
        };
        let mut out = format!("{}  auth {auth}", self.name);
        if let Some(methods) = &self.methods {
            let names: Vec<&str> = methods.iter().map(Method::as_str).collect();
            out.push_str(&format!("  methods {}", names.join(",")));
        }
        if !self.scopes.is_empty() {
            out.push_str(&format!("  scopes {}", self.scopes.join(" ")));
        }
        if !self.any_scopes.is_empty() {
            out.push_str(&format!("  any_scopes {}", self.any_scopes.join(" ")));
        }
        for (claim, value) in &self.claims {
            out.push_str(&format!("  claim {}={value}", claim.name()));
        }
        if let Some(issuers) = &self.issuers {
            out.push_str(&format!("  issuers {}", issuers.join(" ")));
        }
        out
    }

    /// Which of the gateway's upstreams this route sends to (0: `[upstream]`).
    pub fn upstream(&self) -> usize {
        self.upstream
    }

    /// Segment-prefix match: `/public` matches `/public` and `/public/x`, not
    /// `/publicity`. A segment's `;parameters` are not part of its name, so
    /// `/admin;x=1` is on the `/admin` route as servers that strip
    /// parameters would read it.
    fn matches(&self, method: &Method, path: &str) -> bool {
        if self.methods.as_ref().is_some_and(|m| !m.contains(method)) {
            return false;
        }
        // Fast path: a plain prefix followed by the end, a `/` or a `;`.
        if let Some(rest) = path.strip_prefix(self.name.as_str())
            && !self.segments.is_empty()
        {
            return matches!(rest.as_bytes().first(), None | Some(b'/' | b';'));
        }
        if !path.contains(';') {
            return self.segments.is_empty();
        }
        let mut segments = path.split('/').skip(1);
        self.segments
            .iter()
            .all(|want| segments.next().is_some_and(|seg| seg.split(';').next().unwrap_or(seg) == want.as_str()))
    }

    /// How this request is authenticated: the route's mode, except that a
    /// CORS preflight may pass without a token when the route allows it.
    pub fn auth_for(&self, method: &Method, headers: &HeaderMap) -> AuthMode {
        let preflight = method == Method::OPTIONS
            && headers.contains_key(header::ORIGIN)
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if self.public_preflight && preflight { AuthMode::Public } else { self.auth }
    }

    /// The route's demands on a verified token: its issuer, scopes and claims.
    pub fn authorize(&self, verified: &Verified) -> Result<(), Refusal> {
        let refuse = |failure| Refusal::InsufficientScope { failure, scope: self.scope_hint.clone() };
        if self.issuers.as_ref().is_some_and(|list| !list.iter().any(|i| i == verified.issuer())) {
            return Err(refuse(ScopeFailure::Issuer));
        }
        let claims = verified.claims();
        let scope_claims = verified.scope_claims();
        if !self.scopes.iter().all(|s| has_scope(claims, scope_claims, s)) {
            return Err(refuse(ScopeFailure::Scopes));
        }
        if !self.any_scopes.is_empty() && !self.any_scopes.iter().any(|s| has_scope(claims, scope_claims, s)) {
            return Err(refuse(ScopeFailure::AnyScopes));
        }
        if !self.claims.iter().all(|(path, expected)| claim_matches(claims, path, expected)) {
            return Err(refuse(ScopeFailure::Claims));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, methods: Option<Vec<Method>>) -> RouteConfig {
        RouteConfig {
            path: path.into(),
            methods,
            auth: AuthMode::Public,
            scopes: Vec::new(),
            any_scopes: Vec::new(),
            claims: Vec::new(),
            issuers: None,
            public_preflight: false,
            upstream: None,
        }
    }

    #[test]
    fn segment_prefixes_first_match_wins() {
        let table = RouteTable::new(
            &[route("/public/health", Some(vec![Method::GET])), route("/public", None), route("/admin", None)],
            &[],
        );
        let find = |m: Method, p: &str| table.find(&m, p).name().to_string();
        assert_eq!(find(Method::GET, "/public"), "/public");
        assert_eq!(find(Method::GET, "/public/"), "/public");
        assert_eq!(find(Method::GET, "/public/x/y"), "/public");
        assert_eq!(find(Method::GET, "/public/health"), "/public/health");
        assert_eq!(find(Method::POST, "/public/health"), "/public");
        assert_eq!(find(Method::GET, "/publicity"), "(default)");
        assert_eq!(find(Method::GET, "/"), "(default)");
        assert_eq!(find(Method::GET, "/admin;jsessionid=1/users"), "/admin");
        assert_eq!(find(Method::GET, "/Admin"), "(default)");
        assert_eq!(find(Method::GET, "/public;x/../y"), "/public");
        assert_eq!(find(Method::GET, "/x;a/public"), "(default)");
    }

    #[test]
    fn routes_name_their_upstream_by_index() {
        let mut billing = route("/billing", None);
        billing.upstream = Some("billing".into());
        let mut audit = route("/audit", None);
        audit.upstream = Some("audit".into());
        let table = RouteTable::new(&[billing, audit, route("/other", None)], &["audit", "billing"]);
        let upstream = |p: &str| table.find(&Method::GET, p).upstream();
        assert_eq!((upstream("/billing/x"), upstream("/audit"), upstream("/other"), upstream("/")), (2, 1, 0, 0));
    }

    #[test]
    fn the_root_route_matches_everything() {
        let table = RouteTable::new(&[route("/", None)], &[]);
        assert_eq!(table.find(&Method::GET, "/anything/at/all").name(), "/");
    }

    #[test]
    fn preflights_are_public_only_when_allowed() {
        let mut config = route("/api", None);
        config.auth = AuthMode::Required;
        let strict = Route::new(&config, &[]);
        config.public_preflight = true;
        let lenient = Route::new(&config, &[]);
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, "https://app.example".parse().unwrap());
        headers.insert(header::ACCESS_CONTROL_REQUEST_METHOD, "POST".parse().unwrap());
        assert_eq!(strict.auth_for(&Method::OPTIONS, &headers), AuthMode::Required);
        assert_eq!(lenient.auth_for(&Method::OPTIONS, &headers), AuthMode::Public);
        assert_eq!(lenient.auth_for(&Method::POST, &headers), AuthMode::Required);
        headers.remove(header::ORIGIN);
        assert_eq!(lenient.auth_for(&Method::OPTIONS, &headers), AuthMode::Required);
    }
}
