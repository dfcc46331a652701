//! `[resource_metadata]`: RFC 9728 protected-resource metadata.

use reqwest::Url;

use super::{Problems, is_loopback};
use crate::config::raw::{RawIssuer, RawResourceMetadata};
use crate::config::{ResourceMetadataConfig, TENANT, WELL_KNOWN_RESOURCE_METADATA, defaults};

pub(super) fn resource_metadata(
    raw: &RawResourceMetadata,
    issuers: &[RawIssuer],
    p: &mut Problems,
) -> Option<ResourceMetadataConfig> {
    let key = "resource_metadata";
    let resource = p.required(&format!("{key}.resource"), raw.resource.as_ref())?;
    let url = match Url::parse(resource) {
        Ok(url) if url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&url)) => url,
        _ => {
            p.add(
                &format!("{key}.resource"),
                format!("must be an https URL (http only on loopback) (got {resource:?})"),
            );
            return None;
        }
    };
    if url.fragment().is_some() || url.query().is_some() || url.as_str().contains(['"', '\\']) {
        p.add(&format!("{key}.resource"), format!("must have no query or fragment (got {resource:?})"));
        return None;
    }
    let suffix = url.path().trim_end_matches('/');
    let well_known_path = format!("{}{suffix}", WELL_KNOWN_RESOURCE_METADATA);
    let origin = url.origin().ascii_serialization();
    let bearer_methods_supported = raw
        .bearer_methods_supported
        .clone()
        .unwrap_or_else(|| defaults::BEARER_METHODS_SUPPORTED.map(String::from).to_vec());
    for method in &bearer_methods_supported {
        if !matches!(method.as_str(), "header" | "body" | "query") {
            p.add(
                &format!("{key}.bearer_methods_supported"),
                format!("RFC 6750 names header, body and query (got {method:?})"),
            );
        }
    }
    Some(ResourceMetadataConfig {
        resource: resource.clone(),
        authorization_servers: raw.authorization_servers.clone().unwrap_or_else(|| authorization_servers(issuers)),
        scopes_supported: raw.scopes_supported.clone(),
        bearer_methods_supported,
        resource_documentation: raw.resource_documentation.clone(),
        url: format!("{origin}{well_known_path}"),
        well_known_path,
    })
}

/// Authorization servers by default: every issuer, each listed tenant of a templated one.
fn authorization_servers(issuers: &[RawIssuer]) -> Vec<String> {
    issuers
        .iter()
        .flat_map(|i| match (i.issuer.as_deref(), &i.tenants) {
            (Some(issuer), Some(tenants)) if issuer.contains(TENANT) => {
                tenants.iter().filter(|t| *t != "*").map(|t| issuer.replace(TENANT, t)).collect::<Vec<_>>()
            }
            (Some(issuer), _) => vec![issuer.to_string()],
            (None, _) => Vec::new(),
        })
        .collect()
}
