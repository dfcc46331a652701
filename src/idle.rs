//! Idle HTTP/1.1 keep-alive connections hold nothing but their socket.
//!
//! hyper keeps a connection's read and write buffers and its state (about
//! 30 KiB by massif) for as long as the connection lives, idle or not, and
//! has no way to let them go between requests. So once a cleartext HTTP/1.1
//! connection has answered everything it was asked and its client has sent
//! nothing for [`RELEASE_AFTER`], the stream under hyper ([`Releasing`])
//! reports the end of input: hyper, between requests, takes that as the
//! client closing and ends the connection cleanly, dropping its buffers,
//! while the socket itself is handed back through a channel instead of
//! being shut down. The server then waits for the client's next bytes with
//! nothing allocated but the socket, and serves them on a fresh hyper
//! connection.
//!
//! Never on a connection that has spoken HTTP/2, been upgraded or carried a
//! request body (which may stream in after its answer has ended), never
//! while an answer is in progress or unflushed (a write that had to wait
//! counts as unflushed), and never once the client
//! has sent a byte since the last answer ended: hyper then holds a partial
//! request head. What remains is a pipelining client whose next head
//! stalls half-sent for a whole [`RELEASE_AFTER`] before the previous
//! answer ends: its connection is closed, as RFC 9112 §9.3.2 allows (such
//! clients retry on a new connection).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

/// How long a connection must be idle before its buffers are let go.
pub const RELEASE_AFTER: Duration = Duration::from_secs(1);

/// What the requests of one connection are doing, as the service sees them.
#[derive(Default)]
pub struct Activity {
    /// Requests whose answer has not ended.
    busy: AtomicU32,
    /// Times `busy` came back to zero.
    idle_epoch: AtomicU64,
    /// An HTTP/1.x request was served, and nothing forbids a release.
    http1: AtomicBool,
    /// HTTP/2, an upgrade asked for, or a request with a body: never released.
    pinned: AtomicBool,
}

impl Activity {
    /// A request begins; its answer's body must be wrapped in [`Tracked`].
    /// `pin`: the connection must never be released — an upgrade, or a
    /// request with a body, which may still be streaming in after its
    /// answer has ended: a release then would read the rest of that body as
    /// a new request (the red team's smuggling finding). Only the answer's
    /// end is seen here, not the request body's, so such a connection keeps
    /// its buffers for good.
    pub fn begin(self: &Arc<Self>, version: http::Version, pin: bool) -> Arc<Self> {
        if version <= http::Version::HTTP_11 && !pin {
            self.http1.store(true, Relaxed);
        } else {
            self.pinned.store(true, Relaxed);
        }
        self.busy.fetch_add(1, Relaxed);
        Arc::clone(self)
    }

    fn end(&self) {
        if self.busy.fetch_sub(1, Relaxed) == 1 {
            self.idle_epoch.fetch_add(1, Relaxed);
        }
    }

    fn releasable(&self) -> bool {
        self.http1.load(Relaxed) && !self.pinned.load(Relaxed) && self.busy.load(Relaxed) == 0
    }
}

/// An answer's body, which tells its connection's [`Activity`] when it is over.
pub struct Tracked<B> {
    body: B,
    activity: Option<Arc<Activity>>,
}

impl<B> Tracked<B> {
    pub fn new(body: B, activity: Arc<Activity>) -> Tracked<B> {
        Tracked { body, activity: Some(activity) }
    }

