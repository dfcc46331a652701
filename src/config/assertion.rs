//! `[headers] assertion`, typed: what jwtgate signs for the backend.

use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;

use super::ClaimPath;

/// `[headers] assertion`: the verified caller, signed by jwtgate for the
/// backend (docs/assertion.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionConfig {
    pub header: HeaderName,
    /// PKCS#8 PEM, read when the gateway is built (and on every reload).
    pub key_file: PathBuf,
    pub alg: AssertionAlg,
    pub ttl: Duration,
    /// Copied from the verified token, each under its [`ClaimPath::leaf`] name.
    pub claims: Vec<ClaimPath>,
}

/// The algorithms jwtgate signs assertions with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionAlg {
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl AssertionAlg {
    /// Its JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            AssertionAlg::Es256 => "ES256",
            AssertionAlg::EdDsa => "EdDSA",
        }
    }
}
