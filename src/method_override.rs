//! Method overrides: a client asking a framework to treat a `POST` as
//! another method. Express's `method-override`, Rack, Laravel, Symfony and
//! Spring read `X-HTTP-Method-Override` (and kin) or a `_method` field in
//! the query or a form body, and run that method's handler — while a
//! gateway that judged the `POST` applied the `POST` rules. So either the
//! override is removed (`server.method_override = "strip"`, the default)
//! and a `_method` that would change the route is refused, or the request
//! is judged as the method it asks for (`"honour"`), and then only when it
//! asks unambiguously.
//!
//! Only `POST` is overridden, as those frameworks do by default. Fields are
//! found however any of them would spell them ([`crate::form`]), and every
//! occurrence counts: frameworks disagree on whether the first or the last
//! of several wins.

use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, Method, request};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::config::MethodOverride;
use crate::error::Refusal;
use crate::form;
use crate::headers::METHOD_OVERRIDES;
use crate::proxy::{REQUEST_TIMED_OUT, UpstreamBody};
use crate::routes::RouteTable;

/// Judges the method a `POST` will be served as, under one configuration's
/// routes and `server.method_override`.
pub struct Judge<'a, U> {
    pub routes: &'a RouteTable<U>,
    pub policy: MethodOverride,
    /// The request's host, as routes match it.
    pub host: Option<&'a str>,
}

impl<U> Judge<'_, U> {
    /// Inline: the method `parts` is judged as, and its body (read when a
    /// form had to be looked into). Only a `POST` is overridden, as
    /// frameworks do, and only where the routes tell methods apart can an
    /// override matter. In strip mode the override headers are gone already.
    pub async fn inline(
        &self,
        parts: &request::Parts,
        body: Incoming,
        path: &str,
        query: Option<&str>,
        deadline: tokio::time::Instant,
    ) -> Result<(Method, UpstreamBody), Refusal> {
        if parts.method != Method::POST || !self.routes.depends_on_method(self.host, path) {
            return Ok((parts.method.clone(), UpstreamBody::Streamed(body)));
        }
        let mut fields = match self.policy {
            MethodOverride::Strip => Vec::new(),
            MethodOverride::Honour => in_headers(&parts.headers),
        };
        fields.extend(in_query(query));
        let mut read = None;
        let body = match form_kind(&parts.headers) {
            None => UpstreamBody::Streamed(body),
            Some(_) if is_encoded(&parts.headers) => {
                return Err(Refusal::InvalidRequest(
                    "an encoded form on a path whose routes depend on the method cannot be checked for _method",
                ));
            }
            Some(kind) => {
                let collect = http_body_util::Limited::new(body, MAX_FORM_SCAN_BYTES).collect();
                let bytes = tokio::time::timeout_at(deadline, collect)
                    .await
                    .map_err(|_| Refusal::GatewayTimeout(REQUEST_TIMED_OUT))?
                    .map_err(|_| {
                        Refusal::TooLarge(
                            "a form body on a path whose routes depend on the method is read to check for _method, and this one is over 1 MiB",
                        )
                    })?
                    .to_bytes();
                fields.extend(in_form(kind, &bytes));
                read = Some(bytes.clone());
                UpstreamBody::Read(Some(bytes))
            }
        };
        let judged = match self.policy {
            MethodOverride::Strip => self.refuse_route_changing(&fields, path).map(|()| Method::POST)?,
            MethodOverride::Honour => {
                let bare = values_are_bare(&parts.headers, query, read.as_deref());
                honoured(&fields, bare)?.unwrap_or(Method::POST)
            }
        };
        Ok((judged, body))
    }

    /// Forward-auth, for a `POST`: the edge passes the client's headers and
    /// body to the backend unchanged, so an override cannot be removed
    /// here, only refused or honoured, and a form body is never seen: on a
    /// path whose route depends on the method, a form is refused.
    /// `has_body`: whether the original request may have a body.
    pub fn check(
        &self,
        headers: &HeaderMap,
        path: &str,
        query: Option<&str>,
        has_body: bool,
    ) -> Result<Method, Refusal> {
        if !self.routes.depends_on_method(self.host, path) {
            return Ok(Method::POST);
        }
        let form = form_kind(headers);
        if form.is_some_and(|kind| kind != Form::Unknown) || (form.is_some() && has_body) {
            return Err(Refusal::InvalidRequest(
                "a form POST on a path whose routes depend on the method cannot be approved in forward-auth mode: its _method is not seen",
            ));
        }
        let mut fields = in_headers(headers);
        fields.extend(in_query(query));
        match self.policy {
            MethodOverride::Strip => self.refuse_route_changing(&fields, path).map(|()| Method::POST),
            MethodOverride::Honour => {
                Ok(honoured(&fields, values_are_bare(headers, query, None))?.unwrap_or(Method::POST))
            }
        }
    }

    /// With `"strip"`: an override that cannot be removed (a form field, or
    /// any override in forward-auth mode) is refused when it is unreadable
    /// or would be served by another route than the `POST`'s.
    fn refuse_route_changing(&self, fields: &[Field], path: &str) -> Result<(), Refusal> {
        let post = self.routes.find(self.host, &Method::POST, path);
        for field in fields {
            let changes_route = match field {
                Field::Unreadable => true,
                Field::Method(asked) => !std::ptr::eq(self.routes.find(self.host, asked, path), post),
            };
            if changes_route {
                return Err(Refusal::InvalidRequest(
                    "a method override (_method or X-HTTP-Method-Override) would change which route judges this request",
                ));
            }
        }
        Ok(())
    }
}

