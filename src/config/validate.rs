//! Raw → typed configuration. Every problem is collected, so one run of
//! `jwtgate check` shows everything that needs fixing.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use http::uri::Scheme;
use http::{HeaderName, Method, Uri};
use jsonwebtoken::Algorithm;
use reqwest::Url;
use serde_json::Value;

use super::raw::{
    RawConfig, RawCors, RawHeaders, RawIssuer, RawLimits, RawResourceMetadata, RawRoute, RawServer, RawServerTls,
    RawUpstream,
};
use super::{
    AuthMode, CacheConfig, ClientIdentity, Config, CorsConfig, Edge, ForwardAuthConfig, HeadersConfig, IssuerConfig,
    JwksLimits, JwksSource, LimitsConfig, MethodOverride, Problem, ResourceMetadataConfig, RouteConfig, ServerConfig,
    ServerTlsConfig, TENANT, Tenants, UpstreamConfig, UpstreamProtocol,
};
use super::{ClaimPath, SUPPORTED_ALGORITHMS, TokenLocation, defaults};

/// hyper refuses a read buffer below 8 KiB.
const MIN_HEADER_BYTES: i64 = 8 * 1024;
const MAX_HEADER_BYTES: i64 = 1024 * 1024;

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: &str, message: impl Into<String>) {
        self.0.push(Problem::new(key, message));
    }

    fn duration(&mut self, key: &str, value: Option<&str>, default: Duration) -> Duration {
        let Some(text) = value else { return default };
        match humantime::parse_duration(text) {
            Ok(d) => d,
            Err(_) => {
                let name = key.rsplit('.').next().unwrap_or(key);
                let example = if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
                    format!("{text}s")
                } else {
                    "30s".to_string()
                };
                self.add(
                    key,
                    format!(
                        "expected a duration such as \"30s\", found {text:?} — write {name} = \"{example}\" \
                         (units: ms, s, m, h)"
                    ),
                );
                default
            }
        }
    }

    fn required<'a, T>(&mut self, key: &str, value: Option<&'a T>) -> Option<&'a T> {
        if value.is_none() {
            self.add(key, format!("required key is missing — {}", how_to_add(key)));
        }
        value
    }
}

/// What to write for a required key that is missing.
fn how_to_add(key: &str) -> String {
    let name = key.rsplit(['.', ']']).next().unwrap_or(key);
    match name {
        "upstream" => "add an [upstream] table with url = \"http://127.0.0.1:3000\" (your backend)".to_string(),
        "url" => format!("add url = \"http://127.0.0.1:3000\" under [{}]", key.trim_end_matches(".url")),
        "issuer" => "add issuer = \"https://…/\", exactly the iss your tokens carry".to_string(),
        "audiences" => {
            "add audiences = [\"…\"], the aud your identity provider puts in tokens for this API".to_string()
        }
        "path" => "add path = \"/…\", the path prefix this route covers".to_string(),
        "resource" => "add resource = \"https://…\", this API's external URL".to_string(),
        _ => format!("add {name} = … (docs/configuration.md describes it)"),
    }
}

