//! The upstream connection pool (`src/pool/`) against a hand-driven HTTP/1
//! upstream that counts its connections and can misbehave on cue: reuse,
//! an upstream closing idle connections, one closing a reused connection
//! as a request arrives, a restart, and clients that stop reading
//! (`server.send_timeout`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::keys::SigningKey;
use crate::support::{TestGateway, TestIdp, toml};

/// What the upstream does on each connection.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Answers every request and keeps the connection open.
    KeepAlive,
    /// Closes a connection idle for this long (a keep-alive timeout).
    CloseIdleAfter(Duration),
    /// Reads the second request of a connection, then closes it without
    /// an answer: its keep-alive timeout ran out just as the request came.
    DropSecondRequest,
    /// Answers with an endless chunked body.
    Endless,
}

/// Request lines and bodies, in arrival order.
type Requests = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

struct RawUpstream {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
    /// Request lines and bodies, in arrival order.
    requests: Requests,
    /// Connections that ended, by a close from the gateway or a failed write.
    closed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RawUpstream {
    async fn start(behaviour: Behaviour) -> RawUpstream {
        RawUpstream::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), behaviour)
    }

    fn start_on(listener: TcpListener, behaviour: Behaviour) -> RawUpstream {
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let requests: Requests = Arc::default();
        let (c, r, d) = (Arc::clone(&connections), Arc::clone(&requests), Arc::clone(&closed));
        let task = tokio::spawn(async move {
            let mut serving = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                c.fetch_add(1, Ordering::SeqCst);
                let (requests, closed) = (Arc::clone(&r), Arc::clone(&d));
                serving.spawn(async move {
                    serve(stream, behaviour, requests).await;
                    closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        RawUpstream { addr, connections, requests, closed, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }

    /// Waits (5 s at most) until a connection has ended.
    async fn wait_for_a_close(&self) {
        let closed = async {
            while self.closed() == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), closed).await.expect("the upstream connection was closed");
    }

    fn requests(&self) -> Vec<(String, Vec<u8>)> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, behaviour: Behaviour, requests: Requests) {
    let mut buffer = Vec::new();
    for number in 1.. {
        let idle = match behaviour {
            Behaviour::CloseIdleAfter(idle) => idle,
            _ => Duration::from_secs(3600),
        };
        let Ok(Some((line, body))) = tokio::time::timeout(idle, read_request(&mut stream, &mut buffer)).await else {
            return;
        };
        requests.lock().unwrap().push((line, body));
        if behaviour == Behaviour::DropSecondRequest && number == 2 {
            return;
        }
        if behaviour == Behaviour::Endless {
            let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
            while stream.write_all(chunk.as_bytes()).await.is_ok() {}
            return;
        }
        let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-request: {number}\r\n\r\nok");
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// One request: its request line and its body (by Content-Length).
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[head_end..head_end + length].to_vec();
    buffer.drain(..head_end + length);
    Some((head.lines().next().unwrap_or_default().to_string(), body))
}

/// A gateway with every path public in front of `upstream_url`.
async fn gateway(idp: &TestIdp, upstream_url: &str, server: &str, upstream: &str) -> TestGateway {
    toml(upstream_url, &idp.issuer)
        .server(server)
        .upstream(upstream)
        .issuer("[[routes]]\npath = \"/\"\nauth = \"public\"\n")
        .start()
        .await
}

async fn status(method: reqwest::Method, url: String, body: &'static str) -> u16 {
    crate::support::client().request(method, url).body(body).send().await.map_or(0, |r| r.status().as_u16())
}

#[tokio::test]
async fn one_upstream_connection_serves_sequential_requests() {
    let idp = TestIdp::start(&[&SigningKey::rsa("k")]).await;
    let upstream = RawUpstream::start(Behaviour::KeepAlive).await;
    let gateway = gateway(&idp, &upstream.url(), "", "").await;
    for i in 0..5 {
        assert_eq!(status(reqwest::Method::GET, gateway.url(&format!("/{i}")), "").await, 200);
    }
    assert_eq!(status(reqwest::Method::POST, gateway.url("/post"), "body").await, 200);
    assert_eq!(upstream.requests().len(), 6);
    assert_eq!(upstream.connections(), 1, "every request went over the one pooled connection");
}

#[tokio::test]
async fn an_upstream_closing_idle_connections_causes_no_client_visible_error() {
    let idp = TestIdp::start(&[&SigningKey::rsa("k")]).await;
    let upstream = RawUpstream::start(Behaviour::CloseIdleAfter(Duration::from_millis(100))).await;
    let gateway = gateway(&idp, &upstream.url(), "", "").await;
    for i in 0..3 {
        assert_eq!(status(reqwest::Method::GET, gateway.url(&format!("/{i}")), "").await, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(upstream.connections(), 3, "a connection the upstream closed is not used again");
}

/// The upstream's keep-alive timeout runs out just as a request is sent on
/// a connection idle for a while: a GET is sent once more on a new
/// connection; a POST whose body was sent is never sent twice.
#[tokio::test]
async fn a_post_whose_body_was_sent_is_never_replayed() {
    let idp = TestIdp::start(&[&SigningKey::rsa("k")]).await;
    let upstream = RawUpstream::start(Behaviour::DropSecondRequest).await;
    let gateway = gateway(&idp, &upstream.url(), "", "").await;

    assert_eq!(status(reqwest::Method::GET, gateway.url("/first"), "").await, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status(reqwest::Method::GET, gateway.url("/again"), "").await, 200, "resent on a new connection");
    let lines: Vec<String> = upstream.requests().into_iter().map(|(line, _)| line).collect();
    assert_eq!(lines, ["GET /first HTTP/1.1", "GET /again HTTP/1.1", "GET /again HTTP/1.1"]);
    assert_eq!(upstream.connections(), 2);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status(reqwest::Method::POST, gateway.url("/pay"), "amount=5").await, 502);
    let posts: Vec<_> = upstream.requests().into_iter().filter(|(line, _)| line.starts_with("POST")).collect();
    assert_eq!(posts, [("POST /pay HTTP/1.1".to_string(), b"amount=5".to_vec())], "sent once, never replayed");
}

#[tokio::test]
async fn an_upstream_restart_is_recovered_from() {
    let idp = TestIdp::start(&[&SigningKey::rsa("k")]).await;
    let upstream = RawUpstream::start(Behaviour::KeepAlive).await;
    let addr = upstream.addr;
    let gateway = gateway(&idp, &upstream.url(), "", "connect_timeout = \"500ms\"").await;
    assert_eq!(status(reqwest::Method::GET, gateway.url("/before"), "").await, 200);

    drop(upstream);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(status(reqwest::Method::GET, gateway.url("/down"), "").await, 502);

    let restarted = RawUpstream::start_on(TcpListener::bind(addr).await.unwrap(), Behaviour::KeepAlive);
    assert_eq!(status(reqwest::Method::GET, gateway.url("/after"), "").await, 200);
    assert_eq!(restarted.requests()[0].0, "GET /after HTTP/1.1");
}

/// A client that sends a request and never reads the answer holds its
/// connection and an upstream connection only for `server.send_timeout`:
/// then both are closed, and their places (one each here) serve the next
/// client.
#[tokio::test]
async fn a_client_that_stops_reading_loses_its_place_after_send_timeout() {
    let idp = TestIdp::start(&[&SigningKey::rsa("k")]).await;
    let upstream = RawUpstream::start(Behaviour::Endless).await;
    let server = "send_timeout = \"300ms\"\nmax_connections = 1\n";
    let gateway = gateway(&idp, &upstream.url(), server, "max_connections = 1\nconnect_timeout = \"5s\"\n").await;

    let mut stalled = TcpStream::connect(gateway.addr).await.unwrap();
    stalled.write_all(b"GET /endless HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(upstream.connections(), 1);

    // Both ends go within one and a half send timeouts of the stall.
    upstream.wait_for_a_close().await;
    let next = tokio::time::timeout(Duration::from_secs(5), status(reqwest::Method::GET, gateway.url("/next"), ""));
    assert_eq!(next.await.expect("the stalled client's connection was closed"), 200);
    assert_eq!(upstream.connections(), 2);
    drop(stalled);
}

/// The same over HTTP/2, where the client stalls one stream by granting it
/// no flow-control window: the connection itself stays writable, so only
/// the upstream side can notice.
#[tokio::test]
async fn an_http2_stream_with_no_window_loses_its_upstream_connection_after_send_timeout() {
    let idp = TestIdp::start(&[&SigningKey::rsa("k")]).await;
    let upstream = RawUpstream::start(Behaviour::Endless).await;
    let gateway =
        gateway(&idp, &upstream.url(), "send_timeout = \"300ms\"\n", "max_connections = 1\nconnect_timeout = \"5s\"\n")
            .await;

    let tcp = TcpStream::connect(gateway.addr).await.unwrap();
    let (mut client, connection) =
        h2::client::Builder::new().initial_window_size(0).handshake::<_, bytes::Bytes>(tcp).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(format!("http://{}/endless", gateway.addr)).body(()).unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);

    upstream.wait_for_a_close().await;
    drop(response);
}
