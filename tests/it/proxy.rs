//! What crosses the gateway: streamed bodies, header hygiene, paths,
//! upstream failures, HTTP/2 cleartext.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct World {
    key: SigningKey,
    idp: TestIdp,
    upstream: TestUpstream,
    gateway: TestGateway,
}

async fn world(issuer_extra: &str, upstream_extra: &str) -> World {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), &idp.issuer)
        .upstream("timeout = \"1s\"\n")
        .upstream(upstream_extra)
        .issuer(issuer_extra)
        .start()
        .await;
    World { key, idp, upstream, gateway }
}

impl World {
    fn token(&self) -> String {
        self.key.mint(&claims(&self.idp.issuer, "api"))
    }
}

/// Sends raw bytes and returns the whole answer as text (connection: close).
async fn raw(gateway: &TestGateway, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn large_bodies_stream_intact_both_ways() {
    let w = world("", "").await;
    let body: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let response =
        client().post(w.gateway.url("/echo")).bearer_auth(w.token()).body(body.clone()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(!response.headers().contains_key("x-upstream-hop"), "Connection-named response header was stripped");
    let echoed = response.bytes().await.unwrap();
    assert_eq!(echoed.len(), body.len());
    assert!(echoed == body, "the 8 MiB body came back unchanged");

    let response = client().get(w.gateway.url("/bytes/20971520")).bearer_auth(w.token()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().len(), 20 * 1024 * 1024);
}

#[tokio::test]
async fn hop_by_hop_and_credentials_are_not_forwarded() {
    let w = world("", "").await;
    let response = client()
        .get(w.gateway.url("/orders?limit=5"))
        .bearer_auth(w.token())
        .header("connection", "x-hop")
        .header("x-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic abc")
        .header("te", "gzip")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-kept", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = w.upstream.last();
    for name in ["authorization", "x-hop", "keep-alive", "proxy-authorization", "te"] {
        assert!(!seen.headers.contains_key(name), "{name} reached the upstream");
    }
    assert_eq!(seen.headers["x-kept"], "yes");
    assert_eq!(seen.headers["host"], w.upstream.addr.to_string());
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], w.gateway.addr.to_string());
    assert_eq!(seen.uri, "/orders?limit=5");
}

#[tokio::test]
async fn authorization_and_host_can_be_kept() {
    let w = world("", "forward_authorization = true\npreserve_host = true").await;
    let token = w.token();
    let response = client().get(w.gateway.url("/")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = w.upstream.last();
    assert_eq!(seen.headers["authorization"], format!("Bearer {token}"));
    assert_eq!(seen.headers["host"], w.gateway.addr.to_string());
}

#[tokio::test]
async fn the_upstream_receives_the_normalised_path() {
    let w = world("", "").await;
    let token = w.token();
    let request = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n")
    };
    let answer = raw(&w.gateway, &request("/a/./b/..//c/%7Euser?x=%2F")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(w.upstream.last().uri, "/a/c/~user?x=%2F");

    for path in ["/a/%2e%2e/%2e%2e/etc", "/a%2Fb", "/a%5cb", "/..;/admin", "/a%00"] {
        let answer = raw(&w.gateway, &request(path)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("\"error\":\"invalid_request\""), "{path}: {answer}");
    }
    assert_eq!(w.upstream.count(), 1);
}

#[tokio::test]
async fn a_path_in_the_upstream_url_is_a_prefix() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&format!("{}/api/", upstream.url()), &idp.issuer).start().await;
    let (status, _, _) = get(&gateway.url("/orders/7?x=1"), Some(&key.mint(&claims(&idp.issuer, "api")))).await;
    assert_eq!(status, 200);
    assert_eq!(upstream.last().uri, "/api/orders/7?x=1");
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    let w = world("", "").await;
    let answer = get(&w.gateway.url("/slow"), Some(&w.token())).await;
    assert_refused(&answer, 504, "gateway_timeout", "upstream did not answer in time");

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let gateway = toml(&format!("http://127.0.0.1:{port}"), &w.idp.issuer).start().await;
    let answer = get(&gateway.url("/"), Some(&w.token())).await;
    assert_refused(&answer, 502, "bad_gateway", "upstream refused the connection");
}

