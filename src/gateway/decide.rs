//! The request path as `jwtgate explain` asks about it: the same steps as
//! [`Gateway::handle`], without a connection or an upstream.

use super::*;

/// The request `jwtgate explain` asks about.
pub struct Asked<'a> {
    pub method: &'a Method,
    /// Its `Host`, for routes with `hosts`.
    pub host: Option<&'a str>,
    /// Path and query, as a client would send them.
    pub path_and_query: &'a str,
}

impl Gateway {
    /// What the request path decides for a request with this method, path
    /// and headers, as of `at` (seconds since the epoch), with each token
    /// check that passes told to `trace`: the same steps as [`handle`](Self::handle),
    /// for `jwtgate explain`, over a connection that presented `client_cert`.
    /// Ok holds the identity headers that would be added.
    pub async fn decide(
        &self,
        request: Asked<'_>,
        mut headers: HeaderMap,
        at: u64,
        client_cert: Option<&ClientCert>,
        trace: &mut impl Trace,
    ) -> Decision<'_> {
        let Asked { method, host, path_and_query } = request;
        let (path, query) = path_and_query.split_once('?').map_or((path_and_query, None), |(p, q)| (p, Some(q)));
        let path = match path::normalize(path) {
            Ok(path) => path,
            Err(why) => return Decision { route: None, result: Err(Refusal::BadPath(why)), rate_limits: Vec::new() },
        };
        let method = canonical_method(method);
        let host = match self.route_host(host, None) {
            Ok(host) => host,
            Err(refusal) => return Decision { route: None, result: Err(refusal), rate_limits: Vec::new() },
        };
        let host = host.as_deref();
        let route = self.routes.find(host, &method, &path);
        let mut notes = Notes::default();
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let origin = Some(Origin { https: false, authority: None });
        let presented = Presented::of(client_cert);
        let ask = Ask {
            method: &method,
            host,
            path: &path,
            query,
            deadline,
            at: Some(at),
            sent_method: &method,
            origin,
            presented,
            client_ip: None,
        };
        let result =
            self.admit(ask, &mut headers, &mut notes, trace).await.map(|(_, admitted)| admitted.into_identity());
        let rate_limits = self.rate_limits.as_ref().map_or_else(Vec::new, |limits| {
            limits.describe(&RouteRef { index: route.index(), name: route.name() }, notes.verified.as_ref())
        });
        Decision { route: Some(route), result, rate_limits }
    }

    /// The configured issuer a token's `iss` selects (and its tenant).
    pub fn issuer_for<'i>(&self, iss: &'i str) -> Option<(&str, Option<&'i str>)> {
        self.auth.issuer_for(iss)
    }

    /// The answer the gateway gives for `refusal`, exactly as a client gets it.
    pub fn refusal_response(&self, refusal: &Refusal) -> Response<Full<Bytes>> {
        refusal.to_response(&self.challenge)
    }
}
