//! `[[issuers]]`: whose tokens are accepted, with which algorithms, and
//! where their keys are fetched from.

use std::path::Path;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use reqwest::Url;

use super::{Problems, introspection};
use crate::config::raw::RawIssuer;
use crate::config::{
    ClaimPath, DpopMode, IssuerConfig, JwksLimits, JwksSource, SUPPORTED_ALGORITHMS, TENANT, Tenants, TokenLocation,
    defaults,
};

/// Every `[[issuers]]` table (at least one), each issuer once.
pub(super) fn issuers(
    raw: &[RawIssuer],
    base_dir: &Path,
    jwks_limits: JwksLimits,
    p: &mut Problems,
) -> Vec<IssuerConfig> {
    if raw.is_empty() {
        p.add(
            "issuers",
            "at least one [[issuers]] table is required — add one with issuer = \"https://…/\" and audiences = [\"…\"]",
        );
    }
    let issuers: Vec<IssuerConfig> = raw
        .iter()
        .enumerate()
        .filter_map(|(i, r)| issuer(&format!("issuers[{i}]"), r, base_dir, jwks_limits, p))
        .collect();
    for (i, a) in issuers.iter().enumerate() {
        if issuers[..i].iter().any(|b| b.issuer == a.issuer) {
            p.add(&format!("issuers[{i}].issuer"), format!("{:?} is configured twice", a.issuer));
        }
    }
    issuers
}

