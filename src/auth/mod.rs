//! Authentication: from a bearer token to a [`Verified`] identity, or the
//! exact reason it was refused.
//!
//! Order of work, cheapest first: size and syntax ([`bearer`]), structure
//! and header ([`token`]), issuer by `iss`, allowed algorithm, key lookup in
//! the issuer's snapshot (one rate-limited refetch for an unknown `kid`),
//! signature (aws-lc-rs, keys parsed once per snapshot), then `exp`/`nbf`/`aud`
//! ([`claims`]). A verified token keeps only the claims the configuration
//! reads ([`ClaimPlan`]); one verified before is answered from the [`cache`]
//! while it is unexpired and its key is still published.

pub mod bearer;
pub mod binding;
pub mod cache;
pub mod claims;
pub mod dpop;
pub mod identity;
pub mod introspect;
pub mod locations;
mod projection;
mod strict_json;

pub use strict_json::DEFAULT_MAX_DEPTH as DEFAULT_MAX_JSON_DEPTH;
pub mod token;
mod verify;

pub use projection::{ClaimPlan, HeaderClaim, HeaderSlot, ScopeSlot, StampSlot, Stamped, ValueSlot};
pub use verify::{Authenticator, Rejected, Trace, Verified};

use crate::metrics::Reason;

/// Why the credentials could not be read at all, before any token check:
/// `error.rs` turns it into the HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    /// Not a well-formed request (RFC 6750 `invalid_request`): what is wrong.
    Malformed(&'static str),
    /// Larger than `limits.max_token_bytes`.
    TooLarge,
}

/// Why a token was not accepted. Each names one failed check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    TooLarge,
    NotJwt,
    BadHeader,
    BadPayload,
    UnsupportedCritical,
    AlgorithmNotAllowed,
    MissingIssuer,
    UnknownIssuer,
    /// The issuer is known but none of its keys have loaded yet (503, not 401).
    KeysUnavailable,
    /// A new tenant of an issuer with keys per tenant, which holds
    /// `max_tenants` key sets already.
    TenantLimit,
    UnknownKey,
    KeyMismatch,
    BadSignature,
    MissingExp,
    BadTimeClaim,
    Expired,
    NotYetValid,
    MissingAudience,
    WrongAudience,
    /// RFC 9068: the header's `typ` is not the one the issuer requires.
    WrongType,
    /// `exp - iat` is longer than the issuer's `max_lifetime`.
    LifetimeTooLong,
    /// A claim in `required_claims` (or `iat`, with `max_lifetime`) is absent.
    MissingRequiredClaim,
    /// Sent in a cookie or query parameter its issuer's `token_from` does not list.
    WrongLocation,
    /// A JWT-SVID whose `sub` is not a SPIFFE ID of its issuer's trust domain.
    NotSpiffeId,
    /// RFC 7662: the introspection endpoint answered `active: false`.
    Inactive,
    /// The introspection endpoint could not be asked or gave no usable
    /// answer (503, never an allow).
    IntrospectionUnavailable,
    /// The token is bound (`cnf`) by a method whose proof the gateway
    /// cannot check: neither `jkt` (DPoP) nor `x5t#S256` (a certificate).
    BoundWithoutProof,
    /// RFC 8705: bound to a client certificate (`cnf.x5t#S256`), and the
    /// connection presented none.
    CertificateNotPresented,
    /// Bound to a client certificate other than the one presented.
    CertificateMismatch,
    /// Bound, and asked about in a forward-auth check, which cannot see the
    /// client's certificate.
    CertificateUnseen,
    /// Not bound, and its issuer has `require_cert_binding = true`.
    CertificateBindingRequired,
}

