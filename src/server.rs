//! Listeners: accept connections, serve HTTP/1.1 and h2c on each
//! (hyper-util's auto builder; an idle HTTP/1.1 connection lets hyper's
//! buffers go and is served again on a fresh one, `idle.rs`), or HTTP/1.1
//! and h2 over TLS, and drain them within a grace period when `shutdown`
//! resolves. Transport only: [`serve`]
//! serves any handler; `app` gives it the gateway's, the demo its issuer's
//! and backend's.
//!
//! Shutdown goes through [`Phase`]s so that no request the server has read
//! goes unanswered (issue 16). Closing an idle keep-alive connection at once
//! loses the request its client is sending at that moment, so for a drain
//! window every answer on HTTP/1 says `Connection: close` (the client stops
//! reusing the connection, hyper closes it after that answer) and HTTP/2
//! connections get GOAWAY; only then are connections that stayed idle closed.
//!
//! What remains is the race RFC 9112 §9.6 leaves to clients: a connection
//! idle for the whole drain window is closed at the moment its client
//! sends on it. The server has read nothing of that request, so nothing is
//! half-answered; well-behaved clients retry it on a new connection.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::{Either, Full};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config::{Config, Protocols, defaults};
use crate::connection::SendGuard;
pub use crate::connection::{ConnectionSlot, Peer, Phase, ShutdownWatch};
use crate::idle::{Activity, Releasing, Tracked};
use crate::tls::ServerTls;

/// How long connections stay open after shutdown begins so that requests
/// already on their way are answered (with `Connection: close`).
const DRAIN_WINDOW: Duration = Duration::from_secs(1);

/// How long past the grace period cut connections and WebSocket sessions
/// have to send their last bytes (close frames) before the process exits.
const LAST_WORDS: Duration = Duration::from_millis(200);

/// Connection-level limits of a listener.
#[derive(Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub shutdown_grace: Duration,
    /// Open connections at most; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Serve TLS with this certificate instead of plain HTTP.
    pub tls: Option<ServerTls>,
    /// Which HTTP versions to speak (`server.protocols`).
    pub protocols: Protocols,
    /// HTTP/2 streams one connection may have open at once.
    pub http2_max_concurrent_streams: u32,
    /// Streams a client may reset before the server accepts them
    /// (CVE-2023-44487, "rapid reset"), and resets caused by its errors,
    /// before the connection goes.
    pub http2_max_pending_resets: usize,
    pub http2_max_error_resets: usize,
    /// A client taking no response bytes this long is cut off.
    pub send_timeout: Duration,
}

impl Limits {
    /// The proxy listener's limits.
    pub fn of(config: &Config) -> Self {
        let server = &config.server;
        Limits {
            header_read_timeout: server.header_read_timeout,
            max_header_bytes: server.max_header_bytes,
            shutdown_grace: server.shutdown_grace,
            max_connections: server.max_connections,
            send_timeout: server.send_timeout,
            tls: None,
            protocols: server.protocols,
            http2_max_concurrent_streams: config.limits.http2_max_concurrent_streams,
            http2_max_pending_resets: config.limits.http2_max_pending_resets,
            http2_max_error_resets: config.limits.http2_max_error_resets,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: defaults::HEADER_READ_TIMEOUT,
            max_header_bytes: defaults::MAX_HEADER_BYTES,
            shutdown_grace: defaults::SHUTDOWN_GRACE,
            max_connections: defaults::MAX_CONNECTIONS,
            tls: None,
            protocols: Protocols::default(),
            http2_max_concurrent_streams: defaults::HTTP2_MAX_CONCURRENT_STREAMS,
            http2_max_pending_resets: defaults::HTTP2_MAX_PENDING_RESETS,
            http2_max_error_resets: defaults::HTTP2_MAX_ERROR_RESETS,
            send_timeout: defaults::SEND_TIMEOUT,
        }
    }
}

