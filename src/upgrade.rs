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
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::debug;

use crate::error::Refusal;
use crate::server::ConnectionSlot;

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
    Some(Pending { protocol, expected_accept, client, slot })
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
        response: &mut http::Response<hyper::body::Incoming>,
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
            let mut client = Touching { inner: TokioIo::new(client), last: Arc::clone(&last), started };
            let mut upstream = Touching { inner: TokioIo::new(upstream), last: Arc::clone(&last), started };
            let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
            tokio::select! {
                result = copy => match result {
                    Ok((up, down)) => debug!(up, down, "upgraded connection closed"),
                    Err(error) => debug!(%error, "upgraded connection ended with an error"),
                },
                () = idle_for(idle, &last, started) => debug!("upgraded connection closed after being idle"),
            }
            sessions.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(())
    }
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

/// An upgraded connection that notes the time of every read.
struct Touching<T> {
    inner: T,
    last: Arc<AtomicU64>,
    started: tokio::time::Instant,
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
        Pin::new(&mut self.inner).poll_write(cx, buf)
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
    fn accept_answers_the_key_as_rfc_6455_shows() {
        // RFC 6455 §1.3's example.
        assert_eq!(accept_for(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
