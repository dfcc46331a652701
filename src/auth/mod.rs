//! Authentication: from a bearer token to a [`Verified`] identity, or the
//! exact reason it was refused.
//!
//! Order of work, cheapest first: size and syntax ([`bearer`]), structure
//! and header ([`token`]), issuer by `iss`, allowed algorithm, key lookup in
//! the issuer's snapshot (one rate-limited refetch for an unknown `kid`),
//! signature (jsonwebtoken with aws-lc-rs), then `exp`/`nbf`/`aud` ([`claims`]).

pub mod bearer;
pub mod claims;
pub mod identity;
pub mod token;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::Algorithm;

use crate::config::IssuerConfig;
use crate::keys::{IssuerKeys, VerifyingKey};
use claims::ClaimPath;
use token::{Claims, Unverified};

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
    UnknownKey,
    KeyMismatch,
    BadSignature,
    MissingExp,
    BadTimeClaim,
    Expired,
    NotYetValid,
    MissingAudience,
    WrongAudience,
}

impl AuthFailure {
    /// The `error_description` a client sees: names the check, never the token.
    pub fn description(self) -> &'static str {
        match self {
            Self::TooLarge => "token is larger than 16 KiB",
            Self::NotJwt => "token is not a JWT (expected three base64url segments)",
            Self::BadHeader => "token header is not valid base64url JSON with an alg",
            Self::BadPayload => "token payload is not a base64url JSON object",
            Self::UnsupportedCritical => "token has critical header parameters that are not supported",
            Self::AlgorithmNotAllowed => "token algorithm is not allowed for this issuer",
            Self::MissingIssuer => "token has no iss claim",
            Self::UnknownIssuer => "token issuer is not accepted",
            Self::KeysUnavailable => "signing keys for this issuer are not loaded yet; retry shortly",
            Self::UnknownKey => "unknown signing key",
            Self::KeyMismatch => "token algorithm does not match its signing key",
            Self::BadSignature => "token signature is invalid",
            Self::MissingExp => "token has no exp claim",
            Self::BadTimeClaim => "token exp or nbf is not a number",
            Self::Expired => "token expired",
            Self::NotYetValid => "token is not valid yet (nbf is in the future)",
            Self::MissingAudience => "token has no aud claim",
            Self::WrongAudience => "audience not accepted",
        }
    }

    /// A short stable label for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::TooLarge => "token_too_large",
            Self::NotJwt | Self::BadHeader | Self::BadPayload => "malformed_token",
            Self::UnsupportedCritical => "unsupported_crit",
            Self::AlgorithmNotAllowed => "alg_not_allowed",
            Self::MissingIssuer | Self::UnknownIssuer => "wrong_issuer",
            Self::KeysUnavailable => "keys_unavailable",
            Self::UnknownKey => "unknown_kid",
            Self::KeyMismatch => "key_mismatch",
            Self::BadSignature => "bad_signature",
            Self::MissingExp => "missing_exp",
            Self::BadTimeClaim => "bad_time_claim",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::MissingAudience | Self::WrongAudience => "wrong_audience",
        }
    }
}

/// Proof that a token passed every check; the only way to get one is
/// [`Authenticator::verify`].
#[derive(Debug)]
pub struct Verified {
    profile: Arc<IssuerProfile>,
    kid: Option<String>,
    claims: Claims,
}

/// What later steps need to know of the issuer that vouched for a token.
#[derive(Debug)]
struct IssuerProfile {
    name: String,
    scope_claims: Vec<ClaimPath>,
    keys: Arc<IssuerKeys>,
}

/// A refused token, with the issuer it named when that issuer is configured.
#[derive(Debug)]
pub struct Rejected<'a> {
    pub failure: AuthFailure,
    pub issuer: Option<&'a IssuerKeys>,
}

impl From<AuthFailure> for Rejected<'_> {
    fn from(failure: AuthFailure) -> Self {
        Rejected { failure, issuer: None }
    }
}

impl Verified {
    pub fn issuer(&self) -> &str {
        &self.profile.name
    }

    /// Where this issuer puts scopes.
    pub fn scope_claims(&self) -> &[ClaimPath] {
        &self.profile.scope_claims
    }

    /// The key store (and counters) of the issuer that vouched for the token.
    pub fn issuer_keys(&self) -> &IssuerKeys {
        &self.profile.keys
    }

    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    pub fn subject(&self) -> Option<&str> {
        self.claims.get("sub").and_then(|s| s.as_str())
    }
}

