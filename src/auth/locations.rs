//! Where a token may come from: the `Authorization` header (always first),
//! a cookie, or a query parameter, as each issuer's `token_from` allows.
//! Browsers cannot set headers on a WebSocket upgrade or an `EventSource`,
//! which is what the other two are for.

use http::HeaderMap;
use http::header::COOKIE;

use super::CredentialError;
use super::bearer::{bearer_token, is_b64token};

pub use crate::config::TokenLocation;

/// The first token found, looking in `locations` in order, and where it was.
pub fn find<'a>(
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    locations: &'a [TokenLocation],
    max_bytes: usize,
) -> Result<Option<(&'a str, &'a TokenLocation)>, CredentialError> {
    for location in locations {
        let token = match location {
            TokenLocation::Header => bearer_token(headers, max_bytes)?,
            TokenLocation::Cookie(name) => checked(single(cookies(headers, name))?, max_bytes)?,
            TokenLocation::Query(name) => {
                checked(single(query.into_iter().flat_map(|q| query_params(q, name)))?, max_bytes)?
            }
        };
        if let Some(token) = token {
            return Ok(Some((token, location)));
        }
    }
    Ok(None)
}

fn checked(token: Option<&str>, max_bytes: usize) -> Result<Option<&str>, CredentialError> {
    match token {
        None | Some("") => Ok(None),
        Some(token) if token.len() > max_bytes => Err(CredentialError::TooLarge),
        Some(token) if !is_b64token(token.as_bytes()) => {
            Err(CredentialError::Malformed("the token cookie or query parameter has characters a token cannot have"))
        }
        Some(token) => Ok(Some(token)),
    }
}

/// The one value found, if any: frameworks disagree on whether the first or
/// the last of several wins, so several are refused.
fn single<'a>(mut found: impl Iterator<Item = &'a str>) -> Result<Option<&'a str>, CredentialError> {
    let first = found.next();
    if found.next().is_some() {
        return Err(CredentialError::Malformed("more than one token cookie or query parameter of the same name"));
    }
    Ok(first)
}

/// The values of cookie `name` (RFC 6265 §4.2.1: `name=value; name=value`),
/// names compared as [`crate::form::key_is`] does (`at `, `a.t` for `a_t`).
fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(key, _)| crate::form::key_is(key.as_bytes(), name))
        .map(|(_, value)| value.trim().trim_matches('"'))
}

/// The raw values of parameter `name`, keys read as frameworks read them.
fn query_params<'a>(query: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> {
    query
        .split(['&', ';'])
        .filter_map(|pair| pair.split_once('='))
        .filter(move |(key, _)| crate::form::key_is(key.as_bytes(), name))
        .map(|(_, value)| value)
}

/// `query` without parameter `name`, however a framework would spell it
/// (`access%5Ftoken`, `;` as a separator): see [`crate::form`].
pub fn query_without(query: &str, name: &str) -> String {
    crate::form::without(query, name)
}

/// The `Cookie` header values without cookie `name`.
pub fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| {
            !pair.is_empty()
                && !crate::form::key_is(pair.split_once('=').map_or(*pair, |(key, _)| key).as_bytes(), name)
        })
        .map(str::to_owned)
        .collect();
    headers.remove(COOKIE);
    if !kept.is_empty()
        && let Ok(value) = http::HeaderValue::try_from(kept.join("; "))
    {
        headers.insert(COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn locations_parse() {
        assert_eq!(TokenLocation::parse("header"), Ok(TokenLocation::Header));
        assert_eq!(TokenLocation::parse("cookie:at"), Ok(TokenLocation::Cookie("at".into())));
        assert_eq!(TokenLocation::parse("query:access_token"), Ok(TokenLocation::Query("access_token".into())));
        for bad in ["", "body", "cookie:", "query", "cookie:a b", "header:x"] {
            assert!(TokenLocation::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn finds_in_order_and_strips() {
        let locations = [TokenLocation::Header, TokenLocation::Cookie("at".into()), TokenLocation::Query("t".into())];
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("theme=dark; at=abc.def.ghi; x=1"));
        let found = find(&headers, Some("a=1&t=q.q.q"), &locations, 1024).unwrap().unwrap();
        assert_eq!(found, ("abc.def.ghi", &locations[1]));
        headers.insert(http::header::AUTHORIZATION, HeaderValue::from_static("Bearer h.h.h"));
        assert_eq!(find(&headers, None, &locations, 1024).unwrap().unwrap().0, "h.h.h");
        let none = HeaderMap::new();
        let only_query = find(&none, Some("a=1&t=q.q.q"), &locations, 1024).unwrap().unwrap();
        assert_eq!(only_query, ("q.q.q", &locations[2]));
        assert!(find(&none, Some("t=%3Cscript"), &locations, 1024).is_err());
        assert_eq!(query_without("a=1&t=q.q.q&b=2&t=x", "t"), "a=1&b=2");
        remove_cookie(&mut headers, "at");
        assert_eq!(headers[COOKIE], "theme=dark; x=1");
        remove_cookie(&mut headers, "theme");
        remove_cookie(&mut headers, "x");
        assert!(!headers.contains_key(COOKIE));
    }
}
