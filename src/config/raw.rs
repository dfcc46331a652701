//! The configuration file as written: serde structs that mirror the TOML
//! one-to-one. Every field is optional here so that validation can report
//! all missing keys at once instead of stopping at the first.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    pub upstream: Option<RawUpstream>,
    #[serde(default)]
    pub upstreams: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    pub issuers: Vec<RawIssuer>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    pub headers: Option<RawHeaders>,
    pub cache: Option<RawCache>,
    pub forward_auth: Option<RawForwardAuth>,
    pub limits: Option<RawLimits>,
    pub resource_metadata: Option<RawResourceMetadata>,
    pub tracing: Option<RawTracing>,
    #[serde(default)]
    pub rate_limits: Vec<RawRateLimit>,
    pub rate_limit_store: Option<RawRateLimitStore>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub key: Option<String>,
    pub rate: Option<String>,
    pub burst: Option<i64>,
    pub routes: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimitStore {
    pub redis_url: Option<String>,
    pub on_store_error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    pub otlp_endpoint: Option<String>,
    pub protocol: Option<String>,
    pub sample_ratio: Option<f64>,
    pub service_name: Option<String>,
    pub record_subject: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResourceMetadata {
    pub resource: Option<String>,
    pub authorization_servers: Option<Vec<String>>,
    pub scopes_supported: Option<Vec<String>>,
    pub bearer_methods_supported: Option<Vec<String>>,
    pub resource_documentation: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_token_bytes: Option<i64>,
    pub max_json_depth: Option<i64>,
    pub max_jwks_bytes: Option<i64>,
    pub max_jwks_keys: Option<i64>,
    pub jwks_fetch_timeout: Option<String>,
    pub http2_max_concurrent_streams: Option<i64>,
    pub http2_max_pending_resets: Option<i64>,
    pub http2_max_error_resets: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwardAuth {
    pub path: Option<String>,
    pub edge: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub worker_threads: Option<i64>,
    pub max_connections: Option<i64>,
    pub request_timeout: Option<String>,
    pub header_read_timeout: Option<String>,
    pub max_header_bytes: Option<i64>,
    pub shutdown_grace: Option<String>,
    pub realm: Option<String>,
    pub case_sensitive_routes: Option<bool>,
    pub method_override: Option<String>,
    pub websocket_idle_timeout: Option<String>,
    pub send_timeout: Option<String>,
    pub protocols: Option<Vec<String>>,
    pub public_url: Option<String>,
    pub dpop_nonce: Option<bool>,
    pub tls: Option<RawServerTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_ca_file: Option<String>,
    pub client_auth: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: Option<String>,
    pub connect_timeout: Option<String>,
    pub timeout: Option<String>,
    pub forward_authorization: Option<bool>,
    pub preserve_host: Option<bool>,
    pub protocol: Option<String>,
    pub ca_file: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub max_connections: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    pub issuer: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub jwks_url: Option<String>,
    pub jwks_file: Option<String>,
    pub ca_file: Option<String>,
    pub algorithms: Option<Vec<String>>,
    pub leeway: Option<String>,
    pub refresh_interval: Option<String>,
    pub min_refresh_interval: Option<String>,
    pub scope_claims: Option<Vec<String>>,
    pub require_typ: Option<String>,
    pub max_lifetime: Option<String>,
    pub required_claims: Option<Vec<String>>,
    pub token_from: Option<Vec<String>>,
    pub tenants: Option<Vec<String>>,
    pub max_tenants: Option<i64>,
    pub spiffe_bundle_url: Option<String>,
    pub spiffe_bundle_file: Option<String>,
    pub introspection: Option<RawIntrospection>,
    pub introspect: Option<String>,
    pub cache_ttl: Option<String>,
    pub dpop: Option<String>,
    pub require_cert_binding: Option<bool>,
}

/// `introspection = { … }` of an issuer: its RFC 7662 endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntrospection {
    pub url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub auth: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub path: Option<String>,
    pub methods: Option<Vec<String>>,
    pub auth: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub any_scopes: Option<Vec<String>>,
    pub claims: Option<BTreeMap<String, toml::Value>>,
    pub issuers: Option<Vec<String>>,
    pub cors_preflight: Option<String>,
    pub upstream: Option<String>,
    pub websocket: Option<bool>,
    pub spiffe_ids: Option<Vec<String>>,
    pub dpop: Option<String>,
    pub hosts: Option<Vec<String>>,
    pub allow_if: Option<String>,
    pub deny_if: Option<String>,
    pub cors: Option<RawCors>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    pub allow_origins: Option<Vec<String>>,
    pub allow_methods: Option<Vec<String>>,
    pub allow_headers: Option<Vec<String>>,
    pub expose_headers: Option<Vec<String>>,
    pub max_age: Option<String>,
    pub allow_credentials: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaders {
    pub claims: Option<BTreeMap<String, String>>,
    pub payload: Option<String>,
    pub client_cert_subject: Option<String>,
    pub client_spiffe_id: Option<String>,
    pub assertion: Option<RawAssertion>,
}

/// `assertion = { … }` under `[headers]`: a JWT jwtgate signs for the backend.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAssertion {
    pub header: Option<String>,
    pub key_file: Option<String>,
    pub alg: Option<String>,
    pub ttl: Option<String>,
    pub claims: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub max_tokens: Option<i64>,
}