pub fn validate(raw: RawConfig, base_dir: &Path) -> Result<Config, Vec<Problem>> {
    let mut p = Problems::default();
    let server = server(&raw.server, base_dir, &mut p);
    let default_upstream = match p.required("upstream", raw.upstream.as_ref()) {
        Some(u) => upstream("upstream", u, base_dir, &mut p),
        None => None,
    };
    let mut upstreams = Vec::with_capacity(raw.upstreams.len());
    for (name, raw_upstream) in &raw.upstreams {
        let key = format!("upstreams.{name}");
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            p.add(&key, "a name is letters, digits, '-' and '_'");
        }
        if let Some(config) = upstream(&key, raw_upstream, base_dir, &mut p) {
            upstreams.push((name.clone(), config));
        }
    }
    let upstream_names: Vec<&str> = raw.upstreams.keys().map(String::as_str).collect();
    let limits = limits(raw.limits.as_ref(), &mut p);
    // Authorization servers by default: every issuer, each listed tenant of a templated one.
    let issuer_list: Vec<String> = raw
        .issuers
        .iter()
        .flat_map(|i| match (i.issuer.as_deref(), &i.tenants) {
            (Some(issuer), Some(tenants)) if issuer.contains(TENANT) => {
                tenants.iter().filter(|t| *t != "*").map(|t| issuer.replace(TENANT, t)).collect::<Vec<_>>()
            }
            (Some(issuer), _) => vec![issuer.to_string()],
            (None, _) => Vec::new(),
        })
        .collect();
    let resource_metadata = raw.resource_metadata.as_ref().and_then(|r| resource_metadata(r, &issuer_list, &mut p));
    if raw.issuers.is_empty() {
        p.add(
            "issuers",
            "at least one [[issuers]] table is required — add one with issuer = \"https://…/\" and audiences = [\"…\"]",
        );
    }
    let issuers: Vec<IssuerConfig> = raw
        .issuers
        .iter()
        .enumerate()
        .filter_map(|(i, r)| issuer(&format!("issuers[{i}]"), r, base_dir, limits.jwks, &mut p))
        .collect();
    for (i, a) in issuers.iter().enumerate() {
        if issuers[..i].iter().any(|b| b.issuer == a.issuer) {
            p.add(&format!("issuers[{i}].issuer"), format!("{:?} is configured twice", a.issuer));
        }
    }
    let issuer_names: Vec<&str> = raw.issuers.iter().filter_map(|i| i.issuer.as_deref()).collect();
    let routes: Vec<RouteConfig> = raw
        .routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| route(&format!("routes[{i}]"), r, &issuer_names, &upstream_names, &mut p))
        .collect();
    let headers = raw.headers.as_ref().map(|h| headers(h, &mut p)).unwrap_or_default();
    let cache = CacheConfig {
        max_tokens: match raw.cache.as_ref().and_then(|c| c.max_tokens) {
            None => defaults::CACHE_MAX_TOKENS,
            Some(max_tokens) => usize::try_from(max_tokens).unwrap_or_else(|_| {
                p.add("cache.max_tokens", format!("must be 0 (off) or more (got {max_tokens})"));
                0
            }),
        },
    };
    let forward_auth = raw.forward_auth.as_ref().and_then(|f| {
        let edge = match f.edge.as_deref() {
            None | Some("nginx") => Edge::Nginx,
            Some("traefik") => Edge::Traefik,
            Some("caddy") => Edge::Caddy,
            Some("envoy") => Edge::Envoy,
            Some(other) => {
                p.add(
                    "forward_auth.edge",
                    format!("must be \"nginx\", \"traefik\", \"caddy\" or \"envoy\" (got {other:?})"),
                );
                Edge::Nginx
            }
        };
        let path = p.required("forward_auth.path", f.path.as_ref())?;
        match crate::path::normalize(path) {
            Ok(normal) if normal.len() > 1 && (normal == *path || normal == format!("{path}/")) => {
                Some(ForwardAuthConfig { path: path.trim_end_matches('/').to_string(), edge })
            }
            Ok(_) => {
                p.add("forward_auth.path", format!("must be a normalised path other than / (got {path:?})"));
                None
            }
            Err(why) => {
                p.add("forward_auth.path", format!("{why} (got {path:?})"));
                None
            }
        }
    });
    match (default_upstream, p.0.is_empty()) {
        (Some(upstream), true) => Ok(Config {
            server,
            upstream,
            upstreams,
            issuers,
            routes,
            headers,
            cache,
            forward_auth,
            limits,
            resource_metadata,
        }),
        _ => Err(p.0),
    }
}

fn not_an_address(name: &str, text: &str) -> String {
    let port = text.rsplit(':').next().filter(|p| p.parse::<u16>().is_ok()).unwrap_or("8080");
    if name == "admin_listen" {
        // /metrics and the probes are for this host or a scraper, not the world.
        return format!("not an address (got {text:?}) — write {name} = \"127.0.0.1:{port}\"");
    }
    format!(
        "not an address (got {text:?}) — write {name} = \"0.0.0.0:{port}\" (all interfaces) or \"127.0.0.1:{port}\" \
         (this host only)"
    )
}

