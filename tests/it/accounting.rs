//! What is recorded of a request (metrics, access log, span) is what
//! happened to it: the findings of the review of issue 18's access log,
//! per-route metrics and tracing, one regression test each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::support::keys::{SigningKey, claims};
use crate::support::{TestGateway, TestIdp, TestUpstream, client, toml};

/// The sum of every `jwtgate_requests_total` sample on the metrics page.
fn requests_total(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("jwtgate_requests_total{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum()
}

/// Finding 1: a request the client abandons while the gateway waits for the
/// upstream's answer head is neither counted nor logged, although it reached
/// the upstream (hyper drops `handle`'s future; the record is only made
/// after `try_handle` returns). nginx logs these as 499.
#[tokio::test]
async fn a_request_abandoned_before_the_answer_head_is_still_counted() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    // The upstream answers `/slow` after 3 s; the gateway waits up to 5 s.
    let gateway = toml(&upstream.url(), &idp.issuer)
        .upstream("timeout = \"5s\"")
        .issuer("[[routes]]\npath = \"/p\"\nauth = \"public\"\n")
        .start()
        .await;

    let abandoned = client()
        .post(gateway.url("/p/slow"))
        .body("delete everything")
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(abandoned.is_err(), "the client gave up first");
    // Well past the moment the gateway saw the client leave.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(upstream.count(), 1, "the upstream received the request");
    let text = gateway.metrics_text().await;
    assert!(text.contains("jwtgate_in_flight_requests 0"), "the request is over:\n{text}");
    assert_eq!(requests_total(&text), 1.0, "a request that reached the upstream is counted once:\n{text}");
    let abandoned = r#"jwtgate_requests_total{route="/p",method="POST",outcome="abandoned",status="499"} 1"#;
    assert!(text.contains(abandoned), "{abandoned} missing from:\n{text}");
}

/// Finding 1, HTTP/2: the client resets its stream while the gateway waits.
#[tokio::test]
async fn an_h2_stream_reset_before_the_answer_head_is_still_counted() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), &idp.issuer)
        .upstream("timeout = \"5s\"")
        .issuer("[[routes]]\npath = \"/p\"\nauth = \"public\"\n")
        .start()
        .await;

    let stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let (h2, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    let mut h2 = h2.ready().await.unwrap();
    let request = hyper::Request::get(format!("http://{}/p/slow", gateway.addr)).body(()).unwrap();
    let (response, _) = h2.send_request(request, true).unwrap();
    // Give the gateway time to send it upstream, then reset the stream.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(response);
    drop(h2);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(upstream.count(), 1, "the upstream received the request");
    let text = gateway.metrics_text().await;
    assert_eq!(requests_total(&text), 1.0, "{text}");
}

/// Finding 2: docs/operations.md says the `method` label is the method "as
/// the request was served (upper-cased, overrides applied)", but it is
/// taken from the request before `canonical_method`: `get`, served and
/// forwarded as `GET`, is counted as `other`.
#[tokio::test]
async fn the_method_label_is_the_method_as_served() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = TestGateway::for_idp(&idp, &upstream, "").await;
    let token = key.mint(&claims(&idp.issuer, "api"));

    let lower = reqwest::Method::from_bytes(b"get").unwrap();
    let response = client().request(lower, gateway.url("/")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.last().method, "GET", "served as GET");
    let text = gateway.metrics_text().await;
    let served = r#"jwtgate_requests_total{route="(default)",method="GET",outcome="allowed",status="200"} 1"#;
    assert!(text.contains(served), "{served} missing from:\n{text}");
}

/// Finding 2, overrides: with `method_override = "honour"` a POST that asks
/// to be a DELETE is judged (and served by the framework) as DELETE, but
/// counted as POST.
#[tokio::test]
async fn an_honoured_override_is_counted_as_the_method_it_is_served_as() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), &idp.issuer)
        .server("method_override = \"honour\"\n")
        .issuer("[[routes]]\npath = \"/items\"\nmethods = [\"DELETE\"]\nauth = \"public\"\n")
        .issuer("[[routes]]\npath = \"/items\"\nauth = \"required\"\n")
        .start()
        .await;
    let response = client()
        .post(gateway.url("/items/1"))
        .header("x-http-method-override", "DELETE")
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "judged as DELETE, a public route");
    let text = gateway.metrics_text().await;
    let served = r#"method="DELETE",outcome="public",status="200"} 1"#;
    assert!(text.contains(served), "{served} missing from:\n{text}");
}

/// Finding 3: nginx forward-auth turns a 400 refusal into a 403 on the
/// wire (`handle`), but the metrics (and the access log and the server
/// span) record the 400 that was never sent.
#[tokio::test]
async fn an_nginx_check_refusal_is_recorded_with_the_status_sent() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), &idp.issuer)
        .issuer(
            "[forward_auth]\npath = \"/auth\"\nedge = \"nginx\"\n[[routes]]\npath = \"/public\"\nauth = \"public\"\n",
        )
        .start()
        .await;
    // A check about a non-canonical path: refused 400, sent as 403.
    let response = client()
        .get(gateway.url("/auth"))
        .header("x-original-uri", "/public/../admin")
        .header("x-original-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let text = gateway.metrics_text().await;
    assert!(!text.contains(r#"status="400""#), "a 400 was never sent:\n{text}");
    assert!(text.contains(r#"outcome="refused",status="403"} 1"#), "{text}");
}

/// Finding 5 (trivial): `jwtgate probe --timeout` with a huge duration
/// panics (`Instant + Duration` overflows in `probe`) instead of failing
/// with a message; exit 101 rather than 1.
#[tokio::test]
async fn probe_with_a_huge_timeout_fails_without_panicking() {
    let closed = crate::support::free_port();
    let url = format!("http://{closed}/readyz");
    let probe = tokio::spawn(async move { jwtgate::probe::probe(&url, Duration::MAX).await });
    let outcome = probe.await;
    assert!(outcome.is_ok(), "probe panicked: {outcome:?}");
    assert!(outcome.unwrap().is_err(), "nothing listens there");
}
