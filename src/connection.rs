//! What a request or an upgraded session knows of the connection it came
//! on: who the peer is, its place under `max_connections`, and how far its
//! listener's shutdown has gone. A leaf module, so that the gateway, the
//! proxy and upgrades can use these without depending on the server.

use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderValue;
use tokio::sync::watch;

/// A connection's place under `max_connections`, handed to an upgraded
/// session so that it holds the place until the session ends.
#[derive(Clone)]
pub struct ConnectionSlot(pub Arc<tokio::sync::OwnedSemaphorePermit>);

/// Where a listener is in its shutdown, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Serving,
    /// Not accepting. HTTP/1 answers carry `Connection: close`, HTTP/2
    /// connections have been sent GOAWAY.
    Draining,
    /// Drain window over: idle connections are closed, busy ones close
    /// after their answer.
    Closing,
    /// Grace period over: connections are cut, WebSocket sessions told to go away.
    Over,
}

/// A connection's or upgraded session's view of its listener's shutdown.
/// The listener waits, up to the grace period, until every one is dropped.
#[derive(Clone)]
pub struct ShutdownWatch(watch::Receiver<Phase>);

impl ShutdownWatch {
    /// For the listener that drives the phases.
    pub(crate) fn new(phase: watch::Receiver<Phase>) -> ShutdownWatch {
        ShutdownWatch(phase)
    }

    /// Resolves once the listener has reached `phase` (or is gone).
    pub async fn reached(&mut self, phase: Phase) {
        let _ = self.0.wait_for(|now| *now >= phase).await;
    }
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The connection is TLS (`X-Forwarded-Proto: https`).
    pub tls: bool,
    /// The client's IP as `X-Forwarded-For` writes it, formatted once per connection.
    pub ip_header: HeaderValue,
}

impl Peer {
    pub fn new(addr: SocketAddr, tls: bool) -> Peer {
        let ip_header =
            HeaderValue::try_from(addr.ip().to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Peer { addr, tls, ip_header }
    }

    pub fn proto(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}
