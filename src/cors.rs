//! CORS answered by the gateway for routes with `[routes.cors]`: a
//! preflight is answered here and never reaches the backend (where a PHP
//! front controller, a Django view or an Express `app.all` would run an
//! ordinary handler for it), and every answer to an allowed origin —
//! refusals included, so a browser client can read the 401 challenge —
//! carries the `Access-Control-*` headers (Fetch standard, CORS protocol).

use bytes::Bytes;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;

use crate::config::CorsConfig;
use crate::error::Refusal;

pub struct Cors {
    config: CorsConfig,
    /// The preflight answer's constant headers, built once.
    allow_methods: HeaderValue,
    allow_headers: HeaderValue,
    expose_headers: Option<HeaderValue>,
    /// `expose_headers` with `www-authenticate` added where it lacks it:
    /// for answers with a challenge, so a browser client can always read
    /// the 401's challenge and the RFC 9728 metadata URL in it.
    expose_challenge: HeaderValue,
    max_age: Option<HeaderValue>,
}

/// Whether the request is a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(ORIGIN) && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// The method a preflight asks about, which picks the route that answers.
/// Upper-cased, as the gateway judges the actual request's method (browsers
/// send `patch` as written).
pub fn requested_method(headers: &HeaderMap) -> Option<Method> {
    let value = headers.get(ACCESS_CONTROL_REQUEST_METHOD)?;
    Method::from_bytes(&value.as_bytes().trim_ascii().to_ascii_uppercase()).ok()
}

impl Cors {
    pub fn new(config: &CorsConfig) -> Cors {
        let join = |items: Vec<&str>| HeaderValue::from_str(&items.join(", ")).unwrap_or(HeaderValue::from_static(""));
        Cors {
            allow_methods: join(config.allow_methods.iter().map(Method::as_str).collect()),
            allow_headers: join(config.allow_headers.iter().map(String::as_str).collect()),
            expose_headers: (!config.expose_headers.is_empty())
                .then(|| join(config.expose_headers.iter().map(String::as_str).collect())),
            expose_challenge: {
                let mut names: Vec<&str> = config.expose_headers.iter().map(String::as_str).collect();
                if !names.iter().any(|name| name.eq_ignore_ascii_case("www-authenticate") || *name == "*") {
                    names.push("www-authenticate");
                }
                join(names)
            },
            max_age: config.max_age.map(|age| HeaderValue::from(age.as_secs())),
            config: config.clone(),
        }
    }

