//! `jwtgate check`: a summary of a valid configuration and, with
//! `--online`, the keys each issuer currently publishes.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::auth::ClaimPlan;
use crate::auth::introspect::Introspector;
use crate::config::{AuthMode, Config, IssuerConfig, JwksSource, Problem, Tenants, TracingProtocol, UpstreamProtocol};
use crate::keys::fetch::FetchError;
use crate::keys::set::{KeyPurpose, KeySet};
use crate::keys::{Fetcher, FetcherError, IssuerKeys};
use crate::routes::{Route, RouteTable, Upstreams};
use crate::tls::{self, ServerTls};
use http::Method;

/// A human summary of what the configuration does.
pub fn summary(config: &Config) -> String {
    let mut out = String::new();
    let up = &config.upstream;
    let protocols = match config.server.tls.as_ref().map(|tls| &tls.client_auth) {
        None => "HTTP/1.1 and h2c",
        Some(crate::config::ClientAuth::None) => "TLS: HTTP/1.1 and h2",
        Some(crate::config::ClientAuth::Optional(_)) => "TLS: HTTP/1.1 and h2, client certificates optional",
        Some(crate::config::ClientAuth::Required(_)) => "TLS: HTTP/1.1 and h2, client certificates required",
    };
    let _ = writeln!(out, "listen      {} ({protocols})", config.server.listen);
    let upstream_line = |up: &crate::config::UpstreamConfig| {
        let protocol = match up.protocol {
            UpstreamProtocol::Http1 => "",
            UpstreamProtocol::H2c => " (h2c)",
            UpstreamProtocol::Auto => " (HTTP/2 or HTTP/1.1 by ALPN)",
        };
        format!("{}{}{protocol}", up.origin.to_string().trim_end_matches('/'), up.base_path)
    };
    let _ = writeln!(out, "upstream    {}", upstream_line(up));
    for (name, up) in &config.upstreams {
        let _ = writeln!(out, "upstream    {name}: {}", upstream_line(up));
    }
    for issuer in &config.issuers {
        let source = match &issuer.jwks {
            JwksSource::Discovery { discovery_url } => format!("discovery {discovery_url}"),
            JwksSource::Url(url) => format!("jwks_url {url}"),
            JwksSource::File(path) => format!("jwks_file {}", path.display()),
        };
        let algorithms: Vec<String> = issuer.algorithms.iter().map(|a| format!("{a:?}")).collect();
        let _ = writeln!(out, "issuer      {}", issuer.issuer);
        let _ = writeln!(out, "  audiences {}", issuer.audiences.join(", "));
        let _ = writeln!(out, "  alg       {}", algorithms.join(", "));
        let _ = writeln!(out, "  keys      {source}");
        if issuer.keys_per_tenant() {
            let listed = match &issuer.tenants {
                Some(Tenants::Only(list)) => format!("the listed {}, loaded at start", list.len()),
                _ => format!("each on its first token, {} at most (max_tenants)", issuer.max_tenants),
            };
            let _ = writeln!(out, "  tenants   each with its own keys: {listed}");
        }
        if let Some(introspection) = &issuer.introspection {
            let _ = writeln!(
                out,
                "  opaque    {} (RFC 7662, auth {}, {}, answers reused {})",
                introspection.url,
                match introspection.auth {
                    crate::config::IntrospectionAuth::Basic => "basic",
                    crate::config::IntrospectionAuth::Post => "post",
                },
                match introspection.mode {
                    crate::config::IntrospectMode::Opaque => "non-JWT tokens",
                    crate::config::IntrospectMode::Always => "non-JWT tokens and this issuer's JWTs",
                },
                humantime::format_duration(introspection.cache_ttl)
            );
        }
    }
    for route in &config.routes {
        let auth = match route.auth {
            AuthMode::Required => "required",
            AuthMode::Optional => "optional",
            AuthMode::Public => "public",
        };
        let methods = route
            .methods
            .as_ref()
            .map_or_else(|| "any method".to_string(), |m| m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(","));
        let mut line = format!("route       {}  {methods}  auth {auth}", route.path);
        if !route.hosts.is_empty() {
            let hosts: Vec<String> = route.hosts.iter().map(ToString::to_string).collect();
            let _ = write!(line, "  hosts {}", hosts.join(","));
        }
        for (name, rule) in [("allow_if", &route.allow_if), ("deny_if", &route.deny_if)] {
            if let Some(rule) = rule {
                let _ = write!(line, "  {name} {}", rule.source.split_whitespace().collect::<Vec<_>>().join(" "));
            }
        }
        if !route.scopes.is_empty() {
            let _ = write!(line, "  scopes {}", route.scopes.join(" "));
        }
        if !route.any_scopes.is_empty() {
            let _ = write!(line, "  any_scopes {}", route.any_scopes.join(" "));
        }
        for (claim, value) in &route.claims {
            let _ = write!(line, "  claim {}={value}", claim.name());
        }
        if let Some(issuers) = &route.issuers {
            let _ = write!(line, "  issuers {}", issuers.join(" "));
        }
        if route.public_preflight {
            line.push_str("  cors_preflight public");
        }
        if let Some(upstream) = &route.upstream {
            let _ = write!(line, "  upstream {upstream}");
        }
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "otherwise   a valid token from any issuer, no scopes");
    if let Some(metadata) = &config.resource_metadata {
        let _ = writeln!(out, "metadata    {} (RFC 9728, named in every 401)", metadata.url);
    }
    if let Some(forward_auth) = &config.forward_auth {
        let _ = writeln!(
            out,
            "checks      {} answers forward-auth checks from {} (only its headers name the request) instead of proxying",
            forward_auth.path,
            format!("{:?}", forward_auth.edge).to_lowercase()
        );
    }
    for (claim, header) in &config.headers.claims {
        let _ = writeln!(out, "header      {header} <- claim {}", claim.name());
    }
    if let Some(header) = &config.headers.payload {
        let _ = writeln!(out, "header      {header} <- the verified payload (base64url JSON)");
    }
    if let Some(tracing) = &config.tracing {
        let protocol = match tracing.protocol {
            TracingProtocol::Http => "OTLP/HTTP",
            TracingProtocol::Grpc => "OTLP/gRPC",
        };
        let _ = writeln!(
            out,
            "tracing     {protocol} to {}, service {}, sample ratio {} (a caller's sampled traceparent is followed)",
            tracing.endpoint, tracing.service_name, tracing.sample_ratio
        );
    }
    out
}

