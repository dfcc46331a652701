//! Forward-auth mode: the gateway answers an edge proxy's check about a
//! request it has not seen, with the same judgement as inline mode.

use super::*;

impl Gateway {
    /// Forward-auth: the same checks as inline mode for the request the
    /// edge proxy asks about; 200 with the identity headers, or the refusal.
    pub(super) async fn answer_check<'a>(
        &'a self,
        check: &ForwardAuth,
        original: Original,
        mut headers: HeaderMap,
        deadline: tokio::time::Instant,
        peer_ip: std::net::IpAddr,
        notes: &mut Notes<'a>,
    ) -> Result<Response<Answered>, Refusal> {
        // The edge forwards the path as the client wrote it: approved only
        // if no server could read it differently from the canonical form.
        let path = path::normalize(&original.path).map_err(Refusal::BadPath)?;
        if path != original.path.as_str() {
            return Err(Refusal::BadPath(
                "the original path is not in canonical form, so the backend may read it differently; write it canonically",
            ));
        }
        let query = original.query.as_deref();
        // (Cloned, a reference count, only where routes read it: the headers change below.)
        let host_header = if self.routes.by_host() { check.original_host(&headers)?.cloned() } else { None };
        let host = self.route_host(None, host_header.as_ref())?;
        let host = host.as_deref();
        let mut method = canonical_method(&original.method);
        if method == Method::POST {
            let judge = Judge { routes: &self.routes, policy: self.method_override, host };
            method = judge.check(&headers, &path, query, check.may_have_body(&headers))?;
        }
        let preflight_body = check.declares_body(&headers);
        let upgrade = headers.contains_key(http::header::UPGRADE);
        // The edge terminated the client's TLS: no certificate can be seen,
        // so a certificate-bound token cannot be approved here; a DPoP
        // proof's URL is known only from [server] public_url.
        let ask = Ask {
            method: &method,
            host,
            path: &path,
            query,
            deadline,
            at: None,
            sent_method: &original.method,
            origin: None,
            presented: Presented::Unseen,
            // The edge appends the address it saw to X-Forwarded-For; without one, the edge's own.
            client_ip: Some(crate::forward_auth::client_ip(&headers).unwrap_or(peer_ip)),
        };
        let (route, admitted) = self.admit(ask, &mut headers, notes, &mut ()).await?;
        route.refuse_unjudged(&method, &headers, preflight_body, upgrade)?;
        let mut response = Response::new(Either::Right(Full::default()));
        let answer = response.headers_mut();
        // Every configured name is answered, empty when there is no value:
        // edge proxies copy these over the request, so a client's own
        // X-Auth-Subject is overwritten even on a public route.
        for name in self.identity.names() {
            answer.insert(name, HeaderValue::from_static(""));
        }
        for (name, value) in admitted.into_identity() {
            answer.insert(name, value);
        }
        Ok(response)
    }
}
