//! The typed configuration: what validation produces from each TOML table
//! and the rest of the gateway reads.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, Method, Uri};
use jsonwebtoken::Algorithm;
use serde_json::Value;

use super::cel::CelRule;
use super::hosts::HostPattern;
use super::rate_limit::{RateLimitConfig, RateLimitStoreConfig};
use super::spiffe::SpiffePattern;
use super::{AssertionConfig, ClaimPath, TokenLocation, defaults};

/// The validated configuration of one gateway.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    /// `[upstream]`: where a route without `upstream = "NAME"` sends requests.
    pub upstream: UpstreamConfig,
    /// `[upstreams.NAME]`, by name.
    pub upstreams: Vec<(String, UpstreamConfig)>,
    pub issuers: Vec<IssuerConfig>,
    /// In file order; the first match wins.
    pub routes: Vec<RouteConfig>,
    pub headers: HeadersConfig,
    pub cache: CacheConfig,
    pub forward_auth: Option<ForwardAuthConfig>,
    pub limits: LimitsConfig,
    pub resource_metadata: Option<ResourceMetadataConfig>,
    /// `[tracing]` with an `otlp_endpoint`; `None`: no spans are made.
    pub tracing: Option<TracingConfig>,
    /// `[[rate_limits]]`, in file order.
    pub rate_limits: Vec<RateLimitConfig>,
    /// `[rate_limit_store]`: the limits kept in Redis; `None`: in this process.
    pub rate_limit_store: Option<RateLimitStoreConfig>,
}

/// `[tracing]`: OpenTelemetry spans exported over OTLP.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// Where spans are sent: for OTLP/HTTP the full URL (`/v1/traces`
    /// added to an endpoint written without a path), for gRPC the origin.
    pub endpoint: String,
    pub protocol: TracingProtocol,
    /// Of the requests without a sampled parent, the share recorded (0.0–1.0).
    pub sample_ratio: f64,
    pub service_name: String,
    /// Put a verified token's `sub` on its request's span (`enduser.id`).
    pub record_subject: bool,
}

/// How spans travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TracingProtocol {
    /// OTLP/HTTP, protobuf body (port 4318 by convention).
    Http,
    /// OTLP/gRPC (port 4317 by convention).
    Grpc,
}

/// `[resource_metadata]`: RFC 9728 protected-resource metadata.
#[derive(Debug, Clone)]
pub struct ResourceMetadataConfig {
    pub resource: String,
    /// Default: every configured issuer.
    pub authorization_servers: Vec<String>,
    pub scopes_supported: Option<Vec<String>>,
    pub bearer_methods_supported: Vec<String>,
    pub resource_documentation: Option<String>,
    /// RFC 9728 §3.1: `/.well-known/oauth-protected-resource` plus the resource's path.
    pub well_known_path: String,
    /// The same as a URL, for `resource_metadata` in `WWW-Authenticate`.
    pub url: String,
}

/// `[limits]`: bounds on what clients and key servers can make jwtgate
/// hold or do. Every one has a safe default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Larger bearer tokens are refused before any decoding.
    pub max_token_bytes: usize,
    /// Objects and arrays inside each other in a token's header or payload.
    pub max_json_depth: usize,
    pub jwks: JwksLimits,
    pub http2_max_concurrent_streams: u32,
    /// Streams a client may reset before they are accepted (rapid reset).
    pub http2_max_pending_resets: usize,
    /// Streams reset because of a client's errors before the connection goes.
    pub http2_max_error_resets: usize,
}

/// Bounds on fetching and reading a key set (and discovery documents).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksLimits {
    pub max_bytes: usize,
    pub max_keys: usize,
    pub fetch_timeout: Duration,
}

impl Default for JwksLimits {
    fn default() -> Self {
        JwksLimits {
            max_bytes: defaults::MAX_JWKS_BYTES,
            max_keys: defaults::MAX_JWKS_KEYS,
            fetch_timeout: defaults::JWKS_FETCH_TIMEOUT,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_token_bytes: defaults::MAX_TOKEN_BYTES,
            max_json_depth: defaults::MAX_JSON_DEPTH,
            jwks: JwksLimits::default(),
            http2_max_concurrent_streams: defaults::HTTP2_MAX_CONCURRENT_STREAMS,
            http2_max_pending_resets: defaults::HTTP2_MAX_PENDING_RESETS,
            http2_max_error_resets: defaults::HTTP2_MAX_ERROR_RESETS,
        }
    }
}

