//! Why an outbound HTTP request (keys, discovery, a token endpoint) failed,
//! in words: reqwest's own text is `error sending request for url (…)`, and
//! the cause an operator needs is several sources deep.

use std::error::Error;
use std::time::Duration;

/// The cause of `error`: connection refused, name not resolved, TLS
/// certificate not trusted (and why), timed out after `timeout`, …
pub fn cause(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("timed out after {}", humantime::format_duration(timeout));
    }
    let host = error.url().and_then(|u| u.host_str()).unwrap_or("the host").to_string();
    let mut source: Option<&(dyn Error + 'static)> = error.source();
    let mut innermost = error.to_string();
    while let Some(current) = source {
        if let Some(words) = io_cause(current, &host) {
            return words;
        }
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return tls_cause(tls);
        }
        let text = current.to_string();
        // Some layers keep only the text of rustls's error.
        if let Some(why) = text.strip_prefix("invalid peer certificate: ") {
            return format!("TLS certificate not trusted: {}", certificate_words(why));
        }
        if text.starts_with("dns error") || text.contains("failed to lookup address") {
            return format!("the name {host} was not resolved (DNS): is the host name right?");
        }
        innermost = text;
        source = current.source();
    }
    innermost
}

fn io_cause(error: &(dyn Error + 'static), host: &str) -> Option<String> {
    use std::io::ErrorKind;
    let io = error.downcast_ref::<std::io::Error>()?;
    if let Some(tls) = io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        return Some(tls_cause(tls));
    }
    Some(match io.kind() {
        ErrorKind::ConnectionRefused => format!("connection refused: nothing listens on {host} at that port"),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => format!("{host} closed the connection"),
        ErrorKind::TimedOut => format!("connecting to {host} timed out"),
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => format!("{host} is unreachable: {io}"),
        _ => return None,
    })
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
