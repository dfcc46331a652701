//! OpenTelemetry tracing (`[tracing]`): a server span per request, a
//! client span for its upstream call and one for each key or discovery
//! fetch, exported over OTLP (HTTP or gRPC) by a batch processor. W3C
//! `traceparent`/`tracestate` are read from the client (the server span's
//! parent) and written for the upstream (naming the upstream-call span).
//!
//! The `tracing` crate's log lines are not spans here and spans are not
//! log lines: the fmt layer in `logging` is untouched, and with tracing off
//! ([`Otel::off`]) the request path pays one branch on an `Option` — no
//! span objects, no allocation, and `traceparent` passes through as any
//! other header.
//!
//! What this module leaves to others: the gateway says when a request
//! starts and ends and what it decided (route, outcome, reason, issuer);
//! `keys::fetch` says what a fetch brought. Spans are started with the
//! opentelemetry API directly rather than through `tracing-opentelemetry`,
//! so that "off" is a `None` instead of a subscriber layer every log line
//! passes through.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{HeaderMap, Method, Request, Version};
use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanExporter,
};

use crate::config::{TracingConfig, TracingProtocol};
use crate::connection::Peer;

/// One export (a batch) waits this long for the collector at most.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection to the collector is given up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// At shutdown, the last spans wait this long for the collector at most.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The tracing of one running gateway: off, or an exporter with its batch
/// processor. Cheap to clone (one `Arc`); the gateway, its key fetchers
/// and `App` hold clones, and a reload keeps the one in force (changing
/// `[tracing]` needs a restart, like the listener settings).
#[derive(Clone, Default)]
pub struct Otel(Option<Arc<Exporting>>);

struct Exporting {
    /// `[tracing] record_subject`.
    record_subject: bool,
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
    /// Set by [`Otel::shutdown`]; a drop without it flushes on a thread of its own.
    stopped: AtomicBool,
}

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    #[error("tracing needs a Tokio runtime to export from")]
    NoRuntime,
    #[error("no usable TLS roots for the OTLP endpoint: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot build the HTTP client for OTLP: {0}")]
    Client(#[from] reqwest::Error),
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

impl Otel {
    /// No tracing: every span this hands out is `None`.
    pub fn off() -> Otel {
        Otel(None)
    }

    /// Starts exporting as `config` says, or nothing when it is `None`.
    /// Must be called inside the Tokio runtime the exports are to run on.
    pub fn start(config: Option<&TracingConfig>) -> Result<Otel, OtelError> {
        let Some(config) = config else { return Ok(Otel::off()) };
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| OtelError::NoRuntime)?;
        // OTEL_RESOURCE_ATTRIBUTES adds attributes; service.name is ours.
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let mut exporter = match config.protocol {
            TracingProtocol::Http => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(http_client()?)
                .with_endpoint(config.endpoint.as_str())
                .with_timeout(EXPORT_TIMEOUT)
                .build()?,
            // The channel's worker task is spawned here, on this runtime.
            TracingProtocol::Grpc => {
                let _runtime = runtime.enter();
                opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(config.endpoint.as_str())
                    .with_timeout(EXPORT_TIMEOUT)
                    .build()?
            }
        };
        exporter.set_resource(&resource);
        // OTEL_BSP_* tune the batches (every 5 s, or at 512 spans; 2048 queued at most).
        let batches = BatchSpanProcessor::builder(OnRuntime { exporter: Arc::new(exporter), runtime })
            .with_batch_config(BatchConfigBuilder::default().build())
            .build();
        // Parent-based: a caller's sampled traceparent is recorded, an
        // unsampled one is not; requests without one are sampled by ratio.
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio)));
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batches)
            .with_sampler(sampler)
            .with_resource(resource)
            .build();
        let scope = InstrumentationScope::builder("jwtgate").with_version(env!("CARGO_PKG_VERSION")).build();
        let tracer = provider.tracer_with_scope(scope);
        let exporting = Exporting {
            record_subject: config.record_subject,
            provider,
            tracer,
            propagator: TraceContextPropagator::new(),
            stopped: AtomicBool::new(false),
        };
        Ok(Otel(Some(Arc::new(exporting))))
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Exports every span ended so far, and waits for that.
    pub async fn flush(&self) {
        if let Some(on) = &self.0 {
            let provider = on.provider.clone();
            // Blocking, and the export runs on this runtime: off its threads.
            match tokio::task::spawn_blocking(move || provider.force_flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "exporting spans failed"),
                Err(error) => tracing::warn!(%error, "exporting spans failed"),
            }
        }
    }

    /// Exports the last spans (waiting up to 5 s) and stops exporting; spans
    /// ended later are dropped. Called once the listener has drained.
    pub async fn shutdown(&self) {
        if let Some(on) = &self.0 {
            if on.stopped.swap(true, Ordering::AcqRel) {
                return;
            }
            let provider = on.provider.clone();
            match tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "the last spans could not be exported"),
                Err(error) => tracing::warn!(%error, "the last spans could not be exported"),
            }
        }
    }

    /// The server span of a request that has just arrived, its parent the
    /// caller's `traceparent` when it has a valid one; `None` when off.
    #[inline]
    pub(crate) fn server_span<B>(&self, request: &Request<B>, peer: &Peer) -> Option<ServerSpan> {
        self.0.as_ref().map(|on| on.server_span(request, peer))
    }

    /// The client span of a key or discovery fetch (`document` says which); `None` when off.
    #[inline]
    pub(crate) fn fetch_span(&self, document: &'static str, url: &str) -> Option<FetchSpan> {
        self.0.as_ref().map(|on| on.fetch_span(document, url))
    }
}

