//! Forward-auth mode: an edge proxy (nginx `auth_request`, Traefik
//! `forwardAuth`, Caddy `forward_auth`, Envoy `ext_authz`) asks whether a
//! request may pass, and jwtgate answers instead of proxying. This module
//! only reads which request is being asked about; the gateway then applies
//! the same routes and checks as inline mode.
//!
//! Two rules keep the edge and jwtgate agreeing on the request:
//! - The original request is read from the one header set of the edge named
//!   in `[forward_auth] edge`, which the edge sets itself: a header another
//!   edge would use is the client's, copied along, and never trusted.
//! - jwtgate cannot change what the edge forwards, so only an original path
//!   that is already canonical can be approved; any other is refused.

use http::{HeaderMap, HeaderName, Method, Uri};

use crate::config::Edge;
use crate::error::Refusal;

static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_ORIGINAL_HOST: HeaderName = HeaderName::from_static("x-original-host");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_ORIGINAL_CONTENT_LENGTH: HeaderName = HeaderName::from_static("x-original-content-length");

/// The request a check is about.
#[derive(Debug, PartialEq, Eq)]
pub struct Original {
    pub method: Method,
    /// As the client sent it; approved only when already canonical.
    pub path: String,
    /// The query, where a token may be (an issuer's `token_from`).
    pub query: Option<String>,
}

pub struct ForwardAuth {
    /// Normalised, without a trailing `/`.
    path: String,
    edge: Edge,
}

impl ForwardAuth {
    pub fn new(path: &str, edge: Edge) -> ForwardAuth {
        ForwardAuth { path: path.to_string(), edge }
    }

    pub fn edge(&self) -> Edge {
        self.edge
    }

    /// Whether the request a check is about declares a body: its framing
    /// as the edge copied it, or for nginx (which sends `auth_request` no
    /// body) `X-Original-Content-Length`, as the shipped config sets it.
    pub fn declares_body(&self, headers: &HeaderMap) -> bool {
        crate::headers::declares_body(headers)
            || (self.edge == Edge::Nginx
                && headers
                    .get(&X_ORIGINAL_CONTENT_LENGTH)
                    .is_some_and(|v| !v.as_bytes().is_empty() && v.as_bytes() != b"0"))
    }

    /// Whether the request may have a body: unless the edge says its length
    /// is 0. A chunked body leaves no trace in the check (nginx reads no
    /// body before `auth_request`, Go drops `Transfer-Encoding`), so no
    /// length is no proof of no body.
    pub fn may_have_body(&self, headers: &HeaderMap) -> bool {
        let zero = |name: &HeaderName| headers.get(name).is_some_and(|v| v.as_bytes() == b"0");
        let says_empty = if self.edge == Edge::Nginx {
            zero(&X_ORIGINAL_CONTENT_LENGTH)
        } else {
            zero(&http::header::CONTENT_LENGTH)
        };
        !says_empty
    }

    /// The host the original request was sent to, from the edge's own
    /// header: `X-Original-Host` (the shipped nginx file sets it to
    /// `$host`), `X-Forwarded-Host` (Traefik, Caddy), or the check's own
    /// `Host` (Envoy copies the original's). Read only where routes match
    /// hosts; more than one is refused.
    pub fn original_host<'h>(&self, headers: &'h HeaderMap) -> Result<Option<&'h http::HeaderValue>, Refusal> {
        let name = match self.edge {
            Edge::Nginx => &X_ORIGINAL_HOST,
            Edge::Traefik | Edge::Caddy => &X_FORWARDED_HOST,
            Edge::Envoy => &http::header::HOST,
        };
        match headers.get_all(name).iter().count() {
            0 => Ok(None),
            1 => Ok(headers.get(name)),
            _ => Err(Refusal::InvalidRequest("the forward-auth request carries more than one original host header")),
        }
    }

    /// `None` when `path` is not a check request: not the configured path,
    /// and not below it.
    /// `query` is the check request's own: Envoy keeps the original one there.
    pub fn original(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Option<Result<Original, Refusal>> {
        let suffix = path.strip_prefix(self.path.as_str())?;
        if !suffix.is_empty() && !suffix.starts_with('/') {
            return None;
        }
        Some(match self.edge {
            Edge::Nginx => from_headers(&X_ORIGINAL_URI, &X_ORIGINAL_METHOD, headers),
            Edge::Traefik | Edge::Caddy => from_headers(&X_FORWARDED_URI, &X_FORWARDED_METHOD, headers),
            Edge::Envoy if suffix.is_empty() => Err(Refusal::InvalidRequest(
                "a forward-auth request from Envoy must name the original path after the check path",
            )),
            Edge::Envoy => {
                Ok(Original { method: method.clone(), path: suffix.to_string(), query: query.map(str::to_owned) })
            }
        })
    }
}

/// The original request from the edge's own pair of headers: exactly one
/// of each, both well-formed.
/// The client's address as the edge saw it: the last `X-Forwarded-For`
/// entry, the one the edge itself appended (any before it are the
/// client's word). `None` without a readable one.
pub fn client_ip(headers: &HeaderMap) -> Option<std::net::IpAddr> {
    let last = headers.get_all("x-forwarded-for").iter().next_back()?;
    last.to_str().ok()?.rsplit(',').next()?.trim().parse().ok()
}

