//! Certificate-bound access tokens (RFC 8705 §3): a token whose `cnf`
//! claim carries `x5t#S256` may be used only over a connection whose client
//! certificate has that thumbprint.
//!
//! The check runs after verification on every request, since a verification
//! answered from the cache says nothing of the connection it is used on: a
//! bound token admitted once over the right connection and replayed over
//! another is refused there. The thumbprint is read through a
//! [`ValueSlot`], so the cache keeps it with the token.

use serde_json::Value;

use super::claims::ClaimPath;
use super::{AuthFailure, ClaimPlan, Trace, ValueSlot, Verified};
use crate::client_cert::ClientCert;
use crate::config::IssuerConfig;

/// RFC 8705 §3.1: the confirmation member that binds a token to a certificate.
const BOUND_THUMBPRINT: &str = "/cnf/x5t#S256";

/// The certificate, if any, that the request's connection presented, as
/// far as the gateway can know it.
#[derive(Debug, Clone, Copy)]
pub enum Presented<'a> {
    /// The client presented none (or the listener does not ask for one).
    Nothing,
    /// Verified against `[server.tls] client_ca_file` during the handshake.
    Certificate(&'a ClientCert),
    /// The gateway does not see the client's TLS (forward-auth checks: the
    /// edge terminates it), so no binding can be confirmed.
    Unseen,
}

impl<'a> Presented<'a> {
    pub fn of(certificate: Option<&'a ClientCert>) -> Presented<'a> {
        certificate.map_or(Presented::Nothing, Presented::Certificate)
    }
}

/// Each configuration's binding rules: where tokens keep `cnf.x5t#S256`,
/// and which issuers accept only bound tokens.
#[derive(Debug)]
pub struct CertBinding {
    thumbprint: ValueSlot,
    /// `require_cert_binding = true`, by configured issuer name (what
    /// [`Verified::issuer`] answers); usually empty.
    required_by: Vec<Box<str>>,
}

impl CertBinding {
    /// Registers `cnf.x5t#S256` in `plan`: every token keeps it, bound or
    /// not, since a bound token must be refused whatever the listener asks.
    pub fn new(issuers: &[IssuerConfig], plan: &mut ClaimPlan) -> CertBinding {
        let path = ClaimPath::parse(BOUND_THUMBPRINT).unwrap_or_else(|_| unreachable!("a valid JSON Pointer"));
        CertBinding {
            thumbprint: plan.keep_value(&path),
            required_by: issuers
                .iter()
                .filter(|issuer| issuer.require_cert_binding)
                .map(|issuer| issuer.issuer.as_str().into())
                .collect(),
        }
    }

    /// Whether `verified` may be used by a client that `presented` this.
    /// An unbound token costs one lookup and a branch (two when some issuer
    /// requires binding).
    pub fn check(
        &self,
        verified: &Verified,
        presented: Presented<'_>,
        trace: &mut impl Trace,
    ) -> Result<(), AuthFailure> {
        let Some(bound) = verified.value(self.thumbprint) else {
            if !self.required_by.is_empty() && self.required_by.iter().any(|name| **name == *verified.issuer()) {
                return Err(AuthFailure::CertificateBindingRequired);
            }
            // Unbound, as most tokens are: nothing to report.
            return Ok(());
        };
        let certificate = match presented {
            Presented::Certificate(certificate) => certificate,
            Presented::Nothing => return Err(AuthFailure::CertificateNotPresented),
            Presented::Unseen => return Err(AuthFailure::CertificateUnseen),
        };
        // A cnf member that is not a string binds to no certificate at all.
        match bound {
            Value::String(thumbprint) if *thumbprint == certificate.thumbprint() => {
                trace.passed("certificate binding: cnf x5t#S256 is the thumbprint of the client certificate presented");
                Ok(())
            }
            _ => Err(AuthFailure::CertificateMismatch),
        }
    }
}
