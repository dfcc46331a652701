//! Forward-auth mode: an edge proxy (nginx `auth_request`, Traefik
//! `forwardAuth`, Caddy `forward_auth`, Envoy `ext_authz`) asks whether a
//! request may pass, and jwtgate answers instead of proxying. This module
//! only reads which request is being asked about; the gateway then applies
//! the same normalisation, routes and checks as inline mode.

use http::{HeaderMap, HeaderName, Method, Uri};

use crate::error::Refusal;

static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");

/// The request a check is about.
#[derive(Debug, PartialEq, Eq)]
pub struct Original {
    pub method: Method,
    /// As the client sent it; normalised later like any request path.
    pub path: String,
    /// The query, where a token may be (an issuer's `token_from`).
    pub query: Option<String>,
}

pub struct ForwardAuth {
    /// Normalised, without a trailing `/`.
    path: String,
}

impl ForwardAuth {
    pub fn new(path: &str) -> ForwardAuth {
        ForwardAuth { path: path.to_string() }
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
        Some(original(method, suffix, query, headers))
    }
}

/// Where each edge proxy puts the original request, in this order: nginx's
/// `X-Original-URI`/`-Method` (set in its `auth_request` location), then
/// Traefik's and Caddy's `X-Forwarded-Uri`/`-Method`, then Envoy's
/// `ext_authz`, which appends the original path to the check path and keeps
/// the method.
fn original(method: &Method, suffix: &str, query: Option<&str>, headers: &HeaderMap) -> Result<Original, Refusal> {
    for (uri_header, method_header) in [(&X_ORIGINAL_URI, &X_ORIGINAL_METHOD), (&X_FORWARDED_URI, &X_FORWARDED_METHOD)]
    {
        let Some(uri) = headers.get(uri_header) else { continue };
        let uri = uri
            .to_str()
            .ok()
            .and_then(|text| text.parse::<Uri>().ok())
            .ok_or(Refusal::InvalidRequest("the forward-auth request's original URI is not a URI"))?;
        let method = match headers.get(method_header) {
            Some(name) => Method::from_bytes(name.as_bytes())
                .map_err(|_| Refusal::InvalidRequest("the forward-auth request's original method is not a method"))?,
            None => method.clone(),
        };
        return Ok(Original { method, path: uri.path().to_string(), query: uri.query().map(str::to_owned) });
    }
    if suffix.is_empty() {
        return Err(Refusal::InvalidRequest(
            "a forward-auth request must name the original request (X-Original-URI, X-Forwarded-Uri, or a path after the check path)",
        ));
    }
    Ok(Original { method: method.clone(), path: suffix.to_string(), query: query.map(str::to_owned) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ask(method: Method, path: &str, headers: &[(&str, &str)]) -> Option<Result<Original, Refusal>> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        let (path, query) = path.split_once('?').map_or((path, None), |(p, q)| (p, Some(q)));
        ForwardAuth::new("/auth").original(&method, path, query, &map)
    }

    fn original(method: Method, path: &str) -> Option<Result<Original, Refusal>> {
        let (path, query) = path.split_once('?').map_or((path, None), |(p, q)| (p, Some(q.to_string())));
        Some(Ok(Original { method, path: path.into(), query }))
    }

    #[test]
    fn each_edge_proxy_names_the_original_request_its_own_way() {
        let nginx = [("x-original-uri", "/admin/users?page=2"), ("x-original-method", "DELETE")];
        assert_eq!(ask(Method::GET, "/auth", &nginx), original(Method::DELETE, "/admin/users?page=2"));
        let traefik = [("x-forwarded-uri", "/orders"), ("x-forwarded-method", "POST")];
        assert_eq!(ask(Method::GET, "/auth", &traefik), original(Method::POST, "/orders"));
        assert_eq!(ask(Method::PUT, "/auth/orders/7", &[]), original(Method::PUT, "/orders/7"));
        assert_eq!(ask(Method::GET, "/auth", &[("x-original-uri", "/x")]), original(Method::GET, "/x"));
        // nginx's headers win over a client's X-Forwarded-Uri passed along.
        let both = [("x-forwarded-uri", "/public"), ("x-original-uri", "/admin")];
        assert_eq!(ask(Method::GET, "/auth", &both), original(Method::GET, "/admin"));
    }

    #[test]
    fn other_paths_are_not_checks_and_bad_checks_are_refused() {
        assert!(ask(Method::GET, "/authors", &[]).is_none());
        assert!(ask(Method::GET, "/", &[]).is_none());
        assert!(matches!(ask(Method::GET, "/auth", &[]), Some(Err(Refusal::InvalidRequest(_)))));
        let bad_method = [("x-forwarded-uri", "/x"), ("x-forwarded-method", "G E T")];
        assert!(matches!(ask(Method::GET, "/auth", &bad_method), Some(Err(Refusal::InvalidRequest(_)))));
        let bad_uri = [("x-original-uri", "not a uri")];
        assert!(matches!(ask(Method::GET, "/auth", &bad_uri), Some(Err(Refusal::InvalidRequest(_)))));
    }
}
