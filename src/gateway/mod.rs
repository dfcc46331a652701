//! The request path. [`Gateway::handle`] never fails: it runs
//! [`Gateway::try_handle`], turns any [`Refusal`] into the contract's
//! response, counts it, and writes the one access-log line.

mod admit;
mod check;
mod decide;
mod notes;
mod request;

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::access::{Answer, BytesIn, Line, Record, Recorded};
use crate::assertion::{Assertion, Published};
use crate::auth::binding::{CertBinding, Presented};
use crate::auth::cache::TokenCache;
use crate::auth::dpop::Dpop;
use crate::auth::identity::IdentityHeaders;
use crate::auth::introspect::Introspector;
use crate::auth::locations::{self, TokenLocation};
use crate::auth::{AuthFailure, Authenticator, ClaimPlan, Trace, Verified};
use crate::client_cert::ClientCert;
use crate::config::hosts;
use crate::config::{AuthMode, Config, Edge, MethodOverride, Problem};
use crate::connection::Peer;
use crate::cors::{self, Cors};
use crate::error::{Challenge, Refusal};
use crate::forward_auth::{ForwardAuth, Original};
use crate::keys::{Fetcher, IssuerStore};
use crate::method_override::Judge;
use crate::metrics::{MethodLabel, Metrics, Outcome, Reason, RouteSeries};
use crate::otel::{Decided, Otel, ServerSpan};
use crate::proxy::{Admitted, REQUEST_TIMED_OUT, ResponseBody, Upstream, UpstreamBody};
use crate::rate_limit::{RateLimits, RouteRef};
use crate::request_id::RequestIds;
use crate::resource_metadata::ResourceMetadata;
use crate::routes::{Route, RouteTable, Upstreams};

/// A route of the gateway's table: it holds its upstream.
pub(crate) type GatewayRoute = Route<Arc<Upstream>>;
use crate::upgrade;
use crate::{headers, path};
use admit::{Ask, Origin};
use notes::{Notes, Unanswered, bytes_in};
use request::{canonical_method, check_authority, has_body, token_locations};

/// An answer's body: the upstream's, or the gateway's own.
pub type Answered = Either<ResponseBody, Full<Bytes>>;
/// [`Answered`], written to the access log and metrics when it ends.
pub type Body = Recorded<Answered>;

/// The gateway of the current configuration, swapped whole on reload.
pub type SharedGateway = Arc<arc_swap::ArcSwap<Gateway>>;

pub use crate::request_id::X_REQUEST_ID;
pub use decide::Asked;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{}", client_problem(.0))]
    Client(#[from] crate::keys::FetcherError),
    /// A TLS file of the upstream, named by its configuration key.
    #[error("{}: {}", .0.key, .0.message)]
    Upstream(Problem),
    /// `[headers] assertion`: its key file, named by its configuration key.
    #[error("{}: {}", .0.key, .0.message)]
    Assertion(Problem),
    /// A route names an upstream that is not configured (validation
    /// refuses this first; the table never guesses).
    #[error("{0}")]
    Routes(String),
    /// `[rate_limit_store]` cannot be used (its URL, as the client reads it).
    #[error("{0}")]
    RateLimits(String),
}

/// A `ca_file` problem names its key; the others say what failed.
fn client_problem(error: &crate::keys::FetcherError) -> String {
    match error {
        crate::keys::FetcherError::CaFile(_) => error.to_string(),
        other => format!("cannot build the HTTP client for key fetches: {other}"),
    }
}