#[tokio::test]
async fn an_upstream_that_hangs_up_is_502() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    // Reads the request, then closes without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rude = tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
        }
    });
    let gateway = toml(&format!("http://{addr}"), &idp.issuer).start().await;
    let answer = get(&gateway.url("/"), Some(&key.mint(&claims(&idp.issuer, "api")))).await;
    assert_refused(&answer, 502, "bad_gateway", "upstream closed the connection without a complete answer");
    rude.abort();
}

#[tokio::test]
async fn h2c_clients_are_served() {
    let w = world("", "").await;
    let stream = tokio::net::TcpStream::connect(w.gateway.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::builder()
        .uri(format!("http://{}/h2?q=1", w.gateway.addr))
        .header("authorization", format!("Bearer {}", w.token()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("hello from upstream"));
    let seen = w.upstream.last();
    assert_eq!(seen.uri, "/h2?q=1");
    assert_eq!(seen.headers["x-forwarded-host"], w.gateway.addr.to_string());

    let refused =
        hyper::Request::builder().uri(format!("http://{}/", w.gateway.addr)).body(Full::new(Bytes::new())).unwrap();
    let response = sender.send_request(refused).await.unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn graceful_shutdown_lets_an_in_flight_request_finish() {
    let w = world("", "").await;
    let token = w.token();
    // The upstream takes 3 s but the timeout here is 1 s: use a longer one.
    let gateway = toml(&w.upstream.url(), &w.idp.issuer)
        .server("shutdown_grace = \"5s\"")
        .upstream("timeout = \"5s\"")
        .start()
        .await;
    let url = gateway.url("/slow");
    let in_flight = tokio::spawn(async move { get(&url, Some(&token)).await.0 });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let addr = gateway.addr;
    gateway.stop().await;
    assert_eq!(in_flight.await.unwrap(), 200, "the in-flight request completed during the drain");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the listener is closed");
}

#[tokio::test]
async fn response_bodies_are_streamed_not_buffered() {
    let w = world("", "").await;
    let mut response = client().get(w.gateway.url("/gated")).bearer_auth(w.token()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // The upstream holds its second chunk until the first has reached us:
    // a gateway that buffered the body would never deliver the first.
    let first = tokio::time::timeout(Duration::from_secs(5), response.chunk()).await.expect("first chunk").unwrap();
    assert_eq!(first.as_deref(), Some(&b"first;"[..]));
    w.upstream.gate.notify_one();
    let rest = response.bytes().await.unwrap();
    assert_eq!(&rest[..], b"second");
}

#[tokio::test]
async fn request_bodies_are_streamed_not_buffered() {
    let w = world("", "").await;
    let stream = tokio::net::TcpStream::connect(w.gateway.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(1);
    let body = http_body_util::StreamBody::new(tokio_stream_from(rx));
    let request = hyper::Request::post(format!("http://{}/upload", w.gateway.addr))
        .header("authorization", format!("Bearer {}", w.token()))
        .body(body)
        .unwrap();
    let response = tokio::spawn(sender.send_request(request));
    tx.send(Ok(hyper::body::Frame::data(Bytes::from_static(b"first;")))).await.unwrap();
    // Only once the upstream has the first chunk do we send the rest.
    tokio::time::timeout(Duration::from_secs(5), w.upstream.got_first.notified())
        .await
        .expect("upstream got the first chunk");
    tx.send(Ok(hyper::body::Frame::data(Bytes::from_static(b"second")))).await.unwrap();
    drop(tx);
    let response = response.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"first;second");
}

fn tokio_stream_from<T>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn an_upstream_that_never_accepts_is_a_connect_timeout_504() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    // A listener that never accepts, its backlog filled: further SYNs are dropped.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await
        {
            fillers.push(s);
        }
    }
    let gateway = toml(&format!("http://{addr}"), &idp.issuer).upstream("connect_timeout = \"300ms\"").start().await;
    let answer = get(&gateway.url("/"), Some(&key.mint(&claims(&idp.issuer, "api")))).await;
    assert_refused(&answer, 504, "gateway_timeout", "connecting to the upstream timed out");
    drop((listener, fillers));
}

#[tokio::test]
async fn beyond_max_connections_clients_wait_until_a_slot_frees() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), &idp.issuer).server("max_connections = 2").start().await;
    let token = key.mint(&claims(&idp.issuer, "api"));
    let request = format!("GET / HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\r\n");
    let answer = |mut stream: tokio::net::TcpStream| {
        let request = request.clone();
        async move {
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = stream.read(&mut buf).await.unwrap();
            (stream, String::from_utf8_lossy(&buf[..n]).into_owned())
        }
    };
    // Two keep-alive connections take both slots.
    let (first, a) = answer(tokio::net::TcpStream::connect(gateway.addr).await.unwrap()).await;
    let (_second, b) = answer(tokio::net::TcpStream::connect(gateway.addr).await.unwrap()).await;
    assert!(a.starts_with("HTTP/1.1 200") && b.starts_with("HTTP/1.1 200"));
    // A third waits in the backlog: connected, but not served...
    let third = tokio::spawn(answer(tokio::net::TcpStream::connect(gateway.addr).await.unwrap()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third.is_finished(), "the third connection was served beyond max_connections");
    // ...until one of the first two closes.
    drop(first);
    let (_, c) = tokio::time::timeout(Duration::from_secs(5), third).await.expect("served once a slot freed").unwrap();
    assert!(c.starts_with("HTTP/1.1 200"), "{c}");
}