impl Drop for Exporting {
    /// An `App` that was stopped has flushed already. Otherwise the
    /// provider's own drop would flush here, blocking the thread that
    /// dropped the last clone (perhaps the runtime's only one, which the
    /// export needs): a thread of its own does it instead.
    fn drop(&mut self) {
        if !self.stopped.load(Ordering::Acquire) {
            let provider = self.provider.clone();
            let _ = std::thread::Builder::new()
                .name("jwtgate-otel-flush".into())
                .spawn(move || provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT));
        }
    }
}

impl Exporting {
    #[inline(never)]
    fn server_span<B>(self: &Arc<Self>, request: &Request<B>, peer: &Peer) -> ServerSpan {
        // A fresh context, not the thread's current one: nothing else here uses it.
        let headers = opentelemetry_http::HeaderExtractor(request.headers());
        let parent = self.propagator.extract_with_context(&Context::new(), &headers);
        let (method, original) = known_method(request.method());
        let builder = self.tracer.span_builder(span_name(method, None)).with_kind(SpanKind::Server);
        let mut span = self.tracer.build_with_context(builder, &parent);
        // The sampler reads no attributes: a span not recorded is given none.
        if span.is_recording() {
            span.set_attributes([
                KeyValue::new(HTTP_REQUEST_METHOD, method),
                KeyValue::new("url.path", request.uri().path().to_string()),
                KeyValue::new("url.scheme", if peer.tls { "https" } else { "http" }),
                KeyValue::new("network.protocol.version", protocol_version(request.version())),
                KeyValue::new("client.address", peer.addr.ip().to_string()),
            ]);
            if let Some(original) = original {
                span.set_attribute(KeyValue::new("http.request.method_original", original));
            }
        }
        ServerSpan { cx: parent.with_span(span), method, exporting: Arc::clone(self) }
    }

    #[inline(never)]
    fn fetch_span(&self, document: &'static str, url: &str) -> FetchSpan {
        let attributes = vec![
            KeyValue::new(HTTP_REQUEST_METHOD, "GET"),
            KeyValue::new("url.full", url.to_string()),
            KeyValue::new("jwtgate.document", document),
        ];
        let builder = self.tracer.span_builder("GET").with_kind(SpanKind::Client).with_attributes(attributes);
        // A fetch serves every request that waits for it: a root of its own.
        FetchSpan { cx: Context::new().with_span(self.tracer.build_with_context(builder, &Context::new())) }
    }
}

const HTTP_REQUEST_METHOD: &str = "http.request.method";
const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
const ERROR_TYPE: &str = "error.type";

/// A request's server span, from its arrival to the gateway's answer.
pub(crate) struct ServerSpan {
    /// The caller's context with this span in it: the upstream call's parent.
    cx: Context,
    method: &'static str,
    exporting: Arc<Exporting>,
}