fn server(raw: &RawServer, base_dir: &Path, p: &mut Problems) -> ServerConfig {
    let listen = raw.listen.as_deref().map_or(defaults::LISTEN, |listen| {
        listen.parse::<SocketAddr>().unwrap_or_else(|_| {
            p.add("server.listen", not_an_address("listen", listen));
            defaults::LISTEN
        })
    });
    let admin_listen = raw.admin_listen.as_deref().and_then(|text| match text.parse::<SocketAddr>() {
        Ok(addr) if addr == listen => {
            p.add("server.admin_listen", format!("must differ from server.listen (both {addr})"));
            None
        }
        Ok(addr) => Some(addr),
        Err(_) => {
            p.add("server.admin_listen", not_an_address("admin_listen", text));
            None
        }
    });
    let worker_threads = raw.worker_threads.and_then(|n| match usize::try_from(n) {
        Ok(n) if (1..=1024).contains(&n) => Some(n),
        _ => {
            p.add("server.worker_threads", format!("must be between 1 and 1024 (got {n})"));
            None
        }
    });
    let max_connections = match raw.max_connections {
        None => defaults::MAX_CONNECTIONS,
        Some(n) if (1..=1_000_000).contains(&n) => usize::try_from(n).unwrap_or(defaults::MAX_CONNECTIONS),
        Some(n) => {
            p.add("server.max_connections", format!("must be between 1 and 1000000 (got {n})"));
            defaults::MAX_CONNECTIONS
        }
    };
    let max_header_bytes = match raw.max_header_bytes {
        None => defaults::MAX_HEADER_BYTES,
        Some(n) if (MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&n) => {
            usize::try_from(n).unwrap_or(defaults::MAX_HEADER_BYTES)
        }
        Some(n) => {
            p.add(
                "server.max_header_bytes",
                format!("must be between {MIN_HEADER_BYTES} and {MAX_HEADER_BYTES} (got {n})"),
            );
            defaults::MAX_HEADER_BYTES
        }
    };
    let realm = raw.realm.clone().unwrap_or_else(|| defaults::REALM.to_string());
    // The realm is written inside a quoted-string of WWW-Authenticate.
    if realm.is_empty() || realm.chars().any(|c| c == '"' || c == '\\' || !(' '..='~').contains(&c)) {
        p.add("server.realm", format!("must be non-empty printable ASCII without '\"' or '\\' (got {realm:?})"));
    }
    ServerConfig {
        listen,
        admin_listen,
        worker_threads,
        max_connections,
        request_timeout: p.duration(
            "server.request_timeout",
            raw.request_timeout.as_deref(),
            defaults::REQUEST_TIMEOUT,
        ),
        header_read_timeout: p.duration(
            "server.header_read_timeout",
            raw.header_read_timeout.as_deref(),
            defaults::HEADER_READ_TIMEOUT,
        ),
        max_header_bytes,
        shutdown_grace: p.duration("server.shutdown_grace", raw.shutdown_grace.as_deref(), defaults::SHUTDOWN_GRACE),
        realm,
        case_sensitive_routes: raw.case_sensitive_routes.unwrap_or(false),
        method_override: match raw.method_override.as_deref() {
            None | Some("strip") => MethodOverride::Strip,
            Some("honour") => MethodOverride::Honour,
            Some(other) => {
                p.add("server.method_override", format!("must be \"strip\" or \"honour\" (got {other:?})"));
                MethodOverride::Strip
            }
        },
        websocket_idle_timeout: p.duration(
            "server.websocket_idle_timeout",
            raw.websocket_idle_timeout.as_deref(),
            defaults::WEBSOCKET_IDLE_TIMEOUT,
        ),
        tls: raw.tls.as_ref().and_then(|tls| server_tls(tls, base_dir, p)),
    }
}

fn server_tls(raw: &RawServerTls, base_dir: &Path, p: &mut Problems) -> Option<ServerTlsConfig> {
    let cert = p.required("server.tls.cert", raw.cert.as_ref());
    let key = p.required("server.tls.key", raw.key.as_ref());
    Some(ServerTlsConfig { cert: base_dir.join(cert?), key: base_dir.join(key?) })
}