    fn allows_origin(&self, origin: &HeaderValue) -> bool {
        match &self.config.allow_origins {
            None => true,
            Some(list) => list.iter().any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(origin.as_bytes())),
        }
    }

    /// The answer to a preflight: 204 with what it may do, or a 403 that
    /// names what is not allowed (a browser then stops).
    pub fn preflight(&self, headers: &HeaderMap) -> Result<Response<Full<Bytes>>, Refusal> {
        let origin = headers.get(ORIGIN).filter(|origin| self.allows_origin(origin));
        let Some(origin) = origin else {
            return Err(Refusal::CorsNotAllowed("this origin is not allowed (routes[].cors)"));
        };
        let method = requested_method(headers);
        if !method.is_some_and(|m| {
            self.config.allow_methods.contains(&m)
                || (m == Method::HEAD && self.config.allow_methods.contains(&Method::GET))
        }) {
            return Err(Refusal::CorsNotAllowed(
                "this method is not allowed from a browser (routes[].cors.allow_methods)",
            ));
        }
        let asked_headers = headers
            .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|name| name.trim().to_ascii_lowercase())
            .filter(|name| !name.is_empty());
        let allowed = |name: &String| self.config.allow_headers.iter().any(|a| a == name);
        if !asked_headers.into_iter().all(|name| allowed(&name)) {
            return Err(Refusal::CorsNotAllowed("a requested header is not allowed (routes[].cors.allow_headers)"));
        }
        let mut response = Response::new(Full::default());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let out = response.headers_mut();
        self.allow(origin, out);
        if self.config.allow_origins.is_some() {
            out.append(VARY, HeaderValue::from_static("origin"));
        }
        out.insert(ACCESS_CONTROL_ALLOW_METHODS, self.allow_methods.clone());
        out.insert(ACCESS_CONTROL_ALLOW_HEADERS, self.allow_headers.clone());
        if let Some(age) = &self.max_age {
            out.insert(ACCESS_CONTROL_MAX_AGE, age.clone());
        }
        Ok(response)
    }

    /// Makes an actual (not preflight) answer's CORS headers the route's
    /// own: whatever `Access-Control-*` the backend set is removed (a
    /// backend that reflects any origin would defeat `allow_origins`), then
    /// the route's are added when `origin` (the request's) is allowed.
    pub fn decorate(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        let backend_cors: Vec<http::HeaderName> =
            headers.keys().filter(|name| name.as_str().starts_with("access-control-")).cloned().collect();
        for name in backend_cors {
            headers.remove(name);
        }
        if self.config.allow_origins.is_some() {
            // The answer depends on the origin, allowed or not: shared
            // caches must keep them apart.
            headers.append(VARY, HeaderValue::from_static("origin"));
        }
        let Some(origin) = origin.filter(|origin| self.allows_origin(origin)) else { return };
        self.allow(origin, headers);
        let expose = if headers.contains_key(WWW_AUTHENTICATE) {
            Some(&self.expose_challenge)
        } else {
            self.expose_headers.as_ref()
        };
        if let Some(expose) = expose {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
    }

    fn allow(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        match &self.config.allow_origins {
            None if !self.config.allow_credentials => {
                headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            }
            _ => {
                headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            }
        }
        if self.config.allow_credentials {
            headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: Option<Vec<&str>>) -> Cors {
        Cors::new(&CorsConfig {
            allow_origins: origins.map(|list| list.into_iter().map(str::to_owned).collect()),
            allow_methods: vec![Method::GET, Method::POST],
            allow_headers: vec!["authorization".into(), "content-type".into()],
            expose_headers: vec!["www-authenticate".into()],
            max_age: Some(std::time::Duration::from_secs(600)),
            allow_credentials: false,
        })
    }

    fn preflight(origin: &'static str, method: &'static str, headers: &'static str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(ORIGIN, HeaderValue::from_static(origin));
        map.insert(ACCESS_CONTROL_REQUEST_METHOD, HeaderValue::from_static(method));
        map.insert(ACCESS_CONTROL_REQUEST_HEADERS, HeaderValue::from_static(headers));
        map
    }

    #[test]
    fn preflights_are_answered_for_allowed_origins_methods_and_headers() {
        let cors = cors(Some(vec!["https://app.example"]));
        let answer = cors.preflight(&preflight("https://app.example", "POST", "Authorization, content-type")).unwrap();
        assert_eq!(answer.status(), 204);
        assert_eq!(answer.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example");
        assert_eq!(answer.headers()[ACCESS_CONTROL_ALLOW_METHODS], "GET, POST");
        assert_eq!(answer.headers()[ACCESS_CONTROL_MAX_AGE], "600");
        assert!(cors.preflight(&preflight("https://evil.example", "POST", "")).is_err());
        assert!(cors.preflight(&preflight("https://app.example", "DELETE", "")).is_err());
        assert!(cors.preflight(&preflight("https://app.example", "GET", "x-other")).is_err());
        let mut headers = HeaderMap::new();
        headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        cors.decorate(Some(&HeaderValue::from_static("https://app.example")), &mut headers);
        assert_eq!(headers[ACCESS_CONTROL_EXPOSE_HEADERS], "www-authenticate");
        assert!(!headers.contains_key(ACCESS_CONTROL_ALLOW_CREDENTIALS), "the backend's own is gone");
        let mut headers = HeaderMap::new();
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("https://evil.example"));
        cors.decorate(Some(&HeaderValue::from_static("https://evil.example")), &mut headers);
        assert_eq!(headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["vary"]);
        let lower = preflight("https://app.example", "post", "");
        assert_eq!(cors.preflight(&lower).unwrap().status(), 204, "browsers send methods as written");
        let any = cors_any();
        let answer = any.preflight(&preflight("https://x.example", "GET", "")).unwrap();
        assert_eq!(answer.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }

    /// A challenge is readable by an allowed origin whatever expose_headers
    /// lists; other answers expose only what it lists.
    #[test]
    fn a_challenge_is_always_exposed_to_an_allowed_origin() {
        let origin = HeaderValue::from_static("https://app.example");
        for (listed, challenged, plain) in [
            (vec![], Some("www-authenticate"), None),
            (vec!["x-total"], Some("x-total, www-authenticate"), Some("x-total")),
            (vec!["WWW-Authenticate"], Some("WWW-Authenticate"), Some("WWW-Authenticate")),
        ] {
            let cors = Cors::new(&CorsConfig {
                allow_origins: Some(vec!["https://app.example".into()]),
                allow_methods: vec![Method::GET],
                allow_headers: vec![],
                expose_headers: listed.iter().map(|s| s.to_string()).collect(),
                max_age: None,
                allow_credentials: false,
            });
            let mut refusal = HeaderMap::new();
            refusal.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"api\""));
            cors.decorate(Some(&origin), &mut refusal);
            let exposed = |h: &HeaderMap| h.get(ACCESS_CONTROL_EXPOSE_HEADERS).map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(exposed(&refusal).as_deref(), challenged, "{listed:?}");
            let mut ok = HeaderMap::new();
            cors.decorate(Some(&origin), &mut ok);
            assert_eq!(exposed(&ok).as_deref(), plain, "{listed:?}");
            let mut elsewhere = refusal.clone();
            elsewhere.remove(ACCESS_CONTROL_EXPOSE_HEADERS);
            elsewhere.remove(ACCESS_CONTROL_ALLOW_ORIGIN);
            cors.decorate(Some(&HeaderValue::from_static("https://evil.example")), &mut elsewhere);
            assert_eq!(exposed(&elsewhere), None);
        }
    }

    fn cors_any() -> Cors {
        cors(None)
    }
}
