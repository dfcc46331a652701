//! Getting JWKS documents: OIDC discovery, HTTP(S) with a size cap and
//! conditional requests, or a local file.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::config::{JwksLimits, Problem};
use crate::otel::Otel;
use bytes::{Bytes, BytesMut};
use reqwest::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use reqwest::{StatusCode, Url};
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use tokio::io::AsyncReadExt;

/// A JWKS (or discovery document) larger than this is refused.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a fetch brought back.
pub enum Fetched {
    /// A new document, with the validators to send next time.
    Document { body: Bytes, etag: Option<String>, max_age: Option<Duration> },
    /// The server (or the file's timestamp) says nothing changed.
    NotModified { max_age: Option<Duration> },
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// `cause` is [`crate::outbound::cause`] of `source`, in words.
    #[error("GET {url}: {cause}")]
    Request {
        url: String,
        cause: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url} answered HTTP {status}{}", if *status == StatusCode::NOT_FOUND { " — is the URL right?" } else { "" })]
    Status { url: String, status: StatusCode },
    /// OIDC Discovery §4.3: the document must name exactly the configured issuer.
    #[error(
        "discovery at {url} names the issuer {published:?}, not the configured {configured:?}: tokens carry the \
         published form — write issuer = {published:?}"
    )]
    IssuerMismatch { url: String, published: String, configured: String },
    #[error("GET {url}: document is larger than {limit} bytes (limits.max_jwks_bytes)")]
    TooLarge { url: String, limit: usize },
    #[error("discovery at {url}: {problem}")]
    Discovery { url: String, problem: String },
    #[error("reading {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Jwks(String),
}

