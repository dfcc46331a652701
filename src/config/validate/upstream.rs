//! `[upstream]` and `[upstreams.NAME]`: where requests go.

use std::collections::BTreeMap;
use std::path::Path;

use http::Uri;
use http::uri::Scheme;

use super::Problems;
use crate::config::raw::RawUpstream;
use crate::config::{ClientIdentity, UpstreamConfig, UpstreamProtocol, defaults};

/// `[upstreams.NAME]`, each checked like `[upstream]`.
pub(super) fn named(
    raw: &BTreeMap<String, RawUpstream>,
    base_dir: &Path,
    p: &mut Problems,
) -> Vec<(String, UpstreamConfig)> {
    let mut upstreams = Vec::with_capacity(raw.len());
    for (name, raw_upstream) in raw {
        let key = format!("upstreams.{name}");
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            p.add(&key, "a name is letters, digits, '-' and '_'");
        }
        if let Some(config) = upstream(&key, raw_upstream, base_dir, p) {
            upstreams.push((name.clone(), config));
        }
    }
    upstreams
}

pub(super) fn upstream(key: &str, raw: &RawUpstream, base_dir: &Path, p: &mut Problems) -> Option<UpstreamConfig> {
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
        // A cap by default: `server.send_timeout` frees the place of a
        // client that stops reading, so a cap cannot be held forever.
        max_connections: match raw.max_connections.map(usize::try_from) {
            None => defaults::UPSTREAM_MAX_CONNECTIONS,
            Some(Ok(n)) if (1..=100_000).contains(&n) => n,
            Some(_) => {
                let n = raw.max_connections.unwrap_or_default();
                p.add(&format!("{key}.max_connections"), format!("must be between 1 and 100000 (got {n})"));
                defaults::UPSTREAM_MAX_CONNECTIONS
            }
        },
    })
}