impl ServerSpan {
    /// Starts the upstream call's client span and names it in the
    /// upstream request's `traceparent`, in place of the caller's; the
    /// caller's `tracestate` goes on only with a valid `traceparent`.
    pub(crate) fn upstream_call<B>(&self, origin: (&Scheme, &Authority), request: &mut Request<B>) -> UpstreamSpan {
        let (scheme, authority) = origin;
        let (method, _) = known_method(request.method());
        let tracer = &self.exporting.tracer;
        let builder = tracer.span_builder(span_name(method, None)).with_kind(SpanKind::Client);
        let mut span = tracer.build_with_context(builder, &self.cx);
        if span.is_recording() {
            span.set_attributes([
                KeyValue::new(HTTP_REQUEST_METHOD, method),
                KeyValue::new("server.address", authority.host().to_string()),
                // Query strings can carry secrets; the path is enough to find the call.
                KeyValue::new("url.full", format!("{scheme}://{authority}{}", request.uri().path())),
            ]);
            if let Some(port) = authority.port_u16() {
                span.set_attribute(KeyValue::new("server.port", i64::from(port)));
            }
        }
        let cx = self.cx.with_span(span);
        let headers = request.headers_mut();
        headers.remove(&TRACESTATE);
        self.exporting.propagator.inject_context(&cx, &mut NonEmpty(headers));
        UpstreamSpan { cx }
    }

    /// Ends the span with the gateway's answer. A 5xx is an error (HTTP
    /// semantic conventions, server side).
    pub(crate) fn end(self, decided: Decided<'_>) {
        let Decided { status, outcome, reason, route, issuer, subject } = decided;
        let span = self.cx.span();
        if !span.is_recording() {
            return;
        }
        // The default route has no configured path: no http.route then.
        let route = route.filter(|r| r.starts_with('/'));
        span.update_name(span_name(self.method, route));
        let mut attributes = vec![
            KeyValue::new(HTTP_RESPONSE_STATUS_CODE, i64::from(status)),
            KeyValue::new("jwtgate.outcome", outcome),
        ];
        attributes.extend(route.map(|r| KeyValue::new("http.route", r.to_string())));
        attributes.extend(reason.map(|r| KeyValue::new("jwtgate.reason", r)));
        attributes.extend(issuer.map(|i| KeyValue::new("jwtgate.issuer", i.to_string())));
        if self.exporting.record_subject {
            attributes.extend(subject.map(|s| KeyValue::new("enduser.id", s.to_string())));
        }
        if status >= 500 {
            attributes.push(KeyValue::new(ERROR_TYPE, reason.map_or_else(|| status.to_string(), str::to_string)));
            span.set_status(Status::error(reason.unwrap_or("server error")));
        }
        span.set_attributes(attributes);
        span.end();
    }
}

/// What the gateway answered, for [`ServerSpan::end`].
pub(crate) struct Decided<'a> {
    pub status: u16,
    /// As in the metrics.
    pub outcome: &'static str,
    /// A refusal's, as in the access log.
    pub reason: Option<&'static str>,
    /// The matched route's configured path.
    pub route: Option<&'a str>,
    /// The verified token's issuer and subject.
    pub issuer: Option<&'a str>,
    pub subject: Option<&'a str>,
}

/// The upstream call of a request, from the send to the response head.
pub(crate) struct UpstreamSpan {
    cx: Context,
}

impl UpstreamSpan {
    /// Ends the span with the upstream's status, or the reason it gave
    /// none (`bad_gateway`, `gateway_timeout`, `upstream_busy`).
    pub(crate) fn end(self, answer: Result<http::StatusCode, &'static str>) {
        let span = self.cx.span();
        if !span.is_recording() {
            return;
        }
        match answer {
            Ok(status) => {
                span.set_attribute(KeyValue::new(HTTP_RESPONSE_STATUS_CODE, i64::from(status.as_u16())));
                if status.is_server_error() {
                    span.set_attribute(KeyValue::new(ERROR_TYPE, status.as_str().to_string()));
                    span.set_status(Status::error("upstream answered with a server error"));
                }
            }
            Err(reason) => {
                span.set_attribute(KeyValue::new(ERROR_TYPE, reason));
                span.set_status(Status::error(reason));
            }
        }
        span.end();
    }
}

/// A key or discovery fetch.
pub(crate) struct FetchSpan {
    cx: Context,
}

