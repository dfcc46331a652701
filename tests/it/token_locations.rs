//! `token_from`: tokens in a cookie or a query parameter, for the issuers
//! that allow it (browsers cannot set headers on WebSocket upgrades); never
//! forwarded from there, and refused for issuers that only take the header.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::keys::{SigningKey, claims};
use crate::support::{TestIdp, TestUpstream, assert_refused, client, toml};

struct World {
    web_key: SigningKey,
    web: TestIdp,
    api_key: SigningKey,
    api: TestIdp,
    upstream: TestUpstream,
    gateway: crate::support::TestGateway,
}

async fn world(upstream_extra: &str) -> World {
    let (web_key, api_key) = (SigningKey::rsa("web"), SigningKey::rsa("api"));
    let (web, api) = (TestIdp::start(&[&web_key]).await, TestIdp::start(&[&api_key]).await);
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), &web.issuer)
        .upstream(upstream_extra)
        .issuer("token_from = [\"header\", \"cookie:at\", \"query:access_token\"]\n")
        .issuer(&format!("[[issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\n", api.issuer))
        .start()
        .await;
    World { web_key, web, api_key, api, upstream, gateway }
}

impl World {
    async fn send(&self, path: &str, cookie: Option<String>) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let mut request = client().get(self.gateway.url(path));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let body = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or_default();
        (status, headers, body)
    }
}

#[tokio::test]
async fn cookie_and_query_tokens_work_where_allowed_and_are_not_forwarded() {
    let w = world("").await;
    let web = w.web_key.mint(&claims(&w.web.issuer, "api"));

    let (status, _, _) = w.send("/chat", Some(format!("theme=dark; at={web}; lang=en"))).await;
    assert_eq!(status, 200);
    assert_eq!(w.upstream.last().headers["cookie"], "theme=dark; lang=en", "the token cookie stays here");

    let (status, _, _) = w.send(&format!("/stream?room=1&access_token={web}&x=2"), None).await;
    assert_eq!(status, 200);
    assert_eq!(w.upstream.last().uri, "/stream?room=1&x=2", "the query token never reaches the upstream");

    // The header still comes first.
    let response =
        client().get(w.gateway.url("/h")).bearer_auth(&web).header("cookie", "at=garbage").send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn an_issuer_that_only_takes_the_header_refuses_cookie_and_query_tokens() {
    let w = world("").await;
    let api = w.api_key.mint(&claims(&w.api.issuer, "api"));
    let described = "this issuer's tokens are not accepted from where this one was sent (token_from)";
    let answer = w.send("/x", Some(format!("at={api}"))).await;
    assert_refused(&answer, 401, "invalid_token", described);
    let answer = w.send(&format!("/x?access_token={api}"), None).await;
    assert_refused(&answer, 401, "invalid_token", described);
    let response = client().get(w.gateway.url("/x")).bearer_auth(&api).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(w.upstream.count(), 1);
    // Issue 18: counted under its own reason, not `other`.
    let metrics = w.gateway.metrics_text().await;
    let line = format!("jwtgate_auth_failures_total{{issuer=\"{}\",reason=\"wrong_location\"}} 2\n", w.api.issuer);
    assert!(metrics.contains(&line), "{line} missing from:\n{metrics}");

    let answer = w.send("/x?access_token=%3Cscript%3E", None).await;
    assert_eq!(answer.0, 400);
}

#[tokio::test]
async fn the_token_cookie_is_forwarded_only_with_forward_authorization() {
    let w = world("forward_authorization = true").await;
    let web = w.web_key.mint(&claims(&w.web.issuer, "api"));
    let (status, _, _) = w.send("/x", Some(format!("at={web}"))).await;
    assert_eq!(status, 200);
    assert_eq!(w.upstream.last().headers["cookie"], format!("at={web}"));
}