/// Serves `handler` (called with each request and its connection's peer).
pub async fn serve<H, F, B>(listener: TcpListener, limits: &Limits, handler: H, shutdown: impl Future<Output = ()>)
where
    H: Fn(Request<Incoming>, Peer) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    // The same HTTP/1 settings, for a connection served again after its
    // idle buffers were let go (`idle.rs`): by then it cannot be HTTP/2.
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .max_pending_accept_reset_streams(limits.http2_max_pending_resets)
        .max_local_error_reset_streams(limits.http2_max_error_resets);
    // Only receivers count towards "every connection is done".
    let (phase, _) = watch::channel(Phase::Serving);
    // What each answer checks: one atomic load, not a lock on the watch
    // channel per request. Set together with Phase::Draining.
    let draining = Arc::new(AtomicBool::new(false));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        // At the connection limit, stop accepting: clients queue in the
        // kernel's backlog instead of costing memory here.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, client) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // Typically EMFILE: back off instead of spinning.
                        warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let peer = Peer::new(client, limits.tls.is_some());
                let handler = handler.clone();
                let protocols = limits.protocols;
                // Shared with an upgraded (WebSocket) session, which outlives
                // the HTTP connection and must keep counting against max_connections.
                let slot = Arc::new(slot);
                let session_slot = Arc::clone(&slot);
                let mut watch = ShutdownWatch::new(phase.subscribe());
                let seen_h2 = Arc::new(AtomicBool::new(false));
                let activity = Arc::new(Activity::default());
                // Made once the connection's peer is known: over TLS, after
                // the handshake, with the client certificate it verified.
                let service_for = {
                    let (watch, seen_h2, draining) = (watch.clone(), Arc::clone(&seen_h2), Arc::clone(&draining));
                    let activity = Arc::clone(&activity);
                    move |peer: Peer| service_fn(move |mut request: Request<Incoming>| {
                        let upgrade = request.headers().contains_key(http::header::UPGRADE)
                            || request.method() == http::Method::CONNECT;
                        if upgrade {
                            request.extensions_mut().insert(ConnectionSlot(Arc::clone(&session_slot)));
                            request.extensions_mut().insert(watch.clone());
                        }
                        let version = request.version();
                        let body = !hyper::body::Body::is_end_stream(request.body());
                        let activity = activity.begin(version, upgrade || body);
                        if version == http::Version::HTTP_2 {
                            seen_h2.store(true, Ordering::Relaxed);
                        }
                        // hyper-util's auto builder ignores http1_only/http2_only
                        // when it serves upgrades, so the version is checked here.
                        let spoken = if version == http::Version::HTTP_2 { protocols.http2 } else { protocols.http1 };
                        // On the heap once: hyper moves the service's future
                        // several times per request, and the handler's is kilobytes.
                        let response = spoken.then(|| Box::pin(handler(request, peer.clone())));
                        let draining = Arc::clone(&draining);
                        async move {
                            let mut response = match response {
                                Some(response) => response.await.map(Either::Left),
                                None => {
                                    let mut refused = Response::new(Either::Right(Full::new(Bytes::from_static(
                                        b"this listener does not speak this HTTP version (server.protocols)\n",
                                    ))));
                                    *refused.status_mut() = http::StatusCode::HTTP_VERSION_NOT_SUPPORTED;
                                    refused
                                }
                            };
                            // Decided when the answer is ready, not when the request came:
                            // a request in flight when draining begins still ends its connection.
                            if version <= http::Version::HTTP_11
                                && draining.load(Ordering::Acquire)
                                && response.status() != http::StatusCode::SWITCHING_PROTOCOLS
                            {
                                response.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                            }
                            Ok::<_, Infallible>(response.map(|body| Tracked::new(body, activity)))
                        }
                    })
                };
                let builder = builder.clone();
                let http1 = http1.clone();
                let acceptor = limits.tls.as_ref().map(ServerTls::acceptor);
                let handshake_timeout = limits.header_read_timeout;
                let send_timeout = limits.send_timeout;
                tokio::spawn(async move {
                    let served = match acceptor {
                        None => {
                            let cleartext = Cleartext { auto: &builder, http1: &http1, send_timeout, idle_wait: handshake_timeout };
                            cleartext.serve(stream, service_for(peer), watch, &seen_h2, activity).await
                        }
                        Some(acceptor) => {
                            // The handshake is bounded like a request head: a client that stalls it holds a slot.
                            let handshake = tokio::time::timeout(handshake_timeout, Box::pin(acceptor.accept(stream)));
                            let handshake = tokio::select! {
                                result = handshake => result,
                                () = watch.reached(Phase::Closing) => return,
                            };
                            match handshake {
                                Ok(Ok(stream)) => {
                                    // rustls verified the chain (`client_auth`); its leaf is read once, here.
                                    let leaf = stream.get_ref().1.peer_certificates().and_then(|chain| chain.first());
                                    let service = service_for(peer.with_client_cert(leaf.map(|der| der.as_ref())));
                                    let io = TokioIo::new(SendGuard::new(stream, send_timeout));
                                    let connection = Box::pin(builder.serve_connection_with_upgrades(io, service).into_owned());
                                    drive(connection, GracefulConnection::graceful_shutdown, watch, &seen_h2).await
                                }
                                Ok(Err(error)) => Err(error.into()),
                                Err(_) => Err("TLS handshake timed out".into()),
                            }
                        }
                    };
                    if let Err(error) = served {
                        debug!(%client, %error, "connection ended with an error");
                    }
                    drop(slot);
                });
            }
            () = &mut shutdown => break,
        }
    }
    let listen = listener.local_addr().map_or_else(|_| "?".to_string(), |addr| addr.to_string());
    drop(listener);
    info!(%listen, grace = %humantime::format_duration(limits.shutdown_grace), "shutting down: draining open connections");
    let started = Instant::now();
    let grace_over = started + limits.shutdown_grace;
    draining.store(true, Ordering::Release);
    phase.send_replace(Phase::Draining);
    let mut drained =
        tokio::time::timeout_at(started + DRAIN_WINDOW.min(limits.shutdown_grace), phase.closed()).await.is_ok();
    if !drained {
        phase.send_replace(Phase::Closing);
        drained = tokio::time::timeout_at(grace_over, phase.closed()).await.is_ok();
    }
    if drained {
        info!("all connections drained");
    } else {
        warn!("grace period over; closing the remaining connections");
        phase.send_replace(Phase::Over);
        let _ = tokio::time::timeout(LAST_WORDS, phase.closed()).await;
    }
}