/// `[forward_auth]`: checks for an edge proxy, answered at `path`.
#[derive(Debug, Clone)]
pub struct ForwardAuthConfig {
    /// Normalised, without a trailing `/`; never `/` itself.
    pub path: String,
    /// The edge proxy asking: the one set of headers trusted to name the
    /// original request.
    pub edge: Edge,
}

/// The edge proxies whose forward-auth requests jwtgate reads, each with
/// the one way it names the original request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// `auth_request` with `X-Original-URI` and `X-Original-Method` set by
    /// its `proxy_set_header` (which replaces any the client sent).
    Nginx,
    /// `forwardAuth`: `X-Forwarded-Uri` and `X-Forwarded-Method`, set by Traefik.
    Traefik,
    /// `forward_auth`: `X-Forwarded-Uri` and `X-Forwarded-Method`, set by Caddy.
    Caddy,
    /// `ext_authz` with `path_prefix`: the original path after the check
    /// path, the original method as the check's.
    Envoy,
}

/// `server.method_override`: what to do with a client's request to be
/// treated as another method (`X-HTTP-Method-Override`, a form's `_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodOverride {
    /// Override headers are removed; a `_method` that would change the
    /// route is refused.
    Strip,
    /// The request is judged as the method it asks to be treated as, and
    /// the override travels on.
    Honour,
}

/// The verified-token cache.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Entries at most; 0 turns the cache off.
    pub max_tokens: usize,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// `/healthz`, `/readyz`, `/metrics`; `None`: no admin listener.
    pub admin_listen: Option<SocketAddr>,
    /// Runtime worker threads; `None`: one per core.
    pub worker_threads: Option<usize>,
    /// Open client connections at most; more wait in the listen backlog.
    pub max_connections: usize,
    /// Whole request, from the client's head to the upstream's response head.
    pub request_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub shutdown_grace: Duration,
    pub realm: String,
    /// `false` (the default): `/ADMIN` is judged by the `/admin` route, as
    /// Express, ASP.NET and IIS would serve it.
    pub case_sensitive_routes: bool,
    pub method_override: MethodOverride,
    /// An upgraded (WebSocket) session idle this long is closed.
    pub websocket_idle_timeout: Duration,
    /// A client that takes no bytes of a response for this long is cut
    /// off, and so is the upstream connection feeding it.
    pub send_timeout: Duration,
    /// What the proxy listener speaks.
    pub protocols: Protocols,
    /// The URL clients call the gateway by (DPoP's `htu`); `None`: the
    /// listener's scheme and the request's Host.
    pub public_url: Option<PublicUrl>,
    /// DPoP proofs must carry a nonce of the gateway's (`use_dpop_nonce`).
    pub dpop_nonce: bool,
    /// TLS on the proxy listener; `None`: plain HTTP/1.1 and h2c.
    pub tls: Option<ServerTlsConfig>,
}

/// `server.protocols`: HTTP/1.1, HTTP/2 (h2c in the clear, h2 by ALPN over
/// TLS), or both. A listener that speaks one version needs no machinery for
/// telling them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocols {
    pub http1: bool,
    pub http2: bool,
}

impl Default for Protocols {
    fn default() -> Self {
        Protocols { http1: true, http2: true }
    }
}

/// `[server.tls]`: PEM files, read at start and again on every reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsConfig {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Offered by ALPN (`server.protocols`).
    pub protocols: Protocols,
    /// `client_auth` and `client_ca_file`: whether clients are asked for a certificate.
    pub client_auth: ClientAuth,
}

/// `[server.tls] client_auth`, with the `client_ca_file` its certificates
/// must chain to (RFC 8705 §2: the gateway, not the token, vouches for the
/// certificate).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No certificate is asked for (the default).
    #[default]
    None,
    /// Asked for; a client may send none, and one it sends must verify.
    Optional(PathBuf),
    /// The handshake fails without a certificate that verifies.
    Required(PathBuf),
}

