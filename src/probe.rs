//! `jwtgate probe URL`: one plain-HTTP GET that succeeds on a 2xx. It is
//! the image's `HEALTHCHECK`: the runtime image has no shell and no curl,
//! so the binary checks its own admin listener.
//!
//! It owns only that one request: no TLS (the admin listener speaks plain
//! HTTP), no redirects, no retries (Docker and Kubernetes retry), no proxy.
//! A failure is one line naming the cause: refused, timed out, the status.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// At most this much of a failing answer's body is shown (a `/readyz`
/// body names the issuers without keys, which is the useful part).
const EXCERPT_BYTES: usize = 200;

/// Why a probe did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Url(String),
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connection refused: nothing listens on {0}")]
    Refused(SocketAddr),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("no answer within {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
    #[error("the HTTP exchange failed: {0}")]
    Http(#[source] hyper::Error),
    #[error("answered {}{}", status_words(*.status), excerpt_words(.excerpt))]
    Status { status: StatusCode, excerpt: String },
}

fn status_words(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

fn excerpt_words(excerpt: &str) -> String {
    if excerpt.is_empty() { String::new() } else { format!(": {excerpt}") }
}

/// What to connect to and what to ask for, from an `http://` URL.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    host: url::Host,
    port: u16,
    /// The `Host` header: the URL's authority without user info.
    authority: String,
    /// Origin form: path and query.
    path_and_query: String,
}

impl Target {
    fn parse(text: &str) -> Result<Target, ProbeError> {
        let url = url::Url::parse(text).map_err(|e| ProbeError::Url(format!("not a URL ({e}): {text}")))?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err(ProbeError::Url(
                    "https is not supported: probe the admin listener, which speaks plain http".into(),
                ));
            }
            other => return Err(ProbeError::Url(format!("not an http:// URL (scheme {other}): {text}"))),
        }
        let (Some(host), Some(port)) = (url.host(), url.port_or_known_default()) else {
            return Err(ProbeError::Url(format!("no host in {text}")));
        };
        let host_text = url.host_str().unwrap_or_default();
        let authority = match url.port() {
            Some(port) => format!("{host_text}:{port}"),
            None => host_text.to_string(),
        };
        let path_and_query = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        };
        Ok(Target { host: host.to_owned(), port, authority, path_and_query })
    }

    /// The addresses to try, in order: the literal address, or every
    /// address the name resolves to (`localhost`: `::1`, then `127.0.0.1`).
    async fn addresses(&self) -> Result<Vec<SocketAddr>, ProbeError> {
        match &self.host {
            url::Host::Ipv4(ip) => Ok(vec![SocketAddr::from((*ip, self.port))]),
            url::Host::Ipv6(ip) => Ok(vec![SocketAddr::from((*ip, self.port))]),
            url::Host::Domain(name) => {
                let resolve = |source| ProbeError::Resolve { host: name.clone(), source };
                let found: Vec<SocketAddr> =
                    tokio::net::lookup_host((name.as_str(), self.port)).await.map_err(resolve)?.collect();
                if found.is_empty() {
                    return Err(resolve(std::io::Error::other("no address")));
                }
                Ok(found)
            }
        }
    }
}

/// GETs `url` and succeeds on a 2xx status, all within `timeout`
/// (resolving, connecting, the response head). On another status, up to
/// 200 bytes of the body are read, within what is left of `timeout`, to
/// say why.
pub async fn probe(url: &str, timeout: Duration) -> Result<StatusCode, ProbeError> {
    let target = Target::parse(url)?;
    // A timeout too large to add to the clock waits as long as it can.
    let deadline = Instant::now().checked_add(timeout).unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 30));
    let response =
        tokio::time::timeout_at(deadline, send(&target)).await.map_err(|_| ProbeError::TimedOut(timeout))??;
    let status = response.status();
    if status.is_success() {
        return Ok(status);
    }
    let excerpt = tokio::time::timeout_at(deadline, excerpt(response.into_body())).await.unwrap_or_default();
    Err(ProbeError::Status { status, excerpt })
}

