//! The route table: which rules apply to a request, decided on the
//! canonical path (see [`crate::path`]). Compiled once per configuration;
//! matching allocates nothing for ASCII paths. The first matching route
//! wins; a path that matches none needs a valid token and no particular
//! scope.
//!
//! Matching reads a path the way the most lenient common server would
//! serve it, so that the strictest applicable route judges it: a segment's
//! `;parameters` are not part of its name (Tomcat strips them), letters
//! match without regard to case unless `server.case_sensitive_routes`
//! (Express, ASP.NET and IIS route case-insensitively), and `HEAD` is
//! judged as `GET` (servers run the GET handler for it).

use http::{HeaderMap, Method, header};
use serde_json::Value;

use crate::auth::claims::{ClaimPath, claim_matches};
use crate::auth::{ClaimPlan, ScopeSlot, Trace, ValueSlot, Verified};
use crate::config::hosts::HostPattern;
use crate::config::spiffe::SpiffePattern;
use crate::config::{AuthMode, DpopMode, RouteConfig};
use crate::cors::Cors;
use crate::error::{Refusal, ScopeFailure};
use crate::policy::{Facts, Policy};

/// One configured route, compiled; `U` is where it sends requests (the
/// gateway's `Arc<Upstream>`; `check` and tests use names or `()`).
pub struct Route<U = ()> {
    /// The path prefix as configured, for logs; `(default)` for unmatched paths.
    name: String,
    /// Empty: any host.
    hosts: Vec<HostPattern>,
    segments: Vec<String>,
    methods: Option<Vec<Method>>,
    auth: AuthMode,
    scopes: Vec<String>,
    any_scopes: Vec<String>,
    claims: Vec<(ClaimPath, Value)>,
    /// `scopes`, `any_scopes` and `claims` as a verified token keeps them.
    kept: Kept,
    issuers: Option<Vec<String>>,
    /// Empty: any caller; else the JWT-SVID SPIFFE IDs allowed.
    spiffe_ids: Vec<SpiffePattern>,
    /// Overrides the issuer's `dpop`.
    dpop: Option<DpopMode>,
    public_preflight: bool,
    /// Upgrades may be opened through this route.
    websocket: bool,
    /// `[routes.cors]`: answered by the gateway.
    cors: Option<Cors>,
    /// `allow_if`, `deny_if`.
    policy: Option<Policy>,
    /// The `scope` attribute of a 403 (RFC 6750 §3): what this route asks for.
    scope_hint: String,
    /// Where this route sends requests.
    upstream: U,
    /// Its place in the table: configured routes from 0, the default last.
    index: usize,
}

/// Where a verified token keeps what a route's rules read (see [`ClaimPlan`]),
/// in the order of the route's `scopes`, `any_scopes` and `claims`.
struct Kept {
    scopes: Box<[ScopeSlot]>,
    any_scopes: Box<[ScopeSlot]>,
    /// Each with the value it must equal (or an array claim contain).
    claims: Box<[(ValueSlot, Value)]>,
}

/// `[upstream]` and `[upstreams.NAME]` as the routes refer to them.
pub struct Upstreams<U> {
    pub default: U,
    pub named: Vec<(String, U)>,
}

pub struct RouteTable<U = ()> {
    routes: Vec<Route<U>>,
    default: Route<U>,
    case_sensitive: bool,
    /// Some route names hosts, or a rule reads `request.host`: only then
    /// is a request's host read.
    by_host: bool,
    /// Every method some route names, and the common ones: what a method
    /// override could ask for that would change the route.
    probe_methods: Vec<Method>,
}