impl AuthFailure {
    /// The `error_description` a client sees: names the check, never the token.
    pub fn description(self) -> &'static str {
        match self {
            Self::TooLarge => "token is larger than this gateway accepts (limits.max_token_bytes)",
            Self::NotJwt => "token is not a JWT (expected three base64url segments)",
            Self::BadHeader => "token header is not valid base64url JSON with an alg",
            Self::BadPayload => "token payload is not a base64url JSON object",
            Self::UnsupportedCritical => "token has critical header parameters that are not supported",
            Self::AlgorithmNotAllowed => "token algorithm is not allowed for this issuer",
            Self::MissingIssuer => "token has no iss claim",
            Self::UnknownIssuer => "token issuer is not accepted",
            Self::KeysUnavailable => "signing keys for this issuer are not loaded yet; retry shortly",
            Self::TenantLimit => "token tenant is not served: this issuer's tenant limit (max_tenants) is reached",
            Self::UnknownKey => "unknown signing key",
            Self::KeyMismatch => "token algorithm does not match its signing key",
            Self::BadSignature => "token signature is invalid",
            Self::MissingExp => "token has no exp claim",
            Self::BadTimeClaim => "token exp, nbf or iat is not a number of seconds within the signed 64-bit range",
            Self::Expired => "token expired",
            Self::NotYetValid => "token is not valid yet (nbf is in the future)",
            Self::MissingAudience => "token has no aud claim",
            Self::WrongAudience => "audience not accepted",
            Self::WrongType => "token type (typ header) is not the one this issuer requires",
            Self::LifetimeTooLong => "token lifetime (exp - iat) is longer than this issuer allows",
            Self::MissingRequiredClaim => "token lacks a claim this issuer requires",
            Self::WrongLocation => "this issuer's tokens are not accepted from where this one was sent (token_from)",
            Self::NotSpiffeId => "token sub is not a SPIFFE ID of the issuer's trust domain",
            Self::Inactive => "token is not active",
            Self::IntrospectionUnavailable => "the token introspection endpoint did not answer usably; retry shortly",
            Self::BoundWithoutProof => {
                "token is bound (cnf) by a method this gateway cannot check: only cnf.jkt (DPoP) and cnf.x5t#S256 (a client certificate) are"
            }
            Self::CertificateNotPresented => {
                "token is bound to a client certificate that this connection did not present (RFC 8705 cnf x5t#S256)"
            }
            Self::CertificateMismatch => {
                "token is bound to a different client certificate than the one this connection presented"
            }
            Self::CertificateUnseen => {
                "token is bound to a client certificate, which a forward-auth check cannot see: send it to the gateway directly"
            }
            Self::CertificateBindingRequired => {
                "this issuer accepts only tokens bound to a client certificate (cnf x5t#S256), and this one is not"
            }
        }
    }

    /// Its `reason` in logs and metrics: an exhaustive match, so a new
    /// failure cannot be counted under another's label.
    pub fn reason(self) -> Reason {
        match self {
            Self::TooLarge => Reason::TokenTooLarge,
            Self::NotJwt | Self::BadHeader | Self::BadPayload => Reason::MalformedToken,
            Self::UnsupportedCritical => Reason::UnsupportedCrit,
            Self::AlgorithmNotAllowed => Reason::AlgNotAllowed,
            Self::MissingIssuer | Self::UnknownIssuer => Reason::WrongIssuer,
            Self::KeysUnavailable => Reason::KeysUnavailable,
            Self::TenantLimit => Reason::TenantLimit,
            Self::UnknownKey => Reason::UnknownKid,
            Self::KeyMismatch => Reason::KeyMismatch,
            Self::BadSignature => Reason::BadSignature,
            Self::MissingExp => Reason::MissingExp,
            Self::BadTimeClaim => Reason::BadTimeClaim,
            Self::Expired => Reason::Expired,
            Self::NotYetValid => Reason::NotYetValid,
            Self::MissingAudience | Self::WrongAudience => Reason::WrongAudience,
            Self::WrongType => Reason::WrongType,
            Self::LifetimeTooLong => Reason::LifetimeTooLong,
            Self::MissingRequiredClaim => Reason::MissingClaim,
            Self::WrongLocation => Reason::WrongLocation,
            Self::NotSpiffeId => Reason::NotSpiffeId,
            Self::Inactive => Reason::InactiveToken,
            Self::IntrospectionUnavailable => Reason::IntrospectionUnavailable,
            Self::BoundWithoutProof => Reason::BoundToken,
            Self::CertificateNotPresented | Self::CertificateUnseen => Reason::CertNotPresented,
            Self::CertificateMismatch => Reason::CertMismatch,
            Self::CertificateBindingRequired => Reason::CertBindingRequired,
        }
    }
}
