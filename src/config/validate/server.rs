//! `[server]` and `[server.tls]`.

use std::net::SocketAddr;
use std::path::Path;

use super::Problems;
use crate::config::raw::{RawServer, RawServerTls};
use crate::config::{
    ClientAuth, IssuerConfig, MethodOverride, Protocols, PublicUrl, ServerConfig, ServerTlsConfig, defaults,
};

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
    let client_auth = client_auth(raw, base_dir, p);
    Some(ServerTlsConfig { cert: base_dir.join(cert?), key: base_dir.join(key?), protocols, client_auth })
}

/// `client_auth` and `client_ca_file` together: a certificate is asked for
/// only with the CA it must chain to, and a CA file is never silently unused.
fn client_auth(raw: &RawServerTls, base_dir: &Path, p: &mut Problems) -> ClientAuth {
    let ca_file = raw.client_ca_file.as_deref().map(|file| base_dir.join(file));
    let mode = raw.client_auth.as_deref().unwrap_or("none");
    match (mode, ca_file) {
        ("none", None) => ClientAuth::None,
        ("none", Some(_)) => {
            p.add(
                "server.tls.client_ca_file",
                "is set but client_auth is \"none\", so no client certificate is asked for — write client_auth = \
                 \"optional\" or \"required\" under [server.tls], or remove client_ca_file",
            );
            ClientAuth::None
        }
        ("optional" | "required", None) => {
            p.add(
                "server.tls.client_auth",
                format!(
                    "{mode:?} needs the CA that signs client certificates — add client_ca_file = \"clients-ca.pem\" \
                     under [server.tls]"
                ),
            );
            ClientAuth::None
        }
        ("optional", Some(file)) => ClientAuth::Optional(file),
        ("required", Some(file)) => ClientAuth::Required(file),
        (other, _) => {
            p.add("server.tls.client_auth", format!("must be \"none\", \"optional\" or \"required\" (got {other:?})"));
            ClientAuth::None
        }
    }
}

/// RFC 8705: an issuer whose tokens must be bound to a client certificate
/// needs a listener that asks for one, or every token of it is refused.
pub(super) fn cert_binding(server: &ServerConfig, issuers: &[IssuerConfig], p: &mut Problems) {
    let asks = server.tls.as_ref().is_some_and(|tls| tls.client_auth != ClientAuth::None);
    if asks {
        return;
    }
    for (i, issuer) in issuers.iter().enumerate() {
        if issuer.require_cert_binding {
            p.add(
                &format!("issuers[{i}].require_cert_binding"),
                "no client certificate is ever asked for, so every token of this issuer would be refused — set \
                 client_auth = \"optional\" or \"required\" and client_ca_file under [server.tls], or remove \
                 require_cert_binding",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::config::{ClientAuth, Config};

    const BASE: &str = "[upstream]\nurl = \"http://127.0.0.1:9000\"\n[[issuers]]\nissuer = \"https://idp.example/\"\naudiences = [\"api\"]\n";

    fn parse(tls: &str, issuer: &str) -> Result<Config, String> {
        let text = format!("[server.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n{tls}\n{BASE}{issuer}");
        Config::parse(&text, "test.toml", Path::new("/etc/jwtgate"), &|_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn client_auth_takes_its_ca_file_from_the_config_directory() {
        let ca = || PathBuf::from("/etc/jwtgate/clients.pem");
        let tls = |text: &str| parse(text, "").unwrap().server.tls.unwrap().client_auth;
        assert_eq!(tls(""), ClientAuth::None);
        assert_eq!(tls("client_auth = \"none\""), ClientAuth::None);
        assert_eq!(tls("client_auth = \"optional\"\nclient_ca_file = \"clients.pem\""), ClientAuth::Optional(ca()));
        assert_eq!(tls("client_auth = \"required\"\nclient_ca_file = \"clients.pem\""), ClientAuth::Required(ca()));
        let bound =
            parse("client_auth = \"optional\"\nclient_ca_file = \"clients.pem\"", "require_cert_binding = true");
        assert!(bound.unwrap().issuers[0].require_cert_binding);
    }

    #[test]
    fn client_auth_problems_name_the_key_and_the_fix() {
        let problem = |tls: &str, issuer: &str| parse(tls, issuer).unwrap_err();
        let error = problem("client_auth = \"required\"", "");
        assert!(
            error.contains(
                "server.tls.client_auth: \"required\" needs the CA that signs client certificates — add client_ca_file"
            ),
            "{error}"
        );
        let error = problem("client_ca_file = \"clients.pem\"", "");
        assert!(error.contains("server.tls.client_ca_file: is set but client_auth is \"none\""), "{error}");
        let error = problem("client_auth = \"yes\"\nclient_ca_file = \"clients.pem\"", "");
        assert!(
            error.contains("server.tls.client_auth: must be \"none\", \"optional\" or \"required\" (got \"yes\")"),
            "{error}"
        );
        let error = problem("", "require_cert_binding = true");
        assert!(error.contains("issuers[0].require_cert_binding: no client certificate is ever asked for"), "{error}");
        // Each with its line, like every configuration error.
        assert!(error.starts_with("test.toml:"), "{error}");
    }
}
