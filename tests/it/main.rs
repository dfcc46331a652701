//! The integration tests, in one binary so they are compiled and linked
//! once: one module per area, each starting real servers on 127.0.0.1:0,
//! sharing the fixtures in `support`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod accounting;
mod architecture;
mod assertion;
mod attacks;
mod auth;
mod browser;
mod bypasses;
mod cache;
mod cert_binding;
mod cli;
mod demo;
mod deploy;
mod differential;
mod dpop;
mod explain;
mod forward_auth;
mod fuzz_corpus;
mod grpc;
mod hosts;
mod introspection;
mod keys;
mod limits;
mod operations;
mod pool;
mod proxy;
mod rate_limits;
mod routes;
mod rules;
mod ship;
mod spiffe;
mod standards;
mod tenants;
mod tls;
mod token_locations;
mod tracing;
mod upstreams;
mod websocket;
