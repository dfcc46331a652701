//! Which configured issuer a token belongs to: by `iss` exactly, by a
//! `{tenant}` template, or (a JWT-SVID without a configured `iss`) by the
//! SPIFFE trust domain of its `sub`.

use super::*;

impl Authenticator {
    /// The configured issuer (as written) that `iss` selects, and the
    /// tenant for a templated one: the lookup verification makes.
    pub fn issuer_for<'i>(&self, iss: &'i str) -> Option<(&str, Option<&'i str>)> {
        self.find_issuer(iss).map(|(issuer, tenant)| (issuer.profile.name.as_str(), tenant))
    }

    /// The issuer a token's `iss` names, and its tenant for a templated one.
    pub(super) fn find_issuer<'a, 'i>(&'a self, iss: &'i str) -> Option<(&'a Issuer, Option<&'i str>)> {
        if let Some(issuer) = self.issuers.get(iss) {
            return Some((issuer, None));
        }
        for (len, by_prefix) in &self.templates {
            let Some(candidates) = iss.get(..*len).and_then(|prefix| by_prefix.get(prefix)) else { continue };
            for template in candidates {
                let Some(tenant) = iss[*len..].strip_suffix(template.suffix.as_str()) else { continue };
                if tenant.is_empty() || tenant.contains('/') {
                    continue;
                }
                if template.tenants.as_ref().is_some_and(|allowed| !allowed.contains(tenant)) {
                    continue;
                }
                return Some((&template.issuer, Some(tenant)));
            }
        }
        None
    }

    /// The SPIFFE issuer of the trust domain a token's `sub` names.
    pub(super) fn spiffe_issuer(&self, claims: &serde_json::Map<String, Value>) -> Option<&Issuer> {
        let sub = claims.get("sub")?.as_str()?;
        let domain = crate::config::spiffe::trust_domain(sub).ok()?;
        self.spiffe_domains.get(domain).and_then(|name| self.issuers.get(name))
    }
}

pub(super) fn is_spiffe_id(claims: &serde_json::Map<String, Value>) -> bool {
    claims.get("sub").and_then(Value::as_str).is_some_and(|sub| crate::config::spiffe::trust_domain(sub).is_ok())
}