fn upstream(key: &str, raw: &RawUpstream, base_dir: &Path, p: &mut Problems) -> Option<UpstreamConfig> {
    let connect_timeout = p.duration(
        &format!("{key}.connect_timeout"),
        raw.connect_timeout.as_deref(),
        defaults::UPSTREAM_CONNECT_TIMEOUT,
    );
    let timeout = p.duration(&format!("{key}.timeout"), raw.timeout.as_deref(), defaults::UPSTREAM_TIMEOUT);
    let url = p.required(&format!("{key}.url"), raw.url.as_ref())?;
    let bad = |p: &mut Problems, why: &str| {
        p.add(&format!("{key}.url"), format!("{why} (got {url:?})"));
        None
    };
    let Ok(uri) = url.parse::<Uri>() else {
        return bad(p, "not a URL; write e.g. \"http://127.0.0.1:9000\"");
    };
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::HTTP,
        Some("https") => Scheme::HTTPS,
        _ => return bad(p, "must start with http:// or https://"),
    };
    let client_identity = match (&raw.client_cert, &raw.client_key) {
        (Some(cert), Some(key)) => Some(ClientIdentity { cert: base_dir.join(cert), key: base_dir.join(key) }),
        (Some(_), None) => {
            p.add(&format!("{key}.client_key"), format!("required with {key}.client_cert"));
            None
        }
        (None, Some(_)) => {
            p.add(&format!("{key}.client_cert"), format!("required with {key}.client_key"));
            None
        }
        (None, None) => None,
    };
    let protocol = match raw.protocol.as_deref() {
        None | Some("http1") => UpstreamProtocol::Http1,
        Some("h2c") if scheme == Scheme::HTTPS => {
            p.add(
                &format!("{key}.protocol"),
                "h2c is cleartext HTTP/2; an https:// upstream negotiates HTTP/2 with \"auto\"",
            );
            UpstreamProtocol::Http1
        }
        Some("h2c") => UpstreamProtocol::H2c,
        Some("auto") => UpstreamProtocol::Auto,
        Some(other) => {
            p.add(&format!("{key}.protocol"), format!("must be \"http1\", \"h2c\" or \"auto\" (got {other:?})"));
            UpstreamProtocol::Http1
        }
    };
    if scheme == Scheme::HTTP {
        for (name, set) in [
            ("ca_file", raw.ca_file.is_some()),
            ("client_cert", raw.client_cert.is_some()),
            ("client_key", raw.client_key.is_some()),
        ] {
            if set {
                p.add(&format!("{key}.{name}"), format!("applies only to https:// upstreams ({key}.url is {url:?})"));
            }
        }
    }
    let Some(authority) = uri.authority().cloned() else {
        return bad(p, "has no host");
    };
    if uri.query().is_some() {
        return bad(p, "must not have a query");
    }
    let base_path = uri.path().trim_end_matches('/').to_string();
    let origin = Uri::builder().scheme(scheme).authority(authority).path_and_query("/").build().ok()?;
    Some(UpstreamConfig {
        key: key.to_string(),
        origin,
        base_path,
        connect_timeout,
        timeout,
        forward_authorization: raw.forward_authorization.unwrap_or(false),
        preserve_host: raw.preserve_host.unwrap_or(false),
        protocol,
        ca_file: raw.ca_file.as_ref().map(|file| base_dir.join(file)),
        client_identity,
    })
}

fn issuer(
    key: &str,
    raw: &RawIssuer,
    base_dir: &Path,
    jwks_limits: JwksLimits,
    p: &mut Problems,
) -> Option<IssuerConfig> {
    let leeway = p.duration(&format!("{key}.leeway"), raw.leeway.as_deref(), defaults::LEEWAY);
    let refresh_interval =
        p.duration(&format!("{key}.refresh_interval"), raw.refresh_interval.as_deref(), defaults::REFRESH_INTERVAL);
    let min_refresh_interval = p.duration(
        &format!("{key}.min_refresh_interval"),
        raw.min_refresh_interval.as_deref(),
        defaults::MIN_REFRESH_INTERVAL,
    );
    if refresh_interval.is_zero() {
        p.add(&format!("{key}.refresh_interval"), "must be longer than 0s");
    }
    if min_refresh_interval > refresh_interval {
        p.add(&format!("{key}.min_refresh_interval"), "must not be longer than refresh_interval");
    }
    let algorithms = algorithms(&format!("{key}.algorithms"), raw.algorithms.as_deref(), p);
    let scope_claim_names =
        raw.scope_claims.clone().unwrap_or_else(|| defaults::SCOPE_CLAIMS.map(String::from).to_vec());
    let scope_claims = scope_claim_names
        .iter()
        .filter_map(|name| ClaimPath::parse(name).map_err(|e| p.add(&format!("{key}.scope_claims"), e)).ok())
        .collect();

    let audiences = p.required(&format!("{key}.audiences"), raw.audiences.as_ref());
    if audiences.is_some_and(|a| a.is_empty() || a.iter().any(String::is_empty)) {
        p.add(&format!("{key}.audiences"), "must list at least one non-empty audience");
    }
    let issuer = p.required(&format!("{key}.issuer"), raw.issuer.as_ref());
    if issuer.is_some_and(String::is_empty) {
        p.add(&format!("{key}.issuer"), "must not be empty");
    }
    let jwks = jwks_source(key, raw, issuer.map(String::as_str), base_dir, p);
    let templated = issuer.is_some_and(|i| i.contains(TENANT));
    if issuer.is_some_and(|i| i.matches(TENANT).count() > 1) {
        p.add(&format!("{key}.issuer"), "{tenant} may appear once");
    }
    if templated && raw.jwks_url.is_none() && raw.jwks_file.is_none() {
        p.add(
            &format!("{key}.jwks_url"),
            "an issuer with {tenant} needs jwks_url or jwks_file (one key set for all tenants)",
        );
    }
    let tenants = match (&raw.tenants, templated) {
        (None, false) => None,
        (Some(_), false) => {
            p.add(&format!("{key}.tenants"), "applies only to an issuer with {tenant} in it");
            None
        }
        (None, true) => {
            p.add(&format!("{key}.tenants"), "required with {tenant} in the issuer: a list, or [\"*\"] for any");
            None
        }
        (Some(list), true) if list.len() == 1 && list[0] == "*" => Some(Tenants::Any),
        (Some(list), true) => {
            if list.is_empty() || list.iter().any(|t| t.is_empty() || t == "*" || t.contains(['/', '{', '}'])) {
                p.add(&format!("{key}.tenants"), "tenants are non-empty names without '/', or [\"*\"] alone");
            }
            Some(Tenants::Only(list.clone()))
        }
    };
    let require_typ = raw.require_typ.as_deref().and_then(|typ| {
        let lower = typ.to_ascii_lowercase();
        let bare = lower.strip_prefix("application/").unwrap_or(&lower).to_string();
        if bare.is_empty() || !bare.bytes().all(|b| b.is_ascii_graphic()) {
            p.add(&format!("{key}.require_typ"), format!("not a media type (got {typ:?}); RFC 9068 uses \"at+jwt\""));
            return None;
        }
        Some(bare)
    });
    let max_lifetime = raw.max_lifetime.as_deref().map(|text| {
        // Written, so never defaulted: the hour only stands in after a reported problem.
        let lifetime = p.duration(&format!("{key}.max_lifetime"), Some(text), Duration::from_secs(3600));
        if lifetime.is_zero() {
            p.add(&format!("{key}.max_lifetime"), "must be longer than 0s");
        }
        lifetime
    });
    let token_from = match &raw.token_from {
        None => vec![TokenLocation::Header],
        Some(list) if list.is_empty() => {
            p.add(&format!("{key}.token_from"), "must list at least one location, e.g. [\"header\"]");
            Vec::new()
        }
        Some(list) => list
            .iter()
            .filter_map(|l| TokenLocation::parse(l).map_err(|e| p.add(&format!("{key}.token_from"), e)).ok())
            .collect(),
    };
    let required_claims = raw
        .required_claims
        .iter()
        .flatten()
        .filter_map(|name| ClaimPath::parse(name).map_err(|e| p.add(&format!("{key}.required_claims"), e)).ok())
        .collect();
    Some(IssuerConfig {
        issuer: issuer?.clone(),
        audiences: audiences?.clone(),
        jwks: jwks?,
        algorithms,
        leeway,
        refresh_interval,
        min_refresh_interval,
        scope_claims,
        jwks_limits,
        require_typ,
        max_lifetime,
        required_claims,
        token_from,
        tenants,
    })
}