impl ClientAuth {
    /// The CA file, unless no certificate is asked for.
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        match self {
            ClientAuth::None => None,
            ClientAuth::Optional(file) | ClientAuth::Required(file) => Some(file),
        }
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The table it came from (`upstream`, `upstreams.billing`), for messages.
    pub key: String,
    /// Scheme and authority of the upstream.
    pub origin: Uri,
    /// Path prefix prepended to every forwarded path ("" when the URL has none).
    pub base_path: String,
    pub connect_timeout: Duration,
    /// Until the upstream's response head arrives.
    pub timeout: Duration,
    pub forward_authorization: bool,
    pub preserve_host: bool,
    pub protocol: UpstreamProtocol,
    /// For https upstreams: trusted in addition to the system's roots.
    pub ca_file: Option<PathBuf>,
    /// For https upstreams: a client certificate (mTLS).
    pub client_identity: Option<ClientIdentity>,
    /// Open connections to the upstream at most; a request finding none
    /// free waits up to `connect_timeout` for one, then gets 503.
    pub max_connections: usize,
}

/// How jwtgate speaks to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    /// HTTP/2 with prior knowledge (cleartext); what gRPC servers speak.
    H2c,
    /// HTTP/2 or HTTP/1.1 as ALPN settles on an https upstream; HTTP/1.1 on http.
    Auto,
}

/// A certificate chain and its key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// Compared exactly with a token's `iss`.
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks: JwksSource,
    /// PEM certificates trusted, beside the system's roots, for discovery
    /// and JWKS fetches over https (an internal CA).
    pub ca_file: Option<PathBuf>,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    pub refresh_interval: Duration,
    pub min_refresh_interval: Duration,
    pub scope_claims: Vec<ClaimPath>,
    /// From `[limits]`; kept here so a reload can tell whether they changed.
    pub jwks_limits: JwksLimits,
    /// RFC 9068 `typ` (lower case, without `application/`), e.g. `at+jwt`.
    pub require_typ: Option<String>,
    /// Refuse tokens whose `exp - iat` is longer (and tokens without `iat`).
    pub max_lifetime: Option<Duration>,
    pub required_claims: Vec<ClaimPath>,
    /// Where its tokens may be sent; `[Header]` by default.
    pub token_from: Vec<TokenLocation>,
    /// With `{tenant}` in `issuer`: the tenants accepted.
    pub tenants: Option<Tenants>,
    /// With `tenants = ["*"]` and keys per tenant: key sets held at most.
    pub max_tenants: usize,
    /// A SPIFFE trust domain (`issuer = "spiffe://TD"`) whose keys are its
    /// bundle's `jwt-svid` keys: its tokens are JWT-SVIDs.
    pub spiffe: bool,
    /// RFC 7662 token introspection (`docs/introspection.md`).
    pub introspection: Option<super::IntrospectionConfig>,
    pub dpop: DpopMode,
    /// RFC 8705: only tokens bound to the client certificate (`cnf.x5t#S256`).
    pub require_cert_binding: bool,
}

impl IssuerConfig {
    /// Each tenant has its own keys: `{tenant}` is in the JWKS URL, or in
    /// the discovery URL of a templated issuer without one.
    pub fn keys_per_tenant(&self) -> bool {
        self.tenants.is_some()
            && match &self.jwks {
                JwksSource::Url(url) => url.contains(TENANT),
                JwksSource::Discovery { discovery_url } => discovery_url.contains(TENANT),
                JwksSource::File(_) => false,
            }
    }

    /// The issuer as one tenant sees it: `{tenant}` substituted in the
    /// issuer and the key source. Call only with a [`fetchable_tenant`] name.
    pub fn for_tenant(&self, tenant: &str) -> IssuerConfig {
        let jwks = match &self.jwks {
            JwksSource::Url(url) => JwksSource::Url(url.replace(TENANT, tenant)),
            JwksSource::Discovery { discovery_url } => {
                JwksSource::Discovery { discovery_url: discovery_url.replace(TENANT, tenant) }
            }
            JwksSource::File(file) => JwksSource::File(file.clone()),
        };
        IssuerConfig { issuer: self.issuer.replace(TENANT, tenant), jwks, tenants: None, ..self.clone() }
    }
}