/// One configuration's worth of request handling. A reload builds a new
/// `Gateway`; requests in flight finish on the one they started with.
pub struct Gateway {
    challenge: Challenge,
    request_timeout: Duration,
    max_token_bytes: usize,
    /// Every place some issuer takes tokens from: the header first.
    token_locations: Vec<TokenLocation>,
    auth: Authenticator,
    /// Each route holds its upstream (own pool and timeouts).
    routes: RouteTable<Arc<Upstream>>,
    identity: IdentityHeaders,
    /// `[headers] assertion`: a JWT for the backend, signed per token and upstream.
    assertion: Option<Assertion>,
    /// Its public keys, and those of earlier configurations still needed.
    published: Published,
    /// RFC 9449 proofs for DPoP-bound tokens.
    dpop: Dpop,
    /// RFC 8705 certificate-bound tokens, checked after every verification.
    binding: CertBinding,
    /// `[forward_auth]`: answer checks at this path instead of proxying them.
    forward_auth: Option<ForwardAuth>,
    /// `[resource_metadata]`: served at its well-known paths, without a token.
    resource_metadata: Option<ResourceMetadata>,
    keys: Vec<IssuerStore>,
    metrics: Arc<Metrics>,
    /// Each route's series, by [`Route::index`].
    route_series: Vec<Arc<RouteSeries>>,
    request_ids: RequestIds,
    method_override: MethodOverride,
    websocket_idle_timeout: Duration,
    /// `[tracing]`: kept across reloads (a change needs a restart).
    otel: Otel,
    /// `[[rate_limits]]`; `None` when there are none (nothing to check).
    rate_limits: Option<Arc<RateLimits>>,
}

/// [`Gateway::decide`]'s answer: the route matched (none for a refused
/// path) and the identity headers or the refusal.
pub struct Decision<'a> {
    pub route: Option<&'a GatewayRoute>,
    pub result: Result<Vec<(HeaderName, HeaderValue)>, Refusal>,
    /// The `[[rate_limits]]` that apply, one line each (none consumed).
    pub rate_limits: Vec<String>,
}

impl Gateway {
    /// Builds the gateway with fresh metrics and starts fetching every
    /// issuer's keys in the background. Must be called inside a Tokio runtime.
    pub fn new(config: &Config) -> Result<Gateway, GatewayError> {
        Gateway::build(config, Arc::new(Metrics::default()), &[], &Otel::off())
    }

