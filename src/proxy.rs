//! The upstream: turning an accepted request into the upstream's request,
//! sending it on a pooled connection (`pool`), and telling a refused or
//! reset connection (502) from one that did not answer in time (504) and
//! from an upstream with every connection busy (503).
//! Bodies are passed through as streams in both directions.

use std::error::Error as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use http::header::{AUTHORIZATION, HOST, HeaderName, HeaderValue, TE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version, request};
use hyper::body::Incoming;

use crate::config::{Problem, TokenLocation, UpstreamConfig};
use crate::connection::Peer;
use crate::error::Refusal;
use crate::headers;
use crate::pool::{CheckoutError, ConnectError, Connection, Lease, Pool};

/// The description of a 504 for `server.request_timeout`.
pub const REQUEST_TIMED_OUT: &str = "request did not complete in time";

/// A request body on its way to the upstream: the client's stream, or
/// the bytes the gateway had to read first (a form checked for
/// `_method`). Request trailers never travel: a chunked HTTP/1.1 or h2
/// trailer section could carry an identity or credential header past every
/// check made on the head, and no common API reads request trailers.
pub enum UpstreamBody {
    Streamed(Incoming),
    /// Streamed, its bytes counted for the access log.
    Counted(Incoming, Arc<AtomicU64>),
    Read(Option<Bytes>),
}

