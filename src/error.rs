//! Every refusal the gateway can give, and the one place that turns it into
//! an HTTP response: status, `WWW-Authenticate` (RFC 6750 §3) and the JSON
//! body `{"error", "error_description"}`.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::auth::dpop::DpopFailure;
use crate::auth::{AuthFailure, CredentialError};
use crate::metrics::Reason;

/// Seconds a client is told to wait while an issuer's keys are loading.
const KEYS_RETRY_AFTER: &str = "5";
/// Seconds a client is told to wait when the introspection endpoint failed
/// (its failure is remembered for a second per token: `docs/introspection.md`).
const INTROSPECTION_RETRY_AFTER: &str = "1";

/// Which of a route's demands a valid token did not meet (403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeFailure {
    Issuer,
    Scopes,
    AnyScopes,
    Claims,
    /// The route's `spiffe_ids` allow no SPIFFE ID the token carries.
    SpiffeId,
    /// A CEL rule (`allow_if`, `deny_if`) refused: the description names it.
    Rule(&'static str),
}

impl ScopeFailure {
    pub fn description(self) -> &'static str {
        match self {
            Self::Issuer => "token issuer is not accepted on this route",
            Self::Scopes => "token lacks a scope this route requires",
            Self::AnyScopes => "token has none of the scopes this route accepts",
            Self::Claims => "token claims do not meet this route's requirements",
            Self::SpiffeId => "token SPIFFE ID is not allowed on this route",
            Self::Rule(description) => description,
        }
    }

    pub fn reason(self) -> Reason {
        match self {
            Self::Issuer => Reason::IssuerNotAllowed,
            Self::Scopes | Self::AnyScopes => Reason::InsufficientScope,
            Self::Claims => Reason::ClaimsMismatch,
            Self::SpiffeId => Reason::SpiffeIdNotAllowed,
            Self::Rule(_) => Reason::RuleDenied,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials on a route that needs them.
    MissingToken,
    /// The request itself is malformed (RFC 6750 `invalid_request`).
    InvalidRequest(&'static str),
    InvalidToken(AuthFailure),
    /// RFC 9449: the token's DPoP binding does not hold; with a nonce to
    /// use when the failure is `use_dpop_nonce`.
    Dpop {
        failure: DpopFailure,
        nonce: Option<HeaderValue>,
    },
    /// A valid token without what the route demands; `scope` is what it asks for.
    InsufficientScope {
        failure: ScopeFailure,
        scope: String,
    },
    BadPath(&'static str),
    /// A body the gateway must read before deciding is larger than it reads.
    TooLarge(&'static str),
    /// A CORS preflight the route's `[routes.cors]` does not allow.
    CorsNotAllowed(&'static str),
    KeysUnavailable,
    /// The introspection endpoint is down, slow or answered unusably.
    IntrospectionUnavailable,
    /// The upstream is at `max_connections` and none came free in time.
    UpstreamBusy,
    /// A `[[rate_limits]]` bucket of this request is empty (429).
    RateLimited(Box<Throttled>),
    /// `[rate_limit_store]` did not answer in time and `on_store_error = "deny"`.
    RateLimitStoreUnavailable,
    BadGateway(&'static str),
    GatewayTimeout(&'static str),
}

impl From<CredentialError> for Refusal {
    fn from(error: CredentialError) -> Self {
        match error {
            CredentialError::Malformed(why) => Refusal::InvalidRequest(why),
            CredentialError::TooLarge => Refusal::InvalidToken(AuthFailure::TooLarge),
        }
    }
}

impl From<AuthFailure> for Refusal {
    fn from(failure: AuthFailure) -> Self {
        match failure {
            AuthFailure::KeysUnavailable => Refusal::KeysUnavailable,
            AuthFailure::IntrospectionUnavailable => Refusal::IntrospectionUnavailable,
            other => Refusal::InvalidToken(other),
        }
    }
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingToken | Self::InvalidToken(_) | Self::Dpop { .. } => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope { .. } | Self::CorsNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::InvalidRequest(_) | Self::BadPath(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::KeysUnavailable
            | Self::IntrospectionUnavailable
            | Self::UpstreamBusy
            | Self::RateLimitStoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The body's `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::InvalidRequest(_) | Self::BadPath(_) | Self::TooLarge(_) => "invalid_request",
            Self::InvalidToken(_) => "invalid_token",
            Self::Dpop { failure, .. } => failure.error(),
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::CorsNotAllowed(_) => "cors_not_allowed",
            Self::KeysUnavailable
            | Self::IntrospectionUnavailable
            | Self::UpstreamBusy
            | Self::RateLimitStoreUnavailable => "temporarily_unavailable",
            Self::RateLimited(_) => "rate_limited",
            Self::BadGateway(_) => "bad_gateway",
            Self::GatewayTimeout(_) => "gateway_timeout",
        }
    }

    pub fn description(&self) -> &'static str {
        match self {
            Self::MissingToken => "this route needs a bearer token in the Authorization header",
            Self::InvalidRequest(why) | Self::BadPath(why) | Self::TooLarge(why) | Self::CorsNotAllowed(why) => why,
            Self::InvalidToken(failure) => failure.description(),
            Self::Dpop { failure, .. } => failure.description(),
            Self::InsufficientScope { failure, .. } => failure.description(),
            Self::KeysUnavailable => AuthFailure::KeysUnavailable.description(),
            Self::IntrospectionUnavailable => AuthFailure::IntrospectionUnavailable.description(),
            Self::UpstreamBusy => "the upstream is at its connection limit (max_connections); retry shortly",
            Self::RateLimited(_) => {
                "too many requests: a rate limit of this route is spent; retry after Retry-After seconds"
            }
            Self::RateLimitStoreUnavailable => {
                "the rate limit store (Redis) does not answer and on_store_error is deny; retry shortly"
            }
            Self::BadGateway(why) | Self::GatewayTimeout(why) => why,
        }
    }

    /// The `reason` of `jwtgate_auth_failures_total`, for a refusal of
    /// the client's credentials; `None` for the others.
    pub fn auth_reason(&self) -> Option<Reason> {
        match self {
            Self::MissingToken => Some(Reason::MissingToken),
            Self::InvalidRequest(_) => Some(Reason::InvalidRequest),
            Self::InvalidToken(failure) => Some(failure.reason()),
            Self::Dpop { failure, .. } => Some(failure.reason()),
            Self::InsufficientScope { failure, .. } => Some(failure.reason()),
            Self::KeysUnavailable => Some(Reason::KeysUnavailable),
            Self::IntrospectionUnavailable => Some(Reason::IntrospectionUnavailable),
            _ => None,
        }
    }

    /// A label for logs: the auth failure reason where there is one.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadPath(_) => "bad_path",
            Self::UpstreamBusy => "upstream_busy",
            Self::RateLimitStoreUnavailable => "rate_limit_store_unavailable",
            other => other.auth_reason().map_or_else(|| other.code(), Reason::label),
        }
    }

    /// Whether the refusal is the upstream's doing rather than the client's.
    pub fn is_upstream_error(&self) -> bool {
        matches!(self, Self::BadGateway(_) | Self::GatewayTimeout(_) | Self::UpstreamBusy)
    }

    fn www_authenticate(&self, challenge: &Challenge) -> Option<String> {
        let realm = &challenge.realm;
        // RFC 9728 §5.1: every 401 tells the client where the resource's metadata is.
        let metadata = match (&challenge.resource_metadata, self.status()) {
            (Some(url), StatusCode::UNAUTHORIZED) => format!(", resource_metadata=\"{url}\""),
            _ => String::new(),
        };
        let error = match self {
            // RFC 6750 §3.1: no error code when the request had no credentials.
            Self::MissingToken => return Some(format!("Bearer realm=\"{realm}\"{metadata}")),
            // RFC 9449 §7.1: the DPoP scheme's challenge, naming the algorithms proofs may use.
            Self::Dpop { failure, .. } => {
                return Some(format!(
                    "DPoP realm=\"{realm}\"{metadata}, algs=\"{}\", error=\"{}\", error_description=\"{}\"",
                    crate::auth::dpop::algorithms_text(),
                    failure.error(),
                    failure.description()
                ));
            }
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidToken(_) => "invalid_token",
            Self::InsufficientScope { .. } => "insufficient_scope",
            _ => return None,
        };
        // Descriptions are our own constants and scopes are checked at load:
        // printable ASCII without quotes or backslashes.
        let mut value = format!(
            "Bearer realm=\"{realm}\"{metadata}, error=\"{error}\", error_description=\"{}\"",
            self.description()
        );
        if let Self::InsufficientScope { scope, .. } = self
            && !scope.is_empty()
        {
            value.push_str(&format!(", scope=\"{scope}\""));
        }
        Some(value)
    }

    pub fn to_response(&self, challenge: &Challenge) -> Response<Full<Bytes>> {
        let body = serde_json::json!({"error": self.code(), "error_description": self.description()});
        let mut response = json_response(self.status(), &body);
        let headers = response.headers_mut();
        if let Some(value) = self.www_authenticate(challenge).and_then(|v| HeaderValue::try_from(v).ok()) {
            headers.insert(WWW_AUTHENTICATE, value);
        }
        match self {
            Self::KeysUnavailable => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static(KEYS_RETRY_AFTER));
            }
            Self::IntrospectionUnavailable => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static(INTROSPECTION_RETRY_AFTER));
            }
            Self::UpstreamBusy | Self::RateLimitStoreUnavailable => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::RateLimited(throttled) => {
                headers.insert(RETRY_AFTER, HeaderValue::from(throttled.retry_after));
                headers.insert(RATELIMIT_POLICY.clone(), throttled.policy.clone());
                headers.insert(RATELIMIT.clone(), throttled.state.clone());
            }
            Self::Dpop { nonce: Some(nonce), .. } => {
                headers.insert(DPOP_NONCE.clone(), nonce.clone());
            }
            _ => {}
        }
        response
    }

    /// The gRPC code for this refusal (grpc/doc/statuscodes.md).
    pub fn grpc_status(&self) -> u8 {
        match self {
            Self::MissingToken | Self::InvalidRequest(_) | Self::InvalidToken(_) | Self::Dpop { .. } => 16, // UNAUTHENTICATED
            Self::InsufficientScope { .. } | Self::CorsNotAllowed(_) => 7, // PERMISSION_DENIED
            Self::BadPath(_) => 3,                                         // INVALID_ARGUMENT
            Self::KeysUnavailable | Self::IntrospectionUnavailable => 14,  // UNAVAILABLE
            Self::UpstreamBusy | Self::BadGateway(_) => 14,                // UNAVAILABLE
            Self::GatewayTimeout(_) => 4,                                  // DEADLINE_EXCEEDED
            Self::TooLarge(_) | Self::RateLimited(_) => 8,                 // RESOURCE_EXHAUSTED
            Self::RateLimitStoreUnavailable => 14,                         // UNAVAILABLE
        }
    }

    /// The refusal as a gRPC client understands it: HTTP 200 with
    /// `grpc-status` and `grpc-message` in a trailers-only answer (headers,
    /// no body). `WWW-Authenticate` stays for anyone who reads it.
    pub fn to_grpc_response(&self, challenge: &Challenge) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::default());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(GRPC_STATUS.clone(), HeaderValue::from(u16::from(self.grpc_status())));
        if let Ok(message) = HeaderValue::try_from(grpc_percent_encode(self.description())) {
            headers.insert(GRPC_MESSAGE.clone(), message);
        }
        if let Some(value) = self.www_authenticate(challenge).and_then(|v| HeaderValue::try_from(v).ok()) {
            headers.insert(WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// What a 429 says besides its body: when to come back, and the
/// `RateLimit-Policy` and `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers-11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttled {
    /// Whole seconds, rounded up.
    pub retry_after: u64,
    pub policy: HeaderValue,
    pub state: HeaderValue,
}

pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// What every `WWW-Authenticate` names: the realm, and (RFC 9728) where
/// the resource's metadata is. Checked at load to fit in a quoted-string.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub realm: String,
    pub resource_metadata: Option<String>,
}

static DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");
static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// Whether a request speaks gRPC (`content-type: application/grpc`, `+proto`, `+json`…).
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= 16
            && v[..16].eq_ignore_ascii_case(b"application/grpc")
            && matches!(v.get(16), None | Some(b'+' | b';'))
    })
}

/// gRPC's percent-encoding of `grpc-message`: bytes outside printable
/// ASCII, and `%`, as `%XX`.
fn grpc_percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A JSON answer: the one shape of every body jwtgate writes itself
/// (refusals, admin endpoints, the demo's issuer and backend).
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    json_bytes_response(status, Bytes::from(value.to_string()))
}

/// [`json_response`] for a body serialised once, ahead of time.
pub fn json_bytes_response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn www(r: &Refusal) -> Option<String> {
        r.to_response(&plain()).headers().get(WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned())
    }

    fn plain() -> Challenge {
        Challenge { realm: "jwtgate".into(), resource_metadata: None }
    }

    #[test]
    fn every_401_names_the_resource_metadata() {
        let challenge = Challenge {
            realm: "api".into(),
            resource_metadata: Some("https://api.example.com/.well-known/oauth-protected-resource".into()),
        };
        let www = |r: Refusal| {
            r.to_response(&challenge).headers().get(WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(
            www(Refusal::MissingToken).unwrap(),
            "Bearer realm=\"api\", resource_metadata=\"https://api.example.com/.well-known/oauth-protected-resource\""
        );
        assert!(www(Refusal::InvalidToken(AuthFailure::Expired)).unwrap().contains("resource_metadata="));
        let forbidden = Refusal::InsufficientScope { failure: ScopeFailure::Scopes, scope: "a".into() };
        assert!(!www(forbidden).unwrap().contains("resource_metadata="));
    }

    #[test]
    fn follows_rfc_6750() {
        assert_eq!(www(&Refusal::MissingToken).as_deref(), Some("Bearer realm=\"jwtgate\""));
        assert_eq!(
            www(&Refusal::InvalidToken(AuthFailure::Expired)).as_deref(),
            Some("Bearer realm=\"jwtgate\", error=\"invalid_token\", error_description=\"token expired\"")
        );
        assert!(www(&Refusal::InvalidRequest("x")).unwrap().contains("error=\"invalid_request\""));
        assert_eq!(www(&Refusal::BadGateway("x")), None);
        let r = Refusal::KeysUnavailable.to_response(&plain());
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[RETRY_AFTER], "5");
    }

    /// RFC 7662 endpoint down: 503 with Retry-After and the contract's
    /// code, never a 401 that would make a client drop a good token.
    #[test]
    fn introspection_unavailable_is_503_with_retry_after() {
        let r = Refusal::from(AuthFailure::IntrospectionUnavailable).to_response(&plain());
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[RETRY_AFTER], "1");
        assert!(r.headers().get(WWW_AUTHENTICATE).is_none());
        let inactive = Refusal::from(AuthFailure::Inactive);
        assert_eq!((inactive.status(), inactive.code()), (StatusCode::UNAUTHORIZED, "invalid_token"));
        assert_eq!(inactive.description(), "token is not active");
    }

    #[test]
    fn grpc_requests_get_grpc_statuses() {
        let header = |value: &'static str| {
            let mut h = http::HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(value));
            is_grpc(&h)
        };
        assert!(header("application/grpc") && header("application/grpc+proto") && header("Application/GRPC;x=1"));
        assert!(!header("application/grpc-web-text") && !header("application/json") && !header("application/grp"));
        let r = Refusal::InsufficientScope { failure: ScopeFailure::Scopes, scope: "admin".into() }
            .to_grpc_response(&plain());
        assert_eq!(
            (r.status(), &r.headers()["grpc-status"], &r.headers()[CONTENT_TYPE]),
            (StatusCode::OK, &HeaderValue::from(7u16), &HeaderValue::from_static("application/grpc"))
        );
        assert_eq!(Refusal::MissingToken.to_grpc_response(&plain()).headers()["grpc-status"], "16");
        assert_eq!(grpc_percent_encode("100% ok\n"), "100%25 ok%0A");
    }

    #[test]
    fn descriptions_fit_in_a_quoted_string() {
        for failure in
            [AuthFailure::TooLarge, AuthFailure::NotJwt, AuthFailure::BadTimeClaim, AuthFailure::KeysUnavailable]
                .into_iter()
                .chain([AuthFailure::Inactive, AuthFailure::IntrospectionUnavailable])
        {
            assert!(failure.description().chars().all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\'));
        }
    }
}