/// A form body larger than this is not read to look for `_method`; on a
/// path whose routes depend on the method it is refused (413) instead.
pub const MAX_FORM_SCAN_BYTES: usize = 1024 * 1024;

/// What one place asks the request to be treated as.
#[derive(Debug, PartialEq, Eq)]
pub enum Field {
    Method(Method),
    /// Present, but not readable as a method: nothing can be judged.
    Unreadable,
}

impl Field {
    fn read(raw: Option<&[u8]>) -> Field {
        raw.and_then(parse).map_or(Field::Unreadable, Field::Method)
    }
}

/// Every override header present, in the order of [`METHOD_OVERRIDES`].
pub fn in_headers(headers: &HeaderMap) -> Vec<Field> {
    METHOD_OVERRIDES
        .iter()
        .flat_map(|name| headers.get_all(*name))
        .map(|value| Field::read(Some(value.as_bytes())))
        .collect()
}

/// How a `POST` body could be read as a form by some framework.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    UrlEncoded,
    Multipart,
    /// No usable `Content-Type`: Rack parses such a body as a form anyway,
    /// so it is read both ways.
    Unknown,
}

/// The form a `POST` body may be, or `None` when no framework would read
/// it as one (`application/json`, `application/octet-stream`…).
pub fn form_kind(headers: &HeaderMap) -> Option<Form> {
    let Some(value) = headers.get(CONTENT_TYPE) else { return Some(Form::Unknown) };
    let Ok(value) = value.to_str() else { return Some(Form::Unknown) };
    let value = value.trim().to_ascii_lowercase();
    if value.is_empty() {
        Some(Form::Unknown)
    } else if value.contains("urlencoded") {
        Some(Form::UrlEncoded)
    } else if value.starts_with("multipart/") {
        Some(Form::Multipart)
    } else {
        None
    }
}