fn issuer(
    key: &str,
    raw: &RawIssuer,
    base_dir: &Path,
    jwks_limits: JwksLimits,
    p: &mut Problems,
) -> Option<IssuerConfig> {
    let leeway = p.duration(&format!("{key}.leeway"), raw.leeway.as_deref(), defaults::LEEWAY);
    let refresh_interval =
        p.duration(&format!("{key}.refresh_interval"), raw.refresh_interval.as_deref(), defaults::REFRESH_INTERVAL);
    let min_refresh_interval = p.duration(
        &format!("{key}.min_refresh_interval"),
        raw.min_refresh_interval.as_deref(),
        defaults::MIN_REFRESH_INTERVAL,
    );
    if refresh_interval.is_zero() {
        p.add(&format!("{key}.refresh_interval"), "must be longer than 0s");
    }
    if min_refresh_interval > refresh_interval {
        p.add(&format!("{key}.min_refresh_interval"), "must not be longer than refresh_interval");
    }
    let spiffe = raw.issuer.as_deref().is_some_and(|i| i.starts_with("spiffe://"));
    let algorithms = match (&raw.algorithms, spiffe) {
        // What the JWT-SVID specification allows (§3), SPIRE's ES256 among them.
        (None, true) => defaults::SPIFFE_ALGORITHMS.to_vec(),
        _ => algorithms(&format!("{key}.algorithms"), raw.algorithms.as_deref(), p),
    };
    let scope_claim_names =
        raw.scope_claims.clone().unwrap_or_else(|| defaults::SCOPE_CLAIMS.map(String::from).to_vec());
    let scope_claims = scope_claim_names
        .iter()
        .filter_map(|name| ClaimPath::parse(name).map_err(|e| p.add(&format!("{key}.scope_claims"), e)).ok())
        .collect();

    let audiences = p.required(&format!("{key}.audiences"), raw.audiences.as_ref());
    if audiences.is_some_and(|a| a.is_empty() || a.iter().any(String::is_empty)) {
        p.add(&format!("{key}.audiences"), "must list at least one non-empty audience");
    }
    let issuer = p.required(&format!("{key}.issuer"), raw.issuer.as_ref());
    if issuer.is_some_and(String::is_empty) {
        p.add(&format!("{key}.issuer"), "must not be empty");
    }
    let jwks = match spiffe {
        true => spiffe_bundle(key, raw, base_dir, p),
        false => {
            for (name, set) in [
                ("spiffe_bundle_url", raw.spiffe_bundle_url.is_some()),
                ("spiffe_bundle_file", raw.spiffe_bundle_file.is_some()),
            ] {
                if set {
                    p.add(
                        &format!("{key}.{name}"),
                        "applies only to issuer = \"spiffe://TRUST_DOMAIN\" (a SPIFFE trust domain)",
                    );
                }
            }
            jwks_source(key, raw, issuer.map(String::as_str), base_dir, p)
        }
    };
    let templated = issuer.is_some_and(|i| i.contains(TENANT));
    if issuer.is_some_and(|i| i.matches(TENANT).count() > 1) {
        p.add(&format!("{key}.issuer"), "{tenant} may appear once");
    }
    // {tenant} is substituted in `issuer` and (of a templated issuer) in
    // `jwks_url`; anywhere else it would be read literally (a key file
    // named `{tenant}`, an audience no token has), and a check passing on
    // such a file would be a lie.
    let literal = [
        ("jwks_url", raw.jwks_url.iter().filter(|_| !templated).collect::<Vec<_>>()),
        ("jwks_file", raw.jwks_file.iter().collect()),
        ("ca_file", raw.ca_file.iter().collect()),
        ("audiences", raw.audiences.iter().flatten().collect()),
        ("required_claims", raw.required_claims.iter().flatten().collect()),
        ("scope_claims", raw.scope_claims.iter().flatten().collect()),
    ];
    for (name, values) in literal {
        if values.iter().any(|v| v.contains(TENANT)) {
            let why = match name {
                "jwks_url" => "{tenant} is substituted here only when the issuer has {tenant} in it too",
                _ => "{tenant} is substituted only in issuer and jwks_url; here it would be read literally",
            };
            p.add(&format!("{key}.{name}"), why);
        }
    }
    if raw.jwks_url.as_ref().is_some_and(|url| url.matches(TENANT).count() > 1) {
        p.add(&format!("{key}.jwks_url"), "{tenant} may appear once");
    }
    let tenants = match (&raw.tenants, templated) {
        (None, false) => None,
        (Some(_), false) => {
            p.add(&format!("{key}.tenants"), "applies only to an issuer with {tenant} in it");
            None
        }
        (None, true) => {
            p.add(&format!("{key}.tenants"), "required with {tenant} in the issuer: a list, or [\"*\"] for any");
            None
        }
        (Some(list), true) if list.len() == 1 && list[0] == "*" => Some(Tenants::Any),
        (Some(list), true) => {
            if list.is_empty() || list.iter().any(|t| t.is_empty() || t == "*" || t.contains(['/', '{', '}'])) {
                p.add(&format!("{key}.tenants"), "tenants are non-empty names without '/', or [\"*\"] alone");
            }
            Some(Tenants::Only(list.clone()))
        }
    };
    let per_tenant_source =
        templated && raw.jwks_file.is_none() && raw.jwks_url.as_ref().is_none_or(|u| u.contains(TENANT));
    if per_tenant_source && let Some(Tenants::Only(list)) = &tenants {
        for bad in list.iter().filter(|t| !crate::config::fetchable_tenant(t)) {
            p.add(
                &format!("{key}.tenants"),
                format!(
                    "{bad:?} cannot name a key source: tenant names in a fetched URL are letters, digits, '-', '_' \
                     and inner dots, 63 at most"
                ),
            );
        }
    }
    let max_tenants = match raw.max_tenants {
        None => defaults::MAX_TENANTS,
        Some(_) if !(per_tenant_source && tenants == Some(Tenants::Any)) => {
            p.add(
                &format!("{key}.max_tenants"),
                "applies only to tenants = [\"*\"] with keys per tenant ({tenant} in jwks_url, or no jwks_url)",
            );
            defaults::MAX_TENANTS
        }
        Some(n) => match usize::try_from(n) {
            Ok(n @ 1..=100_000) => n,
            _ => {
                p.add(&format!("{key}.max_tenants"), format!("must be between 1 and 100000 (got {n})"));
                defaults::MAX_TENANTS
            }
        },
    };
    let require_typ = raw.require_typ.as_deref().and_then(|typ| {
        let lower = typ.to_ascii_lowercase();
        let bare = lower.strip_prefix("application/").unwrap_or(&lower).to_string();
        if bare.is_empty() || !bare.bytes().all(|b| b.is_ascii_graphic()) {
            p.add(&format!("{key}.require_typ"), format!("not a media type (got {typ:?}); RFC 9068 uses \"at+jwt\""));
            return None;
        }
        Some(bare)
    });
    let max_lifetime = raw.max_lifetime.as_deref().map(|text| {
        // Written, so never defaulted: the hour only stands in after a reported problem.
        let lifetime = p.duration(&format!("{key}.max_lifetime"), Some(text), Duration::from_secs(3600));
        if lifetime.is_zero() {
            p.add(&format!("{key}.max_lifetime"), "must be longer than 0s");
        }
        lifetime
    });
    let token_from = match &raw.token_from {
        None => vec![TokenLocation::Header],
        Some(list) if list.is_empty() => {
            p.add(&format!("{key}.token_from"), "must list at least one location, e.g. [\"header\"]");
            Vec::new()
        }
        Some(list) => list
            .iter()
            .filter_map(|l| TokenLocation::parse(l).map_err(|e| p.add(&format!("{key}.token_from"), e)).ok())
            .collect(),
    };
    let required_claims = raw
        .required_claims
        .iter()
        .flatten()
        .filter_map(|name| ClaimPath::parse(name).map_err(|e| p.add(&format!("{key}.required_claims"), e)).ok())
        .collect();
    let ca_file = raw.ca_file.as_ref().map(|file| base_dir.join(file));
    let https = |url: &str| Url::parse(&url.replace(TENANT, "tenant")).is_ok_and(|u| u.scheme() == "https");
    let fetched_over_https = match &jwks {
        Some(JwksSource::Url(url)) => https(url),
        Some(JwksSource::Discovery { discovery_url }) => https(discovery_url),
        Some(JwksSource::File(_)) | None => false,
    };
    let introspection = introspection::introspection(key, raw, p);
    let introspected_over_https = introspection.as_ref().is_some_and(|i| https(&i.url));
    if ca_file.is_some() && jwks.is_some() && !fetched_over_https && !introspected_over_https {
        p.add(
            &format!("{key}.ca_file"),
            "applies only to keys fetched over https (discovery or jwks_url), not to jwks_file or http:// URLs",
        );
    }
    Some(IssuerConfig {
        issuer: issuer?.clone(),
        audiences: audiences?.clone(),
        jwks: jwks?,
        ca_file,
        algorithms,
        leeway,
        refresh_interval,
        min_refresh_interval,
        scope_claims,
        jwks_limits,
        require_typ,
        max_lifetime,
        required_claims,
        token_from,
        tenants,
        max_tenants,
        spiffe,
        introspection,
        dpop: dpop_mode(&format!("{key}.dpop"), raw.dpop.as_deref(), p).unwrap_or_default(),
        require_cert_binding: raw.require_cert_binding.unwrap_or(false),
    })
}