impl UpstreamBody {
    /// This body, its bytes added to `counter` as they go.
    pub fn counted(self, counter: Arc<AtomicU64>) -> UpstreamBody {
        match self {
            UpstreamBody::Streamed(body) | UpstreamBody::Counted(body, _) => UpstreamBody::Counted(body, counter),
            UpstreamBody::Read(bytes) => {
                counter.store(bytes.as_ref().map_or(0, |b| b.len() as u64), Ordering::Relaxed);
                UpstreamBody::Read(bytes)
            }
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpstreamBody::Streamed(body) => without_trailers(body, cx),
            UpstreamBody::Counted(body, counter) => {
                let frame = std::task::ready!(without_trailers(body, cx));
                if let Some(data) = frame.as_ref().and_then(|f| f.as_ref().ok()).and_then(Frame::data_ref) {
                    counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(frame)
            }
            UpstreamBody::Read(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Streamed(body) | UpstreamBody::Counted(body, _) => body.is_end_stream(),
            UpstreamBody::Read(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Streamed(body) | UpstreamBody::Counted(body, _) => body.size_hint(),
            UpstreamBody::Read(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

/// The client's body frames, its trailers dropped (see [`UpstreamBody`]).
fn without_trailers(body: &mut Incoming, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
    loop {
        match std::task::ready!(Pin::new(&mut *body).poll_frame(cx)) {
            Some(Ok(frame)) if frame.is_trailers() => continue,
            other => return Poll::Ready(other),
        }
    }
}

pub struct Upstream {
    /// `NAME` of `[upstreams.NAME]`, or `default` for `[upstream]`: for the access log.
    name: Arc<str>,
    pool: Pool<UpstreamBody>,
    scheme: Scheme,
    authority: Authority,
    /// The upstream's own `Host`, as the client would write it (built once).
    host: HeaderValue,
    base_path: String,
    timeout: Duration,
    forward_authorization: bool,
    preserve_host: bool,
}

/// An upstream's response body. Read to its end, it gives its HTTP/1
/// connection back to the pool; dropped before, the connection closes.
pub struct ResponseBody {
    body: Incoming,
    lease: Option<Lease<UpstreamBody>>,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.as_mut().get_mut();
        let frame = std::task::ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) if frame.is_trailers() => this.give_back(),
            Some(Ok(_)) => {
                if let Some(lease) = &this.lease {
                    lease.progressed();
                }
            }
            None => this.give_back(),
            Some(Err(_)) => this.lease = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl ResponseBody {
    fn give_back(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.give_back();
        }
    }
}

impl Drop for ResponseBody {
    /// A body nobody polled to its end may still be complete (HEAD, 204,
    /// 304, an empty 200): its connection can serve the next request.
    fn drop(&mut self) {
        if self.body.is_end_stream() {
            self.give_back();
        }
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
    pub fn new(name: &str, config: &UpstreamConfig, send_timeout: Duration) -> Result<Upstream, Problem> {
        let scheme = config.origin.scheme().cloned().unwrap_or(Scheme::HTTP);
        let authority = config.origin.authority().cloned().unwrap_or_else(|| Authority::from_static("localhost"));
        let host = upstream_host(&scheme, &authority);
        Ok(Upstream {
            name: name.into(),
            pool: Pool::new(config, send_timeout)?,
            scheme,
            authority,
            host,
            base_path: config.base_path.clone(),
            timeout: config.timeout,
            forward_authorization: config.forward_authorization,
            preserve_host: config.preserve_host,
        })
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Where requests go: the upstream's scheme and authority (for spans).
    pub fn origin(&self) -> (&Scheme, &Authority) {
        (&self.scheme, &self.authority)
    }

    /// Whether credentials (`Authorization`, a token cookie) go on to the upstream.
    pub fn forwards_credentials(&self) -> bool {
        self.forward_authorization
    }

    /// The request the upstream receives: the admitted canonical path with
    /// the original query (in origin form, as HTTP/1 sends it), hop-by-hop
    /// headers and (by default) `Authorization` removed, `Host` and
    /// `X-Forwarded-*` set, the identity headers added. Only an
    /// [`Admitted`] request can be prepared.
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
        let upstream_deadline = tokio::time::Instant::now() + self.timeout;
        let exchange = self.exchange(request, deadline);
        let mut response = match tokio::time::timeout_at(upstream_deadline.min(deadline), exchange).await {
            Err(_) if upstream_deadline <= deadline => {
                return Err(Refusal::GatewayTimeout("upstream did not answer in time"));
            }
            Err(_) => return Err(Refusal::GatewayTimeout(REQUEST_TIMED_OUT)),
            Ok(Err(failure)) => return Err(failure.refusal()),
            Ok(Ok(response)) => response,
        };
        // A 101's upgrade headers are judged by the caller first.
        if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            headers::remove_hop_by_hop(response.headers_mut());
        }
        Ok(response)
    }

    /// One request on a pooled connection. A request is sent again only
    /// if it never left: the connection turned out closed before a byte
    /// of it was written. The one exception is a request without a body
    /// and with a method that may be repeated (GET, HEAD, OPTIONS), sent on
    /// a connection idle for over a second, that the upstream closed
    /// without a byte of answer: the upstream's keep-alive timeout ran out
    /// as it was sent, so it is sent once more on another connection. A
    /// body that was streamed is never replayed.
    async fn exchange(
        &self,
        mut request: Request<UpstreamBody>,
        deadline: tokio::time::Instant,
    ) -> Result<Response<ResponseBody>, Failure> {
        for _ in 0..MAX_TRIES {
            let (sent, lease, copy) = match self.pool.checkout(deadline).await.map_err(Failure::Checkout)? {
                Connection::Http2(mut sender) => {
                    // HTTP/2 carries the scheme and authority as pseudo-headers.
                    let mut uri = std::mem::take(request.uri_mut()).into_parts();
                    uri.scheme = Some(self.scheme.clone());
                    uri.authority = Some(self.authority.clone());
                    *request.uri_mut() = Uri::from_parts(uri).map_err(|_| Failure::Unsendable)?;
                    (sender.try_send_request(request).await, None, None)
                }
                Connection::Http1(mut lease) => {
                    in_origin_form(&mut request)?;
                    let copy = lease
                        .idle_for
                        .is_some_and(|idle| idle > RESEND_AFTER_IDLE)
                        .then(|| resendable_copy(&request))
                        .flatten();
                    (lease.sender.try_send_request(request).await, Some(lease), copy)
                }
            };
            match sent {
                Ok(response) => {
                    let lease = lease.filter(|_| response.status() != http::StatusCode::SWITCHING_PROTOCOLS);
                    return Ok(response.map(|body| ResponseBody { body, lease }));
                }
                Err(mut error) => match (error.take_message(), copy) {
                    (Some(unsent), _) => request = unsent,
                    (None, Some(copy)) if error.error().is_incomplete_message() => request = copy,
                    (None, _) => return Err(Failure::Exchange(error.into_error())),
                },
            }
        }
        Err(Failure::Exhausted)
    }
}

/// HTTP/1 sends the origin form, as `prepare` made it; a request an HTTP/2
/// connection handed back unsent carries the absolute form it was given
/// there, and must not reach an HTTP/1 upstream that way.
fn in_origin_form<B>(request: &mut Request<B>) -> Result<(), Failure> {
    if request.uri().scheme().is_some() || request.uri().authority().is_some() {
        let mut uri = std::mem::take(request.uri_mut()).into_parts();
        uri.scheme = None;
        uri.authority = None;
        *request.uri_mut() = Uri::from_parts(uri).map_err(|_| Failure::Unsendable)?;
    }
    Ok(())
}

/// Attempts at most per request (each on another connection).
const MAX_TRIES: usize = 3;

/// A pooled connection idle longer than this may have just been closed by
/// the upstream's keep-alive timeout (Node.js: 5 s, gunicorn: 2 s).
const RESEND_AFTER_IDLE: Duration = Duration::from_secs(1);

/// A copy of a request that may be sent again: no body, and a method the
/// upstream may receive twice (RFC 9110 §9.2.2 idempotent, without a body).
fn resendable_copy(request: &Request<UpstreamBody>) -> Option<Request<UpstreamBody>> {
    use hyper::body::Body as _;
    let repeatable = matches!(*request.method(), http::Method::GET | http::Method::HEAD | http::Method::OPTIONS);
    if !repeatable || !request.body().is_end_stream() || headers::declares_body(request.headers()) {
        return None;
    }
    let mut copy = Request::new(UpstreamBody::Read(None));
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}

/// Why a request got no response from the upstream.
enum Failure {
    Checkout(CheckoutError),
    Exchange(hyper::Error),
    Unsendable,
    Exhausted,
}

impl Failure {
    fn refusal(self) -> Refusal {
        match self {
            Failure::Checkout(CheckoutError::Busy) => Refusal::UpstreamBusy,
            Failure::Checkout(CheckoutError::Connect(ConnectError::TimedOut)) => {
                Refusal::GatewayTimeout("connecting to the upstream timed out")
            }
            Failure::Checkout(CheckoutError::Connect(error)) if error.tls_failure().is_some() => {
                tracing::warn!(%error, tls = ?error.tls_failure(), "TLS with the upstream failed");
                Refusal::BadGateway("TLS handshake with the upstream failed")
            }
            Failure::Checkout(CheckoutError::Connect(error)) => {
                tracing::warn!(%error, "upstream connection failed");
                Refusal::BadGateway("upstream refused the connection")
            }
            Failure::Exchange(error) => {
                tracing::warn!(%error, source = ?error.source(), "upstream request failed");
                Refusal::BadGateway("upstream closed the connection without a complete answer")
            }
            Failure::Unsendable => Refusal::BadPath("request path cannot be forwarded"),
            Failure::Exhausted => {
                tracing::warn!("upstream connections kept closing before the request could be sent");
                Refusal::BadGateway("upstream closed the connection without a complete answer")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_handed_back_by_http2_goes_to_http1_in_origin_form() {
        let mut request = Request::new(());
        *request.uri_mut() = Uri::from_static("http://upstream:9000/a/b?c=1");
        assert!(in_origin_form(&mut request).is_ok());
        assert_eq!(request.uri().to_string(), "/a/b?c=1");
        let mut prepared = Request::new(());
        *prepared.uri_mut() = Uri::from_static("/x?y");
        assert!(in_origin_form(&mut prepared).is_ok());
        assert_eq!(prepared.uri().to_string(), "/x?y");
    }
}
