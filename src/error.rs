//! Every refusal the gateway can give, and the one place that turns it into
//! an HTTP response: status, `WWW-Authenticate` (RFC 6750 §3) and the JSON
//! body `{"error", "error_description"}`.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::auth::AuthFailure;

/// Seconds a client is told to wait while an issuer's keys are loading.
const KEYS_RETRY_AFTER: &str = "5";

/// Which of a route's demands a valid token did not meet (403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeFailure {
    Issuer,
    Scopes,
    AnyScopes,
    Claims,
}

impl ScopeFailure {
    pub fn description(self) -> &'static str {
        match self {
            Self::Issuer => "token issuer is not accepted on this route",
            Self::Scopes => "token lacks a scope this route requires",
            Self::AnyScopes => "token has none of the scopes this route accepts",
            Self::Claims => "token claims do not meet this route's requirements",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Self::Issuer => "issuer_not_allowed",
            Self::Scopes | Self::AnyScopes => "insufficient_scope",
            Self::Claims => "claims_mismatch",
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
    /// A valid token without what the route demands; `scope` is what it asks for.
    InsufficientScope {
        failure: ScopeFailure,
        scope: String,
    },
    BadPath(&'static str),
    KeysUnavailable,
    BadGateway(&'static str),
    GatewayTimeout(&'static str),
}

impl From<AuthFailure> for Refusal {
    fn from(failure: AuthFailure) -> Self {
        match failure {
            AuthFailure::KeysUnavailable => Refusal::KeysUnavailable,
            other => Refusal::InvalidToken(other),
        }
    }
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingToken | Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            Self::InvalidRequest(_) | Self::BadPath(_) => StatusCode::BAD_REQUEST,
            Self::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The body's `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::InvalidRequest(_) | Self::BadPath(_) => "invalid_request",
            Self::InvalidToken(_) => "invalid_token",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::KeysUnavailable => "temporarily_unavailable",
            Self::BadGateway(_) => "bad_gateway",
            Self::GatewayTimeout(_) => "gateway_timeout",
        }
    }

    pub fn description(&self) -> &'static str {
        match self {
            Self::MissingToken => "this route needs a bearer token in the Authorization header",
            Self::InvalidRequest(why) | Self::BadPath(why) => why,
            Self::InvalidToken(failure) => failure.description(),
            Self::InsufficientScope { failure, .. } => failure.description(),
            Self::KeysUnavailable => AuthFailure::KeysUnavailable.description(),
            Self::BadGateway(why) | Self::GatewayTimeout(why) => why,
        }
    }

    /// A label for logs and metrics: the auth failure reason where there is one.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidToken(failure) => failure.reason(),
            Self::InsufficientScope { failure, .. } => failure.reason(),
            Self::KeysUnavailable => AuthFailure::KeysUnavailable.reason(),
            Self::BadPath(_) => "bad_path",
            other => other.code(),
        }
    }

    /// Whether the refusal is the upstream's doing rather than the client's.
    pub fn is_upstream_error(&self) -> bool {
        matches!(self, Self::BadGateway(_) | Self::GatewayTimeout(_))
    }

    fn www_authenticate(&self, realm: &str) -> Option<String> {
        let error = match self {
            // RFC 6750 §3.1: no error code when the request had no credentials.
            Self::MissingToken => return Some(format!("Bearer realm=\"{realm}\"")),
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidToken(_) => "invalid_token",
            Self::InsufficientScope { .. } => "insufficient_scope",
            _ => return None,
        };
        // Descriptions are our own constants and scopes are checked at load:
        // printable ASCII without quotes or backslashes.
        let mut value =
            format!("Bearer realm=\"{realm}\", error=\"{error}\", error_description=\"{}\"", self.description());
        if let Self::InsufficientScope { scope, .. } = self
            && !scope.is_empty()
        {
            value.push_str(&format!(", scope=\"{scope}\""));
        }
        Some(value)
    }

    pub fn to_response(&self, realm: &str) -> Response<Full<Bytes>> {
        let body = serde_json::json!({"error": self.code(), "error_description": self.description()});
        let mut response = json_response(self.status(), &body);
        let headers = response.headers_mut();
        if let Some(value) = self.www_authenticate(realm).and_then(|v| HeaderValue::try_from(v).ok()) {
            headers.insert(WWW_AUTHENTICATE, value);
        }
        if *self == Self::KeysUnavailable {
            headers.insert(RETRY_AFTER, HeaderValue::from_static(KEYS_RETRY_AFTER));
        }
        response
    }
}

/// A JSON answer: the one shape of every body jwtgate writes itself
/// (refusals, admin endpoints, the demo's issuer and backend).
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn www(r: &Refusal) -> Option<String> {
        r.to_response("jwtgate").headers().get(WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned())
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
        let r = Refusal::KeysUnavailable.to_response("jwtgate");
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[RETRY_AFTER], "5");
    }

    #[test]
    fn descriptions_fit_in_a_quoted_string() {
        for failure in
            [AuthFailure::TooLarge, AuthFailure::NotJwt, AuthFailure::BadTimeClaim, AuthFailure::KeysUnavailable]
        {
            assert!(failure.description().chars().all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\'));
        }
    }
}