/// `dpop` of an issuer or a route.
pub(super) fn dpop_mode(key: &str, raw: Option<&str>, p: &mut Problems) -> Option<DpopMode> {
    let text = raw?;
    let mode = DpopMode::parse(text);
    if mode.is_none() {
        p.add(key, format!("must be \"off\", \"allowed\" or \"required\" (got {text:?})"));
    }
    mode
}

/// A SPIFFE trust domain's keys: its bundle, from an endpoint or a file;
/// the issuer is the trust domain alone.
fn spiffe_bundle(key: &str, raw: &RawIssuer, base_dir: &Path, p: &mut Problems) -> Option<JwksSource> {
    let issuer = raw.issuer.as_deref().unwrap_or_default();
    match crate::config::spiffe::trust_domain(issuer) {
        Ok(domain) if issuer.len() == "spiffe://".len() + domain.len() => {}
        Ok(_) => p.add(
            &format!("{key}.issuer"),
            format!("a SPIFFE issuer is a trust domain, spiffe://DOMAIN without a path (got {issuer:?})"),
        ),
        Err(why) => p.add(&format!("{key}.issuer"), format!("{issuer:?} {why}")),
    }
    for (name, set) in [("jwks_url", raw.jwks_url.is_some()), ("jwks_file", raw.jwks_file.is_some())] {
        if set {
            p.add(
                &format!("{key}.{name}"),
                "not with a SPIFFE issuer: its keys come from spiffe_bundle_url or spiffe_bundle_file",
            );
        }
    }
    match (&raw.spiffe_bundle_url, &raw.spiffe_bundle_file) {
        (Some(url), None) => {
            check_fetch_url(&format!("{key}.spiffe_bundle_url"), url, p).then(|| JwksSource::Url(url.clone()))
        }
        (None, Some(file)) => Some(JwksSource::File(base_dir.join(file))),
        (Some(_), Some(_)) => {
            p.add(&format!("{key}.spiffe_bundle_file"), "set either spiffe_bundle_url or spiffe_bundle_file, not both");
            None
        }
        (None, None) => {
            p.add(
                &format!("{key}.spiffe_bundle_url"),
                "a SPIFFE issuer needs its trust bundle: spiffe_bundle_url (the bundle endpoint) or spiffe_bundle_file",
            );
            None
        }
    }
}

