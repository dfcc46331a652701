//! Opening one upstream connection: TCP within `connect_timeout`, TLS
//! (with ALPN on `protocol = "auto"`) for https, then hyper's HTTP/1 or
//! HTTP/2 handshake. The connection runs in a task of its own, which
//! holds its place under the upstream's `max_connections` until it ends.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tracing::debug;

use super::RequestBody;
use super::watch::{self, Timers, Watch, Watched};
use crate::config::{Problem, UpstreamConfig, UpstreamProtocol};
use crate::tls;

/// Why no connection could be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// TCP did not connect within `connect_timeout`.
    TimedOut,
    /// The name did not resolve, or the connection was refused or reset.
    Tcp(io::Error),
    /// The TLS handshake failed; the rustls error is inside.
    Tls(io::Error),
    /// The HTTP/2 handshake failed.
    Handshake(hyper::Error),
}

impl ConnectError {
    /// The rustls error behind a failed handshake.
    pub fn tls_failure(&self) -> Option<&rustls::Error> {
        match self {
            ConnectError::Tls(error) => error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()),
            _ => None,
        }
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::TimedOut => f.write_str("connect timed out"),
            ConnectError::Tcp(error) | ConnectError::Tls(error) => error.fmt(f),
            ConnectError::Handshake(error) => error.fmt(f),
        }
    }
}

/// A connection just opened, ready for its first request.
pub enum Opened<B> {
    Http1(http1::SendRequest<B>, Arc<Watch>),
    Http2(http2::SendRequest<B>),
}

pub struct Connector {
    host: Box<str>,
    port: u16,
    /// Known when the upstream is named by address: no lookup needed.
    address: Option<SocketAddr>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    protocol: UpstreamProtocol,
    connect_timeout: Duration,
}

impl Connector {
    /// Fails when the upstream's TLS files cannot be used.
    pub fn new(config: &UpstreamConfig) -> Result<Connector, Problem> {
        let https = config.origin.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = config.origin.host().unwrap_or("localhost");
        // An IPv6 literal comes bracketed in a URL.
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let port = config.origin.port_u16().unwrap_or(if https { 443 } else { 80 });
        let address = host.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, port));
        let tls = if https {
            let mut client = tls::upstream_client_config(config)?;
            // ALPN offers h2 only where HTTP/2 may be used: "auto" on https.
            client.alpn_protocols = match config.protocol {
                UpstreamProtocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
                UpstreamProtocol::Http1 | UpstreamProtocol::H2c => vec![b"http/1.1".to_vec()],
            };
            let name = ServerName::try_from(host.to_owned())
                .map_err(|_| Problem::new(format!("{}.url", config.key), "the host is not a valid TLS server name"))?;
            Some((TlsConnector::from(Arc::new(client)), name))
        } else {
            None
        };
        Ok(Connector {
            host: host.into(),
            port,
            address,
            tls,
            protocol: config.protocol,
            connect_timeout: config.connect_timeout,
        })
    }

    /// Whether connections may speak HTTP/2 (and so be shared).
    pub fn may_be_http2(&self) -> bool {
        match self.protocol {
            UpstreamProtocol::H2c => true,
            UpstreamProtocol::Auto => self.tls.is_some(),
            UpstreamProtocol::Http1 => false,
        }
    }

    /// Whether every connection speaks HTTP/2.
    pub fn always_http2(&self) -> bool {
        self.protocol == UpstreamProtocol::H2c
    }

    /// Opens a connection that holds `place` for as long as it lives.
    pub async fn open<B: RequestBody>(
        &self,
        place: OwnedSemaphorePermit,
        timers: Timers,
    ) -> Result<Opened<B>, ConnectError> {
        let tcp = match tokio::time::timeout(self.connect_timeout, self.tcp()).await {
            Ok(connected) => connected.map_err(ConnectError::Tcp)?,
            Err(_) => return Err(ConnectError::TimedOut),
        };
        // Requests and answers are written whole: no Nagle delay.
        let _ = tcp.set_nodelay(true);
        let (stream, http2) = match &self.tls {
            None => (Stream::Plain(tcp), self.protocol == UpstreamProtocol::H2c),
            Some((connector, name)) => {
                let tls = connector.connect(name.clone(), tcp).await.map_err(ConnectError::Tls)?;
                let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                (Stream::Tls(Box::new(tls)), http2)
            }
        };
        let watch = Arc::new(Watch::new_in_use());
        let io = TokioIo::new(Watched { stream, watch: Arc::clone(&watch) });
        if http2 {
            let (sender, connection) =
                http2::Builder::new(TokioExecutor::new()).handshake(io).await.map_err(ConnectError::Handshake)?;
            tokio::spawn(async move {
                let _place = place;
                if let Err(error) = connection.await {
                    debug!(%error, "upstream HTTP/2 connection ended");
                }
            });
            return Ok(Opened::Http2(sender));
        }
        // An HTTP/1 handshake only sets up buffers: it cannot fail.
        let (sender, connection) = http1::handshake(io).await.map_err(ConnectError::Handshake)?;
        tokio::spawn(watch::run(connection.with_upgrades(), Arc::clone(&watch), place, timers));
        Ok(Opened::Http1(sender, watch))
    }

    async fn tcp(&self) -> io::Result<TcpStream> {
        match self.address {
            Some(address) => TcpStream::connect(address).await,
            None => TcpStream::connect((&*self.host, self.port)).await,
        }
    }
}

/// A connection to an upstream, in the clear or over TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
