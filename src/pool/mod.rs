//! Connections to one upstream, opened once and reused. Between requests
//! an HTTP/1 connection waits in a lock-free queue; an HTTP/2 connection
//! is shared by every request. At most `max_connections` are open: a
//! request finding none free waits a bounded time for one to be returned
//! or closed, and is then refused (the caller's 503).
//!
//! Written here rather than taken from hyper-util's pooled client, which
//! on every request hashes a pool key, races a connect against the
//! checkout and spawns a task to return the connection (about a fifth of
//! the proxy's user-space instructions per request, by callgrind), and
//! which can neither cap connections nor close one whose client stopped
//! reading (`watch.rs`).

mod connect;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use hyper::body::Body;
use hyper::client::conn::{http1, http2};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub use connect::ConnectError;
use connect::{Connector, Opened};
use watch::{Timers, Watch};

use crate::config::{Problem, UpstreamConfig};

/// What a request body must be to be sent on a pooled connection.
pub trait RequestBody: Body<Data = Bytes, Error = hyper::Error> + Send + Unpin + 'static {}
impl<T: Body<Data = Bytes, Error = hyper::Error> + Send + Unpin + 'static> RequestBody for T {}

/// Why [`Pool::checkout`] found no connection.
#[derive(Debug)]
pub enum CheckoutError {
    /// `max_connections` are open and none became free in time.
    Busy,
    Connect(ConnectError),
}

pub struct Pool<B> {
    connector: Connector,
    idle: Arc<Idle<B>>,
    /// The HTTP/2 connection every request shares, once there is one.
    http2: ArcSwapOption<http2::SendRequest<B>>,
    /// One HTTP/2 connect at a time (h2c): the others wait and share it.
    http2_connecting: tokio::sync::Mutex<()>,
    /// One place per open connection.
    places: Arc<Semaphore>,
    /// How long a request waits for a connection at the cap.
    place_wait: Duration,
    timers: Timers,
}

/// The HTTP/1 connections waiting for a request, and a signal when one is
/// given back (for requests waiting at the cap).
struct Idle<B> {
    queue: ArrayQueue<Waiting<B>>,
    returned: Notify,
}

struct Waiting<B> {
    sender: http1::SendRequest<B>,
    watch: Arc<Watch>,
    since: Instant,
}

/// A connection for one request.
pub enum Connection<B> {
    Http1(Lease<B>),
    Http2(http2::SendRequest<B>),
}

/// An HTTP/1 connection lent to one request: [`give_back`](Lease::give_back)
/// once its response has been read to the end, or drop it (the connection
/// then closes, as hyper cannot reuse it with a response half read).
pub struct Lease<B> {
    pub sender: http1::SendRequest<B>,
    watch: Arc<Watch>,
    idle: Arc<Idle<B>>,
    /// How long it had been waiting in the pool; `None`: opened for this request.
    pub idle_for: Option<Duration>,
}

impl<B> Lease<B> {
    /// The response's consumer took a frame.
    pub fn progressed(&self) {
        self.watch.progressed();
    }

    pub fn give_back(self) {
        if self.sender.is_closed() {
            return;
        }
        self.watch.set_idle();
        let waiting = Waiting { sender: self.sender, watch: self.watch, since: Instant::now() };
        // A full queue cannot happen (one slot per place); if it did, the
        // connection would simply close.
        if self.idle.queue.push(waiting).is_ok() {
            self.idle.returned.notify_one();
        }
    }
}

impl<B: RequestBody> Pool<B> {
    /// Fails when the upstream's TLS files cannot be used.
    pub fn new(config: &UpstreamConfig, send_timeout: Duration) -> Result<Pool<B>, Problem> {
        let max = config.max_connections.max(1);
        Ok(Pool {
            connector: Connector::new(config)?,
            idle: Arc::new(Idle { queue: ArrayQueue::new(max), returned: Notify::new() }),
            http2: ArcSwapOption::empty(),
            http2_connecting: tokio::sync::Mutex::new(()),
            places: Arc::new(Semaphore::new(max)),
            place_wait: config.connect_timeout,
            timers: Timers { send_timeout, idle_timeout: watch::IDLE_TIMEOUT },
        })
    }

