//! A development issuer for the demo and for trying jwtgate locally: a
//! fresh RSA-2048 key, OIDC discovery, a JWKS, and `POST /oauth/token` for
//! the client-credentials grant (RFC 6749 §4.4), answering like Auth0.
//! It signs tokens for anyone who knows the demo secret, so it only ever
//! binds loopback addresses.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::error::json_response;

/// Token requests larger than this are refused.
const MAX_TOKEN_REQUEST_BYTES: usize = 16 * 1024;

/// Who may ask for tokens, and what they get.
#[derive(Debug, Clone)]
pub struct DevIssuerSettings {
    pub client_id: String,
    pub client_secret: String,
    pub audience: String,
    pub scopes: Vec<String>,
    pub token_lifetime: Duration,
}

impl Default for DevIssuerSettings {
    fn default() -> Self {
        DevIssuerSettings {
            client_id: "demo-client".into(),
            client_secret: "demo-secret".into(),
            audience: "https://api.jwtgate.demo".into(),
            scopes: vec!["read:messages".into(), "write:messages".into()],
            token_lifetime: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DevIssuerError {
    #[error(
        "the development issuer signs tokens for anyone with the demo secret, so it only binds loopback addresses (got {0})"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate the signing key")]
    KeyGeneration,
}

pub struct DevIssuer {
    key: RsaKeyPair,
    kid: String,
    /// `http://127.0.0.1:PORT/`
    issuer: String,
    settings: DevIssuerSettings,
    tokens_issued: AtomicUsize,
}

impl DevIssuer {
    /// Binds `addr` (loopback only) and creates the issuer named after it.
    pub async fn bind(
        addr: SocketAddr,
        settings: DevIssuerSettings,
    ) -> Result<(DevIssuer, TcpListener), DevIssuerError> {
        if !addr.ip().is_loopback() {
            return Err(DevIssuerError::NotLoopback(addr));
        }
        let listener = TcpListener::bind(addr).await.map_err(|source| DevIssuerError::Bind { addr, source })?;
        let local = listener.local_addr().map_err(|source| DevIssuerError::Bind { addr, source })?;
        let key = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| DevIssuerError::KeyGeneration)?;
        let kid = format!("dev-{:x}", fingerprint(key.public_key().as_ref()));
        let issuer =
            DevIssuer { key, kid, issuer: format!("http://{local}/"), settings, tokens_issued: AtomicUsize::new(0) };
        Ok((issuer, listener))
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn settings(&self) -> &DevIssuerSettings {
        &self.settings
    }

    pub fn token_url(&self) -> String {
        format!("{}oauth/token", self.issuer)
    }

    /// How many tokens `POST /oauth/token` has handed out.
    pub fn tokens_issued(&self) -> usize {
        self.tokens_issued.load(Ordering::Relaxed)
    }

    pub fn jwks(&self) -> Value {
        let c = RsaPublicKeyComponents::<Vec<u8>>::from(self.key.public_key());
        json!({"keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&c.n), "e": URL_SAFE_NO_PAD.encode(&c.e),
        }]})
    }

    /// An RS256 access token for `subject` with `scope`, valid for the configured lifetime.
    pub fn mint(&self, subject: &str, scope: &str) -> Option<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let claims = json!({
            "iss": self.issuer, "sub": subject, "aud": self.settings.audience,
            "iat": now, "exp": now + self.settings.token_lifetime.as_secs(),
            "scope": scope, "azp": self.settings.client_id, "gty": "client-credentials",
        });
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut signature).ok()?;
        Some(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    pub async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        match (request.method(), request.uri().path()) {
            (&Method::GET, "/.well-known/openid-configuration") => json_response(
                StatusCode::OK,
                &json!({
                    "issuer": self.issuer,
                    "jwks_uri": format!("{}.well-known/jwks.json", self.issuer),
                    "token_endpoint": self.token_url(),
                    "grant_types_supported": ["client_credentials"],
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "scopes_supported": self.settings.scopes,
                }),
            ),
            (&Method::GET, "/.well-known/jwks.json") => json_response(StatusCode::OK, &self.jwks()),
            (&Method::POST, "/oauth/token") => self.token(request).await,
            (_, "/oauth/token") => oauth_error(StatusCode::METHOD_NOT_ALLOWED, "invalid_request", "use POST"),
            _ => oauth_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
        }
    }

