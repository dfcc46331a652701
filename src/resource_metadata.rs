//! RFC 9728 protected-resource metadata: the document that tells a client
//! (an MCP client, say) which authorization servers issue tokens for this
//! resource. jwtgate serves it itself, without a token, and points every
//! 401 at it (`resource_metadata` in `WWW-Authenticate`).

use bytes::Bytes;
use http::{Method, Response};
use http_body_util::Full;

use crate::config::ResourceMetadataConfig;
use crate::error::json_bytes_response;

pub struct ResourceMetadata {
    /// Where it is served: the RFC 9728 §3.1 path (with the resource's own
    /// path appended) and the bare well-known path.
    paths: Vec<String>,
    /// The JSON document, serialised once.
    body: Bytes,
}

impl ResourceMetadata {
    pub fn new(config: &ResourceMetadataConfig) -> ResourceMetadata {
        let mut body = serde_json::json!({
            "resource": config.resource,
            "authorization_servers": config.authorization_servers,
            "bearer_methods_supported": config.bearer_methods_supported,
        });
        if let Some(scopes) = &config.scopes_supported {
            body["scopes_supported"] = serde_json::json!(scopes);
        }
        if let Some(documentation) = &config.resource_documentation {
            body["resource_documentation"] = serde_json::json!(documentation);
        }
        let mut paths = vec![config.well_known_path.clone()];
        if config.well_known_path != WELL_KNOWN {
            paths.push(WELL_KNOWN.to_string());
        }
        ResourceMetadata { paths, body: Bytes::from(body.to_string()) }
    }

    /// Whether this request asks for the metadata.
    pub fn serves(&self, method: &Method, path: &str) -> bool {
        (method == Method::GET || method == Method::HEAD) && self.paths.iter().any(|p| p == path)
    }

    /// The document, readable from any origin: it is public, sent without
    /// credentials, and a browser client on another origin must read it to
    /// find where to get a token (the 401's `resource_metadata` points here).
    pub fn response(&self) -> Response<Full<Bytes>> {
        let mut response = json_bytes_response(http::StatusCode::OK, self.body.clone());
        response.headers_mut().insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, http::HeaderValue::from_static("*"));
        response
    }
}

pub use crate::config::WELL_KNOWN_RESOURCE_METADATA as WELL_KNOWN;