#[tokio::test]
async fn h2c_clients_are_told_the_stream_limit() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), &idp.issuer).start().await;
    assert_eq!(crate::support::h2c_stream_limit(gateway.addr).await, 256);
}

/// The status of an h2c (prior knowledge) request to `addr`, if any.
async fn h2c_status(addr: std::net::SocketAddr) -> Option<u16> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let handshake = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    );
    let (mut sender, connection) = tokio::time::timeout(Duration::from_secs(5), handshake).await.ok()?.ok()?;
    tokio::spawn(connection);
    let request = hyper::Request::builder().uri(format!("http://{addr}/")).body(Full::new(Bytes::new())).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), sender.send_request(request)).await.ok()?.ok()?;
    Some(response.status().as_u16())
}

/// `server.protocols`: a listener given one HTTP version answers the other
/// with 505 and never passes it on; the default speaks both.
#[tokio::test]
async fn a_listener_speaks_only_the_protocols_it_is_given() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let config = |protocols: &str| toml(&upstream.url(), &idp.issuer).server(protocols);
    let both = config("").start().await;
    let http1 = config("protocols = [\"http1\"]").start().await;
    let h2c = config("protocols = [\"h2c\"]").start().await;
    let http1_status = |gateway: &TestGateway| {
        let url = gateway.url("/");
        async move { client().get(url).send().await.map(|r| r.status().as_u16()).ok() }
    };
    assert_eq!(http1_status(&both).await, Some(401));
    assert_eq!(h2c_status(both.addr).await, Some(401));
    assert_eq!(http1_status(&http1).await, Some(401));
    assert_eq!(h2c_status(http1.addr).await, Some(505), "an HTTP/1.1-only listener refuses h2c");
    assert_eq!(http1_status(&h2c).await, Some(505), "an h2c-only listener refuses HTTP/1.1");
    assert_eq!(h2c_status(h2c.addr).await, Some(401));
    assert_eq!(upstream.count(), 0);
}

/// Reads one answer (head and a Content-Length body) from `stream`.
async fn read_answer(stream: &mut tokio::net::TcpStream) -> String {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                let answer = String::from_utf8_lossy(&got[..end + 4 + length]).to_string();
                got.drain(..end + 4 + length);
                assert!(got.is_empty(), "one answer at a time");
                return answer;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "connection closed; got {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
}

