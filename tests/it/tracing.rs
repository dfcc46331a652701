//! `[tracing]`: spans arrive at a real OTLP receiver started by the test
//! (OTLP/HTTP: a hyper server decoding protobuf; OTLP/gRPC: a tonic
//! TraceService), carry the caller's trace, and name the upstream call in
//! the traceparent the upstream receives. Off, traceparent passes untouched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message;
use tokio::task::JoinHandle;
use tonic::codegen::Service;

use crate::support::http::{full, serve};
use crate::support::keys::{SigningKey, claims};
use crate::support::{TestGateway, TestIdp, client, free_port, toml};

/// One span as the receiver got it, attributes as text.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    name: String,
    kind: SpanKind,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
    status: StatusCode,
}

impl Got {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

fn text(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .filter_map(|kv| {
            let value = match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(s) => s.clone(),
                AnyValue::IntValue(i) => i.to_string(),
                AnyValue::BoolValue(b) => b.to_string(),
                AnyValue::DoubleValue(d) => d.to_string(),
                other => format!("{other:?}"),
            };
            Some((kv.key.clone(), value))
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a receiver has been sent: spans, and the paths OTLP/HTTP posted to.
#[derive(Default)]
struct Received {
    spans: Mutex<Vec<Got>>,
    paths: Mutex<Vec<String>>,
}

impl Received {
    fn take(&self, export: ExportTraceServiceRequest) {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in export.resource_spans {
            let resource = resource_spans.resource.map(|r| text(&r.attributes)).unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(Got {
                    service: service.clone(),
                    name: span.name.clone(),
                    kind: span.kind(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: text(&span.attributes),
                    status: span.status.map_or(StatusCode::Unset, |s| s.code()),
                });
            }
        }
    }
}

/// An OTLP receiver on 127.0.0.1, as a collector would run it.
struct Receiver {
    endpoint: String,
    received: Arc<Received>,
    _task: JoinHandle<()>,
}

impl Receiver {
    /// OTLP/HTTP: `POST /v1/traces` with an `ExportTraceServiceRequest` body.
    async fn http() -> Receiver {
        let received = Arc::new(Received::default());
        let sink = Arc::clone(&received);
        let (addr, task) = serve(move |request: Request<Incoming>| {
            let sink = Arc::clone(&sink);
            async move {
                sink.paths.lock().unwrap().push(request.uri().path().to_string());
                let body = request.into_body().collect().await.unwrap().to_bytes();
                sink.take(ExportTraceServiceRequest::decode(body).unwrap());
                let answer = ExportTraceServiceResponse::default().encode_to_vec();
                Response::builder().header("content-type", "application/x-protobuf").body(full(answer)).unwrap()
            }
        })
        .await;
        Receiver { endpoint: format!("http://{addr}"), received, _task: task }
    }

    /// OTLP/gRPC: tonic's generated TraceService, served as h2c.
    async fn grpc() -> Receiver {
        let received = Arc::new(Received::default());
        let service = TraceServiceServer::new(Collector(Arc::clone(&received)));
        let (addr, task) = serve(move |request: Request<Incoming>| {
            let mut service = service.clone();
            async move { service.call(request).await.unwrap() }
        })
        .await;
        Receiver { endpoint: format!("http://{addr}"), received, _task: task }
    }

    /// The spans exported so far, once `gateway` has flushed its batch and
    /// `enough` holds (or a deadline of 5 s passed: the assertions say what is missing).
    async fn spans(&self, gateway: &TestGateway, enough: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        gateway.gateway.otel().flush().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let spans = self.received.spans.lock().unwrap().clone();
            if enough(&spans) || tokio::time::Instant::now() > deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

struct Collector(Arc<Received>);

#[tonic::codegen::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.take(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An upstream that records each request's headers: 502 for `/api/broken`, else 200.
async fn upstream() -> (String, Arc<Mutex<Vec<HeaderMap>>>, JoinHandle<()>) {
    let seen: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
    let record = Arc::clone(&seen);
    let (addr, task) = serve(move |request: Request<Incoming>| {
        record.lock().unwrap().push(request.headers().clone());
        let status = if request.uri().path() == "/api/broken" { 502 } else { 200 };
        async move { Response::builder().status(status).body(full(Bytes::from_static(b"ok"))).unwrap() }
    })
    .await;
    (format!("http://{addr}"), seen, task)
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

async fn send(gateway: &TestGateway, path: &str, token: Option<&str>, traceparent: Option<&str>) -> u16 {
    let mut request = client().get(gateway.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent).header("tracestate", "caller=1");
    }
    request.send().await.unwrap().status().as_u16()
}

/// `[[routes]]` for `/api` (a token required) and `/open` (public), and `[tracing]`.
async fn traced_gateway(idp: &TestIdp, upstream: &str, tracing: &str) -> TestGateway {
    let down = free_port();
    toml(upstream, &idp.issuer)
        .issuer("[[routes]]\npath = \"/api\"\n")
        .issuer("[[routes]]\npath = \"/open\"\nauth = \"public\"\n")
        .issuer("[[routes]]\npath = \"/down\"\nauth = \"public\"\nupstream = \"down\"\n")
        .issuer(&format!("[upstreams.down]\nurl = \"http://{down}\"\n"))
        .issuer(&format!("[tracing]\n{tracing}\n"))
        .start()
        .await
}

#[tokio::test]
async fn otlp_http_gets_server_upstream_and_key_fetch_spans_in_the_callers_trace() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let (upstream_url, upstream_saw, _upstream) = upstream().await;
    let receiver = Receiver::http().await;
    let gateway = traced_gateway(
        &idp,
        &upstream_url,
        &format!("otlp_endpoint = \"{}\"\nservice_name = \"edge\"", receiver.endpoint),
    )
    .await;
    let token = key.mint(&claims(&idp.issuer, "api"));

    let caller = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    assert_eq!(send(&gateway, "/api/items", Some(&token), Some(&caller)).await, 200);
    assert_eq!(send(&gateway, "/api/items", None, None).await, 401);
    assert_eq!(send(&gateway, "/api/broken", Some(&token), None).await, 502);
    assert_eq!(send(&gateway, "/down/x", None, None).await, 502);

    let spans =
        receiver.spans(&gateway, |spans| spans.iter().filter(|s| s.kind == SpanKind::Server).count() >= 4).await;
    assert_eq!(*receiver.received.paths.lock().unwrap().first().unwrap(), "/v1/traces");
    assert!(spans.iter().all(|s| s.service == "edge"), "{spans:#?}");

    // The server span continues the caller's trace, under the caller's span.
    let server = spans.iter().find(|s| s.parent_span_id == CALLER_SPAN).expect("a span under the caller's");
    assert_eq!((server.kind, server.trace_id.as_str(), server.name.as_str()), (SpanKind::Server, TRACE_ID, "GET /api"));
    assert_eq!(server.attr("http.route"), Some("/api"));
    assert_eq!(server.attr("http.request.method"), Some("GET"));
    assert_eq!(server.attr("url.path"), Some("/api/items"));
    assert_eq!(server.attr("http.response.status_code"), Some("200"));
    assert_eq!(server.attr("jwtgate.outcome"), Some("allowed"));
    assert_eq!(server.attr("jwtgate.issuer"), Some(idp.issuer.as_str()));
    assert_eq!(server.attr("jwtgate.reason"), None);
    assert_eq!(server.attr("enduser.id"), None, "the subject only with record_subject");
    assert_eq!(server.status, StatusCode::Unset);

    // The upstream call is its child, and the upstream was told so.
    let call = spans.iter().find(|s| s.parent_span_id == server.span_id).expect("the upstream call's span");
    assert_eq!((call.kind, call.trace_id.as_str(), call.name.as_str()), (SpanKind::Client, TRACE_ID, "GET"));
    assert_eq!(call.attr("url.full"), Some(format!("{upstream_url}/api/items").as_str()));
    assert_eq!(call.attr("http.response.status_code"), Some("200"));
    let first = upstream_saw.lock().unwrap()[0].clone();
    assert_eq!(first["traceparent"], format!("00-{TRACE_ID}-{}-01", call.span_id).as_str());
    assert_eq!(first["tracestate"], "caller=1");

    // A refusal: its reason, and not an error (a 4xx is the client's).
    let refused = spans.iter().find(|s| s.attr("jwtgate.outcome") == Some("refused")).expect("the 401's span");
    assert_eq!(refused.attr("http.response.status_code"), Some("401"));
    assert_eq!(refused.attr("jwtgate.reason"), Some("missing_token"));
    assert_eq!(refused.status, StatusCode::Unset);
    assert_ne!(refused.trace_id, TRACE_ID, "no traceparent: a trace of its own");

    // The upstream's own 502: both spans are errors.
    let broken = spans.iter().find(|s| s.attr("url.path") == Some("/api/broken")).expect("the 502's span");
    assert_eq!((broken.attr("http.response.status_code"), broken.status), (Some("502"), StatusCode::Error));
    let broken_call = spans.iter().find(|s| s.parent_span_id == broken.span_id).expect("its upstream call");
    assert_eq!((broken_call.attr("http.response.status_code"), broken_call.status), (Some("502"), StatusCode::Error));

    // An upstream that refuses the connection: the gateway's 502, with its reason.
    let down = spans.iter().find(|s| s.attr("url.path") == Some("/down/x")).expect("the refused connection's span");
    assert_eq!(down.attr("jwtgate.outcome"), Some("upstream_error"));
    assert_eq!((down.attr("jwtgate.reason"), down.attr("error.type")), (Some("bad_gateway"), Some("bad_gateway")));
    assert_eq!((down.attr("http.route"), down.status), (Some("/down"), StatusCode::Error));
    let down_call = spans.iter().find(|s| s.parent_span_id == down.span_id).expect("its upstream call");
    assert_eq!((down_call.attr("error.type"), down_call.status), (Some("bad_gateway"), StatusCode::Error));

    // The key fetches at start-up: discovery, then the JWKS it names.
    let fetch = |document: &str| {
        spans.iter().find(|s| s.attr("jwtgate.document") == Some(document)).unwrap_or_else(|| panic!("{spans:#?}"))
    };
    let jwks = fetch("jwks");
    assert_eq!((jwks.kind, jwks.attr("jwtgate.result")), (SpanKind::Client, Some("ok")));
    assert_eq!(jwks.attr("url.full"), Some(idp.jwks_url().as_str()));
    assert_eq!(jwks.attr("http.response.status_code"), Some("200"));
    assert_eq!(fetch("discovery").attr("jwtgate.result"), Some("ok"));

    gateway.stop().await;
}

#[tokio::test]
async fn otlp_grpc_follows_the_callers_sampling_decision_at_ratio_zero() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let (upstream_url, upstream_saw, _upstream) = upstream().await;
    let receiver = Receiver::grpc().await;
    let tracing = format!("otlp_endpoint = \"{}\"\nprotocol = \"grpc\"\nsample_ratio = 0.0", receiver.endpoint);
    let gateway = traced_gateway(&idp, &upstream_url, &tracing).await;

    // Without a parent, ratio 0 records nothing, yet the upstream hears of the trace.
    assert_eq!(send(&gateway, "/open/a", None, None).await, 200);
    // A caller that did not sample: not recorded either.
    let unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    assert_eq!(send(&gateway, "/open/b", None, Some(unsampled)).await, 200);
    gateway.gateway.otel().flush().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(receiver.received.spans.lock().unwrap().is_empty(), "{:#?}", receiver.received.spans.lock().unwrap());
    {
        let seen = upstream_saw.lock().unwrap();
        let unsampled_call = seen[1]["traceparent"].to_str().unwrap();
        assert!(unsampled_call.starts_with("00-0af7651916cd43dd8448eb211c80319c-"), "{unsampled_call}");
        assert!(unsampled_call.ends_with("-00") && !unsampled_call.contains("b7ad6b7169203331"), "{unsampled_call}");
        assert!(seen[0].contains_key("traceparent"));
    }

    // A caller that sampled is followed: both spans arrive, over gRPC.
    let caller = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    assert_eq!(send(&gateway, "/open/c", None, Some(&caller)).await, 200);
    let spans = receiver.spans(&gateway, |spans| spans.len() >= 2).await;
    assert_eq!(spans.len(), 2, "{spans:#?}");
    assert!(spans.iter().all(|s| s.trace_id == TRACE_ID && s.service == "jwtgate"), "{spans:#?}");
    let server = spans.iter().find(|s| s.kind == SpanKind::Server).unwrap();
    assert_eq!((server.parent_span_id.as_str(), server.name.as_str()), (CALLER_SPAN, "GET /open"));
    assert_eq!(server.attr("jwtgate.outcome"), Some("public"));
    let call = spans.iter().find(|s| s.kind == SpanKind::Client).unwrap();
    assert_eq!(call.parent_span_id, server.span_id);
    assert_eq!(upstream_saw.lock().unwrap()[2]["traceparent"], format!("00-{TRACE_ID}-{}-01", call.span_id).as_str());

    gateway.stop().await;
}

#[tokio::test]
async fn the_subject_is_on_the_request_span_only_with_record_subject() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let (upstream_url, _upstream_saw, _upstream) = upstream().await;
    let receiver = Receiver::http().await;
    let tracing = format!("otlp_endpoint = \"{}\"\nrecord_subject = true", receiver.endpoint);
    let gateway = traced_gateway(&idp, &upstream_url, &tracing).await;
    let claims = claims(&idp.issuer, "api");
    assert_eq!(send(&gateway, "/api/me", Some(&key.mint(&claims)), None).await, 200);
    let spans = receiver.spans(&gateway, |spans| spans.iter().any(|s| s.kind == SpanKind::Server)).await;
    let server = spans.iter().find(|s| s.kind == SpanKind::Server).unwrap();
    assert_eq!(server.attr("enduser.id"), claims["sub"].as_str(), "{server:#?}");
    gateway.stop().await;
}

#[tokio::test]
async fn with_tracing_off_the_callers_traceparent_reaches_the_upstream_untouched() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let (upstream_url, upstream_saw, _upstream) = upstream().await;
    let gateway = toml(&upstream_url, &idp.issuer).start().await;
    assert!(!gateway.gateway.otel().is_on());
    let caller = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    assert_eq!(send(&gateway, "/x", Some(&key.mint(&claims(&idp.issuer, "api"))), Some(&caller)).await, 200);
    let seen = upstream_saw.lock().unwrap()[0].clone();
    assert_eq!((&seen["traceparent"], &seen["tracestate"]), (&caller.parse().unwrap(), &"caller=1".parse().unwrap()));
}

#[test]
fn check_names_where_spans_go() {
    let text = toml("http://127.0.0.1:9000", "https://idp.example/")
        .issuer("[tracing]\notlp_endpoint = \"http://127.0.0.1:4318\"\nsample_ratio = 0.1\n")
        .text();
    let config = jwtgate::Config::parse(&text, "t.toml", std::path::Path::new("."), &|_| None).unwrap();
    assert!(
        jwtgate::check::summary(&config).contains(
            "tracing     OTLP/HTTP to http://127.0.0.1:4318/v1/traces, service jwtgate, sample ratio 0.1 (a caller's \
             sampled traceparent is followed)"
        ),
        "{}",
        jwtgate::check::summary(&config)
    );
}
