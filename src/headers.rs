//! Header hygiene between client and upstream, as small pure functions:
//! hop-by-hop removal (RFC 9110 §7.6.1), the `X-Forwarded-*` set, and the
//! client headers that a backend would read as something the gateway
//! vouches for (forwarding information, method overrides, names that CGI
//! and WSGI fold into another header's name).

use http::HeaderMap;
use http::header::{
    CONNECTION, CONTENT_LENGTH, FORWARDED, HOST, HeaderName, HeaderValue, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static PROXY_AUTHENTICATE: HeaderName = HeaderName::from_static("proxy-authenticate");
static PROXY_AUTHORIZATION: HeaderName = HeaderName::from_static("proxy-authorization");

/// Headers a client could use to tell the backend where the request came
/// from or what it was for, which only the gateway (as the last proxy)
/// may say: frameworks read them for the client address (`X-Real-IP`,
/// `Forwarded`), the mount point (`X-Forwarded-Prefix`), or even the path
/// to route (`X-Original-URL`, `X-Rewrite-URL`: Symfony, IIS).
const SPOOFABLE: [&str; 12] = [
    "x-real-ip",
    "x-forwarded-prefix",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-original-method",
    "x-forwarded-uri",
    "x-forwarded-method",
];

/// Headers that ask a framework to treat the request as another method
/// (Express `method-override`, Rack, Laravel, ASP.NET, Spring).
pub const METHOD_OVERRIDES: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];

/// Removes, in one pass over the names (most requests have none of them):
/// - what [`SPOOFABLE`] lists, and `Forwarded`, whose facts the gateway
///   states in `X-Forwarded-*` instead;
/// - every header whose name contains `_` or `.` (nginx's
///   `underscores_in_headers off`): CGI, WSGI and PHP turn `-`, `_` and `.`
///   alike into `_`, so `X_Auth_Subject` or `X.Auth.Subject` would arrive
///   as the gateway's own `X-Auth-Subject`;
/// - with `overrides`, the [`METHOD_OVERRIDES`].
pub fn remove_untrusted(headers: &mut HeaderMap, overrides: bool) {
    let untrusted = |name: &HeaderName| {
        let text = name.as_str();
        is_ambiguous_name(text)
            || *name == FORWARDED
            || (text.starts_with("x-")
                && (SPOOFABLE.contains(&text) || (overrides && METHOD_OVERRIDES.contains(&text))))
    };
    if !headers.keys().any(untrusted) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|name| untrusted(name)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

pub fn is_ambiguous_name(name: &str) -> bool {
    name.bytes().any(|b| b == b'_' || b == b'.')
}

/// Headers the decision reads, which must reach the upstream as they were
/// judged: credentials, what marks a CORS preflight, what a method
/// override is read from.
pub fn is_judged(name: &str) -> bool {
    matches!(name, "authorization" | "cookie" | "content-type" | "content-encoding" | "origin")
        || name.starts_with("access-control-request-")
        || METHOD_OVERRIDES.contains(&name)
}

/// Whether the headers announce a body: a non-zero `Content-Length` or any
/// `Transfer-Encoding`.
pub fn declares_body(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0") || headers.contains_key(TRANSFER_ENCODING)
}

/// Whether `Connection` names a header that must reach the upstream as
/// the gateway set or checked it: the message framing, `Host`, or one of
/// `protected` (request id, `X-Forwarded-*`, identity headers). Such a
/// request is refused rather than stripped of them.
pub fn connection_names_protected(headers: &HeaderMap, protected: &dyn Fn(&str) -> bool) -> bool {
    headers.get_all(CONNECTION).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim).any(
        |name| {
            let name = name.to_ascii_lowercase();
            [CONTENT_LENGTH.as_str(), TRANSFER_ENCODING.as_str(), HOST.as_str()].contains(&name.as_str())
                || name.starts_with("x-forwarded-")
                || protected(&name)
        },
    )
}

/// Removes the fixed hop-by-hop headers and every header named in `Connection`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages have none: one pass over the names instead of nine removals.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in [&CONNECTION, &TE, &TRAILER, &TRANSFER_ENCODING, &UPGRADE] {
        headers.remove(name);
    }
    for name in [&KEEP_ALIVE, &PROXY_CONNECTION, &PROXY_AUTHENTICATE, &PROXY_AUTHORIZATION] {
        headers.remove(name);
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    [
        &CONNECTION,
        &TE,
        &TRAILER,
        &TRANSFER_ENCODING,
        &UPGRADE,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &PROXY_AUTHENTICATE,
        &PROXY_AUTHORIZATION,
    ]
    .contains(&name)
}