/// An idle HTTP/1.1 keep-alive connection lets hyper's buffers go after a
/// second (src/idle.rs) and is served again on the same socket: sequential
/// requests, a pipelined pair, and a head that arrives in two pieces.
#[tokio::test]
async fn an_idle_keep_alive_connection_is_served_again_after_giving_its_buffers_back() {
    let w = world("[[routes]]\npath = \"/\"\nauth = \"public\"\n", "").await;
    let mut stream = tokio::net::TcpStream::connect(w.gateway.addr).await.unwrap();
    let idle = Duration::from_millis(1300);
    for path in ["/one", "/two"] {
        stream.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await.unwrap();
        assert!(read_answer(&mut stream).await.starts_with("HTTP/1.1 200"));
        assert_eq!(w.upstream.last().uri, path);
        tokio::time::sleep(idle).await;
    }
    stream.write_all(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    assert!(read_answer(&mut stream).await.starts_with("HTTP/1.1 200"));
    assert!(read_answer(&mut stream).await.starts_with("HTTP/1.1 200"));
    assert_eq!(w.upstream.last().uri, "/b");
    tokio::time::sleep(idle).await;
    stream.write_all(b"GET /spl").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.write_all(b"it HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let answer = read_answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(w.upstream.last().uri, "/split");
    assert_eq!(w.upstream.count(), 5);
}

/// An h2c connection is never handed back between requests: a stream
/// opened after it sat idle is served.
#[tokio::test]
async fn an_idle_h2c_connection_keeps_serving() {
    let w = world("[[routes]]\npath = \"/\"\nauth = \"public\"\n", "").await;
    let tcp = tokio::net::TcpStream::connect(w.gateway.addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    for path in ["/first", "/after-idle"] {
        let request = ::http::Request::get(format!("http://{}{path}", w.gateway.addr)).body(()).unwrap();
        client = client.ready().await.unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        assert_eq!(response.await.unwrap().status(), 200);
        tokio::time::sleep(Duration::from_millis(1300)).await;
    }
    assert_eq!(w.upstream.last().uri, "/after-idle");
}

/// Red-team finding (idle release): an answer that ends while the client's
/// body is still being read upstream (an upload endpoint that replies at
/// once and reads on) made the connection releasable; after a pause the
/// rest of the body was parsed as a new request on the same socket — a
/// request the gateway judged that nothing in front of it saw as one.
#[tokio::test]
async fn idle_release_during_an_unfinished_request_body_smuggles_no_request() {
    let seen: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let paths = std::sync::Arc::clone(&seen);
    let (upstream, _task) = crate::support::http::serve(move |request: hyper::Request<hyper::body::Incoming>| {
        paths.lock().unwrap().push(request.uri().path().to_string());
        // Answer at once, and go on reading the body.
        tokio::spawn(async move {
            let _ = request.into_body().collect().await;
        });
        async { hyper::Response::new(crate::support::full("early")) }
    })
    .await;
    let gateway = toml(&format!("http://{upstream}"), "https://issuer.example/")
        .issuer("jwks_file = \"/dev/null\"\n[[routes]]\npath = \"/\"\nauth = \"public\"\n")
        .text();
    let gateway = TestGateway::start(&gateway).await;
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    stream.write_all(b"POST /up HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789").await.unwrap();
    assert!(read_answer(&mut stream).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // 90 body bytes still owed: these are body, not a request.
    let head = "GET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n";
    let rest = format!("{head}{}", "x".repeat(90 - head.len()));
    assert_eq!(rest.len(), 90);
    stream.write_all(rest.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(*seen.lock().unwrap(), ["/up"], "the rest of the body reached the upstream as a request");
    // The body is over: the same connection serves the next request.
    stream.write_all(b"GET /after HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let answer = read_answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(*seen.lock().unwrap(), ["/up", "/after"]);
}