/// Configurations that are valid but probably not what was meant.
///
/// Routes match whole segments: `/admin` covers `/admin` and `/admin/x`,
/// not `/adminx`. A backend that matches string prefixes (nginx's
/// `location /admin`) serves `/adminx`, `/admin.json` or `/admin%20`
/// from its admin handler too, so each protected route whose string-prefix
/// extensions fall to a less demanding route is named here.
pub fn warnings(config: &Config) -> Vec<String> {
    // Each route holds the name of its upstream ("" for [upstream]).
    let upstreams = Upstreams {
        default: String::new(),
        named: config.upstreams.iter().map(|(name, _)| (name.clone(), name.clone())).collect(),
    };
    // Validation has refused a route naming an unknown upstream.
    let Ok(table) =
        RouteTable::new(&config.routes, &upstreams, config.server.case_sensitive_routes, &mut ClaimPlan::default())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, (route, raw)) in table.routes().iter().zip(&config.routes).enumerate() {
        let hosts = probe_hosts(route);
        let methods = raw.methods.clone().unwrap_or_else(|| PROBE_METHODS.to_vec());
        let reached = hosts.iter().any(|host| {
            methods.iter().any(|method| std::ptr::eq(table.find(host.as_deref(), method, &raw.path), route))
        });
        if !reached {
            let earlier = hosts
                .first()
                .and_then(|host| methods.first().map(|method| table.find(host.as_deref(), method, &raw.path)));
            out.push(format!(
                "routes[{i}] {} is unreachable: every request it would take is judged first by the earlier route {} \
                 (the first match wins); move it above, or narrow the earlier one",
                raw.path,
                earlier.map_or("", |r| r.name())
            ));
            continue;
        }
        if !route.hosts().is_empty() {
            // The same path with a Host this route does not list.
            let other = table.find(Some("unlisted-host.invalid"), &methods[0], &raw.path);
            if other.upstream() == route.upstream() && !other.at_least_as_strict_as(route) {
                out.push(format!(
                    "routes[{i}] {} (hosts {}): the same path with any other Host is judged by the less demanding \
                     route {} and reaches the same upstream, which may not tell hosts apart; send this host's routes \
                     to their own upstream, or make that route at least as strict",
                    raw.path,
                    route.hosts().iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                    other.name()
                ));
            }
        }
        if raw.path == "/" {
            continue;
        }
        let methods = raw.methods.clone().unwrap_or_else(|| vec![Method::GET]);
        let host = hosts.first().and_then(|host| host.as_deref());
        let weaker = ["x", ".json", "-x", "%20", "~"].into_iter().find_map(|suffix| {
            let probe = format!("{}{suffix}", raw.path);
            methods.iter().find_map(|method| {
                let other = table.find(host, method, &probe);
                (!std::ptr::eq(other, route) && !other.at_least_as_strict_as(route)).then(|| (probe.clone(), other))
            })
        });
        if let Some((probe, other)) = weaker {
            out.push(format!(
                "routes[{i}] {}: {probe} is judged by the less demanding route {}; a backend that matches string \
                 prefixes (nginx `location {}`) would serve it as {}. Use `location {}/` and `location = {}` there, \
                 or add a route for it",
                raw.path,
                other.name(),
                raw.path,
                raw.path,
                raw.path,
                raw.path
            ));
        }
    }
    out
}

