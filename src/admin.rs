//! The admin listener, apart from proxied traffic: `GET /healthz` (the
//! process runs), `GET /readyz` (every issuer has keys), `GET /metrics`
//! (Prometheus text) and `GET /.well-known/jwks.json` (the keys that sign
//! `[headers] assertion`). It always reads the current configuration.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use crate::error::json_response;
use crate::gateway::SharedGateway;

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const JWKS_PATH: &str = "/.well-known/jwks.json";

pub fn handle<B>(request: &Request<B>, shared: &SharedGateway) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return json_response(StatusCode::METHOD_NOT_ALLOWED, &json!({"error": "method_not_allowed"}));
    }
    let gateway = shared.load();
    match request.uri().path() {
        "/healthz" => json_response(StatusCode::OK, &json!({"status": "ok"})),
        "/readyz" => {
            let waiting: Vec<&str> =
                gateway.issuer_keys().iter().filter(|k| !k.has_keys()).map(|k| k.issuer()).collect();
            if waiting.is_empty() {
                json_response(StatusCode::OK, &json!({"ready": true}))
            } else {
                json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"ready": false, "issuers_without_keys": waiting}),
                )
            }
        }
        "/metrics" => {
            let text = gateway.render_metrics();
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
            response
        }
        JWKS_PATH => {
            let Some(jwks) = gateway.assertion_jwks(crate::auth::dpop::unix_now()) else {
                return json_response(
                    StatusCode::NOT_FOUND,
                    &json!({"error": "not_found", "error_description": "no [headers] assertion is configured"}),
                );
            };
            let mut response = Response::new(Full::new(Bytes::from(jwks)));
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/jwk-set+json"));
            // Short: a rotated key must be found soon (verifiers also refetch on an unknown kid).
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
            response
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "not_found", "endpoints": ["/healthz", "/readyz", "/metrics", JWKS_PATH]}),
        ),
    }
}