fn from_headers(uri_header: &HeaderName, method_header: &HeaderName, headers: &HeaderMap) -> Result<Original, Refusal> {
    let uri = single(headers, uri_header)
        .ok_or(Refusal::InvalidRequest(
            "the forward-auth request must carry exactly one original URI header of the configured edge",
        ))?
        .to_str()
        .ok()
        // A request target has no fragment: a `#` is kept in the path by
        // some servers (Go) but cut off by URI parsers, so it is refused.
        .filter(|text| !text.contains('#'))
        .and_then(|text| text.parse::<Uri>().ok())
        .ok_or(Refusal::InvalidRequest("the forward-auth request's original URI is not a request target"))?;
    let method = single(headers, method_header).ok_or(Refusal::InvalidRequest(
        "the forward-auth request must carry exactly one original method header of the configured edge",
    ))?;
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| Refusal::InvalidRequest("the forward-auth request's original method is not a method"))?;
    Ok(Original { method, path: uri.path().to_string(), query: uri.query().map(str::to_owned) })
}

fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a http::HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    #[test]
    fn client_ip_is_the_entry_the_edge_appended() {
        let mut map = HeaderMap::new();
        assert_eq!(client_ip(&map), None);
        map.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6, 10.0.0.1"));
        map.append("x-forwarded-for", HeaderValue::from_static("198.51.100.7"));
        assert_eq!(client_ip(&map), Some([198, 51, 100, 7].into()));
        map.insert("x-forwarded-for", HeaderValue::from_static("2001:db8::1 , not-an-ip"));
        assert_eq!(client_ip(&map), None);
    }

    fn ask(edge: Edge, method: Method, path: &str, headers: &[(&str, &str)]) -> Option<Result<Original, Refusal>> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        let (path, query) = path.split_once('?').map_or((path, None), |(p, q)| (p, Some(q)));
        ForwardAuth::new("/auth", edge).original(&method, path, query, &map)
    }

    fn original(method: Method, path: &str) -> Option<Result<Original, Refusal>> {
        let (path, query) = path.split_once('?').map_or((path, None), |(p, q)| (p, Some(q.to_string())));
        Some(Ok(Original { method, path: path.into(), query }))
    }

    #[test]
    fn each_edge_proxy_names_the_original_request_its_own_way() {
        let nginx = [("x-original-uri", "/admin/users?page=2"), ("x-original-method", "DELETE")];
        assert_eq!(ask(Edge::Nginx, Method::GET, "/auth", &nginx), original(Method::DELETE, "/admin/users?page=2"));
        let traefik = [("x-forwarded-uri", "/orders"), ("x-forwarded-method", "POST")];
        assert_eq!(ask(Edge::Traefik, Method::GET, "/auth", &traefik), original(Method::POST, "/orders"));
        assert_eq!(ask(Edge::Caddy, Method::GET, "/auth", &traefik), original(Method::POST, "/orders"));
        assert_eq!(ask(Edge::Envoy, Method::PUT, "/auth/orders/7", &[]), original(Method::PUT, "/orders/7"));
    }

    #[test]
    fn only_the_configured_edges_headers_are_read() {
        // Caddy copies the client's headers into the check: an X-Original-URI
        // there is the client's.
        let spoofed = [("x-original-uri", "/public"), ("x-forwarded-uri", "/admin/x"), ("x-forwarded-method", "GET")];
        assert_eq!(ask(Edge::Caddy, Method::GET, "/auth", &spoofed), original(Method::GET, "/admin/x"));
        let spoofed = [("x-forwarded-uri", "/public"), ("x-original-uri", "/admin"), ("x-original-method", "GET")];
        assert_eq!(ask(Edge::Nginx, Method::GET, "/auth", &spoofed), original(Method::GET, "/admin"));
        // Envoy names the request in its path; headers are the client's.
        assert!(matches!(ask(Edge::Envoy, Method::GET, "/auth", &spoofed), Some(Err(_))));
        let twice = [("x-original-uri", "/admin"), ("x-original-uri", "/public"), ("x-original-method", "GET")];
        assert!(matches!(ask(Edge::Nginx, Method::GET, "/auth", &twice), Some(Err(_))));
    }

    #[test]
    fn other_paths_are_not_checks_and_bad_checks_are_refused() {
        assert!(ask(Edge::Nginx, Method::GET, "/authors", &[]).is_none());
        assert!(ask(Edge::Nginx, Method::GET, "/", &[]).is_none());
        assert!(matches!(ask(Edge::Nginx, Method::GET, "/auth", &[]), Some(Err(Refusal::InvalidRequest(_)))));
        let no_method = [("x-original-uri", "/x")];
        assert!(matches!(ask(Edge::Nginx, Method::GET, "/auth", &no_method), Some(Err(_))));
        let bad_method = [("x-forwarded-uri", "/x"), ("x-forwarded-method", "G E T")];
        assert!(matches!(ask(Edge::Traefik, Method::GET, "/auth", &bad_method), Some(Err(Refusal::InvalidRequest(_)))));
        for uri in ["not a uri", "/public#/../admin/x", "/public?x#y"] {
            let bad_uri = [("x-original-uri", uri), ("x-original-method", "GET")];
            assert!(matches!(ask(Edge::Nginx, Method::GET, "/auth", &bad_uri), Some(Err(Refusal::InvalidRequest(_)))));
        }
    }
}