/// Fetches documents over HTTP(S). Cheap to clone; shares one connection pool.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    /// A client span per fetch, when tracing is on.
    otel: Otel,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// Why the HTTP client for fetches could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FetcherError {
    #[error("no usable TLS roots: {0}")]
    Tls(#[from] rustls::Error),
    #[error(transparent)]
    Client(#[from] reqwest::Error),
    /// An issuer's `ca_file` that cannot be used, named by its key.
    #[error("{}: {}", .0.key, .0.message)]
    CaFile(Problem),
}

impl Fetcher {
    /// Trusting the system's roots.
    pub fn new() -> Result<Fetcher, FetcherError> {
        Fetcher::trusting(Vec::new())
    }

    /// For the keys of `issuers[index]`: the system's roots, and its `ca_file`.
    pub fn for_issuer(index: usize, ca_file: Option<&Path>) -> Result<Fetcher, FetcherError> {
        let roots = match ca_file {
            Some(file) => crate::tls::read_certificates(&format!("issuers[{index}].ca_file"), file)
                .map_err(FetcherError::CaFile)?,
            None => Vec::new(),
        };
        Fetcher::trusting(roots)
    }

    /// Trusting the system's roots and `extra_roots` (an issuer's `ca_file`).
    pub fn trusting(extra_roots: Vec<CertificateDer<'static>>) -> Result<Fetcher, FetcherError> {
        let tls = crate::tls::fetch_client_config_trusting(extra_roots)?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            // A redirect could lead from https to plain http; keys are only
            // taken from the URL that was configured or discovered.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("jwtgate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Fetcher { client, otel: Otel::off() })
    }

    /// The HTTP client, for other requests to the issuer (token
    /// introspection) that trust the same roots.
    pub fn http_client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The same fetcher, with a span for each fetch exported by `otel`.
    pub fn with_tracing(self, otel: &Otel) -> Fetcher {
        Fetcher { otel: otel.clone(), ..self }
    }

    /// GET with `If-None-Match` when an ETag is known; the body is capped.
    pub async fn get(&self, url: &str, etag: Option<&str>, limits: &JwksLimits) -> Result<Fetched, FetchError> {
        self.traced("jwks", url, etag, limits).await
    }

    /// [`Fetcher::get`] in a client span, when tracing is on.
    async fn traced(
        &self,
        document: &'static str,
        url: &str,
        etag: Option<&str>,
        limits: &JwksLimits,
    ) -> Result<Fetched, FetchError> {
        let span = self.otel.fetch_span(document, url);
        let fetched = self.fetch(url, etag, limits).await;
        if let Some(span) = span {
            let (status, result) = match &fetched {
                // Any 2xx is a document; key servers answer 200.
                Ok(Fetched::Document { .. }) => (Some(200), "ok"),
                Ok(Fetched::NotModified { .. }) => (Some(304), "not_modified"),
                Err(FetchError::Status { status, .. }) => (Some(status.as_u16()), "error"),
                Err(_) => (None, "error"),
            };
            span.end(status, result, fetched.as_ref().err().map(ToString::to_string));
        }
        fetched
    }

    async fn fetch(&self, url: &str, etag: Option<&str>, limits: &JwksLimits) -> Result<Fetched, FetchError> {
        let err = |source: reqwest::Error| FetchError::Request {
            url: url.to_string(),
            cause: crate::outbound::cause(
                &source,
                crate::outbound::Timeouts {
                    connect: CONNECT_TIMEOUT.min(limits.fetch_timeout),
                    whole: limits.fetch_timeout,
                },
            ),
            source,
        };
        let mut request = self.client.get(url).timeout(limits.fetch_timeout);
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let mut response = request.send().await.map_err(err)?;
        let max_age = response.headers().get(CACHE_CONTROL).and_then(|v| v.to_str().ok()).and_then(max_age);
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED && etag.is_some() {
            return Ok(Fetched::NotModified { max_age });
        }
        if !status.is_success() {
            return Err(FetchError::Status { url: url.to_string(), status });
        }
        let etag = response.headers().get(ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let too_large = || FetchError::TooLarge { url: url.to_string(), limit: limits.max_bytes };
        if response.content_length().is_some_and(|n| n > limits.max_bytes as u64) {
            return Err(too_large());
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(err)? {
            if body.len() + chunk.len() > limits.max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched::Document { body: body.freeze(), etag, max_age })
    }

    /// Reads the OIDC discovery document and returns its `jwks_uri`, after
    /// checking that it speaks for `issuer` and points at a safe URL.
    pub async fn discover(&self, discovery_url: &str, issuer: &str, limits: &JwksLimits) -> Result<String, FetchError> {
        let problem = |problem: String| FetchError::Discovery { url: discovery_url.to_string(), problem };
        let Fetched::Document { body, .. } = self.traced("discovery", discovery_url, None, limits).await? else {
            return Err(problem("unexpected 304".into()));
        };
        let doc: Discovery = serde_json::from_slice(&body)
            .map_err(|e| problem(format!("the body is not an OpenID configuration with issuer and jwks_uri ({e})")))?;
        if doc.issuer != issuer {
            return Err(FetchError::IssuerMismatch {
                url: discovery_url.to_string(),
                published: doc.issuer,
                configured: issuer.to_string(),
            });
        }
        match Url::parse(&doc.jwks_uri) {
            Ok(u) if u.scheme() == "https" => {}
            Ok(u) if u.scheme() == "http" && crate::config::is_loopback(&u) => {}
            _ => return Err(problem(format!("jwks_uri {:?} is not https", doc.jwks_uri))),
        }
        Ok(doc.jwks_uri)
    }
}

/// Identifies one version of a file without reading it.
pub type FileStamp = (SystemTime, u64);

/// Reads a JWKS file unless its modification time and size still match `seen`.
pub async fn read_file(
    path: &Path,
    seen: Option<FileStamp>,
    max_bytes: usize,
) -> Result<(Option<Bytes>, FileStamp), FetchError> {
    let err = |source| FetchError::File { path: path.display().to_string(), source };
    let meta = tokio::fs::metadata(path).await.map_err(err)?;
    let stamp = (meta.modified().map_err(err)?, meta.len());
    if seen == Some(stamp) {
        return Ok((None, stamp));
    }
    let too_large =
        || FetchError::Jwks(format!("{}: larger than {max_bytes} bytes (limits.max_jwks_bytes)", path.display()));
    if meta.len() > max_bytes as u64 {
        return Err(too_large());
    }
    // Read with the bound too: the file may grow between the stat and the read.
    let file = tokio::fs::File::open(path).await.map_err(err)?;
    let mut body = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0).min(max_bytes));
    file.take(max_bytes as u64 + 1).read_to_end(&mut body).await.map_err(err)?;
    if body.len() > max_bytes {
        return Err(too_large());
    }
    Ok((Some(Bytes::from(body)), stamp))
}

/// `max-age` from a Cache-Control value; `no-cache`/`no-store` give none.
fn max_age(cache_control: &str) -> Option<Duration> {
    let mut age = None;
    for directive in cache_control.split(',').map(str::trim) {
        if directive.eq_ignore_ascii_case("no-cache") || directive.eq_ignore_ascii_case("no-store") {
            return None;
        }
        if let Some((name, value)) = directive.split_once('=')
            && name.trim().eq_ignore_ascii_case("max-age")
        {
            age = value.trim().trim_matches('"').parse::<u64>().ok().map(Duration::from_secs);
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/dev/zero` says it is empty and never ends: only the bounded read stops it.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_file_is_read_only_up_to_the_limit_whatever_its_size_said() {
        let error = read_file(Path::new("/dev/zero"), None, 4096).await.err().unwrap();
        assert!(error.to_string().contains("larger than 4096 bytes"), "{error}");
    }

    #[test]
    fn reads_max_age() {
        assert_eq!(max_age("public, max-age=3600"), Some(Duration::from_secs(3600)));
        assert_eq!(max_age("Max-Age = 60"), Some(Duration::from_secs(60)));
        assert_eq!(max_age("max-age=60, no-cache"), None);
        assert_eq!(max_age("private"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }
}
