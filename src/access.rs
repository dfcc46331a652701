//! What is written of each request once its answer is over: the access-log
//! line and the route's request metrics. The answer's body carries the
//! [`Record`] and writes it when the body ends, or when it is dropped
//! before (the client went away), so the bytes sent and the whole duration
//! are known, as in nginx's log.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Uri, Version};
use hyper::body::{Body, Frame, SizeHint};
use tracing::info;

use crate::auth::Verified;
use crate::metrics::{MethodLabel, Outcome, RouteSeries};

/// One request's answer, as counted and logged when it is over.
pub struct Record {
    series: Arc<RouteSeries>,
    /// As served: canonical, overrides applied.
    method: MethodLabel,
    /// The client's method was HEAD: its answer has no body to send.
    head: bool,
    outcome: Outcome,
    status: u16,
    started: Instant,
    bytes_out: u64,
    /// Only when `info` lines are written.
    line: Option<Box<Line>>,
}

/// What only the log line needs.
pub struct Line {
    request_id: HeaderValue,
    method: Method,
    uri: Uri,
    client_ip: IpAddr,
    user_agent: Option<HeaderValue>,
    version: Version,
    tls: bool,
    bytes_in: BytesIn,
    /// Set by [`Record::answered`].
    reason: Option<&'static str>,
    upstream: Option<Arc<str>>,
    subject: Option<Verified>,
}

/// How much of the request's body the client sent.
pub enum BytesIn {
    /// Its `Content-Length` (hyper holds the client to it), or none.
    Declared(u64),
    /// Counted as it streams, for a body without a declared length.
    Counted(Arc<AtomicU64>),
}

impl Line {
    /// Whether access-log lines are written at all (`RUST_LOG`).
    pub fn wanted() -> bool {
        tracing::enabled!(target: "jwtgate::access", tracing::Level::INFO)
    }

    /// The line's view of `request`, taken before it moves on (cloning a
    /// Uri or a HeaderValue only bumps reference counts).
    pub fn of<B>(
        request: &Request<B>,
        request_id: HeaderValue,
        client_ip: IpAddr,
        tls: bool,
        bytes_in: BytesIn,
    ) -> Line {
        Line {
            request_id,
            method: request.method().clone(),
            uri: request.uri().clone(),
            client_ip,
            user_agent: request.headers().get(http::header::USER_AGENT).cloned(),
            version: request.version(),
            tls,
            bytes_in,
            reason: None,
            upstream: None,
            subject: None,
        }
    }
}

/// What the request path learned of a request, for [`Record::answered`].
pub struct Answer {
    pub outcome: Outcome,
    pub status: u16,
    /// The refusal's reason, if refused.
    pub reason: Option<&'static str>,
    pub upstream: Option<Arc<str>>,
    pub subject: Option<Verified>,
}

impl Record {
    pub fn answered(
        series: Arc<RouteSeries>,
        method: MethodLabel,
        head: bool,
        started: Instant,
        answer: Answer,
        line: Option<Box<Line>>,
    ) -> Record {
        let line = line.map(|mut line| {
            line.reason = answer.reason;
            line.upstream = answer.upstream;
            line.subject = answer.subject;
            line
        });
        Record { series, method, head, outcome: answer.outcome, status: answer.status, started, bytes_out: 0, line }
    }

    /// A request whose client left before its answer: written now, cut short.
    pub fn abandoned(self) {
        self.write(false);
    }