/// Whether the body is encoded (`Content-Encoding` other than `identity`)
/// so that it cannot be read here, while a framework may decode it.
pub fn is_encoded(headers: &HeaderMap) -> bool {
    headers.get_all(CONTENT_ENCODING).iter().any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

/// Every `_method` in a query string (Laravel and Express's getter read it there).
pub fn in_query(query: Option<&str>) -> Vec<Field> {
    query.map_or_else(Vec::new, |q| in_urlencoded(q.as_bytes()))
}

/// Every `_method` in a form body of `kind`.
pub fn in_form(kind: Form, body: &[u8]) -> Vec<Field> {
    match kind {
        Form::UrlEncoded => in_urlencoded(body),
        Form::Multipart => in_multipart(body),
        Form::Unknown => {
            let mut fields = in_urlencoded(body);
            fields.extend(in_multipart(body));
            fields
        }
    }
}

fn in_urlencoded(text: &[u8]) -> Vec<Field> {
    form::fields(text, "_method").into_iter().map(|value| Field::read(value.as_deref())).collect()
}

/// Every multipart part named `_method`, wherever its `Content-Disposition`
/// line is (a decoy before the first boundary counts too): found
/// case-insensitively, the name quoted (`"` or `'`, backslash escapes
/// removed), bare or RFC 2231-encoded (`name*=utf-8''%5Fmethod`, which
/// busboy reads), and folded as [`form::key_is`] does. Each value runs from
/// the blank line after it to the next line break.
fn in_multipart(body: &[u8]) -> Vec<Field> {
    let mut found = Vec::new();
    let mut at = 0;
    for line in body.split(|&b| b == b'\n') {
        let start = at;
        at += line.len() + 1;
        let Some(params) = strip_prefix_ignore_case(line.trim_ascii(), b"content-disposition:") else { continue };
        if !params.split(|&b| b == b';').any(|param| names_method(param.trim_ascii())) {
            continue;
        }
        let after = &body[start..];
        let blank = find(after, b"\r\n\r\n").map(|i| i + 4).or_else(|| find(after, b"\n\n").map(|i| i + 2));
        let value = blank.map(|i| {
            let value = &after[i..];
            let end = value.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(value.len());
            &value[..end]
        });
        found.push(Field::read(value));
    }
    found
}

/// Whether a `Content-Disposition` parameter is `name` = `_method`.
fn names_method(param: &[u8]) -> bool {
    let Some(eq) = param.iter().position(|&b| b == b'=') else { return false };
    let key = param[..eq].trim_ascii().to_ascii_lowercase();
    let value = param[eq + 1..].trim_ascii();
    let unquoted: Vec<u8> = value.iter().copied().filter(|&b| b != b'"' && b != b'\'' && b != b'\\').collect();
    match key.as_slice() {
        b"name" => form::key_is(&unquoted, "_method"),
        // RFC 2231: charset'language'percent-encoded.
        b"name*" => {
            let encoded = value.rsplit(|&b| b == b'\'').next().unwrap_or(value);
            form::key_is(encoded, "_method")
        }
        _ => false,
    }
}

fn strip_prefix_ignore_case<'a>(line: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)).then(|| &line[prefix.len()..])
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A method name as frameworks read it: trimmed, upper-cased.
fn parse(value: &[u8]) -> Option<Method> {
    let upper = value.trim_ascii().to_ascii_uppercase();
    Method::from_bytes(&upper).ok().filter(|_| !upper.is_empty())
}

/// With `"honour"`: the one method all of `fields` ask for, if it is one
/// that every framework honours as written — `GET`, `HEAD`, `PUT`, `PATCH`
/// or `DELETE`, without spaces. Several different answers, a value some
/// framework would ignore (and so serve the `POST`), or an `OPTIONS` (a
/// tokenless preflight) are refused.
pub fn honoured(fields: &[Field], raw_ok: bool) -> Result<Option<Method>, Refusal> {
    let refuse = Refusal::InvalidRequest(
        "the method override is ambiguous or not one every framework honours (server.method_override)",
    );
    let mut asked: Option<&Method> = None;
    for field in fields {
        let Field::Method(method) = field else { return Err(refuse) };
        let honourable = [Method::GET, Method::HEAD, Method::PUT, Method::PATCH, Method::DELETE].contains(method);
        if !honourable || !raw_ok || asked.is_some_and(|previous| previous != method) {
            return Err(refuse);
        }
        asked = Some(method);
    }
    Ok(asked.cloned())
}

/// Whether every raw override value is a bare method token (no spaces or
/// `+`): what Express's `method-override` and Rack accept without trimming.
pub fn values_are_bare(headers: &HeaderMap, query: Option<&str>, body: Option<&[u8]>) -> bool {
    let bare = |raw: &[u8]| !raw.is_empty() && raw.iter().all(|b| b.is_ascii_alphabetic());
    let header_values = METHOD_OVERRIDES.iter().flat_map(|name| headers.get_all(*name)).all(|v| bare(v.as_bytes()));
    let form_values = |text: &[u8]| form::fields(text, "_method").iter().all(|v| v.as_deref().is_some_and(bare));
    header_values && query.is_none_or(|q| form_values(q.as_bytes())) && body.is_none_or(form_values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn finds_every_method_field_as_frameworks_read_them() {
        assert_eq!(in_query(Some("a=1&_method=delete")), [Field::Method(Method::DELETE)]);
        assert_eq!(
            in_query(Some("%5Fmethod=PUT;.method=PATCH")),
            [Field::Method(Method::PUT), Field::Method(Method::PATCH)]
        );
        assert!(in_query(Some("x_method=PUT&a")).is_empty());
        assert!(in_query(None).is_empty());
        assert_eq!(in_form(Form::UrlEncoded, b"name=x&_method=+patch+"), [Field::Method(Method::PATCH)]);
        assert_eq!(in_form(Form::UrlEncoded, b"_method=%ZZ"), [Field::Unreadable]);
        assert_eq!(in_form(Form::UrlEncoded, b"_method=DELETE&x=\xff"), [Field::Method(Method::DELETE)]);
        let multipart = b"--b\r\nContent-Disposition: form-data; NAME=\"_method\"\r\n\r\nDELETE\r\n--b--\r\n";
        assert_eq!(in_form(Form::Multipart, multipart), [Field::Method(Method::DELETE)]);
        let other = b"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n_method\r\n--b--\r\n";
        assert!(in_form(Form::Multipart, other).is_empty());
        let encoded = b"--b\r\ncontent-disposition: form-data; name*=utf-8''%5Fmethod\r\n\r\nput\r\n--b--\r\n";
        assert_eq!(in_form(Form::Multipart, encoded), [Field::Method(Method::PUT)]);
        let bare = b"--b\nContent-Disposition: form-data; name=_method\n\nDELETE\n--b--\n";
        assert_eq!(in_form(Form::Multipart, bare), [Field::Method(Method::DELETE)]);
        for name in ["'_method'", "\"\\_method\"", "\".method\""] {
            let body = format!("--b\r\nContent-Disposition: form-data; name={name}\r\n\r\nDELETE\r\n--b--\r\n");
            assert_eq!(in_form(Form::Multipart, body.as_bytes()), [Field::Method(Method::DELETE)], "{name}");
        }
        let decoy = b"Content-Disposition: form-data; name=\"_method\"\r\n\r\nPOST\r\n--b\r\n\
                      Content-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--b--\r\n";
        assert_eq!(in_form(Form::Multipart, decoy).len(), 2);
        let named_x = b"--b\r\nContent-Disposition: form-data; name=\"x_method\"\r\n\r\nDELETE\r\n--b--\r\n";
        assert!(in_form(Form::Multipart, named_x).is_empty());
        assert_eq!(in_form(Form::Unknown, b"_method=DELETE"), [Field::Method(Method::DELETE)]);
    }

    #[test]
    fn form_kinds_include_what_rack_and_php_would_parse() {
        let kind = |value: Option<&[u8]>| {
            let mut headers = HeaderMap::new();
            if let Some(value) = value {
                headers.insert(CONTENT_TYPE, HeaderValue::from_bytes(value).unwrap());
            }
            form_kind(&headers)
        };
        assert_eq!(kind(None), Some(Form::Unknown));
        assert_eq!(kind(Some(b"")), Some(Form::Unknown));
        assert_eq!(kind(Some(b"application/x-www-form-urlencoded, x")), Some(Form::UrlEncoded));
        assert_eq!(kind(Some(b"Multipart/Mixed; boundary=x")), Some(Form::Multipart));
        assert_eq!(kind(Some(b"text/\xe9")), Some(Form::Unknown));
        assert_eq!(kind(Some(b"application/json")), None);
    }

    #[test]
    fn honour_only_what_every_framework_honours() {
        let m = |method: Method| Field::Method(method);
        assert_eq!(honoured(&[], true).ok(), Some(None));
        assert_eq!(honoured(&[m(Method::DELETE), m(Method::DELETE)], true).ok(), Some(Some(Method::DELETE)));
        assert!(honoured(&[m(Method::DELETE), m(Method::GET)], true).is_err());
        assert!(honoured(&[m(Method::OPTIONS)], true).is_err());
        assert!(honoured(&[Field::Unreadable], true).is_err());
        assert!(honoured(&[m(Method::DELETE)], false).is_err());
        let mut headers = HeaderMap::new();
        headers.insert("x-http-method", HeaderValue::from_static("delete"));
        assert_eq!(in_headers(&headers), [m(Method::DELETE)]);
        assert!(values_are_bare(&headers, Some("_method=PUT"), None));
        assert!(!values_are_bare(&headers, Some("_method=+PUT"), None));
    }
}
