//! The request path. [`Gateway::handle`] never fails: it runs
//! [`Gateway::try_handle`], turns any [`Refusal`] into the contract's
//! response, and writes the one access-log line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tracing::info;

use crate::auth::identity::IdentityHeaders;
use crate::auth::{Authenticator, bearer};
use crate::config::{AuthMode, Config};
use crate::error::Refusal;
use crate::keys::{Fetcher, IssuerKeys, Refreshers};
use crate::path;
use crate::proxy::Upstream;
use crate::routes::RouteTable;

/// What the gateway answers with: the upstream's streamed body or its own.
pub type Body = Either<Incoming, Full<Bytes>>;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot build the HTTP client for key fetches: {0}")]
    Client(#[from] reqwest::Error),
}

pub struct Gateway {
    realm: String,
    request_timeout: Duration,
    auth: Authenticator,
    routes: RouteTable,
    identity: IdentityHeaders,
    upstream: Upstream,
    keys: Vec<Arc<IssuerKeys>>,
    _refreshers: Refreshers,
}

/// What the access log says of a request beyond its status.
#[derive(Default)]
struct Outcome {
    route: Option<String>,
    subject: Option<String>,
    /// Forwarded without a verified token (public route, or optional without one).
    anonymous: bool,
}

impl Gateway {
    /// Builds the gateway and starts fetching every issuer's keys in the
    /// background. Must be called inside a Tokio runtime.
    pub fn new(config: &Config) -> Result<Gateway, GatewayError> {
        let fetcher = Fetcher::new()?;
        let keys: Vec<Arc<IssuerKeys>> =
            config.issuers.iter().map(|issuer| Arc::new(IssuerKeys::new(issuer, fetcher.clone()))).collect();
        Ok(Gateway {
            realm: config.server.realm.clone(),
            request_timeout: config.server.request_timeout,
            auth: Authenticator::new(&config.issuers, &keys),
            routes: RouteTable::new(&config.routes),
            identity: IdentityHeaders::new(&config.headers),
            upstream: Upstream::new(&config.upstream),
            _refreshers: Refreshers::spawn(&keys),
            keys,
        })
    }

    /// The key stores, one per configured issuer, in configuration order.
    pub fn issuer_keys(&self) -> &[Arc<IssuerKeys>] {
        &self.keys
    }

    pub async fn handle(&self, request: Request<Incoming>, client: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let method = request.method().clone();
        let uri_path = request.uri().path().to_owned();
        let mut outcome = Outcome::default();
        let result = tokio::time::timeout(self.request_timeout, self.try_handle(request, client, &mut outcome))
            .await
            .unwrap_or(Err(Refusal::GatewayTimeout("request did not complete in time")));
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(response) => {
                let kind = if outcome.anonymous { "public" } else { "allowed" };
                info!(%method, path = %uri_path, status = response.status().as_u16(), outcome = kind,
                      route = outcome.route.as_deref(), latency_ms, sub = outcome.subject.as_deref(), "request");
                response.map(Either::Left)
            }
            Err(refusal) => {
                let kind = if refusal.is_upstream_error() { "upstream_error" } else { "refused" };
                info!(%method, path = %uri_path, status = refusal.status().as_u16(), outcome = kind,
                      reason = refusal.reason(), route = outcome.route.as_deref(), latency_ms,
                      sub = outcome.subject.as_deref(), "request");
                refusal.to_response(&self.realm).map(Either::Right)
            }
        }
    }

    async fn try_handle(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
        outcome: &mut Outcome,
    ) -> Result<Response<Incoming>, Refusal> {
        let (mut parts, body) = request.into_parts();
        // 1. Normalise the path: routes and the upstream both see this one.
        let path = path::normalize(parts.uri.path()).map_err(Refusal::BadPath)?.into_owned();
        // 2. Match a route.
        let route = self.routes.find(&parts.method, &path);
        outcome.route = Some(route.name().to_owned());
        // 3. Identity headers come only from us, on every route.
        self.identity.strip(&mut parts.headers);
        // 4. Authenticate and authorise as the route says.
        let mode = route.auth_for(&parts.method, &parts.headers);
        let token = match mode {
            AuthMode::Public => None,
            AuthMode::Optional | AuthMode::Required => bearer::bearer_token(&parts.headers)?,
        };
        let identity = match (token, mode) {
            (Some(token), _) => {
                let verified = self.auth.verify(token).await?;
                outcome.subject = verified.subject().map(str::to_owned);
                route.authorize(&verified)?;
                self.identity.values(&verified, token)
            }
            (None, AuthMode::Required) => return Err(Refusal::MissingToken),
            (None, _) => {
                outcome.anonymous = true;
                Vec::new()
            }
        };
        // 5. Prepare the upstream request and stream it through.
        let mut upstream_request = self.upstream.prepare(parts, body, &path, client)?;
        upstream_request.headers_mut().extend(identity);
        self.upstream.send(upstream_request).await
    }
}
