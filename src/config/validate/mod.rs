//! Raw → typed configuration, one module per TOML table. Every problem is
//! collected, so one run of `jwtgate check` shows everything that needs fixing.

mod cache;
mod forward_auth;
mod headers;
mod introspection;
mod issuer;
mod limits;
mod rate_limit;
mod resource_metadata;
mod route;
mod server;
mod tracing;
mod upstream;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use reqwest::Url;

use super::raw::RawConfig;
use super::{Config, Problem};

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
    let server = server::server(&raw.server, base_dir, &mut p);
    let default_upstream = match p.required("upstream", raw.upstream.as_ref()) {
        Some(u) => upstream::upstream("upstream", u, base_dir, &mut p),
        None => None,
    };
    let upstreams = upstream::named(&raw.upstreams, base_dir, &mut p);
    let limits = limits::limits(raw.limits.as_ref(), &mut p);
    let resource_metadata =
        raw.resource_metadata.as_ref().and_then(|r| resource_metadata::resource_metadata(r, &raw.issuers, &mut p));
    let issuers = issuer::issuers(&raw.issuers, base_dir, limits.jwks, &mut p);
    introspection::one_endpoint(&issuers, &mut p);
    server::cert_binding(&server, &issuers, &mut p);
    let routes = route::routes(&raw, &mut p);
    let headers = raw.headers.as_ref().map(|h| headers::headers(h, base_dir, &mut p)).unwrap_or_default();
    let cache = cache::cache(raw.cache.as_ref(), &mut p);
    let forward_auth = raw.forward_auth.as_ref().and_then(|f| forward_auth::forward_auth(f, &mut p));
    let tracing = raw.tracing.as_ref().and_then(|t| tracing::tracing(t, &mut p));
    let rate_limits = rate_limit::rate_limits(&raw.rate_limits, &routes, &mut p);
    let rate_limit_store =
        raw.rate_limit_store.as_ref().and_then(|s| rate_limit::store(s, raw.rate_limits.len(), &mut p));
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
            tracing,
            rate_limits,
            rate_limit_store,
        }),
        _ => Err(p.0),
    }
}

/// Whether `url` is https, or plain http to a loopback host (a local
/// identity provider); else a problem under `key`, `why` saying why http
/// is not enough there.
fn https_or_loopback(key: &str, url: &str, why: &str, p: &mut Problems) -> bool {
    match Url::parse(url) {
        Ok(parsed) if parsed.scheme() == "https" => true,
        Ok(parsed) if parsed.scheme() == "http" && is_loopback(&parsed) => true,
        Ok(parsed) if parsed.scheme() == "http" => {
            p.add(key, format!("must be https (got {url}) — {why}"));
            false
        }
        _ => {
            p.add(key, format!("not an https URL (got {url:?})"));
            false
        }
    }
}

pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}