fn resource_metadata(
    raw: &RawResourceMetadata,
    issuers: &[String],
    p: &mut Problems,
) -> Option<ResourceMetadataConfig> {
    let key = "resource_metadata";
    let resource = p.required(&format!("{key}.resource"), raw.resource.as_ref())?;
    let url = match Url::parse(resource) {
        Ok(url) if url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&url)) => url,
        _ => {
            p.add(
                &format!("{key}.resource"),
                format!("must be an https URL (http only on loopback) (got {resource:?})"),
            );
            return None;
        }
    };
    if url.fragment().is_some() || url.query().is_some() || url.as_str().contains(['"', '\\']) {
        p.add(&format!("{key}.resource"), format!("must have no query or fragment (got {resource:?})"));
        return None;
    }
    let suffix = url.path().trim_end_matches('/');
    let well_known_path = format!("{}{suffix}", super::WELL_KNOWN_RESOURCE_METADATA);
    let origin = url.origin().ascii_serialization();
    let bearer_methods_supported = raw
        .bearer_methods_supported
        .clone()
        .unwrap_or_else(|| defaults::BEARER_METHODS_SUPPORTED.map(String::from).to_vec());
    for method in &bearer_methods_supported {
        if !matches!(method.as_str(), "header" | "body" | "query") {
            p.add(
                &format!("{key}.bearer_methods_supported"),
                format!("RFC 6750 names header, body and query (got {method:?})"),
            );
        }
    }
    Some(ResourceMetadataConfig {
        resource: resource.clone(),
        authorization_servers: raw.authorization_servers.clone().unwrap_or_else(|| issuers.to_vec()),
        scopes_supported: raw.scopes_supported.clone(),
        bearer_methods_supported,
        resource_documentation: raw.resource_documentation.clone(),
        url: format!("{origin}{well_known_path}"),
        well_known_path,
    })
}

