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
    for pair in text.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode_form(key).as_deref() == Some(b"_method".as_slice()) {
            return decode_form(value).and_then(|v| parse(&v)).map_or(Field::Unreadable, Field::Method);
        }
    }
    Field::Absent
}

/// A multipart part named `_method`: found by its `name` parameter in a
/// `Content-Disposition` line, read case-insensitively and whether quoted
/// or not. Its value runs from the blank line to the next line break.
fn in_multipart(body: &[u8]) -> Field {
    let lower: Vec<u8> = body.iter().map(u8::to_ascii_lowercase).collect();
    for needle in [&b"name=\"_method\""[..], b"name=_method"] {
        let Some(at) = find(&lower, needle) else { continue };
        let after = &body[at..];
        let Some(start) = find(after, b"\r\n\r\n").map(|i| i + 4) else { return Field::Unreadable };
        let value = &after[start..];
        let end = find(value, b"\r\n").unwrap_or(value.len());
        return parse(value[..end].trim_ascii()).map_or(Field::Unreadable, Field::Method);
    }
    Field::Absent
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn decode_form(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
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
