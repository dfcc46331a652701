//! WebSocket: an authenticated HTTP/1.1 `Upgrade: websocket` request is
//! passed on with its upgrade headers, and once the upstream completes the
//! handshake both connections are spliced: bytes copied both ways until
//! either side closes or the session is idle for
//! `server.websocket_idle_timeout`. Every check happens before, on the
//! upgrade request itself: **a tunnel carries bytes nobody judges**, so a
//! route opens one only when it allows upgrades (`websocket`, off on
//! public routes by default) and only on a real handshake: a 101 that
//! names the protocol asked for and, for WebSocket, carries the
//! `Sec-WebSocket-Accept` that answers the client's key (RFC 6455 §4.2.2).
//! Anything else is a 502, never a tunnel. Other upgrades (h2c, TLS) are
//! not passed on: their headers are hop-by-hop and removed like any other.
//!
//! A session counts as an open connection when the gateway shuts down:
//! it may go on until the grace period ends, then both sides are sent a
//! close frame 1001 "going away" (RFC 6455 §7.4.1) instead of a silent cut.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::header::{CONNECTION, HeaderMap, HeaderName, HeaderValue, UPGRADE};
use http::request;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tracing::debug;

use crate::connection::{ConnectionSlot, Phase, ShutdownWatch};
use crate::error::Refusal;

static SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
static SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");
/// RFC 6455 §1.3.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A client's pending upgrade: the protocol it asked for and its side of
/// the connection, handed over once the answer is sent.
pub struct Pending {
    protocol: HeaderValue,
    /// The `Sec-WebSocket-Accept` a genuine handshake answers with.
    expected_accept: Option<String>,
    client: OnUpgrade,
    /// The client connection's place under `server.max_connections`, held
    /// until the session ends.
    slot: Option<ConnectionSlot>,
    /// The listener's shutdown, which the session holds open until it ends.
    shutdown: Option<ShutdownWatch>,
}

/// Whether the request asks for a WebSocket upgrade.
pub fn is_requested(parts: &request::Parts) -> bool {
    parts.version == http::Version::HTTP_11 && is_websocket_upgrade(&parts.headers)
}

/// Takes the upgrade out of a request that asks for a WebSocket.
pub fn take(parts: &mut request::Parts) -> Option<Pending> {
    if !is_requested(parts) {
        return None;
    }
    let protocol = parts.headers.get(UPGRADE)?.clone();
    let expected_accept = parts.headers.get(&SEC_WEBSOCKET_KEY).map(|key| accept_for(key.as_bytes()));
    let client = parts.extensions.remove::<OnUpgrade>()?;
    let slot = parts.extensions.remove::<ConnectionSlot>();
    let shutdown = parts.extensions.remove::<ShutdownWatch>();
    Some(Pending { protocol, expected_accept, client, slot, shutdown })
}

