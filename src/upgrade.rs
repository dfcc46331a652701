//! WebSocket: an authenticated HTTP/1.1 `Upgrade: websocket` request is
//! passed on with its upgrade headers, and once the upstream answers 101
//! both connections are spliced: bytes copied both ways until either side
//! closes. Every check happens before, on the upgrade request itself.
//! Other upgrades (h2c, TLS) are not passed on: their headers are
//! hop-by-hop and removed like any other.

use http::header::{CONNECTION, HeaderMap, HeaderValue, UPGRADE};
use http::request;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::debug;

use crate::server::ConnectionSlot;

/// A client's pending upgrade: the protocol it asked for and its side of
/// the connection, handed over once the answer is sent.
pub struct Pending {
    protocol: HeaderValue,
    client: OnUpgrade,
    /// The client connection's place under `server.max_connections`, held
    /// until the session ends.
    slot: Option<ConnectionSlot>,
}

/// Takes the upgrade out of a request that asks for a WebSocket.
pub fn take(parts: &mut request::Parts) -> Option<Pending> {
    if parts.version != http::Version::HTTP_11 || !is_websocket_upgrade(&parts.headers) {
        return None;
    }
    let protocol = parts.headers.get(UPGRADE)?.clone();
    let client = parts.extensions.remove::<OnUpgrade>()?;
    let slot = parts.extensions.remove::<ConnectionSlot>();
    Some(Pending { protocol, client, slot })
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

    /// The upstream switched protocols: answer the client with the upgrade
    /// headers and splice the two connections in a task of their own.
    pub fn splice(self, response: &mut http::Response<hyper::body::Incoming>) {
        let Some(upstream) = response.extensions_mut().remove::<OnUpgrade>() else { return };
        let headers = response.headers_mut();
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
            let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                Ok((up, down)) => debug!(up, down, "upgraded connection closed"),
                Err(error) => debug!(%error, "upgraded connection ended with an error"),
            }
        });
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
}