impl<U: Clone> RouteTable<U> {
    /// Compiles `configs`; each route holds the upstream it names. A name
    /// that is not among `upstreams` is an error, never a silent default
    /// (validation refuses such a configuration first). The scopes and
    /// claims the routes read are registered in `plan`.
    pub fn new(
        configs: &[RouteConfig],
        upstreams: &Upstreams<U>,
        case_sensitive: bool,
        plan: &mut ClaimPlan,
    ) -> Result<RouteTable<U>, String> {
        let default = RouteConfig {
            spiffe_ids: Vec::new(),
            dpop: None,
            path: "/".into(),
            methods: None,
            auth: AuthMode::Required,
            scopes: Vec::new(),
            any_scopes: Vec::new(),
            claims: Vec::new(),
            issuers: None,
            public_preflight: false,
            upstream: None,
            websocket: true,
            cors: None,
            hosts: Vec::new(),
            allow_if: None,
            deny_if: None,
        };
        let mut default = Route::new(configs.len(), &default, upstreams, plan)?;
        default.name = "(default)".into();
        let mut probe_methods =
            vec![Method::GET, Method::HEAD, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS];
        probe_methods.extend(Method::from_bytes(b"UNKNOWN-OVERRIDE"));
        for method in configs.iter().flat_map(|c| c.methods.iter().flatten()) {
            if !probe_methods.contains(method) {
                probe_methods.push(method.clone());
            }
        }
        Ok(RouteTable {
            routes: configs
                .iter()
                .enumerate()
                .map(|(index, config)| Route::new(index, config, upstreams, plan))
                .collect::<Result<_, String>>()?,
            default,
            case_sensitive,
            by_host: configs
                .iter()
                .any(|c| !c.hosts.is_empty() || [&c.allow_if, &c.deny_if].into_iter().flatten().any(|rule| rule.host)),
            probe_methods,
        })
    }
}

impl<U> RouteTable<U> {
    /// The first route whose hosts, prefix and methods match the request
    /// to `host` ([`request_host`](crate::config::hosts::request_host);
    /// `None`: it has none) for `path` (canonical); the default otherwise.
    pub fn find(&self, host: Option<&str>, method: &Method, path: &str) -> &Route<U> {
        // Without a `;` in the path, a route without escapes matches by one
        // prefix comparison (see `Route::matches`).
        let has_parameters = path.as_bytes().contains(&b';');
        self.routes
            .iter()
            .find(|r| r.matches_host(host) && r.matches(method, path, self.case_sensitive, has_parameters))
            .unwrap_or(&self.default)
    }

    /// Whether some route names hosts or has a rule that reads the host:
    /// only then does a request's host need reading.
    pub fn by_host(&self) -> bool {
        self.by_host
    }

    /// Whether the route for `path` (canonical) at `host` depends on the
    /// method: only then can a method override change which rules judge a
    /// request.
    pub fn depends_on_method(&self, host: Option<&str>, path: &str) -> bool {
        if !self.routes.iter().any(|r| r.methods.is_some()) {
            return false;
        }
        let post = self.find(host, &Method::POST, path);
        self.probe_methods.iter().any(|method| !std::ptr::eq(self.find(host, method, path), post))
    }

    /// Every configured route, in order (not the default).
    pub fn routes(&self) -> &[Route<U>] {
        &self.routes
    }

    /// Every route in [`Route::index`] order: the configured ones, then the default.
    pub fn all(&self) -> impl Iterator<Item = &Route<U>> {
        self.routes.iter().chain(std::iter::once(&self.default))
    }
}