    fn end(&mut self) {
        if let Some(activity) = self.activity.take() {
            activity.end();
        }
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.end();
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.body).poll_frame(cx));
        if frame.is_none() {
            self.end();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The stream under one hyper connection, which it gives back, instead of
/// shutting it down, once the connection has been idle for [`RELEASE_AFTER`].
pub struct Releasing<S> {
    stream: Option<S>,
    give_back: Option<oneshot::Sender<S>>,
    activity: Arc<Activity>,
    /// The idle epoch in which the client last sent bytes.
    delivered_in: u64,
    /// Bytes written and not yet flushed.
    unflushed: bool,
    release: Option<Pin<Box<Sleep>>>,
    /// The idle epoch the release timer was set for.
    armed_in: u64,
}

impl<S> Releasing<S> {
    /// `give_back` receives the stream if the connection is released.
    pub fn new(stream: S, give_back: Option<oneshot::Sender<S>>, activity: Arc<Activity>) -> Releasing<S> {
        let now = activity.idle_epoch.load(Relaxed);
        Releasing {
            stream: Some(stream),
            give_back,
            activity,
            delivered_in: now,
            unflushed: false,
            release: None,
            armed_in: u64::MAX,
        }
    }

    /// Called when a read found nothing: ends the input once the
    /// connection has been quiet long enough, handing the stream back.
    fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let epoch = self.activity.idle_epoch.load(Relaxed);
        if self.give_back.is_none() || self.unflushed || self.delivered_in == epoch || !self.activity.releasable() {
            return Poll::Pending;
        }
        let deadline = Instant::now() + RELEASE_AFTER;
        let release = match &mut self.release {
            Some(release) => {
                if self.armed_in != epoch {
                    release.as_mut().reset(deadline);
                }
                release
            }
            None => self.release.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.armed_in = epoch;
        std::task::ready!(release.as_mut().poll(cx));
        if let (Some(stream), Some(give_back)) = (self.stream.take(), self.give_back.take()) {
            let _ = give_back.send(stream);
        }
        self.release = None;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Releasing<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(stream) = &mut this.stream else { return Poll::Ready(Ok(())) };
        let before = buf.filled().len();
        match Pin::new(stream).poll_read(cx, buf) {
            Poll::Pending => this.poll_release(cx),
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.delivered_in = this.activity.idle_epoch.load(Relaxed);
                Poll::Ready(Ok(()))
            }
            ready => ready,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Releasing<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let Some(stream) = &mut self.stream else { return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())) };
        // Unflushed from the first attempt, even one that must wait: an
        // answer stuck behind a full send buffer is not over.
        let written = Pin::new(stream).poll_write(cx, buf);
        self.unflushed |= !buf.is_empty();
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let Some(stream) = &mut self.stream else { return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())) };
        let written = Pin::new(stream).poll_write_vectored(cx, bufs);
        self.unflushed |= bufs.iter().any(|b| !b.is_empty());
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(stream) = &mut self.stream else { return Poll::Ready(Ok(())) };
        let flushed = std::task::ready!(Pin::new(stream).poll_flush(cx));
        if flushed.is_ok() {
            self.unflushed = false;
        }
        Poll::Ready(flushed)
    }

    /// A released stream is not shut down: it lives on, handed back.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.stream {
            Some(stream) => Pin::new(stream).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    fn releasing(activity: &Arc<Activity>) -> (Releasing<DuplexStream>, DuplexStream, oneshot::Receiver<DuplexStream>) {
        let (ours, client) = tokio::io::duplex(1024);
        let (give_back, released) = oneshot::channel();
        (Releasing::new(ours, Some(give_back), Arc::clone(activity)), client, released)
    }

    /// One exchange as hyper drives it: the request read, the answer
    /// written and flushed, its body ended.
    async fn exchange(io: &mut Releasing<DuplexStream>, client: &mut DuplexStream, activity: &Arc<Activity>) {
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let n = io.read(&mut buf).await.unwrap();
        assert!(n > 0);
        let tracked = Tracked::new((), activity.begin(http::Version::HTTP_11, false));
        io.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        io.flush().await.unwrap();
        drop(tracked);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_ends_hypers_input_and_hands_its_stream_back() {
        let activity = Arc::new(Activity::default());
        let (mut io, mut client, mut released) = releasing(&activity);
        exchange(&mut io, &mut client, &activity).await;
        let started = Instant::now();
        let mut buf = [0u8; 8];
        assert_eq!(io.read(&mut buf).await.unwrap(), 0, "hyper sees the end of input");
        assert!(started.elapsed() >= RELEASE_AFTER);
        let mut stream = released.try_recv().expect("the stream was handed back");
        client.write_all(b"next").await.unwrap();
        assert_eq!(stream.read(&mut buf).await.unwrap(), 4, "the socket lives on");
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_released_while_an_answer_is_in_progress_or_after_the_client_sent_more() {
        let activity = Arc::new(Activity::default());
        let (mut io, mut client, mut released) = releasing(&activity);
        let mut buf = [0u8; 64];
        // A fresh connection, before any answer: hyper's own timeout applies.
        let waited = tokio::time::timeout(RELEASE_AFTER * 3, io.read(&mut buf)).await;
        assert!(waited.is_err());
        // An answer in progress.
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(io.read(&mut buf).await.unwrap() > 0);
        let tracked = Tracked::new((), activity.begin(http::Version::HTTP_11, false));
        assert!(tokio::time::timeout(RELEASE_AFTER * 3, io.read(&mut buf)).await.is_err());
        drop(tracked);
        // Half a head sent after the answer ended: hyper holds it.
        client.write_all(b"GET / HT").await.unwrap();
        assert!(io.read(&mut buf).await.unwrap() > 0);
        assert!(tokio::time::timeout(RELEASE_AFTER * 3, io.read(&mut buf)).await.is_err());
        assert!(released.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn http2_upgraded_and_body_carrying_connections_are_never_released() {
        // (HTTP/1.1, pinned) stands for an upgrade and for a request with a body.
        for (version, upgrade) in [(http::Version::HTTP_2, false), (http::Version::HTTP_11, true)] {
            let activity = Arc::new(Activity::default());
            let (mut io, mut client, mut released) = releasing(&activity);
            client.write_all(b"request").await.unwrap();
            let mut buf = [0u8; 64];
            assert!(io.read(&mut buf).await.unwrap() > 0);
            drop(Tracked::new((), activity.begin(version, upgrade)));
            assert!(tokio::time::timeout(RELEASE_AFTER * 3, io.read(&mut buf)).await.is_err(), "{version:?}");
            assert!(released.try_recv().is_err());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unflushed_bytes_hold_the_release() {
        let activity = Arc::new(Activity::default());
        let (mut io, mut client, _released) = releasing(&activity);
        exchange(&mut io, &mut client, &activity).await;
        io.write_all(b"more").await.unwrap();
        let mut buf = [0u8; 8];
        assert!(tokio::time::timeout(RELEASE_AFTER * 3, io.read(&mut buf)).await.is_err());
        io.flush().await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 0);
    }

    /// Red-team finding: an answer whose first write had to wait (a full
    /// send buffer) was not "unflushed", so a release could drop it.
    #[tokio::test(start_paused = true)]
    async fn a_write_that_has_to_wait_holds_the_release() {
        let activity = Arc::new(Activity::default());
        let (mut io, mut client, mut released) = releasing(&activity);
        exchange(&mut io, &mut client, &activity).await;
        let mut drained = [0u8; 64];
        let _ = client.read(&mut drained).await.unwrap();
        // Fill the 1024-byte pipe, then a write that must wait.
        io.write_all(&[b'a'; 1024]).await.unwrap();
        io.flush().await.unwrap();
        let waiting = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut io).poll_write(cx, b"answer")));
        assert!(waiting.await.is_pending(), "the pipe is full");
        let mut buf = [0u8; 8];
        assert!(tokio::time::timeout(RELEASE_AFTER * 3, io.read(&mut buf)).await.is_err(), "no end of input");
        assert!(released.try_recv().is_err());
    }
}
