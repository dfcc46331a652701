//! The demo's private backend: what jwtgate protects.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;

use crate::error::json_response;

pub fn handle(request: &Request<Incoming>) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/") => json_response(StatusCode::OK, &json!({"message": "This is private"})),
        _ => json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found"})),
    }
}