/// `[limits]`: each bound within a range that keeps it a bound.
fn limits(raw: Option<&RawLimits>, p: &mut Problems) -> LimitsConfig {
    let defaults = LimitsConfig::default();
    let Some(raw) = raw else { return defaults };
    let mut bounded = |key: &str, value: Option<i64>, range: std::ops::RangeInclusive<i64>, default: usize| {
        let Some(value) = value else { return default };
        if range.contains(&value) {
            usize::try_from(value).unwrap_or(default)
        } else {
            p.add(
                &format!("limits.{key}"),
                format!("must be between {} and {} (got {value})", range.start(), range.end()),
            );
            default
        }
    };
    let max_token_bytes = bounded("max_token_bytes", raw.max_token_bytes, 256..=1024 * 1024, defaults.max_token_bytes);
    // serde_json stops at 128 levels whatever this says.
    let max_json_depth = bounded("max_json_depth", raw.max_json_depth, 2..=128, defaults.max_json_depth);
    let max_bytes = bounded("max_jwks_bytes", raw.max_jwks_bytes, 1024..=64 * 1024 * 1024, defaults.jwks.max_bytes);
    let max_keys = bounded("max_jwks_keys", raw.max_jwks_keys, 1..=10_000, defaults.jwks.max_keys);
    let streams = bounded(
        "http2_max_concurrent_streams",
        raw.http2_max_concurrent_streams,
        1..=10_000,
        defaults.http2_max_concurrent_streams as usize,
    );
    let http2_max_pending_resets = bounded(
        "http2_max_pending_resets",
        raw.http2_max_pending_resets,
        1..=100_000,
        defaults.http2_max_pending_resets,
    );
    let http2_max_error_resets =
        bounded("http2_max_error_resets", raw.http2_max_error_resets, 1..=100_000, defaults.http2_max_error_resets);
    let fetch_timeout =
        p.duration("limits.jwks_fetch_timeout", raw.jwks_fetch_timeout.as_deref(), defaults.jwks.fetch_timeout);
    if fetch_timeout.is_zero() {
        p.add("limits.jwks_fetch_timeout", "must be longer than 0s");
    }
    LimitsConfig {
        max_token_bytes,
        max_json_depth,
        jwks: JwksLimits { max_bytes, max_keys, fetch_timeout },
        http2_max_concurrent_streams: u32::try_from(streams).unwrap_or(defaults.http2_max_concurrent_streams),
        http2_max_pending_resets,
        http2_max_error_resets,
    }
}

fn algorithms(key: &str, raw: Option<&[String]>, p: &mut Problems) -> Vec<Algorithm> {
    let Some(names) = raw else { return defaults::ALGORITHMS.to_vec() };
    if names.is_empty() {
        p.add(key, "must list at least one algorithm");
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        match name.parse::<Algorithm>() {
            Ok(alg) if SUPPORTED_ALGORITHMS.contains(&alg) => out.push(alg),
            Ok(_) => p.add(
                key,
                format!(
                    "{name} is symmetric: a JWKS is public, so HMAC keys are never accepted — list the asymmetric \
                     algorithm your identity provider signs with (RS256 for most)"
                ),
            ),
            Err(_) => {
                p.add(key, format!("unknown algorithm {name:?}; use RS256/384/512, PS256/384/512, ES256/384 or EdDSA"))
            }
        }
    }
    out
}

