//! What a request or an upgraded session knows of the connection it came
//! on: who the peer is, its place under `max_connections`, and how far its
//! listener's shutdown has gone. A leaf module, so that the gateway, the
//! proxy and upgrades can use these without depending on the server.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use crate::client_cert::ClientCert;

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
    /// The certificate the client presented in the TLS handshake, verified
    /// against `[server.tls] client_ca_file`; read once per connection.
    pub client_cert: Option<Arc<ClientCert>>,
}

impl Peer {
    pub fn new(addr: SocketAddr, tls: bool) -> Peer {
        let ip_header =
            HeaderValue::try_from(addr.ip().to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Peer { addr, tls, ip_header, client_cert: None }
    }

    /// The same peer, having presented the certificate whose DER is `der`
    /// (the leaf of the chain rustls verified).
    pub fn with_client_cert(self, der: Option<&[u8]>) -> Peer {
        Peer { client_cert: der.map(|der| Arc::new(ClientCert::from_der(der))), ..self }
    }

    pub fn proto(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// A client connection's stream whose writes must make progress: a write
/// that has waited `server.send_timeout` for the client to take any bytes
/// fails, and hyper closes the connection (nginx's `send_timeout`). The
/// timer is made the first time a write has to wait, and only then.
pub struct SendGuard<S> {
    stream: S,
    timeout: Duration,
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A write is waiting, since the stall timer was last set.
    waiting: bool,
}

impl<S> SendGuard<S> {
    pub fn new(stream: S, timeout: Duration) -> SendGuard<S> {
        SendGuard { stream, timeout, stall: None, waiting: false }
    }

    /// After the stream said Pending: the error once the client has taken
    /// nothing for the whole timeout.
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        use std::future::Future as _;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let stall = match &mut self.stall {
            Some(stall) => {
                if !self.waiting {
                    stall.as_mut().reset(deadline);
                }
                stall
            }
            None => self.stall.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.waiting = true;
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took none of the response for server.send_timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn watched<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => self.stalled(cx),
            ready => {
                self.waiting = false;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendGuard<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendGuard<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.watched(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.watched(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_flush(cx);
        self.watched(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