    /// A connection ready for a request: the shared HTTP/2 one, an idle
    /// HTTP/1 one, or a new one if the cap allows; at the cap, waits until
    /// `deadline` (or `connect_timeout`, if sooner) for one to be freed.
    pub async fn checkout(&self, deadline: Instant) -> Result<Connection<B>, CheckoutError> {
        if let Some(shared) = self.shared_http2() {
            return Ok(Connection::Http2(shared));
        }
        if self.connector.always_http2() {
            return Box::pin(self.open_shared_http2(deadline)).await;
        }
        let wait_until = (Instant::now() + self.place_wait).min(deadline);
        loop {
            if let Some(lease) = self.idle_connection().await {
                return Ok(Connection::Http1(lease));
            }
            if let Ok(place) = Arc::clone(&self.places).try_acquire_owned() {
                return Box::pin(self.open(place)).await;
            }
            // At the cap: wait for a connection to come back or to close.
            // Listening starts before the queue is looked at again, so a
            // return in between is not missed.
            let returned = self.idle.returned.notified();
            let mut returned = std::pin::pin!(returned);
            returned.as_mut().enable();
            if let Some(lease) = self.idle_connection().await {
                return Ok(Connection::Http1(lease));
            }
            tokio::select! {
                biased;
                place = Arc::clone(&self.places).acquire_owned() => {
                    let place = place.map_err(|_| CheckoutError::Busy)?;
                    return Box::pin(self.open(place)).await;
                }
                () = returned => continue,
                () = tokio::time::sleep_until(wait_until) => return Err(CheckoutError::Busy),
            }
        }
    }

    fn shared_http2(&self) -> Option<http2::SendRequest<B>> {
        if !self.connector.may_be_http2() {
            return None;
        }
        let shared = self.http2.load();
        shared.as_deref().filter(|sender| !sender.is_closed()).cloned()
    }

    /// h2c: one connect at a time, so concurrent first requests share one connection.
    async fn open_shared_http2(&self, deadline: Instant) -> Result<Connection<B>, CheckoutError> {
        let _connecting = self.http2_connecting.lock().await;
        if let Some(shared) = self.shared_http2() {
            return Ok(Connection::Http2(shared));
        }
        let wait_until = (Instant::now() + self.place_wait).min(deadline);
        let place = match tokio::time::timeout_at(wait_until, Arc::clone(&self.places).acquire_owned()).await {
            Ok(Ok(place)) => place,
            Ok(Err(_)) | Err(_) => return Err(CheckoutError::Busy),
        };
        self.open(place).await
    }

    async fn open(&self, place: OwnedSemaphorePermit) -> Result<Connection<B>, CheckoutError> {
        match self.connector.open(place, self.timers).await.map_err(CheckoutError::Connect)? {
            Opened::Http1(sender, watch) => {
                Ok(Connection::Http1(Lease { sender, watch, idle: Arc::clone(&self.idle), idle_for: None }))
            }
            Opened::Http2(sender) => {
                self.http2.store(Some(Arc::new(sender.clone())));
                Ok(Connection::Http2(sender))
            }
        }
    }

    /// An idle HTTP/1 connection still open, if any. One just given back
    /// may still be finishing its last exchange: it is waited for, briefly.
    async fn idle_connection(&self) -> Option<Lease<B>> {
        while let Some(Waiting { mut sender, watch, since }) = self.idle.queue.pop() {
            if sender.is_closed() || !watch.take() {
                continue;
            }
            if !sender.is_ready() && sender.ready().await.is_err() {
                continue;
            }
            return Some(Lease { sender, watch, idle: Arc::clone(&self.idle), idle_for: Some(since.elapsed()) });
        }
        None
    }
}
