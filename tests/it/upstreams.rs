//! Several upstreams: `[upstreams.NAME]` tables, picked by a route's
//! `upstream = "NAME"`; `[upstream]` takes everything else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::keys::{SigningKey, claims};
use crate::support::{TestIdp, TestUpstream, assert_refused, get, toml};

#[tokio::test]
async fn routes_pick_their_upstream_with_its_own_base_path_and_timeout() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let (main, billing) = (TestUpstream::start().await, TestUpstream::start().await);
    let gateway = toml(&main.url(), &idp.issuer)
        .upstream("timeout = \"10s\"")
        .issuer(&format!(
            "[upstreams.billing]\nurl = \"{}/v2\"\ntimeout = \"200ms\"\n\
             [[routes]]\npath = \"/billing\"\nupstream = \"billing\"\n\
             [[routes]]\npath = \"/open\"\nauth = \"public\"\nupstream = \"billing\"\n",
            billing.url()
        ))
        .start()
        .await;
    let token = key.mint(&claims(&idp.issuer, "api"));

    let (status, _, _) = get(&gateway.url("/billing/invoices?page=2"), Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(billing.last().uri, "/v2/billing/invoices?page=2");
    assert_eq!(billing.last().headers["host"], billing.addr.to_string());

    let (status, _, _) = get(&gateway.url("/orders"), Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(main.last().uri, "/orders");
    assert_eq!((main.count(), billing.count()), (1, 1));

    // A public route can send to a named upstream too.
    let (status, _, _) = get(&gateway.url("/open/x"), None).await;
    assert_eq!(status, 200);
    assert_eq!(billing.last().uri, "/v2/open/x");

    // billing's timeout is its own: 200 ms, where [upstream] allows 10 s.
    let answer = get(&gateway.url("/billing/slow"), Some(&token)).await;
    crate::support::assert_refused(&answer, 504, "gateway_timeout", "upstream did not answer in time");
}

#[tokio::test]
async fn an_unreachable_named_upstream_does_not_affect_the_others() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let main = TestUpstream::start().await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let gateway = toml(&main.url(), &idp.issuer)
        .issuer(&format!(
            "[upstreams.gone]\nurl = \"http://{closed}\"\n[[routes]]\npath = \"/gone\"\nupstream = \"gone\"\n"
        ))
        .start()
        .await;
    let token = key.mint(&claims(&idp.issuer, "api"));
    let (status, _, _) = get(&gateway.url("/gone"), Some(&token)).await;
    assert_eq!(status, 502);
    let (status, _, _) = get(&gateway.url("/here"), Some(&token)).await;
    assert_eq!(status, 200);
}

/// `max_connections` per upstream: a request over the cap waits for one in
/// progress to end instead of opening another connection, and past the
/// bounded wait (`connect_timeout`) gets 503 with Retry-After.
#[tokio::test]
async fn an_upstream_at_its_connection_cap_queues_then_refuses() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let token = key.mint(&claims(&idp.issuer, "api"));
    let waits =
        toml(&upstream.url(), &idp.issuer).upstream("max_connections = 1\nconnect_timeout = \"10s\"").start().await;
    let slow = tokio::spawn(get_owned(waits.url("/slow"), token.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let second = tokio::spawn(get_owned(waits.url("/second"), token.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(upstream.count(), 1, "the second request waits at the gateway, not at the upstream");
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(second.await.unwrap(), 200);
    assert_eq!(upstream.count(), 2);

    let refuses =
        toml(&upstream.url(), &idp.issuer).upstream("max_connections = 1\nconnect_timeout = \"200ms\"").start().await;
    let slow = tokio::spawn(get_owned(refuses.url("/slow"), token.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let answer = get(&refuses.url("/third"), Some(&token)).await;
    assert_refused(
        &answer,
        503,
        "temporarily_unavailable",
        "the upstream is at its connection limit (max_connections); retry shortly",
    );
    assert_eq!(answer.1["retry-after"], "1");
    assert_eq!(slow.await.unwrap(), 200, "the request in progress is not disturbed");
    assert_eq!(get(&refuses.url("/fourth"), Some(&token)).await.0, 200, "and its place is free once it ended");
}

async fn get_owned(url: String, token: String) -> u16 {
    get(&url, Some(&token)).await.0
}
