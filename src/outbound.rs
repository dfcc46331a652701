//! Why an outbound HTTP request (keys, discovery, a token endpoint) failed,
//! in words: reqwest's own text is `error sending request for url (…)`, and
//! the cause an operator needs is several sources deep.

use std::error::Error;
use std::time::Duration;

/// The bounds a request ran under, to say which one it hit.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub whole: Duration,
}

/// The cause of `error`: connection refused, name not resolved, TLS
/// certificate not trusted (and why), timed out after N, …
pub fn cause(error: &reqwest::Error, timeouts: Timeouts) -> String {
    use std::io::ErrorKind;
    if error.is_timeout() {
        return timed_out(error.is_connect(), timeouts);
    }
    let host = error.url().and_then(|u| u.host_str()).unwrap_or("the host").to_string();
    let mut chain: Vec<String> = Vec::new();
    let mut next: Option<&(dyn Error + 'static)> = error.source();
    while let Some(current) = next {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return tls_cause(tls);
        }
        let text = current.to_string();
        // Some layers keep only the text of rustls's error.
        if let Some(why) = text.strip_prefix("invalid peer certificate: ") {
            return format!("TLS certificate not trusted: {}", certificate_words(why));
        }
        let io = current.downcast_ref::<std::io::Error>();
        match io.map(std::io::Error::kind) {
            Some(ErrorKind::ConnectionRefused) => {
                return format!("connection refused: nothing listens on {host} at that port");
            }
            Some(ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {
                return format!("{host} closed the connection");
            }
            Some(ErrorKind::TimedOut) => return timed_out(error.is_connect(), timeouts),
            _ => {}
        }
        chain.push(text);
        // io::Error's source() skips the error it wraps (rustls's among
        // them), so open it by hand.
        next = match io {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn Error + 'static)),
            None => current.source(),
        };
    }
    // hyper-util names a failed lookup only "dns error"; its source says why.
    if let Some(at) = chain.iter().position(|c| c == "dns error" || c.starts_with("dns error:")) {
        let why = chain.get(at + 1..).and_then(<[String]>::last).map(|w| format!(" ({w})")).unwrap_or_default();
        return format!("the name {host} was not resolved{why}: is the host name right?");
    }
    // Anything else: every distinct cause, outermost first.
    chain.dedup();
    if chain.is_empty() { error.to_string() } else { chain.join(": ") }
}

fn timed_out(connecting: bool, timeouts: Timeouts) -> String {
    if connecting {
        format!("connecting timed out after {}", humantime::format_duration(timeouts.connect))
    } else {
        format!("timed out after {}", humantime::format_duration(timeouts.whole))
    }
}

fn tls_cause(error: &rustls::Error) -> String {
    use rustls::CertificateError;
    match error {
        rustls::Error::InvalidCertificate(why) => {
            let why = match why {
                CertificateError::UnknownIssuer => "UnknownIssuer",
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => "Expired",
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                    "NotValidForName"
                }
                _ => return format!("TLS certificate not trusted: {why:?}"),
            };
            format!("TLS certificate not trusted: {}", certificate_words(why))
        }
        other => format!("TLS failed: {other}"),
    }
}

/// rustls's name for why a certificate was refused, in words.
fn certificate_words(why: &str) -> String {
    let words = if why.starts_with("UnknownIssuer") {
        "issued by a certificate authority this machine does not trust (self-signed, or a private CA)"
    } else if why.starts_with("Expired") {
        "expired"
    } else if why.starts_with("NotValidForName") {
        "issued for another host name"
    } else {
        why
    };
    words.to_string()
}