    /// Builds the gateway for `config`, keeping the key stores in `reuse`
    /// whose issuer and key source did not change (their keys and counters
    /// carry over); the others start fetching now. Spans go to `otel`.
    pub fn build(
        config: &Config,
        metrics: Arc<Metrics>,
        reuse: &[IssuerStore],
        otel: &Otel,
    ) -> Result<Gateway, GatewayError> {
        // The HTTP client (and the system roots it reads) is built only when
        // some issuer needs fetching anew: a reload that keeps them all builds none.
        // One client per distinct ca_file (most configurations: one, for the system's roots).
        let mut fetchers: Vec<(Option<&Path>, Fetcher)> = Vec::new();
        let mut keys: Vec<IssuerStore> = Vec::with_capacity(config.issuers.len());
        for (i, issuer) in config.issuers.iter().enumerate() {
            if let Some(kept) = reuse.iter().find(|k| k.same_source(issuer)) {
                keys.push(kept.clone());
                continue;
            }
            let ca_file = issuer.ca_file.as_deref();
            let fetcher = match fetchers.iter().find(|(file, _)| *file == ca_file) {
                Some((_, fetcher)) => fetcher.clone(),
                None => {
                    let fetcher = Fetcher::for_issuer(i, ca_file)?.with_tracing(otel);
                    fetchers.push((ca_file, fetcher.clone()));
                    fetcher
                }
            };
            keys.push(IssuerStore::start(issuer, fetcher));
        }
        let send_timeout = config.server.send_timeout;
        let upstream =
            |name, upstream| Upstream::new(name, upstream, send_timeout).map(Arc::new).map_err(GatewayError::Upstream);
        let upstreams = Upstreams {
            default: upstream("default", &config.upstream)?,
            named: config
                .upstreams
                .iter()
                .map(|(name, config)| Ok((name.clone(), upstream(name, config)?)))
                .collect::<Result<_, GatewayError>>()?,
        };
        // Every reader of claims registers what it reads; verified tokens keep only that.
        let mut plan = ClaimPlan::default();
        let routes = RouteTable::new(&config.routes, &upstreams, config.server.case_sensitive_routes, &mut plan)
            .map_err(GatewayError::Routes)?;
        let identity = IdentityHeaders::new(&config.headers, &mut plan);
        let every_upstream = std::iter::once(&*upstreams.default).chain(upstreams.named.iter().map(|(_, u)| &**u));
        let assertion = match &config.headers.assertion {
            Some(assertion) => Some(
                Assertion::new(assertion, config.server.public_url.as_ref(), every_upstream, &mut plan)
                    .map_err(GatewayError::Assertion)?,
            ),
            None => None,
        };
        let lifetime = assertion.as_ref().map_or(0, |a| a.ttl() + config.server.request_timeout.as_secs() + 1);
        let published = Published::new(assertion.as_ref().map(|a| &**a.signer()), lifetime);
        let dpop = Dpop::new(config.server.public_url.clone(), config.server.dpop_nonce, &mut plan);
        let binding = CertBinding::new(&config.issuers, &mut plan);
        let rate_limits = RateLimits::new(
            &config.rate_limits,
            config.rate_limit_store.as_ref(),
            routes.all().map(|route| RouteRef { index: route.index(), name: route.name() }),
            &mut plan,
            &metrics,
        )
        .map_err(GatewayError::RateLimits)?;
        let route_series = routes.all().map(|route| metrics.route_series(route.name())).collect();
        Ok(Gateway {
            challenge: Challenge {
                realm: config.server.realm.clone(),
                resource_metadata: config.resource_metadata.as_ref().map(|m| m.url.clone()),
            },
            resource_metadata: config.resource_metadata.as_ref().map(ResourceMetadata::new),
            request_timeout: config.server.request_timeout,
            max_token_bytes: config.limits.max_token_bytes,
            token_locations: token_locations(config),
            auth: Authenticator::new(
                &config.issuers,
                &keys,
                TokenCache::new(config.cache.max_tokens, Arc::clone(&metrics)),
                plan,
                config.limits.max_json_depth,
            )
            .with_introspection(Introspector::for_issuers(&config.issuers, config.limits.max_json_depth)?),
            routes,
            identity,
            assertion,
            published,
            dpop,
            binding,
            forward_auth: config.forward_auth.as_ref().map(|f| ForwardAuth::new(&f.path, f.edge)),
            keys,
            metrics,
            route_series,
            request_ids: RequestIds::new(),
            method_override: config.server.method_override,
            websocket_idle_timeout: config.server.websocket_idle_timeout,
            otel: otel.clone(),
            rate_limits,
        })
    }

    /// Takes over the state a reload must not lose from `previous`, the
    /// gateway this one replaces: the DPoP proofs seen (a proof used just
    /// before a reload must not be replayable just after it).
    pub fn carry_over(&mut self, previous: &Gateway) {
        self.dpop.carry_over(&previous.dpop);
    }

    /// The key stores, one per configured issuer, in configuration order.
    pub fn issuer_keys(&self) -> &[IssuerStore] {
        &self.keys
    }

    /// The JWKS of the assertion keys as of `now` (seconds since the
    /// epoch); `None` when no assertion is or was recently configured.
    pub fn assertion_jwks(&self, now: u64) -> Option<String> {
        self.published.jwks(now)
    }

    /// The header the signed assertion travels in, when configured.
    pub fn assertion_header(&self) -> Option<&HeaderName> {
        self.assertion.as_ref().map(Assertion::header)
    }

