//! An issuer's RFC 7662 token introspection, as validation leaves it
//! (`docs/introspection.md` says what each choice means).

use std::fmt;
use std::time::Duration;

/// `introspection = { url, client_id, client_secret, auth, timeout }` with
/// `introspect` and `cache_ttl` beside it in the issuer's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionConfig {
    /// https, or http to a loopback host.
    pub url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub auth: IntrospectionAuth,
    /// For the endpoint's whole answer; past it the request gets 503.
    pub timeout: Duration,
    pub mode: IntrospectMode,
    /// An active answer is reused this long at most, and never past its
    /// `exp`; zero: every request asks.
    pub cache_ttl: Duration,
}

/// How jwtgate authenticates to the introspection endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntrospectionAuth {
    /// `client_secret_basic`: HTTP Basic, id and secret form-encoded first.
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    Post,
}

/// Which tokens are introspected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntrospectMode {
    /// Tokens that are not JWTs; JWTs of the issuer are verified locally only.
    Opaque,
    /// Opaque tokens, and the issuer's JWTs too once their signature and
    /// claims hold: a revoked JWT is refused as soon as the endpoint says so.
    Always,
}

/// A secret from the configuration: never printed, not even by `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}
