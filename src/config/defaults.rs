//! Every default of the configuration file, in one place: what a key that
//! is not written means. Validation and the `Default` impls use these, and
//! so may other layers that need the same value.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use http::Method;
use jsonwebtoken::Algorithm;

// [server]

/// `server.listen`: every interface, port 8080.
pub const LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080);
/// `server.max_connections`: open client connections at most.
pub const MAX_CONNECTIONS: usize = 10_000;
/// `server.request_timeout`: from the client's head to the upstream's response head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// `server.header_read_timeout`: for a client to send a request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// `server.max_header_bytes`: 16 KiB of request head.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// `server.shutdown_grace`: for requests in flight to finish on shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// `server.realm`: the realm of the `WWW-Authenticate` challenge.
pub const REALM: &str = "jwtgate";
/// `server.websocket_idle_timeout`: an upgraded session idle this long is closed.
pub const WEBSOCKET_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// `server.send_timeout`: a client taking no response bytes this long is cut off (nginx's `send_timeout`).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);

// [upstream], [upstreams.NAME]

/// `upstream.connect_timeout`.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// `upstream.timeout`: until the upstream's response head arrives.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// `upstream.max_connections`: open connections per upstream at most.
pub const UPSTREAM_MAX_CONNECTIONS: usize = 256;

// [[issuers]]

/// `issuers.algorithms`: what most identity providers sign with.
pub const ALGORITHMS: [Algorithm; 1] = [Algorithm::RS256];
/// `issuers.leeway`: clock skew allowed on `exp`, `nbf` and `iat`.
pub const LEEWAY: Duration = Duration::from_secs(30);
/// `issuers.refresh_interval`: how often the key set is fetched again.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(600);
/// `issuers.min_refresh_interval`: the least time between two fetches of a key set.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// `issuers[].max_tenants`: key sets held at most for `tenants = ["*"]`
/// with `{tenant}` in the key source (each a JWKS and a refresher).
pub const MAX_TENANTS: usize = 1000;
/// `issuers[].algorithms` of a SPIFFE issuer: what JWT-SVIDs may be signed with.
pub const SPIFFE_ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
/// `issuers.scope_claims`: the claims scopes are read from.
pub const SCOPE_CLAIMS: [&str; 3] = ["scope", "scp", "permissions"];

// [routes.cors]

/// `routes.cors.allow_methods`.
pub const CORS_ALLOW_METHODS: [Method; 3] = [Method::GET, Method::HEAD, Method::POST];
/// `routes.cors.allow_headers`: what a bearer-token API's browser client sends.
pub const CORS_ALLOW_HEADERS: [&str; 2] = ["authorization", "content-type"];
/// `routes.cors.expose_headers`: the challenge, readable by the client.
pub const CORS_EXPOSE_HEADERS: [&str; 1] = ["www-authenticate"];

// [resource_metadata]

/// `resource_metadata.bearer_methods_supported`.
pub const BEARER_METHODS_SUPPORTED: [&str; 1] = ["header"];

// [cache]

/// `cache.max_tokens`: verified tokens remembered at most.
pub const CACHE_MAX_TOKENS: usize = 10_000;

// [[issuers]] introspection (RFC 7662)

/// `issuers[].cache_ttl`: an active introspection answer is reused this long at most (and never past its `exp`).
pub const INTROSPECTION_CACHE_TTL: Duration = Duration::from_secs(60);
/// `issuers[].introspection.timeout`: for the endpoint's whole answer.
pub const INTROSPECTION_TIMEOUT: Duration = Duration::from_secs(5);

// [tracing]

/// `tracing.sample_ratio`: every request without a parent is recorded.
pub const TRACING_SAMPLE_RATIO: f64 = 1.0;
/// `tracing.service_name`: the `service.name` resource attribute.
pub const TRACING_SERVICE_NAME: &str = "jwtgate";

// [limits]

/// `limits.max_token_bytes`: larger bearer tokens are refused before decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// `limits.max_json_depth`: nesting in a token's header or payload.
pub const MAX_JSON_DEPTH: usize = 32;
/// `limits.max_jwks_bytes`: 1 MiB of key set or discovery document.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// `limits.max_jwks_keys`: keys in one key set.
pub const MAX_JWKS_KEYS: usize = 100;
/// `limits.jwks_fetch_timeout`: for one fetch of a key set or discovery document.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// `limits.http2_max_concurrent_streams`: per client connection.
pub const HTTP2_MAX_CONCURRENT_STREAMS: u32 = 256;
/// `limits.http2_max_pending_resets`: streams a client may reset before they are accepted.
pub const HTTP2_MAX_PENDING_RESETS: usize = 64;
/// `limits.http2_max_error_resets`: streams reset for a client's errors before the connection goes.
pub const HTTP2_MAX_ERROR_RESETS: usize = 256;