struct Issuer {
    profile: Arc<IssuerProfile>,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway_secs: u64,
    keys: Arc<IssuerKeys>,
}

/// Verifies tokens against the configured issuers.
pub struct Authenticator {
    issuers: HashMap<String, Issuer>,
}

/// The outcome of looking at one snapshot.
enum Attempt {
    Done(Result<(), AuthFailure>),
    /// No key fits; a refetch may help. Carries the snapshot generation seen.
    NoKey(u64),
}

impl Authenticator {
    /// `keys[i]` holds the keys of `issuers[i]`.
    pub fn new(issuers: &[IssuerConfig], keys: &[Arc<IssuerKeys>]) -> Authenticator {
        let issuers = issuers
            .iter()
            .zip(keys)
            .map(|(config, keys)| {
                let issuer = Issuer {
                    profile: Arc::new(IssuerProfile {
                        name: config.issuer.clone(),
                        scope_claims: config.scope_claims.clone(),
                        keys: Arc::clone(keys),
                    }),
                    audiences: config.audiences.clone(),
                    algorithms: config.algorithms.clone(),
                    leeway_secs: config.leeway.as_secs(),
                    keys: Arc::clone(keys),
                };
                (config.issuer.clone(), issuer)
            })
            .collect();
        Authenticator { issuers }
    }

    pub async fn verify(&self, token: &str) -> Result<Verified, Rejected<'_>> {
        let token = token::parse(token)?;
        let iss = token.claims.get("iss").and_then(|v| v.as_str()).ok_or(AuthFailure::MissingIssuer)?;
        let issuer = self.issuers.get(iss).ok_or(AuthFailure::UnknownIssuer)?;
        match verify_with(issuer, &token).await {
            Ok(()) => Ok(Verified { profile: Arc::clone(&issuer.profile), kid: token.kid, claims: token.claims }),
            Err(failure) => Err(Rejected { failure, issuer: Some(&issuer.keys) }),
        }
    }
}

/// Everything after the issuer is known: algorithm, key, signature, claims.
async fn verify_with(issuer: &Issuer, token: &Unverified<'_>) -> Result<(), AuthFailure> {
    if !issuer.algorithms.contains(&token.alg) {
        return Err(AuthFailure::AlgorithmNotAllowed);
    }
    match verify_signature(issuer, token)? {
        Attempt::Done(result) => result?,
        Attempt::NoKey(generation) => {
            if !issuer.keys.refetch_for_unknown_kid(generation).await {
                return Err(AuthFailure::UnknownKey);
            }
            match verify_signature(issuer, token)? {
                Attempt::Done(result) => result?,
                Attempt::NoKey(_) => return Err(AuthFailure::UnknownKey),
            }
        }
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    claims::check_times(&token.claims, now, issuer.leeway_secs)?;
    claims::check_audience(&token.claims, &issuer.audiences)
}

/// Checks the signature against the current snapshot without waiting.
fn verify_signature(issuer: &Issuer, token: &Unverified<'_>) -> Result<Attempt, AuthFailure> {
    let guard = issuer.keys.load();
    let Some(snapshot) = guard.as_ref() else {
        return Err(AuthFailure::KeysUnavailable);
    };
    let keys = &snapshot.keys;
    if let Some(kid) = &token.kid {
        return Ok(match keys.by_kid(kid) {
            Some(key) if !key.accepts(token.alg) => Attempt::Done(Err(AuthFailure::KeyMismatch)),
            Some(key) => Attempt::Done(signature_holds(key, token)),
            None => Attempt::NoKey(snapshot.generation),
        });
    }
    let mut tried = false;
    for key in keys.candidates(token.alg) {
        tried = true;
        if signature_holds(key, token).is_ok() {
            return Ok(Attempt::Done(Ok(())));
        }
    }
    Ok(if tried { Attempt::Done(Err(AuthFailure::BadSignature)) } else { Attempt::NoKey(snapshot.generation) })
}

fn signature_holds(key: &VerifyingKey, token: &Unverified<'_>) -> Result<(), AuthFailure> {
    match jsonwebtoken::crypto::verify(token.signature, token.signing_input.as_bytes(), &key.key, token.alg) {
        Ok(true) => Ok(()),
        _ => Err(AuthFailure::BadSignature),
    }
}
