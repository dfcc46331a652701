//! jwtgate: a reverse proxy that lets through only requests carrying a
//! valid OAuth2/OIDC bearer JWT.
//!
//! The request path, in one direction:
//!
//! ```text
//! server   accept (HTTP/1.1, h2c)
//! gateway  ├─ headers::remove_untrusted one method spelling, one authority, no header only a proxy may set
//!          ├─ path::normalize          the canonical path: what routes judge and the upstream gets
//!          ├─ method_override          the method the backend will serve (override stripped or honoured)
//!          ├─ routes::RouteTable::find first matching route (default: token required)
//!          ├─ auth::identity::strip    client-sent identity headers removed
//!          ├─ auth::bearer             one Authorization: Bearer <b64token>
//!          ├─ auth::Authenticator      iss → issuer → keys::Snapshot → signature → exp/nbf/aud
//!          │                           (not a JWT: auth::introspect asks the issuer's RFC 7662 endpoint)
//!          ├─ routes::Route::authorize issuers, scopes, claims (403)
//!          ├─ assertion::Assertion     the signed identity for the backend, reused while fresh
//!          ├─ proxy::Upstream::prepare hop-by-hop, Authorization, Host, X-Forwarded-*, identity headers
//!          └─ proxy::Upstream::send    a pooled connection under max_connections (503), streamed bodies, 502 / 504
//! error    any refusal → status, WWW-Authenticate, JSON body
//! ```
//!
//! Keys live in `keys`: per issuer an immutable snapshot swapped by a
//! background refresher; `config` turns the TOML file into typed values.
//!
//! Modules in layers; each uses only layers below it, and no two modules
//! use each other (`tests/it/architecture.rs` checks both):
//!
//! ```text
//! main, cli     the command line, over the library
//! app           the lifecycle: config → tracing → gateway → listeners → reload → admin → shutdown
//! demo, reload, check, explain, token, probe
//! admin         /healthz, /readyz, /metrics
//! gateway       the request path above; forward_auth, method_override, cors, upgrade beside it
//! access        each answer's access-log line and route metrics, written when its body ends
//! proxy         Upstream::prepare accepts only an Admitted, which only Gateway::admit makes
//! pool          upstream connections: reuse, max_connections, idle and stalled ones closed
//! assertion   [headers] assertion: a JWT signed for the backend per token and upstream; its JWKS
//! routes, policy (CEL rules), auth, keys, error, metrics, headers, form, resource_metadata
//! otel          [tracing]: server, upstream-call and key-fetch spans over OTLP; off is a None
//! server        transport only: accept, serve any handler, drain in phases; idle (buffers let go)
//! connection    Peer, connection slots, shutdown phases (a leaf)
//! tls, outbound, logging, version, client_cert (what a verified client certificate says)
//! config        the TOML file → typed values; uses only path (a leaf)
//! ```

pub(crate) mod access;
pub(crate) mod admin;
pub mod app;
pub mod assertion;
pub mod auth;
pub mod check;
pub mod cli;
pub mod client_cert;
pub mod config;
pub(crate) mod connection;
pub(crate) mod cors;
pub mod demo;
pub(crate) mod error;
pub mod explain;
pub(crate) mod form;
pub(crate) mod forward_auth;
pub mod gateway;
pub mod headers;
pub(crate) mod idle;
pub mod keys;
pub mod logging;
pub(crate) mod method_override;
pub mod metrics;
pub mod otel;
pub(crate) mod outbound;
pub mod path;
pub mod policy;
pub mod pool;
pub mod probe;
pub mod proxy;
pub mod rate_limit;
pub mod reload;
pub(crate) mod request_id;
pub(crate) mod resource_metadata;
pub mod routes;
pub mod server;
pub mod tls;
pub mod token;
pub(crate) mod upgrade;
pub mod version;

pub use config::Config;
pub use gateway::Gateway;