impl<U: Clone> Route<U> {
    fn new(
        index: usize,
        config: &RouteConfig,
        upstreams: &Upstreams<U>,
        plan: &mut ClaimPlan,
    ) -> Result<Route<U>, String> {
        let upstream = match config.upstream.as_deref() {
            None => upstreams.default.clone(),
            Some(name) => match upstreams.named.iter().find(|(known, _)| known == name) {
                Some((_, upstream)) => upstream.clone(),
                None => return Err(format!("route {}: there is no [upstreams.{name}]", config.path)),
            },
        };
        let scope_hint = if config.scopes.is_empty() { config.any_scopes.join(" ") } else { config.scopes.join(" ") };
        let kept = Kept {
            scopes: config.scopes.iter().map(|scope| plan.keep_scope(scope)).collect(),
            any_scopes: config.any_scopes.iter().map(|scope| plan.keep_scope(scope)).collect(),
            claims: config.claims.iter().map(|(path, expected)| (plan.keep_value(path), expected.clone())).collect(),
        };
        Ok(Route {
            name: config.path.clone(),
            hosts: config.hosts.clone(),
            segments: config.path.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            methods: config.methods.clone(),
            auth: config.auth,
            scopes: config.scopes.clone(),
            any_scopes: config.any_scopes.clone(),
            claims: config.claims.clone(),
            kept,
            issuers: config.issuers.clone(),
            spiffe_ids: config.spiffe_ids.clone(),
            dpop: config.dpop,
            public_preflight: config.public_preflight,
            websocket: config.websocket,
            cors: config.cors.as_ref().map(Cors::new),
            policy: Policy::new(
                &format!("routes[{index}]"),
                &config.path,
                config.allow_if.as_ref(),
                config.deny_if.as_ref(),
                plan,
            )?,
            scope_hint,
            upstream,
            index,
        })
    }
}

impl<U> Route<U> {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its place in the table: configured routes from 0, the default last.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The route's `dpop`, when it overrides the issuer's.
    pub fn dpop(&self) -> Option<DpopMode> {
        self.dpop
    }

    /// The route's demands, for `jwtgate explain`.
    pub fn describe(&self) -> String {
        let auth = match self.auth {
            AuthMode::Required => "required",
            AuthMode::Optional => "optional",
            AuthMode::Public => "public",
        };
        let mut out = format!("{}  auth {auth}", self.name);
        if !self.hosts.is_empty() {
            let hosts: Vec<String> = self.hosts.iter().map(HostPattern::to_string).collect();
            out.push_str(&format!("  hosts {}", hosts.join(",")));
        }
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
        if !self.spiffe_ids.is_empty() {
            let ids: Vec<String> = self.spiffe_ids.iter().map(SpiffePattern::to_string).collect();
            out.push_str(&format!("  spiffe_ids {}", ids.join(" ")));
        }
        if self.policy.is_some() {
            out.push_str("  rules (allow_if/deny_if)");
        }
        out
    }

    /// Where this route sends requests.
    pub fn upstream(&self) -> &U {
        &self.upstream
    }

    /// The route's CORS policy, when the gateway answers CORS for it.
    pub fn cors(&self) -> Option<&Cors> {
        self.cors.as_ref()
    }

    /// Whether this route is at least as demanding as `other`: every
    /// request it lets through, `other` would let through too.
    pub fn at_least_as_strict_as<V>(&self, other: &Route<V>) -> bool {
        let rank = |mode: AuthMode| match mode {
            AuthMode::Public => 0,
            AuthMode::Optional => 1,
            AuthMode::Required => 2,
        };
        rank(self.auth) >= rank(other.auth)
            && other.scopes.iter().all(|s| self.scopes.contains(s))
            && (other.any_scopes.is_empty() || other.any_scopes == self.any_scopes)
            && other.claims.iter().all(|c| self.claims.contains(c))
            && other
                .issuers
                .as_ref()
                .is_none_or(|o| self.issuers.as_ref().is_some_and(|s| s.iter().all(|i| o.contains(i))))
    }

    /// Whether the route takes requests to `host`.
    fn matches_host(&self, host: Option<&str>) -> bool {
        self.hosts.is_empty() || host.is_some_and(|host| self.hosts.iter().any(|pattern| pattern.matches(host)))
    }

    /// The configured hosts; empty: any.
    pub fn hosts(&self) -> &[HostPattern] {
        &self.hosts
    }