/// RFC 6455 §4.2.2: base64 of the SHA-1 of the key and the protocol's GUID.
fn accept_for(key: &[u8]) -> String {
    let mut input = key.to_vec();
    input.extend_from_slice(WEBSOCKET_GUID.as_bytes());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    STANDARD.encode(digest.as_ref())
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let asks_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    asks_upgrade && headers.get(UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

impl Pending {
    /// Puts the upgrade headers back on the request for the upstream
    /// (the hop-by-hop removal took them out).
    pub fn ask(&self, headers: &mut HeaderMap) {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, self.protocol.clone());
    }

    /// Whether the upstream's answer completes the handshake this client
    /// asked for. `headers` are the answer's, before hop-by-hop removal.
    fn is_handshake(&self, headers: &HeaderMap) -> bool {
        let upgraded_to =
            headers.get(UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(self.protocol.as_bytes()));
        let accepted = match &self.expected_accept {
            Some(expected) => headers.get(&SEC_WEBSOCKET_ACCEPT).is_some_and(|v| v.as_bytes() == expected.as_bytes()),
            None => false,
        };
        upgraded_to && accepted
    }

    /// The upstream switched protocols: if its 101 (headers as the
    /// upstream sent them) is a genuine handshake, answer the client with
    /// the upgrade headers and splice the two connections in a task of
    /// their own, closed after `idle` without traffic.
    pub fn splice(
        self,
        response: &mut http::Response<impl Sized>,
        idle: Duration,
        sessions: Arc<AtomicU64>,
    ) -> Result<(), Refusal> {
        if !self.is_handshake(response.headers()) {
            return Err(Refusal::BadGateway("upstream answered 101 without completing the WebSocket handshake"));
        }
        let Some(upstream) = response.extensions_mut().remove::<OnUpgrade>() else {
            return Err(Refusal::BadGateway("upstream answered 101 but its connection cannot be upgraded"));
        };
        let headers = response.headers_mut();
        crate::headers::remove_hop_by_hop(headers);
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, self.protocol);
        tokio::spawn(async move {
            let _slot = self.slot;
            let mut shutdown = self.shutdown;
            let (client, upstream) = match tokio::try_join!(self.client, upstream) {
                Ok(pair) => pair,
                Err(error) => {
                    debug!(%error, "upgrade did not complete");
                    return;
                }
            };
            sessions.fetch_add(1, Ordering::Relaxed);
            let last = Arc::new(AtomicU64::new(0));
            let started = tokio::time::Instant::now();
            let mut client = Touching::new(TokioIo::new(client), Arc::clone(&last), started);
            let mut upstream = Touching::new(TokioIo::new(upstream), Arc::clone(&last), started);
            let going_away = async {
                match shutdown.as_mut() {
                    Some(watch) => watch.reached(Phase::Over).await,
                    None => std::future::pending().await,
                }
            };
            let shut_down = tokio::select! {
                result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                    match result {
                        Ok((up, down)) => debug!(up, down, "upgraded connection closed"),
                        Err(error) => debug!(%error, "upgraded connection ended with an error"),
                    }
                    false
                }
                () = idle_for(idle, &last, started) => {
                    debug!("upgraded connection closed after being idle");
                    false
                }
                () = going_away => true,
            };
            if shut_down {
                // Bounded: the process exits soon after the grace period anyway.
                let farewell = async { tokio::join!(client.go_away(false), upstream.go_away(true)) };
                let _ = tokio::time::timeout(GOING_AWAY_TIMEOUT, farewell).await;
                debug!("upgraded connection sent going away at the end of the grace period");
            }
            sessions.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(())
    }
}

/// How long the close frames at shutdown may take to be written.
const GOING_AWAY_TIMEOUT: Duration = Duration::from_millis(100);

/// Where a stream of WebSocket frames (RFC 6455 §5.2) is: a close frame
/// can be sent only between two frames, never inside one.
#[derive(Default)]
struct Frames {
    head: [u8; 14],
    head_len: usize,
    payload_left: u64,
}

impl Frames {
    fn at_boundary(&self) -> bool {
        self.head_len == 0 && self.payload_left == 0
    }

    /// Follows `bytes` written to the stream.
    fn advance(&mut self, mut bytes: &[u8]) {
        while let Some((&first, rest)) = bytes.split_first() {
            if self.payload_left > 0 {
                let skip = usize::try_from(self.payload_left).unwrap_or(usize::MAX).min(bytes.len());
                self.payload_left -= skip as u64;
                bytes = &bytes[skip..];
                continue;
            }
            self.head[self.head_len] = first;
            self.head_len += 1;
            bytes = rest;
            if self.head_len < 2 {
                continue;
            }
            let extended = match self.head[1] & 0x7f {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            let mask = if self.head[1] & 0x80 != 0 { 4 } else { 0 };
            if self.head_len < 2 + extended + mask {
                continue;
            }
            self.payload_left = match extended {
                0 => u64::from(self.head[1] & 0x7f),
                2 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
                _ => self.head[2..10].iter().fold(0, |length, &b| (length << 8) | u64::from(b)),
            };
            self.head_len = 0;
        }
    }
}

/// A close frame, code 1001 "going away"; masked when sent to the
/// upstream, as frames from a client must be (RFC 6455 §5.3).
fn going_away_frame(masked: bool) -> Vec<u8> {
    let mut payload = 1001u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"going away");
    let length = payload.len() as u8;
    let mut frame = vec![0x88];
    if masked {
        let mut key = [0u8; 4];
        // A fixed key only weakens the protection masking gives caching
        // intermediaries, for a frame that carries nothing from the client.
        let _ = aws_lc_rs::rand::fill(&mut key);
        frame.push(0x80 | length);
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
    } else {
        frame.push(length);
        frame.extend_from_slice(&payload);
    }
    frame
}

/// Resolves once nothing has been read on either side for `idle`.
async fn idle_for(idle: Duration, last: &AtomicU64, started: tokio::time::Instant) {
    loop {
        let last_read = started + Duration::from_millis(last.load(Ordering::Relaxed));
        let deadline = last_read + idle;
        if tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// An upgraded connection that notes the time of every read and where
/// the frames written to it end.
struct Touching<T> {
    inner: T,
    last: Arc<AtomicU64>,
    started: tokio::time::Instant,
    written: Frames,
}

impl<T: AsyncWrite + Unpin> Touching<T> {
    fn new(inner: T, last: Arc<AtomicU64>, started: tokio::time::Instant) -> Self {
        Touching { inner, last, started, written: Frames::default() }
    }

    /// Sends a going-away close frame, unless a frame is half written (the
    /// rest of it was lost with the copy), then closes the write side.
    async fn go_away(&mut self, masked: bool) {
        if self.written.at_boundary() {
            let _ = self.write_all(&going_away_frame(masked)).await;
        }
        let _ = self.shutdown().await;
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Touching<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let elapsed = self.started.elapsed().as_millis() as u64;
            self.last.store(elapsed, Ordering::Relaxed);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Touching<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = result {
            self.written.advance(&buf[..written]);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn only_websocket_upgrades_are_passed_on() {
        assert!(is_websocket_upgrade(&headers(&[("connection", "keep-alive, Upgrade"), ("upgrade", "WebSocket")])));
        assert!(!is_websocket_upgrade(&headers(&[("connection", "upgrade"), ("upgrade", "h2c")])));
        assert!(!is_websocket_upgrade(&headers(&[("upgrade", "websocket")])));
        assert!(!is_websocket_upgrade(&headers(&[("connection", "upgraded"), ("upgrade", "websocket")])));
    }

    #[test]
    fn frames_are_followed_across_writes() {
        let mut frames = Frames::default();
        assert!(frames.at_boundary());
        // A masked 300-byte frame (16-bit length), written in pieces.
        let mut frame = vec![0x82, 0x80 | 126, 0x01, 0x2c, 1, 2, 3, 4];
        frame.extend(std::iter::repeat_n(9, 300));
        let (last, pieces) = frame.split_last().unwrap();
        for piece in pieces.chunks(7) {
            frames.advance(piece);
            assert!(!frames.at_boundary());
        }
        frames.advance(&[*last]);
        assert!(frames.at_boundary());
        // An empty ping, then half of a 64-bit-length frame.
        frames.advance(&[0x89, 0x00, 0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0, 5]);
        assert!(!frames.at_boundary());
        frames.advance(&vec![0; 65535]);
        assert!(frames.at_boundary());
        frames.advance(&going_away_frame(true));
        assert!(frames.at_boundary());
    }

    #[test]
    fn going_away_says_1001() {
        assert_eq!(&going_away_frame(false)[..4], &[0x88, 12, 0x03, 0xe9]);
        let masked = going_away_frame(true);
        assert_eq!(masked[1], 0x80 | 12);
        let unmasked: Vec<u8> = masked[6..].iter().zip(masked[2..6].iter().cycle()).map(|(b, k)| b ^ k).collect();
        assert_eq!(&unmasked[..2], &[0x03, 0xe9]);
    }

    #[test]
    fn accept_answers_the_key_as_rfc_6455_shows() {
        // RFC 6455 §1.3's example.
        assert_eq!(accept_for(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
