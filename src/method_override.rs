//! Method overrides: a client asking a framework to treat a `POST` as
//! another method. Express's `method-override`, Rack, Laravel, Symfony and
//! Spring read `X-HTTP-Method-Override` (and kin) or a `_method` field in
//! the query or a form body, and run that method's handler — while a
//! gateway that judged the `POST` applied the `POST` rules. So either the
//! override is removed (`server.method_override = "strip"`, the default)
//! and a `_method` that would change the route is refused, or the request
//! is judged as the method it asks for (`"honour"`).
//!
//! Only `POST` is overridden, as those frameworks do by default.

use http::{HeaderMap, Method, header::CONTENT_TYPE};

use crate::error::Refusal;
use crate::headers::METHOD_OVERRIDES;

/// A form body larger than this is not read to look for `_method`; on a
/// path whose routes depend on the method it is refused (413) instead.
pub const MAX_FORM_SCAN_BYTES: usize = 1024 * 1024;

/// The method an override header asks for, if any (the first one present).
pub fn from_headers(headers: &HeaderMap) -> Result<Option<Method>, Refusal> {
    for name in METHOD_OVERRIDES {
        if let Some(value) = headers.get(name) {
            return parse(value.as_bytes())
                .map(Some)
                .ok_or(Refusal::InvalidRequest("the method override header does not name a method"));
        }
    }
    Ok(None)
}

/// The kind of form a body is, when frameworks would look in it for `_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    UrlEncoded,
    Multipart,
}

pub fn form_kind(headers: &HeaderMap) -> Option<Form> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let media = value.split(';').next().unwrap_or(value).trim();
    if media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Some(Form::UrlEncoded)
    } else if media.eq_ignore_ascii_case("multipart/form-data") {
        Some(Form::Multipart)
    } else {
        None
    }
}

/// What a `_method` field asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Field {
    Absent,
    Method(Method),
    /// Present, but its value could not be read as a method: treated as
    /// an override to a method no route expects.
    Unreadable,
}

impl Field {
    /// The method the field asks to be judged as: an unreadable value as
    /// a method no route names, judged by whatever handles unknown methods.
    pub fn asked(self) -> Option<Method> {
        match self {
            Field::Absent => None,
            Field::Method(method) => Some(method),
            Field::Unreadable => Method::from_bytes(b"UNREADABLE-OVERRIDE").ok(),
        }
    }
}

/// `_method` in a query string (Laravel and Express's getter read it there).
pub fn in_query(query: Option<&str>) -> Field {
    query.map_or(Field::Absent, in_urlencoded)
}

/// `_method` in a form body of `kind`.
pub fn in_form(kind: Form, body: &[u8]) -> Field {
    match kind {
        Form::UrlEncoded => std::str::from_utf8(body).map_or(Field::Unreadable, in_urlencoded),
        Form::Multipart => in_multipart(body),
    }
}

fn in_urlencoded(text: &str) -> Field {
    match crate::form::field(text, "_method") {
        None => Field::Absent,
        Some(value) => value.and_then(|v| parse(&v)).map_or(Field::Unreadable, Field::Method),
    }
}

/// A multipart part named `_method`: its `Content-Disposition` line found
/// case-insensitively, the name quoted, bare or RFC 2231-encoded
/// (`name*=utf-8''%5Fmethod`, which busboy reads), and compared as
/// [`crate::form::key_is`] does. Its value runs from the blank line to the
/// next line break.
fn in_multipart(body: &[u8]) -> Field {
    let mut at = 0;
    for line in body.split(|&b| b == b'\n') {
        let start = at;
        at += line.len() + 1;
        let Some(params) = strip_prefix_ignore_case(line.trim_ascii(), b"content-disposition:") else { continue };
        let Ok(params) = std::str::from_utf8(params) else { continue };
        if !params.split(';').any(|param| names_method(param.trim())) {
            continue;
        }
        let after = &body[start..];
        let blank = find(after, b"\r\n\r\n").map(|i| i + 4).or_else(|| find(after, b"\n\n").map(|i| i + 2));
        let Some(value_start) = blank else { return Field::Unreadable };
        let value = &after[value_start..];
        let end = value.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(value.len());
        return parse(value[..end].trim_ascii()).map_or(Field::Unreadable, Field::Method);
    }
    Field::Absent
}

/// Whether a `Content-Disposition` parameter is `name` = `_method`.
fn names_method(param: &str) -> bool {
    let Some((key, value)) = param.split_once('=') else { return false };
    let key = key.trim().to_ascii_lowercase();
    let value = value.trim().trim_matches('"');
    match key.as_str() {
        "name" => crate::form::key_is(value, "_method"),
        // RFC 2231: charset'language'percent-encoded.
        "name*" => crate::form::key_is(value.rsplit('\'').next().unwrap_or(value), "_method"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn finds_method_fields_as_frameworks_read_them() {
        assert_eq!(in_query(Some("a=1&_method=delete")), Field::Method(Method::DELETE));
        assert_eq!(in_query(Some("%5Fmethod=PUT")), Field::Method(Method::PUT));
        assert_eq!(in_query(Some("x_method=PUT&a")), Field::Absent);
        assert_eq!(in_query(None), Field::Absent);
        assert_eq!(in_form(Form::UrlEncoded, b"name=x&_method=+patch+"), Field::Method(Method::PATCH));
        assert_eq!(in_form(Form::UrlEncoded, b"_method=%ZZ"), Field::Unreadable);
        let multipart = b"--b\r\nContent-Disposition: form-data; NAME=\"_method\"\r\n\r\nDELETE\r\n--b--\r\n";
        assert_eq!(in_form(Form::Multipart, multipart), Field::Method(Method::DELETE));
        let other = b"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n_method\r\n--b--\r\n";
        assert_eq!(in_form(Form::Multipart, other), Field::Absent);
        let encoded = b"--b\r\ncontent-disposition: form-data; name*=utf-8''%5Fmethod\r\n\r\nput\r\n--b--\r\n";
        assert_eq!(in_form(Form::Multipart, encoded), Field::Method(Method::PUT));
        let bare = b"--b\nContent-Disposition: form-data; name=_method\n\nDELETE\n--b--\n";
        assert_eq!(in_form(Form::Multipart, bare), Field::Method(Method::DELETE));
        let named_x = b"--b\r\nContent-Disposition: form-data; name=\"x_method\"\r\n\r\nDELETE\r\n--b--\r\n";
        assert_eq!(in_form(Form::Multipart, named_x), Field::Absent);
    }

    #[test]
    fn headers_name_the_override() {
        let mut headers = HeaderMap::new();
        assert_eq!(from_headers(&headers).ok(), Some(None));
        headers.insert("x-http-method", HeaderValue::from_static("delete"));
        assert_eq!(from_headers(&headers).ok(), Some(Some(Method::DELETE)));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("Multipart/Form-Data; boundary=x"));
        assert_eq!(form_kind(&headers), Some(Form::Multipart));
    }
}
