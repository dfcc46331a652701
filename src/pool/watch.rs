//! What a pooled HTTP/1 connection is doing, and the task that runs it:
//! the task closes a connection idle too long, and one whose client has
//! stopped taking the response (`server.send_timeout`), so a client that
//! never reads cannot hold a place under `max_connections` for ever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tracing::debug;

/// How long an unused connection is kept open (hyper-util's default too).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

const IDLE: u8 = 0;
const IN_USE: u8 = 1;
const CLOSED: u8 = 2;

/// Shared by the pool's handle on a connection, the response body it is
/// serving and the task running it. Plain loads and stores: the task reads
/// them a few times a minute.
#[derive(Default)]
pub struct Watch {
    state: AtomicU8,
    /// Whether the last read of the connection returned bytes. If so, and
    /// nothing has read it since, hyper is holding data its consumer has
    /// not taken: the upstream is not the one being slow.
    paused: AtomicBool,
    /// Frames handed to the consumer of the response in progress.
    progress: AtomicU64,
    /// Times the connection was taken from the pool.
    uses: AtomicU64,
}

impl Watch {
    pub fn new_in_use() -> Watch {
        Watch { state: AtomicU8::new(IN_USE), ..Watch::default() }
    }

    /// Takes an idle connection for a request; `false` if its task closed it first.
    pub fn take(&self) -> bool {
        self.uses.fetch_add(1, Relaxed);
        self.state.compare_exchange(IDLE, IN_USE, Relaxed, Relaxed).is_ok()
    }

    pub fn set_idle(&self) {
        let _ = self.state.compare_exchange(IN_USE, IDLE, Relaxed, Relaxed);
    }

    pub fn progressed(&self) {
        self.progress.fetch_add(1, Relaxed);
    }
}

/// What the task checks at each tick.
#[derive(Clone, Copy)]
pub struct Timers {
    pub send_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Timers {
    /// Half the send timeout: a stall is seen after two ticks without
    /// progress, so between one and one and a half `send_timeout`s.
    fn tick(&self) -> Duration {
        (self.send_timeout / 2).max(Duration::from_millis(5))
    }
}

/// Runs one HTTP/1 connection to its end (the upstream closed it, an
/// upgrade took it over, or the watch decided it) and then gives its place
/// under the cap back.
pub async fn run<F>(connection: F, watch: Arc<Watch>, place: OwnedSemaphorePermit, timers: Timers)
where
    F: Future<Output = hyper::Result<()>>,
{
    let _place = place;
    let mut connection = std::pin::pin!(connection);
    let tick = timers.tick();
    let idle_ticks = timers.idle_timeout.as_nanos().div_ceil(tick.as_nanos().max(1)).max(1);
    let mut seen = (0, 0);
    let (mut stalled, mut idle) = (0u32, 0u128);
    loop {
        tokio::select! {
            biased;
            ended = &mut connection => {
                if let Err(error) = ended {
                    debug!(%error, "upstream connection ended");
                }
                return;
            }
            () = tokio::time::sleep(tick) => {}
        }
        let now = (watch.progress.load(Relaxed), watch.uses.load(Relaxed));
        let unchanged = now == seen;
        seen = now;
        if watch.state.load(Relaxed) == IN_USE {
            idle = 0;
            stalled = if unchanged && watch.paused.load(Relaxed) { stalled + 1 } else { 0 };
            if stalled >= 2 {
                debug!("closing an upstream connection: its client took none of the response for send_timeout");
                watch.state.store(CLOSED, Relaxed);
                return;
            }
        } else {
            stalled = 0;
            idle = if unchanged { idle + 1 } else { 0 };
            if idle >= idle_ticks && watch.state.compare_exchange(IDLE, CLOSED, Relaxed, Relaxed).is_ok() {
                debug!("closing an idle upstream connection");
                return;
            }
        }
    }
}

/// An upstream connection's stream, reporting to its [`Watch`] whether the
/// last read found bytes.
pub struct Watched<S> {
    pub stream: S,
    pub watch: Arc<Watch>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        let paused = matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before;
        self.watch.paused.store(paused, Relaxed);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