/// Methods a route without `methods` is probed with: the common ones and one no route names.
const PROBE_METHODS: [Method; 6] =
    [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS];

/// Hosts a route takes, one per configured host (a name its wildcard
/// matches); `[None]` when it takes any.
fn probe_hosts<U>(route: &Route<U>) -> Vec<Option<String>> {
    if route.hosts().is_empty() {
        return vec![None];
    }
    route.hosts().iter().map(|host| Some(host.example())).collect()
}

/// Reads every file the configuration names (TLS, key sets), as `run`
/// would; each unusable one is a problem under its key.
pub fn files(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, issuer) in config.issuers.iter().enumerate() {
        if let JwksSource::File(path) = &issuer.jwks {
            let name = if issuer.spiffe { "spiffe_bundle_file" } else { "jwks_file" };
            problems.extend(jwks_file(&format!("issuers[{i}].{name}"), path, issuer));
        }
        if let Some(file) = &issuer.ca_file {
            problems.extend(tls::read_certificates(&format!("issuers[{i}].ca_file"), file).err());
        }
    }
    if let Some(server_tls) = &config.server.tls {
        problems.extend(ServerTls::load(server_tls).err());
    }
    for upstream in std::iter::once(&config.upstream).chain(config.upstreams.iter().map(|(_, upstream)| upstream)) {
        problems.extend(tls::upstream_client_config(upstream).err());
    }
    if let Some(assertion) = &config.headers.assertion {
        problems.extend(crate::assertion::Signer::load(&assertion.key_file, assertion.alg).err());
    }
    problems
}

/// A key file that cannot be read, is not a JWKS, or has no key the
/// issuer's algorithms can use would refuse every token.
fn jwks_file(key: &str, path: &std::path::Path, issuer: &crate::config::IssuerConfig) -> Option<Problem> {
    let shown = path.display();
    let max_bytes = issuer.jwks_limits.max_bytes;
    // Bounded as the key store reads it; a FIFO or device is not a key file.
    let read = std::fs::metadata(path).and_then(|meta| {
        if !meta.is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        let mut body = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(std::fs::File::open(path)?, max_bytes as u64 + 1),
            &mut body,
        )?;
        Ok(body)
    });
    let body = match read {
        Ok(body) if body.len() > max_bytes => {
            return Some(Problem::new(
                key,
                format!(
                    "{shown} is larger than {max_bytes} bytes — raise limits.max_jwks_bytes if it really is a key set"
                ),
            ));
        }
        Ok(body) => body,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Some(Problem::new(
                key,
                format!(
                    "{shown} does not exist — write the path of a JWKS file (relative to the config file's folder)"
                ),
            ));
        }
        Err(error) => return Some(Problem::new(key, format!("cannot read {shown}: {error}"))),
    };
    match KeySet::from_jwks(&body, issuer.jwks_limits.max_keys, KeyPurpose::of(issuer)) {
        Err(error) => Some(Problem::new(key, format!("{shown} is {error}"))),
        Ok((set, _)) => unusable_keys(
            &set,
            issuer,
            &key.replace("spiffe_bundle_file", "algorithms").replace("jwks_file", "algorithms"),
        )
        .map(|message| Problem::new(key, format!("{shown}: {message}"))),
    }
}

/// When no key of `set` can verify any of the issuer's algorithms: what
/// the keys are and which algorithms would use them.
pub fn unusable_keys(set: &KeySet, issuer: &crate::config::IssuerConfig, algorithms_key: &str) -> Option<String> {
    if issuer.algorithms.iter().any(|alg| set.candidates(*alg).next().is_some()) {
        return None;
    }
    let allowed: Vec<String> = issuer.algorithms.iter().map(|a| format!("{a:?}")).collect();
    let kinds: Vec<String> = set.keys().iter().map(|k| format!("{:?}", k.kind)).collect();
    Some(if kinds.is_empty() {
        "holds no usable signing key — publish the issuer's public signing keys".to_string()
    } else {
        format!(
            "no key can verify the allowed algorithms ({}); the keys are {} — list the algorithms they sign with in {algorithms_key}",
            allowed.join(", "),
            kinds.join(", ")
        )
    })
}

/// What `check --online` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Online {
    /// Every issuer answered with keys the configuration can use.
    Usable,
    /// Some issuer could not be reached: maybe only from here, maybe only now.
    Unreachable,
    /// Some issuer answered, and what it said contradicts the configuration.
    Misconfigured,
}