async fn send(target: &Target) -> Result<http::Response<hyper::body::Incoming>, ProbeError> {
    let stream = connect(&target.addresses().await?).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(ProbeError::Http)?;
    // Driven beside the request; it ends when the answer is dropped.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = Request::get(target.path_and_query.as_str())
        .header(header::HOST, target.authority.as_str())
        .header(header::USER_AGENT, concat!("jwtgate-probe/", env!("CARGO_PKG_VERSION")))
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| ProbeError::Url(format!("cannot make a request for {}: {e}", target.path_and_query)))?;
    sender.send_request(request).await.map_err(ProbeError::Http)
}

/// The first address that accepts a connection; else why the last did not.
async fn connect(addresses: &[SocketAddr]) -> Result<TcpStream, ProbeError> {
    let mut last = None;
    for &addr in addresses {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(source) if source.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = Some(ProbeError::Refused(addr));
            }
            Err(source) => last = Some(ProbeError::Connect { addr, source }),
        }
    }
    Err(last.unwrap_or_else(|| ProbeError::Url("no address to connect to".into())))
}

/// The start of `body` on one line: control characters become spaces.
async fn excerpt(mut body: hyper::body::Incoming) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < EXCERPT_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(EXCERPT_BYTES)]).into_owned();
    let line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    line.trim().to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server that answers every connection with `answer` once it has
    /// read the request head, or never answers when `answer` is `None`.
    async fn server(answer: Option<String>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    match answer {
                        Some(answer) => {
                            let _ = stream.write_all(answer.as_bytes()).await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                });
            }
        });
        addr
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn a_2xx_answer_succeeds() {
        let addr = server(Some("HTTP/1.1 204 No Content\r\n\r\n".into())).await;
        assert_eq!(probe(&format!("http://{addr}/readyz"), SECOND).await.unwrap(), StatusCode::NO_CONTENT);
    }

    #[tokio::test]
    async fn a_503_fails_naming_the_status_and_the_start_of_the_body() {
        let body = "{\"ready\":false,\n\"issuers_without_keys\":[\"https://idp.example/\"]}";
        let answer = format!("HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\n\r\n{body}", body.len());
        let addr = server(Some(answer)).await;
        let error = probe(&format!("http://{addr}/readyz"), SECOND).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "answered 503 Service Unavailable: {\"ready\":false, \"issuers_without_keys\":[\"https://idp.example/\"]}"
        );
    }

    #[tokio::test]
    async fn a_redirect_is_not_success() {
        let addr = server(Some("HTTP/1.1 302 Found\r\nlocation: /\r\ncontent-length: 0\r\n\r\n".into())).await;
        let error = probe(&format!("http://{addr}/"), SECOND).await.unwrap_err();
        assert_eq!(error.to_string(), "answered 302 Found");
    }

    #[tokio::test]
    async fn nothing_listening_is_connection_refused() {
        let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let error = probe(&format!("http://{addr}/healthz"), SECOND).await.unwrap_err();
        assert_eq!(error.to_string(), format!("connection refused: nothing listens on {addr}"));
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let addr = server(None).await;
        let started = std::time::Instant::now();
        let error = probe(&format!("http://{addr}/"), Duration::from_millis(300)).await.unwrap_err();
        assert_eq!(error.to_string(), "no answer within 300ms");
        assert!(started.elapsed() < SECOND, "{:?}", started.elapsed());
    }

    #[test]
    fn the_request_is_the_urls_path_and_query_with_its_authority() {
        let target = Target::parse("http://127.0.0.1:9901/readyz?verbose=1").unwrap();
        assert_eq!(target.host, url::Host::<String>::Ipv4([127, 0, 0, 1].into()));
        assert_eq!((target.port, target.authority.as_str()), (9901, "127.0.0.1:9901"));
        assert_eq!(target.path_and_query, "/readyz?verbose=1");
        let target = Target::parse("http://[::1]/").unwrap();
        assert_eq!((target.port, target.authority.as_str(), target.path_and_query.as_str()), (80, "[::1]", "/"));
    }

    #[test]
    fn only_plain_http_urls_are_probed() {
        for (url, words) in [
            ("https://127.0.0.1:9901/readyz", "https is not supported"),
            ("ftp://127.0.0.1/", "not an http:// URL (scheme ftp)"),
            ("localhost:9901/readyz", "not an http:// URL (scheme localhost)"),
            ("/readyz", "not a URL"),
        ] {
            let error = Target::parse(url).unwrap_err().to_string();
            assert!(error.contains(words), "{url}: {error}");
        }
    }
}
