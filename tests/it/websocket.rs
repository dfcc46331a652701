//! WebSocket through the gateway: the upgrade request is checked like any
//! other, then the two connections are spliced until one side closes.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// tungstenite's handshake callback returns its own large error type.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::support::keys::{SigningKey, claims};
use crate::support::{TestIdp, TestUpstream, toml};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error, Message};

/// A WebSocket echo server that records each handshake's headers and
/// notifies when a session ends.
struct EchoServer {
    addr: SocketAddr,
    handshakes: Arc<Mutex<Vec<http::HeaderMap>>>,
    closed: Arc<Notify>,
}

async fn echo_server() -> EchoServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes: Arc<Mutex<Vec<http::HeaderMap>>> = Arc::default();
    let closed = Arc::new(Notify::new());
    let (seen, done) = (Arc::clone(&handshakes), Arc::clone(&closed));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (seen, done) = (Arc::clone(&seen), Arc::clone(&done));
            tokio::spawn(async move {
                let record = |request: &http::Request<()>, response| {
                    seen.lock().unwrap().push(request.headers().clone());
                    Ok(response)
                };
                let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, record).await else { return };
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_text() || message.is_binary() {
                        socket.send(message).await.unwrap();
                    }
                }
                done.notify_one();
            });
        }
    });
    EchoServer { addr, handshakes, closed }
}

#[tokio::test]
async fn an_authenticated_websocket_is_spliced_both_ways_until_closed() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let echo = echo_server().await;
    let gateway = toml(&format!("http://{}", echo.addr), &idp.issuer)
        .issuer("[headers]\nclaims = { sub = \"X-Auth-Subject\" }\n")
        .start()
        .await;
    let mut token_claims = claims(&idp.issuer, "api");
    token_claims["sub"] = json!("alice");
    let token = key.mint(&token_claims);

    let mut request = format!("ws://{}/chat", gateway.addr).into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request.headers_mut().insert("x-auth-subject", "mallory".parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);

    for text in ["hello", "over the gateway"] {
        socket.send(Message::text(text)).await.unwrap();
        assert_eq!(socket.next().await.unwrap().unwrap(), Message::text(text));
    }
    let big = vec![7u8; 256 * 1024];
    socket.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap(), Message::binary(big));

    let handshake = echo.handshakes.lock().unwrap()[0].clone();
    assert_eq!(handshake["x-auth-subject"], "alice");
    assert!(handshake.get("authorization").is_none());
    assert_eq!(handshake["upgrade"], "websocket");

    // The client closes; the upstream's session ends.
    let closed = echo.closed.notified();
    socket.close(None).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), closed).await.expect("the upstream saw the close");
}

#[tokio::test]
async fn an_unauthenticated_upgrade_is_refused_before_reaching_the_upstream() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let echo = echo_server().await;
    let gateway = toml(&format!("http://{}", echo.addr), &idp.issuer).start().await;
    let request = format!("ws://{}/chat", gateway.addr).into_client_request().unwrap();
    match tokio_tungstenite::connect_async(request).await {
        Err(Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected a 401, got {other:?}"),
    }
    assert!(echo.handshakes.lock().unwrap().is_empty());
}

#[tokio::test]
async fn other_upgrades_are_not_passed_on() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), &idp.issuer).start().await;
    let token = key.mint(&claims(&idp.issuer, "api"));
    // Raw bytes, so no client library rewrites the Connection header.
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let request = format!(
        "GET /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = stream.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer[..n]));
    let seen = upstream.last();
    assert!(seen.headers.get("upgrade").is_none() && seen.headers.get("connection").is_none());
}

#[tokio::test]
async fn a_websocket_session_keeps_its_place_under_max_connections() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let echo = echo_server().await;
    let gateway = toml(&format!("http://{}", echo.addr), &idp.issuer).server("max_connections = 1\n").start().await;
    let token = key.mint(&claims(&idp.issuer, "api"));
    let mut request = format!("ws://{}/chat", gateway.addr).into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket.send(Message::text("hi")).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap(), Message::text("hi"));

    // The session holds the only place: another client waits in the backlog.
    let url = gateway.url("/x");
    let waiting = crate::support::client().get(&url).bearer_auth(&token).timeout(std::time::Duration::from_millis(500));
    assert!(waiting.send().await.is_err(), "a second connection was served beside the session");

    let closed = echo.closed.notified();
    socket.close(None).await.unwrap();
    drop(socket);
    tokio::time::timeout(std::time::Duration::from_secs(5), closed).await.unwrap();
    // Served now: the echo server speaks only WebSocket, so the gateway's own 502 is the answer.
    let served = crate::support::client().get(&url).bearer_auth(&token).timeout(std::time::Duration::from_secs(5));
    assert_eq!(served.send().await.unwrap().status(), 502);
}

/// Issue 14, finding 6c: an upgraded session idle for
/// `websocket_idle_timeout` is closed (and its place under
/// `max_connections` freed); open sessions are counted on their own.
#[tokio::test]
async fn an_idle_websocket_session_is_closed_and_counted_until_then() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let echo = echo_server().await;
    let gateway = toml(&format!("http://{}", echo.addr), &idp.issuer)
        .server("websocket_idle_timeout = \"400ms\"\n")
        .start()
        .await;
    let sessions = || async {
        let text =
            crate::support::client().get(gateway.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
        text.lines().find_map(|l| l.strip_prefix("jwtgate_websocket_sessions ").map(str::to_owned)).unwrap()
    };
    let token = key.mint(&claims(&idp.issuer, "api"));
    let mut request = format!("ws://{}/chat", gateway.addr).into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    // Traffic keeps it open past the timeout.
    for _ in 0..4 {
        socket.send(Message::text("hi")).await.unwrap();
        assert_eq!(socket.next().await.unwrap().unwrap(), Message::text("hi"));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(sessions().await, "1");
    // Silence closes it.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next()).await.expect("closed when idle");
    assert!(!matches!(ended, Some(Ok(Message::Text(_)))), "{ended:?}");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(sessions().await, "0");
}
