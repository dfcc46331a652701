//! What the request path learns of a request as it goes ([`Notes`]), and
//! the record made of it when its answer is decided, or when its client
//! leaves first.

use super::*;

/// What the access log and metrics say of a request beyond its status.
#[derive(Default)]
pub(super) struct Notes<'a> {
    pub(super) route: Option<&'a GatewayRoute>,
    /// Where the request body's bytes are counted as they stream, for the
    /// access log of a body without a declared length.
    pub(super) body_counter: Option<Arc<AtomicU64>>,
    /// The request went to the route's upstream (the access log names it).
    pub(super) sent_upstream: bool,
    /// The caller, once known (shared with the cache: no copy).
    pub(super) verified: Option<Verified>,
    /// Forwarded without a verified token (public route, or optional without one).
    pub(super) anonymous: bool,
    /// A forward-auth check: answered in the edge's terms, never gRPC's.
    pub(super) check: bool,
    /// The route's `[routes.cors]`, which decorates the answer.
    pub(super) cors: Option<&'a Cors>,
    /// The request's server span, when tracing is on.
    pub(super) span: Option<ServerSpan>,
    /// The method the request is judged and served as (canonical,
    /// overrides applied), once a route judged it.
    pub(super) served_as: Option<MethodLabel>,
    /// The `RateLimit` fields an admitted request's answer carries.
    pub(super) rate_limit: Option<Box<crate::rate_limit::Passed>>,
    /// Until the answer is decided: what its record needs besides these notes.
    pub(super) unanswered: Option<Unanswered<'a>>,
}

/// What a request's [`Record`] needs besides its [`Notes`], held by them
/// until the answer is decided, so that a request whose client leaves
/// first (hyper then drops its future, and the notes with it) is still
/// counted and logged.
pub(super) struct Unanswered<'a> {
    pub(super) gateway: &'a Gateway,
    pub(super) started: Instant,
    /// The client's method, until a route judges the one it is served as.
    pub(super) method: MethodLabel,
    /// The client asked with HEAD: the answer has no body to send.
    pub(super) head: bool,
    /// On the heap when wanted: the notes travel in the request's future.
    pub(super) line: Option<Box<Line>>,
}

impl Notes<'_> {
    /// The record of the answer decided now, the request's span ended with
    /// it; `None` once taken (or where nothing is recorded: `explain`).
    pub(super) fn answered(&mut self, outcome: Outcome, status: u16, reason: Option<&'static str>) -> Option<Record> {
        let Unanswered { gateway, started, method, head, line } = self.unanswered.take()?;
        let series = self.route.map_or(gateway.metrics.unrouted(), |r| &gateway.route_series[r.index()]);
        let upstream = (line.is_some() && self.sent_upstream)
            .then_some(self.route)
            .flatten()
            .map(|route| Arc::clone(route.upstream().name()));
        let subject = self.verified.take();
        if let Some(span) = self.span.take() {
            span.end(Decided {
                status,
                outcome: outcome.label(),
                reason,
                route: self.route.map(|r| r.name()),
                issuer: subject.as_ref().map(Verified::issuer),
                subject: subject.as_ref().and_then(Verified::subject),
            });
        }
        let answer = Answer { outcome, status, reason, upstream, subject };
        let method = self.served_as.unwrap_or(method);
        Some(Record::answered(Arc::clone(series), method, head, started, answer, line))
    }
}

impl Drop for Notes<'_> {
    /// Dropped unanswered: the client left while the request was judged or
    /// sent upstream. Counted and logged as nginx does, with status 499.
    fn drop(&mut self) {
        if let Some(record) = self.answered(Outcome::Abandoned, 499, Some("client_closed")) {
            record.abandoned();
        }
    }
}

/// The access log's `bytes_in`: the declared length, or a counter the
/// request body will feed on its way upstream.
pub(super) fn bytes_in(request: &Request<Incoming>, notes: &mut Notes<'_>) -> BytesIn {
    use hyper::body::Body as _;
    if let Some(length) = request.body().size_hint().exact() {
        return BytesIn::Declared(length);
    }
    let counter = Arc::new(AtomicU64::new(0));
    notes.body_counter = Some(Arc::clone(&counter));
    BytesIn::Counted(counter)
}