    /// Segment-prefix match on a canonical path: `/public` matches
    /// `/public` and `/public/x`, not `/publicity`. A segment's
    /// `;parameters` are not part of its name, so `/admin;x=1` is on the
    /// `/admin` route as servers that strip parameters would read it.
    fn matches(&self, method: &Method, path: &str, case_sensitive: bool, has_parameters: bool) -> bool {
        if let Some(methods) = &self.methods
            && !methods.contains(method)
            && !(*method == Method::HEAD && methods.contains(&Method::GET))
        {
            return false;
        }
        if self.segments.is_empty() {
            return true;
        }
        // The common case: the route's path is ASCII without escapes and the
        // request has no parameters, so a segment prefix is a byte prefix
        // (letters folded) followed by the end or a `/`. An escape in the
        // request cannot stand for a letter: canonical paths decode those.
        if !has_parameters && !self.name.contains('%') {
            let (prefix, path) = (self.name.as_bytes(), path.as_bytes());
            let same = path.len() >= prefix.len()
                && if case_sensitive {
                    path[..prefix.len()] == *prefix
                } else {
                    path[..prefix.len()].eq_ignore_ascii_case(prefix)
                };
            return same && matches!(path.get(prefix.len()), None | Some(b'/'));
        }
        let mut segments = path.split('/').skip(1);
        self.segments.iter().all(|want| {
            segments.next().is_some_and(|seg| {
                let name = seg.split_once(';').map_or(seg, |(name, _)| name);
                segment_eq(want, name, case_sensitive)
            })
        })
    }

    /// How this request is authenticated: the route's mode, except that a
    /// CORS preflight may pass without a token when the route allows it.
    pub fn auth_for(&self, method: &Method, headers: &HeaderMap) -> AuthMode {
        let preflight = method == Method::OPTIONS
            && headers.contains_key(header::ORIGIN)
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if self.public_preflight && preflight { AuthMode::Public } else { self.auth }
    }

    /// What the route refuses besides the token checks, inline and in
    /// forward-auth mode alike: a body on a preflight let through without a
    /// token, and an upgrade where the route allows none.
    pub fn refuse_unjudged(
        &self,
        method: &Method,
        headers: &HeaderMap,
        has_body: bool,
        upgrade: bool,
    ) -> Result<(), Refusal> {
        let tokenless_preflight = self.auth != AuthMode::Public && self.auth_for(method, headers) == AuthMode::Public;
        if tokenless_preflight && has_body {
            return Err(Refusal::InvalidRequest("a CORS preflight let through without a token cannot carry a body"));
        }
        if upgrade && !self.websocket {
            return Err(Refusal::InvalidRequest("this route does not allow upgrades (routes[].websocket)"));
        }
        Ok(())
    }

    /// The route's CEL rules, when it has any: `allow_if` true and `deny_if`
    /// false, over the request and the token (if any).
    pub fn judge_rules(&self, facts: &Facts<'_>, trace: &mut impl Trace) -> Result<(), Refusal> {
        let Some(policy) = &self.policy else { return Ok(()) };
        policy
            .judge(facts, trace)
            .map_err(|failure| Refusal::InsufficientScope { failure, scope: self.scope_hint.clone() })
    }

    /// The route's demands on a verified token: its issuer, scopes and claims.
    pub fn authorize(&self, verified: &Verified) -> Result<(), Refusal> {
        let refuse = |failure| Refusal::InsufficientScope { failure, scope: self.scope_hint.clone() };
        if self.issuers.as_ref().is_some_and(|list| !list.iter().any(|i| i == verified.issuer())) {
            return Err(refuse(ScopeFailure::Issuer));
        }
        let kept = &self.kept;
        if !kept.scopes.iter().all(|&scope| verified.has_scope(scope)) {
            return Err(refuse(ScopeFailure::Scopes));
        }
        if !kept.any_scopes.is_empty() && !kept.any_scopes.iter().any(|&scope| verified.has_scope(scope)) {
            return Err(refuse(ScopeFailure::AnyScopes));
        }
        if !kept.claims.iter().all(|(slot, expected)| claim_matches(verified.value(*slot), expected)) {
            return Err(refuse(ScopeFailure::Claims));
        }
        if !self.spiffe_ids.is_empty()
            && !verified.spiffe_id().is_some_and(|id| self.spiffe_ids.iter().any(|allowed| allowed.matches(id)))
        {
            return Err(refuse(ScopeFailure::SpiffeId));
        }
        Ok(())
    }
}

