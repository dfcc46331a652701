//! Reading a request as the upstream will: one spelling of the method,
//! one authority and host, and no credential the gateway read left beside
//! the verified one.

use super::*;

impl Gateway {
    /// The request's host as routes match it ([`hosts::request_host`]),
    /// read only when some route names hosts; a request without one, or
    /// with one servers could read differently, is then refused.
    /// `authority`: the request target's; `header`: its `Host`.
    pub(super) fn route_host<'h>(
        &self,
        authority: Option<&'h str>,
        header: Option<&'h HeaderValue>,
    ) -> Result<Option<Cow<'h, str>>, Refusal> {
        if !self.routes.by_host() {
            return Ok(None);
        }
        let raw = match (authority, header) {
            (Some(authority), _) => authority,
            (None, Some(header)) => header.to_str().map_err(|_| Refusal::InvalidRequest(NOT_A_HOST))?,
            (None, None) => {
                return Err(Refusal::InvalidRequest("the request names no host (Host), and routes here match on it"));
            }
        };
        hosts::request_host(raw).map(Some).map_err(Refusal::InvalidRequest)
    }

    /// Removes every place a credential could be, that the gateway reads,
    /// except where the upstream asked for credentials: a forged cookie or
    /// query token must not travel beside the verified one. A token taken
    /// from the query never goes further in any case.
    pub(super) fn strip_credentials(
        &self,
        parts: &mut http::request::Parts,
        used: Option<&TokenLocation>,
        forwards_credentials: bool,
    ) -> Result<(), Refusal> {
        for location in &self.token_locations {
            match location {
                TokenLocation::Header => {}
                TokenLocation::Cookie(name) if !forwards_credentials => {
                    locations::remove_cookie(&mut parts.headers, name)
                }
                TokenLocation::Query(name) if !forwards_credentials || used == Some(location) => {
                    parts.uri = uri_without_param(&parts.uri, name)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Methods are matched without regard to case and forwarded upper-case,
/// since Flask, Django and others upper-case them before dispatching:
/// `get` is served as `GET`, so it is judged and forwarded as `GET`.
pub(super) fn canonical_method(method: &Method) -> Method {
    if method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        Method::from_bytes(method.as_str().to_ascii_uppercase().as_bytes()).unwrap_or_else(|_| method.clone())
    } else {
        method.clone()
    }
}

/// RFC 9112 §3.2.2 and RFC 9113 §8.3.1: a request target's authority and
/// its `Host` name the same host, or the request is refused (a backend
/// might follow either). Only one `Host` is accepted.
pub(super) fn check_authority(parts: &http::request::Parts) -> Result<(), Refusal> {
    let mut hosts = parts.headers.get_all(http::header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::InvalidRequest("more than one Host header"));
    }
    match (parts.uri.authority(), host) {
        (Some(authority), Some(host)) if !authority.as_str().as_bytes().eq_ignore_ascii_case(host.as_bytes()) => {
            Err(Refusal::InvalidRequest("the Host header and the request's authority name different hosts"))
        }
        _ => Ok(()),
    }
}

/// A `Host` that is not even text.
const NOT_A_HOST: &str = "the request's host is not a host name";

/// Whether a request carries a body, by its framing or its stream.
pub(super) fn has_body(headers: &HeaderMap, body: &UpstreamBody) -> bool {
    use hyper::body::Body as _;
    headers::declares_body(headers) || !body.is_end_stream()
}

/// The union of the issuers' `token_from`, the header first.
pub(super) fn token_locations(config: &Config) -> Vec<TokenLocation> {
    let mut all = vec![TokenLocation::Header];
    for location in config.issuers.iter().flat_map(|issuer| &issuer.token_from) {
        if !all.contains(location) {
            all.push(location.clone());
        }
    }
    all
}

/// `uri` without query parameter `name`.
pub(super) fn uri_without_param(uri: &http::Uri, name: &str) -> Result<http::Uri, Refusal> {
    let Some(query) = uri.query() else { return Ok(uri.clone()) };
    let kept = locations::query_without(query, name);
    let path_and_query = if kept.is_empty() { uri.path().to_string() } else { format!("{}?{kept}", uri.path()) };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query =
        Some(path_and_query.parse().map_err(|_| Refusal::BadPath("request path cannot be forwarded"))?);
    http::Uri::from_parts(parts).map_err(|_| Refusal::BadPath("request path cannot be forwarded"))
}