fn jwks_source(
    key: &str,
    raw: &RawIssuer,
    issuer: Option<&str>,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<JwksSource> {
    match (&raw.jwks_url, &raw.jwks_file) {
        (Some(_), Some(_)) => {
            p.add(&format!("{key}.jwks_file"), "set either jwks_url or jwks_file, not both");
            None
        }
        (Some(url), None) => check_fetch_url(&format!("{key}.jwks_url"), url, p).then(|| JwksSource::Url(url.clone())),
        (None, Some(file)) => Some(JwksSource::File(base_dir.join(file))),
        (None, None) => {
            let issuer = issuer.filter(|i| !i.contains(super::TENANT))?;
            let discovery_url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
            check_fetch_url(&format!("{key}.issuer"), &discovery_url, p)
                .then_some(JwksSource::Discovery { discovery_url })
        }
    }
}

/// Keys fetched over plain HTTP could be swapped by anyone on the path, so
/// only loopback may use it (local development issuers).
fn check_fetch_url(key: &str, url: &str, p: &mut Problems) -> bool {
    match Url::parse(url) {
        Ok(parsed) if parsed.scheme() == "https" => true,
        Ok(parsed) if parsed.scheme() == "http" && is_loopback(&parsed) => true,
        Ok(parsed) if parsed.scheme() == "http" => {
            p.add(
                key,
                format!(
                    "must be https (got {url}) — http:// is allowed only for loopback hosts, since anyone on the path \
                     could swap the keys"
                ),
            );
            false
        }
        _ => {
            p.add(key, format!("not an https URL (got {url:?})"));
            false
        }
    }
}

fn route(key: &str, raw: &RawRoute, issuers: &[&str], upstreams: &[&str], p: &mut Problems) -> Option<RouteConfig> {
    let path = match raw.path.as_deref() {
        None => {
            p.add(&format!("{key}.path"), format!("required key is missing — {}", how_to_add("path")));
            None
        }
        // Written as a person would (`/café`, `/v1/items:purge`) and kept in
        // the canonical form requests are judged in (`/caf%C3%A9`).
        Some(path) if path.contains(';') => {
            p.add(
                &format!("{key}.path"),
                format!("';' starts a path parameter, which routes never match on; remove it (got {path:?})"),
            );
            None
        }
        Some(path) => match crate::path::normalize(path) {
            Ok(normal) if path.split('/').all(|s| s != "." && s != "..") => {
                let normal = normal.into_owned();
                Some(if normal.len() > 1 { normal.trim_end_matches('/').to_string() } else { normal })
            }
            Ok(normal) => {
                p.add(
                    &format!("{key}.path"),
                    format!("write the path without dot segments: {normal:?} (got {path:?})"),
                );
                None
            }
            Err(why) => {
                p.add(&format!("{key}.path"), format!("{why} (got {path:?})"));
                None
            }
        },
    };
    let methods = raw.methods.as_ref().map(|names| methods(&format!("{key}.methods"), names, p));
    let auth = match raw.auth.as_deref() {
        None | Some("required") => AuthMode::Required,
        Some("optional") => AuthMode::Optional,
        Some("public") => AuthMode::Public,
        Some(other) => {
            p.add(&format!("{key}.auth"), format!("must be \"required\", \"optional\" or \"public\" (got {other:?})"));
            AuthMode::Required
        }
    };
    let scopes = raw.scopes.clone().unwrap_or_default();
    let any_scopes = raw.any_scopes.clone().unwrap_or_default();
    let mut claims = Vec::new();
    for (name, value) in raw.claims.iter().flatten() {
        let claim_key = format!("{key}.claims.{name:?}");
        let expected = match value {
            toml::Value::String(s) => Value::from(s.as_str()),
            toml::Value::Integer(i) => Value::from(*i),
            toml::Value::Boolean(b) => Value::from(*b),
            _ => {
                p.add(&claim_key, "the expected value must be a string, an integer or a boolean");
                continue;
            }
        };
        match ClaimPath::parse(name) {
            Ok(path) => claims.push((path, expected)),
            Err(e) => p.add(&claim_key, e),
        }
    }
    // Requirements that a caller could skip by sending no token would be a trap.
    if auth != AuthMode::Required && (!scopes.is_empty() || !any_scopes.is_empty() || !claims.is_empty()) {
        p.add(&format!("{key}.auth"), "scopes, any_scopes and claims need auth = \"required\"");
    }
    if auth == AuthMode::Public && raw.issuers.is_some() {
        p.add(&format!("{key}.issuers"), "a public route never looks at tokens, so it cannot restrict issuers");
    }
    for scope in scopes.iter().chain(&any_scopes) {
        if scope.is_empty() || scope.chars().any(|c| c.is_whitespace() || c == '"' || c == '\\') {
            p.add(&format!("{key}.scopes"), format!("not a valid scope token: {scope:?}"));
        }
    }
    if let Some(listed) = &raw.issuers {
        for name in listed.iter().filter(|name| !issuers.contains(&name.as_str())) {
            p.add(&format!("{key}.issuers"), format!("{name:?} is not one of the configured [[issuers]]"));
        }
    }
    if let Some(name) = raw.upstream.as_deref().filter(|name| !upstreams.contains(name)) {
        p.add(&format!("{key}.upstream"), format!("there is no [upstreams.{name}] table"));
    }
    let public_preflight = match raw.cors_preflight.as_deref() {
        None | Some("route") => false,
        Some("public") => true,
        Some(other) => {
            p.add(&format!("{key}.cors_preflight"), format!("must be \"public\" or \"route\" (got {other:?})"));
            false
        }
    };
    Some(RouteConfig {
        path: path?,
        methods,
        auth,
        scopes,
        any_scopes,
        claims,
        issuers: raw.issuers.clone(),
        public_preflight,
        upstream: raw.upstream.clone(),
        // A tunnel carries bytes no one judges: not opened without a token unless asked for.
        websocket: raw.websocket.unwrap_or(auth != AuthMode::Public),
        cors: raw.cors.as_ref().map(|cors| route_cors(&format!("{key}.cors"), cors, p)),
    })
}

/// Method names, any case, upper-cased as requests are judged.
fn methods(key: &str, names: &[String], p: &mut Problems) -> Vec<Method> {
    names
        .iter()
        .filter_map(|name| match Method::from_bytes(name.to_ascii_uppercase().as_bytes()) {
            Ok(method) => Some(method),
            Err(_) => {
                p.add(key, format!("not an HTTP method: {name:?}"));
                None
            }
        })
        .collect()
}

/// `[routes.cors]`, with the defaults a browser client of a bearer-token
/// API needs: `Authorization` and `Content-Type` allowed in, the
/// `WWW-Authenticate` challenge readable.
fn route_cors(key: &str, raw: &RawCors, p: &mut Problems) -> CorsConfig {
    let origins = raw.allow_origins.clone().unwrap_or_default();
    if origins.is_empty() {
        p.add(
            &format!("{key}.allow_origins"),
            "list the origins allowed, e.g. [\"https://app.example.com\"], or [\"*\"]",
        );
    }
    let allow_origins = if origins.iter().any(|o| o == "*") {
        if origins.len() > 1 {
            p.add(&format!("{key}.allow_origins"), "\"*\" allows every origin: list nothing else beside it");
        }
        None
    } else {
        Some(
            origins
                .iter()
                .filter_map(|origin| match origin.parse::<Uri>() {
                    Ok(uri)
                        if matches!(uri.scheme_str(), Some("http" | "https"))
                            && uri.authority().is_some()
                            && uri.path_and_query().is_none_or(|pq| pq.as_str().is_empty() || pq.as_str() == "/")
                            && !origin.ends_with('/') =>
                    {
                        Some(origin.to_ascii_lowercase())
                    }
                    _ => {
                        p.add(
                            &format!("{key}.allow_origins"),
                            format!("not an origin (scheme://host[:port], no path): {origin:?}"),
                        );
                        None
                    }
                })
                .collect(),
        )
    };
    let allow_credentials = raw.allow_credentials.unwrap_or(false);
    if allow_credentials && allow_origins.is_none() {
        p.add(&format!("{key}.allow_credentials"), "browsers refuse credentials with \"*\": list the origins instead");
    }
    let allow_methods = match &raw.allow_methods {
        Some(names) => methods(&format!("{key}.allow_methods"), names, p),
        None => defaults::CORS_ALLOW_METHODS.to_vec(),
    };
    let mut names = |field: &str, value: &Option<Vec<String>>, default: &[&str]| -> Vec<String> {
        let list = value.clone().unwrap_or_else(|| default.iter().map(|s| (*s).to_string()).collect());
        list.into_iter()
            .filter_map(|name| match HeaderName::from_bytes(name.as_bytes()) {
                Ok(header) => Some(header.as_str().to_string()),
                Err(_) => {
                    p.add(&format!("{key}.{field}"), format!("not a header name: {name:?}"));
                    None
                }
            })
            .collect()
    };
    let allow_headers = names("allow_headers", &raw.allow_headers, &defaults::CORS_ALLOW_HEADERS);
    let expose_headers = names("expose_headers", &raw.expose_headers, &defaults::CORS_EXPOSE_HEADERS);
    let max_age = raw.max_age.as_deref().map(|text| p.duration(&format!("{key}.max_age"), Some(text), Duration::ZERO));
    CorsConfig { allow_origins, allow_methods, allow_headers, expose_headers, max_age, allow_credentials }
}

/// Headers that identity headers may never be: they carry the request
/// itself, or are hop-by-hop.
const RESERVED_HEADERS: [&str; 14] = [
    "authorization",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
    "cookie",
    "x-forwarded-for",
];

fn headers(raw: &RawHeaders, p: &mut Problems) -> HeadersConfig {
    let mut seen: Vec<HeaderName> = Vec::new();
    let mut header = |key: &str, name: &str, p: &mut Problems| -> Option<HeaderName> {
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            p.add(key, format!("not a valid header name: {name:?}"));
            return None;
        };
        if RESERVED_HEADERS.contains(&header.as_str()) {
            p.add(key, format!("{name} cannot carry identity"));
            return None;
        }
        if seen.contains(&header) {
            p.add(key, format!("{name} is used twice"));
            return None;
        }
        seen.push(header.clone());
        Some(header)
    };
    let mut claims = Vec::new();
    for (claim, name) in raw.claims.iter().flatten() {
        let key = format!("headers.claims.{claim:?}");
        let path = ClaimPath::parse(claim).map_err(|e| p.add(&key, e)).ok();
        if let (Some(path), Some(name)) = (path, header(&key, name, p)) {
            claims.push((path, name));
        }
    }
    let payload = raw.payload.as_deref().and_then(|name| header("headers.payload", name, p));
    HeadersConfig { claims, payload }
}

pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}