fn algorithms(key: &str, raw: Option<&[String]>, p: &mut Problems) -> Vec<Algorithm> {
    let Some(names) = raw else { return defaults::ALGORITHMS.to_vec() };
    if names.is_empty() {
        p.add(key, "must list at least one algorithm");
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        match name.parse::<Algorithm>() {
            Ok(alg) if SUPPORTED_ALGORITHMS.contains(&alg) => out.push(alg),
            Ok(_) => p.add(
                key,
                format!(
                    "{name} is symmetric: a JWKS is public, so HMAC keys are never accepted — list the asymmetric \
                     algorithm your identity provider signs with (RS256 for most)"
                ),
            ),
            Err(_) => {
                p.add(key, format!("unknown algorithm {name:?}; use RS256/384/512, PS256/384/512, ES256/384 or EdDSA"))
            }
        }
    }
    out
}

fn jwks_source(
    key: &str,
    raw: &RawIssuer,
    issuer: Option<&str>,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<JwksSource> {
    match (&raw.jwks_url, &raw.jwks_file) {
        (Some(_), Some(_)) => {
            p.add(&format!("{key}.jwks_file"), "set either jwks_url or jwks_file, not both");
            None
        }
        // A URL with {tenant} is checked as one tenant's would be.
        (Some(url), None) => check_fetch_url(&format!("{key}.jwks_url"), &url.replace(TENANT, "tenant"), p)
            .then(|| JwksSource::Url(url.clone())),
        (None, Some(file)) => Some(JwksSource::File(base_dir.join(file))),
        (None, None) => {
            // A templated issuer without jwks_url: each tenant's own discovery document.
            let discovery_url = format!("{}/.well-known/openid-configuration", issuer?.trim_end_matches('/'));
            check_fetch_url(&format!("{key}.issuer"), &discovery_url.replace(TENANT, "tenant"), p)
                .then_some(JwksSource::Discovery { discovery_url })
        }
    }
}

/// Keys fetched over plain HTTP could be swapped by anyone on the path.
fn check_fetch_url(key: &str, url: &str, p: &mut Problems) -> bool {
    super::https_or_loopback(
        key,
        url,
        "http:// is allowed only for loopback hosts, since anyone on the path could swap the keys",
        p,
    )
}