impl FetchSpan {
    /// Ends the span: `result` is `ok`, `not_modified` or `error` (as in
    /// `jwtgate_jwks_fetches_total`), `error` what went wrong.
    pub(crate) fn end(self, status: Option<u16>, result: &'static str, error: Option<String>) {
        let span = self.cx.span();
        if let Some(status) = status {
            span.set_attribute(KeyValue::new(HTTP_RESPONSE_STATUS_CODE, i64::from(status)));
        }
        span.set_attribute(KeyValue::new("jwtgate.result", result));
        if let Some(error) = error {
            // HTTP semantic conventions: the status code, else `_OTHER`.
            let kind = status.map_or_else(|| "_OTHER".to_string(), |s| s.to_string());
            span.set_attribute(KeyValue::new(ERROR_TYPE, kind));
            span.set_status(Status::error(error));
        }
        span.end();
    }
}

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Sets the headers a propagator writes, leaving out empty ones (an
/// empty `tracestate` says nothing).
struct NonEmpty<'a>(&'a mut HeaderMap);

impl Injector for NonEmpty<'_> {
    fn set(&mut self, key: &str, value: String) {
        if value.is_empty() {
            return;
        }
        let name = match key {
            "traceparent" => TRACEPARENT.clone(),
            "tracestate" => TRACESTATE.clone(),
            other => match HeaderName::try_from(other) {
                Ok(name) => name,
                Err(_) => return,
            },
        };
        if let Ok(value) = HeaderValue::try_from(value) {
            self.0.insert(name, value);
        }
    }
}

/// `GET /route`, or the method alone when no configured route matched
/// (HTTP semantic conventions: the name must stay low in cardinality).
fn span_name(method: &'static str, route: Option<&str>) -> Cow<'static, str> {
    match (method, route) {
        ("_OTHER", _) => Cow::Borrowed("HTTP"),
        (method, Some(route)) => Cow::Owned(format!("{method} {route}")),
        (method, None) => Cow::Borrowed(method),
    }
}

/// The method as the semantic conventions record it: one of the nine
/// RFC 9110 and RFC 5789 methods, or `_OTHER` and the method as sent.
fn known_method(method: &Method) -> (&'static str, Option<String>) {
    let known = match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => return ("_OTHER", Some(method.as_str().to_string())),
    };
    (known, None)
}

fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// The client for OTLP/HTTP: the project's reqwest, with the same roots
/// as key fetches and no redirects.
fn http_client() -> Result<reqwest::Client, OtelError> {
    let tls = crate::tls::fetch_client_config()?;
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(EXPORT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("jwtgate/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// The OTLP exporter, run on the gateway's runtime. The batch processor
/// exports from a thread of its own with a plain executor, where neither
/// reqwest's nor tonic's connections can run: each export is spawned onto
/// the runtime and awaited from there.
#[derive(Debug)]
struct OnRuntime {
    exporter: Arc<opentelemetry_otlp::SpanExporter>,
    runtime: tokio::runtime::Handle,
}

impl SpanExporter for OnRuntime {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let exporter = Arc::clone(&self.exporter);
        match self.runtime.spawn(async move { exporter.export(batch).await }).await {
            Ok(result) => result,
            Err(error) => Err(OTelSdkError::InternalFailure(format!("the export task did not finish: {error}"))),
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.exporter.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.exporter.force_flush()
    }

    /// The resource was given to the exporter before it was shared; the
    /// provider gives the same one again here.
    fn set_resource(&mut self, resource: &Resource) {
        if let Some(exporter) = Arc::get_mut(&mut self.exporter) {
            exporter.set_resource(resource);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_names_stay_low_in_cardinality() {
        assert_eq!(span_name("GET", Some("/api")), "GET /api");
        assert_eq!(span_name("POST", None), "POST");
        let (method, original) = known_method(&Method::from_bytes(b"PURGE").unwrap());
        assert_eq!((method, original.as_deref()), ("_OTHER", Some("PURGE")));
        assert_eq!(span_name(method, Some("/api")), "HTTP");
        assert_eq!(known_method(&Method::PATCH), ("PATCH", None));
    }

    #[test]
    fn an_empty_tracestate_is_not_written() {
        let mut headers = HeaderMap::new();
        NonEmpty(&mut headers).set("tracestate", String::new());
        NonEmpty(&mut headers).set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("traceparent"));
    }

    #[test]
    fn off_hands_out_no_spans() {
        let request = Request::new(());
        let peer = Peer::new("127.0.0.1:1".parse().unwrap(), false);
        assert!(Otel::off().server_span(&request, &peer).is_none());
        assert!(Otel::off().fetch_span("jwks", "https://idp.example/jwks").is_none());
        assert!(!Otel::off().is_on());
    }
}