/// Serves one connection through the shutdown phases, from the heap (so
/// that it is freed when it ends: the task of a cleartext connection
/// outlives it, `idle.rs`, and that task's size is what an idle
/// connection costs): HTTP/2 is sent
/// GOAWAY as soon as draining begins (its clients then open no new
/// streams and those in flight finish); HTTP/1 is left alone for the drain
/// window, where each answer closes it, because hyper's graceful shutdown
/// closes an idle HTTP/1 connection at once, losing the request its client
/// may be sending. At the end of the grace period the connection is cut.
async fn drive<C, E>(
    mut connection: Pin<Box<C>>,
    graceful_shutdown: fn(Pin<&mut C>),
    mut watch: ShutdownWatch,
    seen_h2: &AtomicBool,
) -> Result<(), BoxError>
where
    C: Future<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    tokio::select! {
        result = connection.as_mut() => return result.map_err(Into::into),
        () = watch.reached(Phase::Draining) => {}
    }
    if !seen_h2.load(Ordering::Relaxed) {
        tokio::select! {
            result = connection.as_mut() => return result.map_err(Into::into),
            () = watch.reached(Phase::Closing) => {}
        }
    }
    graceful_shutdown(connection.as_mut());
    tokio::select! {
        result = connection => result.map_err(Into::into),
        () = watch.reached(Phase::Over) => Err("cut at the end of the grace period".into()),
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a cleartext connection is served: HTTP/1.1 or h2c at first (the
/// auto builder tells them apart), then HTTP/1.1 again on the same socket
/// each time an idle connection gave its buffers back (`idle.rs`).
struct Cleartext<'a> {
    auto: &'a auto::Builder<TokioExecutor>,
    http1: &'a hyper::server::conn::http1::Builder,
    send_timeout: Duration,
    /// How long a released connection may stay idle: what hyper allows
    /// for a request head, less the time it already waited.
    idle_wait: Duration,
}

impl Cleartext<'_> {
    async fn serve<S, B>(
        &self,
        stream: TcpStream,
        service: S,
        watch: ShutdownWatch,
        seen_h2: &AtomicBool,
        activity: Arc<Activity>,
    ) -> Result<(), BoxError>
    where
        S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (give_back, mut released) = oneshot::channel();
        let io = self.io(stream, give_back, &activity);
        let connection = Box::pin(self.auto.serve_connection_with_upgrades(io, service.clone()));
        drive(connection, GracefulConnection::graceful_shutdown, watch.clone(), seen_h2).await?;
        let idle_wait = self.idle_wait.saturating_sub(crate::idle::RELEASE_AFTER);
        loop {
            // Not released: the client closed, or hyper did.
            let Ok(stream) = released.try_recv() else { return Ok(()) };
            debug!("idle connection gave its buffers back");
            let mut waiting = watch.clone();
            let sent_again = tokio::select! {
                readable = stream.readable() => readable.is_ok(),
                () = tokio::time::sleep(idle_wait) => false,
                () = waiting.reached(Phase::Closing) => false,
            };
            if !sent_again {
                return Ok(());
            }
            let give_back;
            (give_back, released) = oneshot::channel();
            let io = self.io(stream, give_back, &activity);
            let connection = Box::pin(self.http1.serve_connection(io, service.clone()).with_upgrades());
            drive(
                connection,
                hyper::server::conn::http1::UpgradeableConnection::graceful_shutdown,
                watch.clone(),
                seen_h2,
            )
            .await?;
        }
    }

    fn io(
        &self,
        stream: TcpStream,
        give_back: oneshot::Sender<TcpStream>,
        activity: &Arc<Activity>,
    ) -> TokioIo<SendGuard<Releasing<TcpStream>>> {
        TokioIo::new(SendGuard::new(Releasing::new(stream, Some(give_back), Arc::clone(activity)), self.send_timeout))
    }
}
