//! The upstream: turning an accepted request into the upstream's request,
//! sending it over a pooled keep-alive client, and telling a refused or
//! reset connection (502) from one that did not answer in time (504).
//! Bodies are passed through as streams in both directions.

use std::error::Error as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use http::header::{AUTHORIZATION, HOST, HeaderName, HeaderValue, TE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version, request};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{Problem, TokenLocation, UpstreamConfig, UpstreamProtocol};
use crate::connection::Peer;
use crate::error::Refusal;
use crate::headers;
use crate::tls;

/// The description of a 504 for `server.request_timeout`.
pub const REQUEST_TIMED_OUT: &str = "request did not complete in time";

/// A request body on its way to the upstream: the client's stream, or
/// the bytes the gateway had to read first (a form checked for
/// `_method`). Request trailers never travel: a chunked HTTP/1.1 or h2
/// trailer section could carry an identity or credential header past every
/// check made on the head, and no common API reads request trailers.
pub enum UpstreamBody {
    Streamed(Incoming),
    Read(Option<Bytes>),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpstreamBody::Streamed(body) => loop {
                match std::task::ready!(Pin::new(&mut *body).poll_frame(cx)) {
                    Some(Ok(frame)) if frame.is_trailers() => continue,
                    other => return Poll::Ready(other),
                }
            },
            UpstreamBody::Read(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Streamed(body) => body.is_end_stream(),
            UpstreamBody::Read(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Streamed(body) => body.size_hint(),
            UpstreamBody::Read(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, UpstreamBody>,
    scheme: Scheme,
    authority: Authority,
    /// The upstream's own `Host`, as the client would write it (built once).
    host: HeaderValue,
    base_path: String,
    timeout: Duration,
    forward_authorization: bool,
    preserve_host: bool,
    /// `max_connections`: one permit per request in progress, held until
    /// its response body ends, so connections to the upstream cannot grow
    /// with client concurrency.
    slots: Option<Arc<Semaphore>>,
    /// How long a request waits for a permit before its 503.
    slot_wait: Duration,
}

/// An upstream's response body; it holds the request's place under the
/// upstream's `max_connections` until it ends (or is dropped).
pub struct ResponseBody {
    body: Incoming,
    _slot: Option<OwnedSemaphorePermit>,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The proof that a request was judged: the gateway's `admit` is the one
/// place that makes it, and [`Upstream::prepare`] takes nothing else, so no
/// request reaches an upstream unjudged.
#[derive(Debug)]
pub struct Admitted<'r> {
    /// The canonical path the route was chosen for: what the upstream gets.
    path: &'r str,
    /// Identity headers for the verified token (none when anonymous).
    identity: Vec<(HeaderName, HeaderValue)>,
    /// Where the token came from, when there was one.
    location: Option<TokenLocation>,
}

impl<'r> Admitted<'r> {
    /// Only for `Gateway::admit`, once every check has passed.
    pub(crate) fn judged(
        path: &'r str,
        identity: Vec<(HeaderName, HeaderValue)>,
        location: Option<TokenLocation>,
    ) -> Admitted<'r> {
        Admitted { path, identity, location }
    }

    /// For `benches/hotpath.rs` only, which times `prepare` alone; the name
    /// says what it is, so a use anywhere else stands out in review.
    #[doc(hidden)]
    pub fn unjudged_for_benchmarks(path: &'r str) -> Admitted<'r> {
        Admitted { path, identity: Vec::new(), location: None }
    }

    pub fn token_location(&self) -> Option<&TokenLocation> {
        self.location.as_ref()
    }

    /// The identity headers, for answers that are not proxied (forward-auth, explain).
    pub fn into_identity(self) -> Vec<(HeaderName, HeaderValue)> {
        self.identity
    }
}

impl Upstream {
    /// Fails when the upstream's TLS files cannot be used.
    pub fn new(config: &UpstreamConfig) -> Result<Upstream, Problem> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout));
        // hyper-rustls leaves http:// connections as they are.
        connector.enforce_http(false);
        let https = HttpsConnectorBuilder::new().with_tls_config(tls::upstream_client_config(config)?).https_or_http();
        // ALPN offers h2 only where HTTP/2 may be used: "auto" on https.
        let https = match config.protocol {
            UpstreamProtocol::Auto => https.enable_all_versions().wrap_connector(connector),
            UpstreamProtocol::Http1 | UpstreamProtocol::H2c => https.enable_http1().wrap_connector(connector),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .http2_only(config.protocol == UpstreamProtocol::H2c)
            .build(https);
        let scheme = config.origin.scheme().cloned().unwrap_or(Scheme::HTTP);
        let authority = config.origin.authority().cloned().unwrap_or_else(|| Authority::from_static("localhost"));
        let host = upstream_host(&scheme, &authority);
        Ok(Upstream {
            client,
            scheme,
            authority,
            host,
            base_path: config.base_path.clone(),
            timeout: config.timeout,
            forward_authorization: config.forward_authorization,
            preserve_host: config.preserve_host,
            slots: config.max_connections.map(|n| Arc::new(Semaphore::new(n))),
            slot_wait: config.connect_timeout,
        })
    }

    /// Whether credentials (`Authorization`, a token cookie) go on to the upstream.
    pub fn forwards_credentials(&self) -> bool {
        self.forward_authorization
    }

    /// The request the upstream receives: the admitted canonical path with
    /// the original query, hop-by-hop headers and (by default)
    /// `Authorization` removed, `Host` and `X-Forwarded-*` set, the identity
    /// headers added. Only an [`Admitted`] request can be prepared.
    pub fn prepare<B>(
        &self,
        admitted: Admitted<'_>,
        mut parts: request::Parts,
        body: B,
        peer: &Peer,
    ) -> Result<Request<B>, Refusal> {
        let path = admitted.path;
        let original_host = parts
            .headers
            .get(HOST)
            .cloned()
            .or_else(|| parts.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
        // Unless normalisation or a base path changed it, the client's own
        // path and query go as they are: a reference-counted copy.
        let path_and_query = match parts.uri.path_and_query() {
            Some(original) if self.base_path.is_empty() && original.path() == path => original.clone(),
            original => {
                let query = original.and_then(PathAndQuery::query);
                let mut target = String::with_capacity(self.base_path.len() + path.len() + 64);
                target.push_str(&self.base_path);
                target.push_str(path);
                if let Some(query) = query {
                    target.push('?');
                    target.push_str(query);
                }
                PathAndQuery::try_from(target).map_err(|_| Refusal::BadPath("request path cannot be forwarded"))?
            }
        };
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(self.scheme.clone());
        uri.authority = Some(self.authority.clone());
        uri.path_and_query = Some(path_and_query);
        parts.uri = Uri::from_parts(uri).map_err(|_| Refusal::BadPath("request path cannot be forwarded"))?;
        // The client speaks HTTP/1.1 to the upstream whatever the client used.
        parts.version = Version::HTTP_11;

        let headers = &mut parts.headers;
        // `TE: trailers` is the one TE value HTTP/2 allows, and gRPC needs it.
        let te_trailers = headers.get(TE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
        headers::remove_hop_by_hop(headers);
        if te_trailers {
            headers.insert(TE, HeaderValue::from_static("trailers"));
        }
        if !self.forward_authorization {
            headers.remove(AUTHORIZATION);
        }
        let host = match (&original_host, self.preserve_host) {
            (Some(host), true) => host.clone(),
            _ => self.host.clone(),
        };
        headers.insert(HOST, host);
        headers::set_forwarded(headers, &peer.ip_header, peer.proto(), original_host);
        headers.extend(admitted.identity);
        Ok(Request::from_parts(parts, body))
    }

    /// Sends `request` and waits for the response head until the upstream
    /// `timeout` or the request's own `deadline`, whichever comes first: one
    /// timer per request.
    pub async fn send(
        &self,
        request: Request<UpstreamBody>,
        deadline: tokio::time::Instant,
    ) -> Result<Response<ResponseBody>, Refusal> {
        // At the cap, wait a bounded time for a request to end: a queue
        // that never drains is worse than a prompt 503.
        let slot = match &self.slots {
            None => None,
            Some(slots) => {
                Some(Self::take_place(slots, (tokio::time::Instant::now() + self.slot_wait).min(deadline)).await?)
            }
        };
        let upstream_deadline = tokio::time::Instant::now() + self.timeout;
        let response = self.request(request, upstream_deadline, deadline).await?;
        Ok(response.map(|body| ResponseBody { body, _slot: slot }))
    }

    /// A place under `max_connections`. Below the cap (the usual case) no
    /// timer is armed.
    async fn take_place(slots: &Arc<Semaphore>, until: tokio::time::Instant) -> Result<OwnedSemaphorePermit, Refusal> {
        if let Ok(slot) = Arc::clone(slots).try_acquire_owned() {
            return Ok(slot);
        }
        match tokio::time::timeout_at(until, Arc::clone(slots).acquire_owned()).await {
            Ok(Ok(slot)) => Ok(slot),
            Ok(Err(_)) | Err(_) => Err(Refusal::UpstreamBusy),
        }
    }

    async fn request(
        &self,
        request: Request<UpstreamBody>,
        upstream_deadline: tokio::time::Instant,
        deadline: tokio::time::Instant,
    ) -> Result<Response<Incoming>, Refusal> {
        match tokio::time::timeout_at(upstream_deadline.min(deadline), self.client.request(request)).await {
            Err(_) if upstream_deadline <= deadline => Err(Refusal::GatewayTimeout("upstream did not answer in time")),
            Err(_) => Err(Refusal::GatewayTimeout(REQUEST_TIMED_OUT)),
            Ok(Err(error)) if is_timeout(&error) => {
                Err(Refusal::GatewayTimeout("connecting to the upstream timed out"))
            }
            Ok(Err(error)) if tls_failure(&error).is_some() => {
                tracing::warn!(%error, tls = ?tls_failure(&error), "TLS with the upstream failed");
                Err(Refusal::BadGateway("TLS handshake with the upstream failed"))
            }
            Ok(Err(error)) if error.is_connect() => {
                tracing::warn!(%error, "upstream connection failed");
                Err(Refusal::BadGateway("upstream refused the connection"))
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, source = ?error.source(), "upstream request failed");
                Err(Refusal::BadGateway("upstream closed the connection without a complete answer"))
            }
            // A 101's upgrade headers are judged by the caller first.
            Ok(Ok(response)) if response.status() == http::StatusCode::SWITCHING_PROTOCOLS => Ok(response),
            Ok(Ok(mut response)) => {
                headers::remove_hop_by_hop(response.headers_mut());
                Ok(response)
            }
        }
    }
}

/// `Host` for the upstream: its authority, without a port that is the
/// scheme's default (as HTTP clients write it).
fn upstream_host(scheme: &Scheme, authority: &Authority) -> HeaderValue {
    let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
    let text = match authority.port_u16() {
        Some(port) if port == default_port => authority.host(),
        _ => authority.as_str(),
    };
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("localhost"))
}

/// The rustls error behind a failed request, if TLS is what failed. It
/// arrives wrapped in `io::Error`s (twice, through hyper-rustls), whose
/// `source()` skips the wrapped error, so each one is opened by hand.
fn tls_failure(error: &hyper_util::client::legacy::Error) -> Option<&rustls::Error> {
    let mut next = error.source();
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

fn is_timeout(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source = error.source();
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut) {
            return true;
        }
        source = e.source();
    }
    false
}