/// Whether a tenant name may be put into a URL the gateway fetches keys
/// from. The name comes from an unverified token's `iss`, so it is held to
/// what tenant names are (Keycloak realms, Auth0 and Okta subdomains, Entra
/// GUIDs): letters, digits, `-`, `_` and inner dots. Anything else could
/// move the fetch elsewhere: `evil.example#` in `https://{tenant}.idp/`
/// names another host, `..` in a path names another directory.
pub fn fetchable_tenant(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
}

/// `[server] public_url`: scheme, host (lower case) and port clients
/// call, and the path prefix an edge strips before jwtgate sees a request
/// (empty, or `/api` without a trailing `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub base_path: String,
}

/// RFC 9449 DPoP for an issuer's tokens (`dpop`), or a route's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DpopMode {
    /// Bearer only; a DPoP-bound token is refused whatever the scheme.
    #[default]
    Off,
    /// Bearer for unbound tokens, DPoP (with a proof) for bound ones.
    Allowed,
    /// DPoP-bound tokens with a proof only.
    Required,
}

impl DpopMode {
    pub fn parse(text: &str) -> Option<DpopMode> {
        match text {
            "off" => Some(DpopMode::Off),
            "allowed" => Some(DpopMode::Allowed),
            "required" => Some(DpopMode::Required),
            _ => None,
        }
    }
}

/// The tenants of a templated issuer (`https://login.example.com/{tenant}/v2.0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenants {
    Any,
    Only(Vec<String>),
}

/// The placeholder in a multi-tenant issuer, and the claim name under which
/// a verified token's tenant is available to routes and headers.
pub const TENANT: &str = "{tenant}";

/// How a route treats the bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// A valid token is needed (the default, also for unmatched paths).
    Required,
    /// A token is verified when present; without one the request passes anonymously.
    Optional,
    /// The token is never looked at.
    Public,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Normalised, without a trailing `/` (except the root `/`).
    pub path: String,
    /// `None`: any method.
    pub methods: Option<Vec<Method>>,
    pub auth: AuthMode,
    pub scopes: Vec<String>,
    pub any_scopes: Vec<String>,
    pub claims: Vec<(ClaimPath, Value)>,
    /// `None`: every configured issuer.
    pub issuers: Option<Vec<String>>,
    /// CORS preflights pass without a token.
    pub public_preflight: bool,
    /// A named upstream (`[upstreams.NAME]`); `None`: `[upstream]`.
    pub upstream: Option<String>,
    /// Upgrades (WebSocket) may be opened through this route.
    pub websocket: bool,
    /// Empty: any caller; else a JWT-SVID whose SPIFFE ID one of them allows.
    pub spiffe_ids: Vec<SpiffePattern>,
    /// Overrides the issuer's `dpop` on this route.
    pub dpop: Option<DpopMode>,
    /// `[routes.cors]`: CORS answered by the gateway for this route.
    pub cors: Option<CorsConfig>,
    /// Empty: any host; else the request's host must be one of these.
    pub hosts: Vec<HostPattern>,
    /// CEL: the request passes only if this is true…
    pub allow_if: Option<CelRule>,
    /// …and this is not.
    pub deny_if: Option<CelRule>,
}

/// `[routes.cors]`: which browser origins may call the route, answered by
/// the gateway itself (preflights never reach the backend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// Origins as `scheme://host[:port]`, lower case; `None` for `"*"`.
    pub allow_origins: Option<Vec<String>>,
    pub allow_methods: Vec<Method>,
    /// Lower case.
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<Duration>,
    pub allow_credentials: bool,
}

/// Identity headers added for verified tokens; every name here is also
/// stripped from every incoming request.
#[derive(Debug, Clone, Default)]
pub struct HeadersConfig {
    pub claims: Vec<(ClaimPath, HeaderName)>,
    pub payload: Option<HeaderName>,
    /// The verified client certificate's subject (RFC 4514), with `[server.tls] client_auth`.
    pub client_cert_subject: Option<HeaderName>,
    /// Its SPIFFE ID (the one `spiffe://` URI SAN).
    pub client_spiffe_id: Option<HeaderName>,
    /// A JWT signed by jwtgate for each request admitted with a token.
    pub assertion: Option<AssertionConfig>,
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// `jwks_uri` from `{issuer}/.well-known/openid-configuration`.
    Discovery {
        discovery_url: String,
    },
    Url(String),
    File(PathBuf),
}