/// Fetches every issuer's keys once and lists them; a problem names the
/// key to change.
pub async fn online(config: &Config) -> (String, Online) {
    let mut out = String::new();
    let mut worst = Online::Usable;
    for (i, issuer) in config.issuers.iter().enumerate() {
        let fetcher = match Fetcher::for_issuer(i, issuer.ca_file.as_deref()) {
            Ok(fetcher) => fetcher,
            Err(error) => {
                let (found, problem) = match error {
                    FetcherError::CaFile(_) => (Online::Misconfigured, error.to_string()),
                    other => (Online::Unreachable, format!("cannot build an HTTP client: {other}")),
                };
                worst = worst.max(found);
                let _ = writeln!(out, "error: {problem}");
                continue;
            }
        };
        // Keys per tenant: each listed tenant's are checked; an open
        // issuer's tenants are known only from their tokens.
        let targets = match (&issuer.tenants, issuer.keys_per_tenant()) {
            (Some(Tenants::Only(list)), true) => list.iter().map(|tenant| issuer.for_tenant(tenant)).collect(),
            (_, true) => {
                let _ = writeln!(
                    out,
                    "{}: keys per tenant, fetched on each tenant's first token (not checked)",
                    issuer.issuer
                );
                Vec::new()
            }
            _ => vec![issuer.clone()],
        };
        for target in &targets {
            let Some(problem) = check_keys(&mut out, i, target, fetcher.clone()).await else { continue };
            worst = worst.max(problem.0);
            let _ = writeln!(out, "error: {}", problem.1);
        }
    }
    let (introspection, found) = probe_introspection(config).await;
    out.push_str(&introspection);
    (out, worst.max(found))
}

/// Asks each introspection endpoint about a token nobody issued: a working
/// endpoint that accepts jwtgate's credentials answers (`active: false`).
async fn probe_introspection(config: &Config) -> (String, Online) {
    let mut out = String::new();
    let mut worst = Online::Usable;
    let introspectors = match Introspector::for_issuers(&config.issuers, config.limits.max_json_depth) {
        Ok(introspectors) => introspectors,
        // The key fetches above reported the same client problem.
        Err(_) => return (out, Online::Unreachable),
    };
    for introspector in introspectors {
        let i = config.issuers.iter().position(|issuer| issuer.issuer == introspector.issuer()).unwrap_or(0);
        let url = config.issuers.get(i).and_then(|issuer| issuer.introspection.as_ref()).map_or("", |x| x.url.as_str());
        match introspector.probe().await {
            Ok(()) => {
                let _ = writeln!(out, "{}: introspection answers at {url}", introspector.issuer());
            }
            Err((true, why)) => {
                worst = worst.max(Online::Misconfigured);
                let _ = writeln!(
                    out,
                    "error: issuers[{i}].introspection: {url}: {why} — check the url, client_id, client_secret and auth"
                );
            }
            Err((false, why)) => {
                worst = worst.max(Online::Unreachable);
                let _ = writeln!(out, "error: issuers[{i}].introspection: cannot reach {url}: {why}");
            }
        }
    }
    (out, worst)
}

/// Fetches one key set and lists it: the problem it shows, if any.
async fn check_keys(out: &mut String, i: usize, issuer: &IssuerConfig, fetcher: Fetcher) -> Option<(Online, String)> {
    let keys = Arc::new(IssuerKeys::new(issuer, fetcher));
    Some(match keys.fetch().await {
        Ok(_) => {
            let _ = writeln!(out, "{}: keys", issuer.issuer);
            let snapshot = keys.load();
            let set = snapshot.as_ref().map(|s| &s.keys);
            for key in set.map(KeySet::keys).unwrap_or_default() {
                let alg = key.alg.map_or_else(|| "any".to_string(), |a| format!("{a:?}"));
                let kid = key.kid().unwrap_or("(no kid)");
                let _ = writeln!(out, "  kid {kid}  type {:?}  alg {alg}", key.kind);
            }
            match set.and_then(|set| unusable_keys(set, issuer, &format!("issuers[{i}].algorithms"))) {
                Some(message) => (Online::Misconfigured, format!("issuers[{i}].algorithms: {message}")),
                None => return None,
            }
        }
        Err(error @ FetchError::IssuerMismatch { .. }) => {
            (Online::Misconfigured, format!("issuers[{i}].issuer: {error}"))
        }
        // It answered, with something that is not a usable key set: the URL or the issuer is wrong.
        Err(error @ FetchError::Jwks(_)) => {
            let source = match &issuer.jwks {
                _ if issuer.spiffe => "spiffe_bundle_url",
                JwksSource::Url(_) => "jwks_url",
                _ => "issuer",
            };
            (Online::Misconfigured, format!("issuers[{i}].{source}: {error}"))
        }
        Err(error) => {
            (Online::Unreachable, format!("issuers[{i}]: cannot fetch the keys of {}: {error}", issuer.issuer))
        }
    })
}