    fn write(self, complete: bool) {
        let elapsed = self.started.elapsed();
        self.series.request(self.method, self.outcome, self.status, elapsed);
        let Some(line) = self.line else { return };
        // Hundredths of a millisecond: enough to read, short to scan.
        let latency_ms = (elapsed.as_micros() / 10) as f64 / 100.0;
        let bytes_in = match &line.bytes_in {
            BytesIn::Declared(n) => *n,
            BytesIn::Counted(n) => n.load(Ordering::Relaxed),
        };
        let route = Some(self.series.label()).filter(|label| !label.is_empty());
        info!(
            target: "jwtgate::access",
            request_id = line.request_id.to_str().unwrap_or(""),
            method = %line.method,
            path = line.uri.path(),
            status = self.status,
            outcome = self.outcome.label(),
            reason = line.reason,
            route,
            upstream = line.upstream.as_deref(),
            latency_ms,
            sub = line.subject.as_ref().and_then(Verified::subject),
            client_ip = %line.client_ip,
            user_agent = line.user_agent.as_ref().and_then(|v| v.to_str().ok()),
            protocol = ?line.version,
            tls = line.tls,
            bytes_in,
            bytes_out = self.bytes_out,
            // Only when the client went away before the answer's end.
            complete = (!complete).then_some(false),
            "request"
        );
    }
}

/// An answer's body that writes its [`Record`] when it is over.
pub struct Recorded<B: Body> {
    body: B,
    /// On the heap: the answer is moved several times on its way out, and
    /// eight bytes move cheaper than forty-eight.
    record: Option<Box<Record>>,
}

impl<B: Body> Recorded<B> {
    pub fn new(body: B, record: Option<Record>) -> Recorded<B> {
        Recorded { body, record: record.map(Box::new) }
    }

    fn finish(&mut self, complete: bool) {
        if let Some(record) = self.record.take() {
            record.write(complete);
        }
    }
}

impl<B: Body> Drop for Recorded<B> {
    /// A body nobody polled may still be whole (204, an empty answer), and
    /// an answer to HEAD has no body to send.
    fn drop(&mut self) {
        let complete = self.body.is_end_stream() || self.record.as_ref().is_some_and(|r| r.head);
        self.finish(complete);
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Recorded<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.as_mut().get_mut();
        let frame = std::task::ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let (Some(data), Some(record)) = (frame.data_ref(), this.record.as_mut()) {
                    record.bytes_out += data.len() as u64;
                }
                if this.body.is_end_stream() {
                    this.finish(true);
                }
            }
            Some(Err(_)) => this.finish(false),
            None => this.finish(true),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use http_body_util::{BodyExt, Full};

    fn answer(status: u16) -> Answer {
        Answer { outcome: Outcome::Allowed, status, reason: None, upstream: None, subject: None }
    }

    fn counted(metrics: &Arc<Metrics>, series: &Arc<RouteSeries>, status: u16) -> bool {
        let line = format!("route=\"/r\",method=\"GET\",outcome=\"allowed\",status=\"{status}\"}} 1\n");
        metrics.render(Vec::new(), std::slice::from_ref(series)).contains(&line)
    }

    #[tokio::test]
    async fn an_answer_is_counted_once_when_its_body_ends_or_is_dropped() {
        let metrics = Arc::new(Metrics::default());
        let series = metrics.route_series("/r");
        let get = MethodLabel::of(&Method::GET);

        let record = Record::answered(Arc::clone(&series), get, false, Instant::now(), answer(200), None);
        let body = Recorded::new(Full::new(Bytes::from_static(b"hello")), Some(record));
        assert!(!counted(&metrics, &series, 200), "not before the body is sent");
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
        assert!(counted(&metrics, &series, 200));

        // Dropped unsent (the client went away): still counted, once.
        let record = Record::answered(Arc::clone(&series), get, false, Instant::now(), answer(201), None);
        drop(Recorded::new(Full::new(Bytes::from_static(b"cut")), Some(record)));
        assert!(counted(&metrics, &series, 201));
    }

    #[tokio::test]
    async fn the_record_is_written_with_the_last_frame_not_after_it() {
        let metrics = Arc::new(Metrics::default());
        let series = metrics.route_series("/r");
        let record = Record::answered(series, MethodLabel::of(&Method::GET), false, Instant::now(), answer(200), None);
        let mut body = Recorded::new(Full::new(Bytes::from_static(b"0123456789")), Some(record));
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.data_ref().map(Bytes::len), Some(10));
        // The body knew it was over with its last frame: the record is written.
        assert!(body.record.is_none());
    }
}
