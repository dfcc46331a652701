//! `[server]` and `[server.tls]`.

use std::net::SocketAddr;
use std::path::Path;

use super::Problems;
use crate::config::raw::{RawServer, RawServerTls};
use crate::config::{MethodOverride, Protocols, PublicUrl, ServerConfig, ServerTlsConfig, defaults};

/// hyper refuses a read buffer below 8 KiB.
const MIN_HEADER_BYTES: i64 = 8 * 1024;
const MAX_HEADER_BYTES: i64 = 1024 * 1024;

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

/// `public_url`: an http(s) origin, perhaps with the path prefix an edge strips.
fn public_url(text: &str, p: &mut Problems) -> Option<PublicUrl> {
    let parsed = match reqwest::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => url,
        _ => {
            p.add(
                "server.public_url",
                format!("not an http(s) URL (got {text:?}) — write e.g. \"https://api.example.com\""),
            );
            return None;
        }
    };
    if parsed.query().is_some()
        || parsed.fragment().is_some()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        p.add(
            "server.public_url",
            format!("the scheme, host, port and path clients call, without user, query or fragment (got {text:?})"),
        );
        return None;
    }
    Some(PublicUrl {
        scheme: parsed.scheme().to_string(),
        host: parsed.host_str().unwrap_or_default().to_ascii_lowercase(),
        port: parsed.port_or_known_default().unwrap_or(443),
        base_path: parsed.path().trim_end_matches('/').to_string(),
    })
}

pub(super) fn server(raw: &RawServer, base_dir: &Path, p: &mut Problems) -> ServerConfig {
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
    let protocols = protocols(raw.protocols.as_deref(), raw.tls.is_some(), p);
    let public_url = raw.public_url.as_deref().and_then(|text| public_url(text, p));
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
        send_timeout: p.duration("server.send_timeout", raw.send_timeout.as_deref(), defaults::SEND_TIMEOUT),
        public_url,
        dpop_nonce: raw.dpop_nonce.unwrap_or(false),
        protocols,
        tls: raw.tls.as_ref().and_then(|tls| server_tls(tls, base_dir, protocols, p)),
    }
}

/// `server.protocols`: "http1", and "h2c" in the clear or "h2" over TLS.
fn protocols(raw: Option<&[String]>, tls: bool, p: &mut Problems) -> Protocols {
    let Some(list) = raw else { return Protocols::default() };
    let (http2_name, other) = if tls { ("h2", "h2c") } else { ("h2c", "h2") };
    let mut protocols = Protocols { http1: false, http2: false };
    for name in list {
        match name.as_str() {
            "http1" => protocols.http1 = true,
            n if n == http2_name => protocols.http2 = true,
            n if n == other => p.add(
                "server.protocols",
                format!(
                    "{other:?} is HTTP/2 {} — write {http2_name:?}",
                    if tls {
                        "in the clear, and this listener has [server.tls]"
                    } else {
                        "over TLS, and this listener has no [server.tls]"
                    }
                ),
            ),
            n => p.add("server.protocols", format!("unknown protocol {n:?} — write \"http1\" and/or {http2_name:?}")),
        }
    }
    if list.is_empty() {
        p.add("server.protocols", format!("must name at least one protocol, e.g. [\"http1\", {http2_name:?}]"));
        return Protocols::default();
    }
    if !protocols.http1 && !protocols.http2 {
        // Each name was reported above.
        return Protocols::default();
    }
    protocols
}

fn server_tls(raw: &RawServerTls, base_dir: &Path, protocols: Protocols, p: &mut Problems) -> Option<ServerTlsConfig> {
    let cert = p.required("server.tls.cert", raw.cert.as_ref());
    let key = p.required("server.tls.key", raw.key.as_ref());
    Some(ServerTlsConfig { cert: base_dir.join(cert?), key: base_dir.join(key?), protocols })
}