    /// `POST /oauth/token`: the client-credentials grant, JSON or form encoded.
    async fn token(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let is_json = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let Ok(body) = Limited::new(body, MAX_TOKEN_REQUEST_BYTES).collect().await.map(|b| b.to_bytes()) else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "the request body is too large or broken");
        };
        let Some(params) = parse_params(&body, is_json) else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body is neither a JSON object nor a form",
            );
        };
        let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        if param("grant_type") != Some("client_credentials") {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only grant_type=client_credentials is supported",
            );
        }
        let basic = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(basic_credentials);
        let (client_id, secret) = match &basic {
            Some((id, secret)) => (Some(id.as_str()), Some(secret.as_str())),
            None => (param("client_id"), param("client_secret")),
        };
        if client_id != Some(self.settings.client_id.as_str()) || secret != Some(self.settings.client_secret.as_str()) {
            let mut response =
                oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "unknown client or wrong client secret");
            if basic.is_some() {
                // RFC 6749 §5.2: answer Basic authentication with its challenge.
                response
                    .headers_mut()
                    .insert(WWW_AUTHENTICATE, http::HeaderValue::from_static("Basic realm=\"jwtgate-demo\""));
            }
            return response;
        }
        let audience = param("audience").unwrap_or(&self.settings.audience);
        if audience != self.settings.audience {
            let description = format!("unknown audience {audience:?}; this issuer serves {:?}", self.settings.audience);
            return oauth_error(StatusCode::FORBIDDEN, "access_denied", &description);
        }
        let scope = match param("scope").filter(|s| !s.trim().is_empty()) {
            None => self.settings.scopes.join(" "),
            Some(requested) => {
                if let Some(unknown) =
                    requested.split_whitespace().find(|s| !self.settings.scopes.iter().any(|x| x == s))
                {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        &format!("unknown scope {unknown:?}"),
                    );
                }
                requested.split_whitespace().collect::<Vec<_>>().join(" ")
            }
        };
        let subject = format!("{}@clients", self.settings.client_id);
        let Some(token) = self.mint(&subject, &scope) else {
            return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "signing failed");
        };
        self.tokens_issued.fetch_add(1, Ordering::Relaxed);
        let mut response = json_response(
            StatusCode::OK,
            &json!({
                "access_token": token,
                "expires_in": self.settings.token_lifetime.as_secs(),
                "token_type": "Bearer",
                "scope": scope,
            }),
        );
        // RFC 6749 §5.1: tokens must not be cached by intermediaries.
        response.headers_mut().insert(CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
        response
    }
}

/// The request's parameters as (name, value) pairs; strings only from JSON.
fn parse_params(body: &[u8], is_json: bool) -> Option<Vec<(String, String)>> {
    if is_json {
        let object: serde_json::Map<String, Value> = serde_json::from_slice(body).ok()?;
        return Some(object.into_iter().filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_owned()))).collect());
    }
    Some(url::form_urlencoded::parse(body).into_owned().collect())
}

/// `Basic base64(urlencode(id):urlencode(secret))`, RFC 6749 §2.3.1.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape =
        |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
    Some((unescape(id)?, unescape(secret)?))
}

fn fingerprint(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c9dc5u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x01000193))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response<Full<Bytes>> {
    json_response(status, &json!({"error": error, "error_description": description}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_url_decoded() {
        let header = format!("Basic {}", STANDARD.encode("my%20client:s%3Acret"));
        assert_eq!(basic_credentials(&header), Some(("my client".into(), "s:cret".into())));
        assert_eq!(basic_credentials("Bearer x"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }

    #[test]
    fn params_from_json_or_form() {
        let form = parse_params(b"grant_type=client_credentials&scope=a+b", false).unwrap();
        assert!(form.contains(&("scope".into(), "a b".into())));
        let json = parse_params(br#"{"grant_type":"client_credentials","n":1}"#, true).unwrap();
        assert_eq!(json, vec![("grant_type".to_string(), "client_credentials".to_string())]);
        assert!(parse_params(b"[1]", true).is_none());
    }

    #[tokio::test]
    async fn refuses_non_loopback_addresses() {
        let error = DevIssuer::bind("0.0.0.0:0".parse().unwrap(), DevIssuerSettings::default()).await.err().unwrap();
        assert!(error.to_string().contains("only binds loopback addresses (got 0.0.0.0:0)"));
    }
}
