//! `[[routes]]` and `[routes.cors]`: which paths need what.

use std::time::Duration;

use http::{HeaderName, Method, Uri};
use serde_json::Value;

use super::{Problems, how_to_add};
use crate::config::cel::CelRule;
use crate::config::hosts::HostPattern;
use crate::config::raw::{RawConfig, RawCors, RawRoute};
use crate::config::spiffe::SpiffePattern;
use crate::config::{AuthMode, ClaimPath, CorsConfig, RouteConfig, defaults};

/// Every `[[routes]]` table, in file order; the issuers and upstreams they
/// name must be configured.
pub(super) fn routes(raw: &RawConfig, p: &mut Problems) -> Vec<RouteConfig> {
    let issuer_names: Vec<&str> = raw.issuers.iter().filter_map(|i| i.issuer.as_deref()).collect();
    let trust_domains: Vec<&str> = issuer_names.iter().filter_map(|name| name.strip_prefix("spiffe://")).collect();
    let upstream_names: Vec<&str> = raw.upstreams.keys().map(String::as_str).collect();
    let names = Names { issuers: &issuer_names, trust_domains: &trust_domains, upstreams: &upstream_names };
    raw.routes.iter().enumerate().filter_map(|(i, r)| route(&format!("routes[{i}]"), r, &names, p)).collect()
}

/// What routes may name: configured issuers, SPIFFE trust domains, upstreams.
struct Names<'a> {
    issuers: &'a [&'a str],
    trust_domains: &'a [&'a str],
    upstreams: &'a [&'a str],
}

/// `spiffe_ids`: each a pattern in the trust domain of a SPIFFE issuer.
fn spiffe_ids(key: &str, raw: Option<&[String]>, trust_domains: &[&str], p: &mut Problems) -> Vec<SpiffePattern> {
    let Some(list) = raw else { return Vec::new() };
    if list.is_empty() {
        p.add(key, "list at least one SPIFFE ID, or leave the key out");
    }
    list.iter()
        .filter_map(|text| match SpiffePattern::parse(text) {
            Ok(pattern) if trust_domains.contains(&pattern.trust_domain()) => Some(pattern),
            Ok(pattern) => {
                let domain = pattern.trust_domain();
                p.add(
                    key,
                    format!(
                        "{text:?}: no [[issuers]] has issuer = \"spiffe://{domain}\" to vouch for its trust domain"
                    ),
                );
                None
            }
            Err(why) => {
                p.add(key, why);
                None
            }
        })
        .collect()
}

fn route(key: &str, raw: &RawRoute, names: &Names<'_>, p: &mut Problems) -> Option<RouteConfig> {
    let (issuers, upstreams, trust_domains) = (names.issuers, names.upstreams, names.trust_domains);
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
    let spiffe_ids = spiffe_ids(&format!("{key}.spiffe_ids"), raw.spiffe_ids.as_deref(), trust_domains, p);
    if auth != AuthMode::Required && !spiffe_ids.is_empty() {
        p.add(&format!("{key}.auth"), "spiffe_ids needs auth = \"required\"");
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
        spiffe_ids,
        dpop: super::issuer::dpop_mode(&format!("{key}.dpop"), raw.dpop.as_deref(), p),
        cors: raw.cors.as_ref().map(|cors| route_cors(&format!("{key}.cors"), cors, p)),
        hosts: hosts(&format!("{key}.hosts"), raw.hosts.as_deref(), p),
        allow_if: rule(&format!("{key}.allow_if"), raw.allow_if.as_deref(), p),
        deny_if: rule(&format!("{key}.deny_if"), raw.deny_if.as_deref(), p),
    })
}

/// `allow_if` / `deny_if`: a CEL expression over the rule variables.
fn rule(key: &str, raw: Option<&str>, p: &mut Problems) -> Option<CelRule> {
    CelRule::parse(raw?).map_err(|why| p.add(key, why)).ok()
}

/// `hosts`: each a name or `*.suffix`, normalised; one that another entry
/// already covers is named, since it can only be a mistake.
fn hosts(key: &str, raw: Option<&[String]>, p: &mut Problems) -> Vec<HostPattern> {
    let Some(list) = raw else { return Vec::new() };
    if list.is_empty() {
        p.add(key, "list at least one host, or leave the key out to match every host");
    }
    let parsed: Vec<HostPattern> =
        list.iter().filter_map(|text| HostPattern::parse(text).map_err(|why| p.add(key, why)).ok()).collect();
    for (i, host) in parsed.iter().enumerate() {
        if let Some(wider) =
            parsed.iter().enumerate().find(|&(j, other)| j != i && host.within(other) && (j < i || !other.within(host)))
        {
            p.add(key, format!("{host} is already covered by {}; remove one", wider.1));
        }
    }
    parsed
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