/// Appends the client (its IP as a header value) to `X-Forwarded-For` and
/// sets `X-Forwarded-Proto` and `X-Forwarded-Host` (the latter only when
/// the request named a host).
pub fn set_forwarded(headers: &mut HeaderMap, client: &HeaderValue, proto: &'static str, host: Option<HeaderValue>) {
    let chain = if headers.contains_key(&X_FORWARDED_FOR) {
        let mut chain = Vec::with_capacity(64);
        for value in headers.get_all(&X_FORWARDED_FOR) {
            if let Ok(v) = value.to_str() {
                chain.extend_from_slice(v.trim().as_bytes());
                chain.extend_from_slice(b", ");
            }
        }
        chain.extend_from_slice(client.as_bytes());
        HeaderValue::from_bytes(&chain).ok()
    } else {
        // The common case: no proxy before us, and no copy.
        Some(client.clone())
    };
    if let Some(value) = chain {
        headers.insert(&X_FORWARDED_FOR, value);
    }
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match host {
        Some(host) => headers.insert(&X_FORWARDED_HOST, host),
        None => headers.remove(&X_FORWARDED_HOST),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn drops_hop_by_hop_and_connection_named_headers() {
        let mut h = map(&[
            ("connection", "close, X-Secret"),
            ("connection", "x-other"),
            ("x-secret", "1"),
            ("x-other", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "1"),
        ]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn spoofable_and_ambiguous_headers_go() {
        let mut h = map(&[
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("x-forwarded-prefix", "/admin"),
            ("x-original-url", "/admin"),
            ("x_auth_subject", "admin"),
            ("x.auth.subject", "admin"),
            ("x-kept", "1"),
        ]);
        let mut overridden = h.clone();
        overridden.insert("x-http-method-override", HeaderValue::from_static("DELETE"));
        remove_untrusted(&mut h, false);
        assert_eq!(h.keys().map(HeaderName::as_str).collect::<Vec<_>>(), ["x-kept"]);
        remove_untrusted(&mut overridden, false);
        assert!(overridden.contains_key("x-http-method-override"), "kept unless asked");
        remove_untrusted(&mut overridden, true);
        assert_eq!(overridden.keys().map(HeaderName::as_str).collect::<Vec<_>>(), ["x-kept"]);
    }

    #[test]
    fn connection_may_not_name_what_the_gateway_sets() {
        let protected = |name: &str| name == "x-request-id" || name == "x-auth-subject";
        for value in
            ["close, Content-Length", "Transfer-Encoding", "host", "X-Forwarded-For", "x-request-id", "X-Auth-Subject"]
        {
            assert!(connection_names_protected(&map(&[("connection", value)]), &protected), "{value}");
        }
        assert!(!connection_names_protected(&map(&[("connection", "close, x-other")]), &protected));
    }

    #[test]
    fn forwarded_headers_append_and_set() {
        let mut h =
            map(&[("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "2.2.2.2"), ("x-forwarded-proto", "https")]);
        set_forwarded(
            &mut h,
            &HeaderValue::from_static("10.0.0.1"),
            "http",
            Some(HeaderValue::from_static("api.example.com")),
        );
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example.com");

        let mut h = map(&[("x-forwarded-host", "spoofed")]);
        set_forwarded(&mut h, &HeaderValue::from_static("::1"), "http", None);
        assert_eq!(h["x-forwarded-for"], "::1");
        assert!(!h.contains_key("x-forwarded-host"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const NAMES: &[&str] = &[
            "connection",
            "keep-alive",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "proxy-connection",
            "proxy-authorization",
            "proxy-authenticate",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-a",
            "x-b",
            "authorization",
            "host",
            "content-length",
        ];

        /// Header lists drawn from names that matter here, with Connection
        /// values naming any of them in any case, spaced and comma-joined.
        fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
            let name = prop::sample::select(NAMES);
            let listed = prop::collection::vec((name.clone(), any::<bool>()), 0..4).prop_map(|names| {
                let names: Vec<String> =
                    names.into_iter().map(|(n, upper)| if upper { n.to_uppercase() } else { n.to_string() }).collect();
                names.join(" ,")
            });
            let value = prop_oneof!["[ -~]{0,12}", listed];
            prop::collection::vec((name.prop_map(str::to_owned), value), 0..12)
        }

        proptest! {
            #[test]
            fn hop_by_hop_removal_leaves_exactly_the_end_to_end_headers(pairs in headers()) {
                let mut h = HeaderMap::new();
                for (name, value) in &pairs {
                    if let Ok(value) = HeaderValue::from_str(value) {
                        h.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), value);
                    }
                }
                let named: Vec<String> = h
                    .get_all(CONNECTION)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .map(|n| n.trim().to_ascii_lowercase())
                    .collect();
                let before = h.clone();
                remove_hop_by_hop(&mut h);
                let hop = ["connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade",
                           "proxy-connection", "proxy-authorization", "proxy-authenticate"];
                for name in before.keys() {
                    let gone = hop.contains(&name.as_str()) || named.iter().any(|n| n == name.as_str());
                    if gone {
                        prop_assert!(!h.contains_key(name), "{name} kept");
                    } else {
                        let kept: Vec<_> = h.get_all(name).iter().collect();
                        let was: Vec<_> = before.get_all(name).iter().collect();
                        prop_assert_eq!(kept, was, "{} changed", name);
                    }
                }
                prop_assert!(h.keys().all(|name| before.contains_key(name)));
            }

            #[test]
            fn the_client_is_always_the_last_forwarded_hop(
                chain in prop::collection::vec("[0-9a-f.:, ]{0,20}", 0..4),
                client in any::<std::net::IpAddr>(),
                tls in any::<bool>(),
            ) {
                let mut h = HeaderMap::new();
                for link in &chain {
                    h.append(&X_FORWARDED_FOR, HeaderValue::from_str(link).unwrap());
                }
                h.append(&X_FORWARDED_PROTO, HeaderValue::from_static("spoofed"));
                let proto = if tls { "https" } else { "http" };
                set_forwarded(&mut h, &HeaderValue::try_from(client.to_string()).unwrap(), proto, None);
                let all: Vec<_> = h.get_all(&X_FORWARDED_FOR).iter().collect();
                prop_assert_eq!(all.len(), 1);
                let value = all[0].to_str().unwrap();
                let expected_tail = client.to_string();
                prop_assert!(value.ends_with(&expected_tail), "{value:?}");
                prop_assert_eq!(h.get_all(&X_FORWARDED_PROTO).iter().collect::<Vec<_>>(), [proto]);
                prop_assert!(!h.contains_key(&X_FORWARDED_HOST));
            }
        }
    }
}