    /// After a reload at `now`: keys `previous` published stay published
    /// until the assertions they signed have expired.
    pub fn inherit_assertion_keys(&mut self, previous: &Gateway, now: u64) {
        self.published.inherit(&previous.published, now);
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The Prometheus text of every series this configuration updates.
    pub fn render_metrics(&self) -> String {
        self.metrics.render(self.keys.iter().map(IssuerStore::facts).collect(), &self.route_series)
    }

    pub fn otel(&self) -> &Otel {
        &self.otel
    }

    pub async fn handle(&self, mut request: Request<Incoming>, peer: Peer) -> Response<Body> {
        let _in_flight = self.metrics.in_flight();
        let started = Instant::now();
        let request_id = self.request_ids.take_or_make(request.headers());
        request.headers_mut().insert(&X_REQUEST_ID, request_id.clone());
        let grpc = crate::error::is_grpc(request.headers());
        let origin = request.headers().get(http::header::ORIGIN).cloned();
        let mut notes = Notes::default();
        notes.span = self.otel.server_span(&request, &peer);
        let line = Line::wanted().then(|| {
            let bytes_in = bytes_in(&request, &mut notes);
            Box::new(Line::of(&request, request_id.clone(), peer.addr.ip(), peer.tls, bytes_in))
        });
        let method = MethodLabel::of(request.method());
        let head = request.method() == Method::HEAD;
        notes.unanswered = Some(Unanswered { gateway: self, started, method, head, line });
        // server.request_timeout: one deadline for every wait of this request.
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let result = self.try_handle(request, peer, deadline, &mut notes).await;
        let (record, mut response) = match result {
            Ok(mut response) => {
                if let Some(passed) = notes.rate_limit.take() {
                    let headers = response.headers_mut();
                    headers.append(&crate::error::RATELIMIT_POLICY, passed.policy);
                    headers.append(&crate::error::RATELIMIT, passed.state);
                }
                let outcome = if notes.anonymous { Outcome::Public } else { Outcome::Allowed };
                (notes.answered(outcome, response.status().as_u16(), None), response)
            }
            Err(refusal) => {
                let outcome = if refusal.is_upstream_error() { Outcome::UpstreamError } else { Outcome::Refused };
                // A forward-auth check is answered in the edge's terms: a
                // gRPC-style refusal is an HTTP 200, which edges read as "allow".
                let answer = if grpc && !notes.check {
                    refusal.to_grpc_response(&self.challenge)
                } else {
                    refusal.to_response(&self.challenge)
                };
                let mut answer = answer.map(Either::Right);
                let mut status = refusal.status();
                // nginx's auth_request turns any answer but 2xx, 401 and 403
                // into a 500: a client's mistake is a 403 there.
                if notes.check
                    && answer.status() == StatusCode::BAD_REQUEST
                    && self.forward_auth.as_ref().is_some_and(|f| f.edge() == Edge::Nginx)
                {
                    *answer.status_mut() = StatusCode::FORBIDDEN;
                    status = StatusCode::FORBIDDEN;
                }
                (notes.answered(outcome, status.as_u16(), Some(refusal.reason())), answer)
            }
        };
        if let Some(cors) = notes.cors {
            cors.decorate(origin.as_ref(), response.headers_mut());
        }
        response.headers_mut().insert(&X_REQUEST_ID, request_id);
        response.map(|body| Recorded::new(body, record))
    }

    async fn try_handle<'a>(
        &'a self,
        request: Request<Incoming>,
        peer: Peer,
        deadline: tokio::time::Instant,
        notes: &mut Notes<'a>,
    ) -> Result<Response<Answered>, Refusal> {
        let (mut parts, body) = request.into_parts();
        if let Some(metadata) = self.resource_metadata.as_ref().filter(|m| m.serves(&parts.method, parts.uri.path())) {
            notes.anonymous = true;
            return Ok(metadata.response().map(Either::Right));
        }
        if let Some(check) = self.forward_auth.as_ref()
            && let Some(original) = check.original(&parts.method, parts.uri.path(), parts.uri.query(), &parts.headers)
        {
            notes.check = true;
            return self.answer_check(check, original?, parts.headers, deadline, peer.addr.ip(), notes).await;
        }
        // 1. Read the request as the upstream will: one spelling of the
        //    method, one authority, and none of the headers that would
        //    claim what only the gateway may say.
        parts.method = canonical_method(&parts.method);
        check_authority(&parts)?;
        let protected =
            |name: &str| name == X_REQUEST_ID.as_str() || self.identity.is_identity(name) || headers::is_judged(name);
        if headers::connection_names_protected(&parts.headers, &protected) {
            return Err(Refusal::InvalidRequest(
                "Connection names a header the gateway sets or checks (framing, Host, X-Forwarded-*, identity)",
            ));
        }
        headers::remove_untrusted(&mut parts.headers, self.method_override == MethodOverride::Strip);
        // 2. Canonicalise the path: routes and the upstream both see this one.
        // (A clone of the Uri, so the path can be borrowed while parts move on.)
        let uri = parts.uri.clone();
        let path = path::normalize(uri.path()).map_err(Refusal::BadPath)?;
        // (Host is cloned, a reference count, only where routes read it.)
        let host_header = self.routes.by_host().then(|| parts.headers.get(http::header::HOST).cloned()).flatten();
        let host = self.route_host(uri.authority().map(|a| a.as_str()), host_header.as_ref())?;
        let host = host.as_deref();
        // 3. The method the request will be served as, overrides included.
        let judge = Judge { routes: &self.routes, policy: self.method_override, host };
        let (judged, mut body) = judge.inline(&parts, body, &path, uri.query(), deadline).await?;
        if let Some(counter) = notes.body_counter.take() {
            body = body.counted(counter);
        }
        // 4. A CORS preflight for a route with [routes.cors] is answered
        //    here: it never reaches a handler. The route is the one for the
        //    method the preflight asks about.
        if cors::is_preflight(&judged, &parts.headers) {
            let asked = cors::requested_method(&parts.headers).unwrap_or(Method::GET);
            let for_asked = self.routes.find(host, &asked, &path);
            let route =
                if for_asked.cors().is_some() { for_asked } else { self.routes.find(host, &Method::OPTIONS, &path) };
            if let Some(policy) = route.cors() {
                notes.route = Some(route);
                notes.anonymous = true;
                return policy.preflight(&parts.headers).map(|answer| answer.map(Either::Right));
            }
        }
        // 5–6. Route, strip, authenticate and authorise.
        // The method as sent (standard methods clone without allocating): a DPoP proof's htm.
        let sent = parts.method.clone();
        let origin = Some(Origin { https: peer.tls, authority: uri.authority().map(|a| a.as_str()) });
        let presented = Presented::of(peer.client_cert.as_deref());
        let ask = Ask {
            method: &judged,
            host,
            path: &path,
            query: uri.query(),
            deadline,
            at: None,
            sent_method: &sent,
            origin,
            presented,
            client_ip: Some(peer.addr.ip()),
        };
        let (route, admitted) = self.admit(ask, &mut parts.headers, notes, &mut ()).await?;
        // 7. Prepare the upstream request and stream it through.
        let websocket = upgrade::take(&mut parts);
        route.refuse_unjudged(&judged, &parts.headers, has_body(&parts.headers, &body), websocket.is_some())?;
        let upstream = route.upstream();
        self.strip_credentials(&mut parts, admitted.token_location(), upstream.forwards_credentials())?;
        let mut upstream_request = upstream.prepare(admitted, parts, body, &peer)?;
        if let Some(websocket) = &websocket {
            websocket.ask(upstream_request.headers_mut());
        }
        let call = notes.span.as_ref().map(|span| span.upstream_call(upstream.origin(), &mut upstream_request));
        let sent = Instant::now();
        notes.sent_upstream = true;
        let answer = upstream.send(upstream_request, deadline).await;
        if let Some(call) = call {
            call.end(answer.as_ref().map(Response::status).map_err(Refusal::reason));
        }
        let mut response = answer?;
        self.route_series[route.index()].upstream_duration(sent.elapsed());
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // A 101 the client did not ask for would leave its connection
            // in a state nobody agreed on.
            let websocket =
                websocket.ok_or(Refusal::BadGateway("upstream switched protocols without being asked to"))?;
            websocket.splice(&mut response, self.websocket_idle_timeout, self.metrics.websocket_sessions())?;
        }
        Ok(response.map(Either::Left))
    }
}