/// Whether two canonical segment names are the same resource name. Without
/// case sensitivity, letters compare case-folded, non-ASCII ones too
/// (`%C3%89` is `%C3%A9`, as a Unicode-aware router reads `É` and `é`).
fn segment_eq(want: &str, got: &str, case_sensitive: bool) -> bool {
    if want == got {
        return true;
    }
    if case_sensitive {
        return false;
    }
    if !want.contains('%') && !got.contains('%') {
        return want.eq_ignore_ascii_case(got);
    }
    match (percent_decoded(want), percent_decoded(got)) {
        (Some(a), Some(b)) => a.chars().flat_map(char::to_lowercase).eq(b.chars().flat_map(char::to_lowercase)),
        _ => false,
    }
}

/// A canonical segment with its escapes decoded; `None` if not UTF-8.
fn percent_decoded(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(value) = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok())
            && let Ok(value) = u8::from_str_radix(value, 16)
        {
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[RouteConfig], case_sensitive: bool) -> RouteTable {
        RouteTable::new(
            routes,
            &Upstreams { default: (), named: Vec::new() },
            case_sensitive,
            &mut ClaimPlan::default(),
        )
        .unwrap()
    }

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
            websocket: true,
            spiffe_ids: Vec::new(),
            dpop: None,
            cors: None,
            hosts: Vec::new(),
            allow_if: None,
            deny_if: None,
        }
    }

    #[test]
    fn segment_prefixes_first_match_wins() {
        let table = table(
            &[route("/public/health", Some(vec![Method::GET])), route("/public", None), route("/admin", None)],
            false,
        );
        let find = |m: Method, p: &str| table.find(None, &m, p).name().to_string();
        assert_eq!(find(Method::GET, "/public"), "/public");
        assert_eq!(find(Method::GET, "/public/"), "/public");
        assert_eq!(find(Method::GET, "/public/x/y"), "/public");
        assert_eq!(find(Method::GET, "/public/health"), "/public/health");
        assert_eq!(find(Method::POST, "/public/health"), "/public");
        assert_eq!(find(Method::GET, "/publicity"), "(default)");
        assert_eq!(find(Method::GET, "/"), "(default)");
        assert_eq!(find(Method::GET, "/admin;jsessionid=1/users"), "/admin");
        assert_eq!(find(Method::GET, "/Admin"), "/admin");
        assert_eq!(find(Method::HEAD, "/public/health"), "/public/health");
        assert_eq!(find(Method::GET, "/public;x/../y"), "/public");
        assert_eq!(find(Method::GET, "/x;a/public"), "(default)");
    }

    #[test]
    fn case_folds_unless_asked_not_to() {
        let routes = [route("/caf%C3%A9/admin", None), route("/Reports", None)];
        let folded = table(&routes, false);
        let exact = table(&routes, true);
        for path in ["/CAF%C3%89/ADMIN/x", "/caf%C3%A9/Admin", "/reports;v=1", "/REPORTS/"] {
            assert_ne!(folded.find(None, &Method::GET, path).name(), "(default)", "{path}");
        }
        assert_eq!(exact.find(None, &Method::GET, "/CAF%C3%89/admin").name(), "(default)");
        assert_eq!(exact.find(None, &Method::GET, "/reports").name(), "(default)");
        assert_eq!(exact.find(None, &Method::GET, "/Reports/x").name(), "/Reports");
    }

    #[test]
    fn head_is_judged_as_get_but_not_the_reverse() {
        let table = table(&[route("/r", Some(vec![Method::GET])), route("/h", Some(vec![Method::HEAD]))], false);
        assert_eq!(table.find(None, &Method::HEAD, "/r").name(), "/r");
        assert_eq!(table.find(None, &Method::GET, "/h").name(), "(default)");
        assert_eq!(table.find(None, &Method::POST, "/r").name(), "(default)");
    }

    #[test]
    fn routes_hold_the_upstream_they_name() {
        let mut billing = route("/billing", None);
        billing.upstream = Some("billing".into());
        let mut audit = route("/audit", None);
        audit.upstream = Some("audit".into());
        let upstreams = Upstreams {
            default: "[upstream]",
            named: vec![("audit".to_string(), "audit"), ("billing".to_string(), "billing")],
        };
        let table = RouteTable::new(
            &[billing.clone(), audit, route("/other", None)],
            &upstreams,
            false,
            &mut ClaimPlan::default(),
        )
        .unwrap();
        let upstream = |p: &str| *table.find(None, &Method::GET, p).upstream();
        assert_eq!(
            (upstream("/billing/x"), upstream("/audit"), upstream("/other"), upstream("/")),
            ("billing", "audit", "[upstream]", "[upstream]")
        );
        // A name that is not configured is an error, never the default.
        let only_audit = Upstreams { default: "[upstream]", named: vec![("audit".to_string(), "audit")] };
        assert!(RouteTable::new(&[billing], &only_audit, false, &mut ClaimPlan::default()).is_err());
    }

    #[test]
    fn the_root_route_matches_everything() {
        let table = table(&[route("/", None)], false);
        assert_eq!(table.find(None, &Method::GET, "/anything/at/all").name(), "/");
    }

    #[test]
    fn preflights_are_public_only_when_allowed() {
        let mut config = route("/api", None);
        config.auth = AuthMode::Required;
        let none = Upstreams { default: (), named: Vec::new() };
        let strict = Route::new(0, &config, &none, &mut ClaimPlan::default()).unwrap();
        config.public_preflight = true;
        let lenient = Route::new(0, &config, &none, &mut ClaimPlan::default()).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, "https://app.example".parse().unwrap());
        headers.insert(header::ACCESS_CONTROL_REQUEST_METHOD, "POST".parse().unwrap());
        assert_eq!(strict.auth_for(&Method::OPTIONS, &headers), AuthMode::Required);
        assert_eq!(lenient.auth_for(&Method::OPTIONS, &headers), AuthMode::Public);
        assert_eq!(lenient.auth_for(&Method::POST, &headers), AuthMode::Required);
        headers.remove(header::ORIGIN);
        assert_eq!(lenient.auth_for(&Method::OPTIONS, &headers), AuthMode::Required);
    }

    #[test]
    fn hosts_are_checked_before_the_path_and_a_host_route_never_takes_other_hosts() {
        let host = |path: &str, hosts: &[&str]| RouteConfig {
            hosts: hosts.iter().map(|h| crate::config::hosts::HostPattern::parse(h).unwrap()).collect(),
            ..route(path, None)
        };
        let table = table(
            &[host("/admin", &["admin.example.com"]), host("/", &["*.example.com"]), route("/admin", None)],
            false,
        );
        assert!(table.by_host());
        let find = |h: Option<&str>, p: &str| table.find(h, &Method::GET, p).index();
        assert_eq!(find(Some("admin.example.com"), "/admin/x"), 0);
        assert_eq!(find(Some("api.example.com"), "/admin/x"), 1);
        assert_eq!(find(Some("example.com"), "/admin/x"), 2);
        assert_eq!(find(None, "/admin"), 2, "a request without a host is on no host's route");
        assert_eq!(find(Some("other.org"), "/x"), 3);
        assert!(!self::table(&[route("/a", None)], false).by_host());
    }
}
