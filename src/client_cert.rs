//! The client certificate a TLS connection presented, as the request path
//! reads it: its RFC 8705 thumbprint, its subject and its SPIFFE ID,
//! computed once when the handshake ends and shared by every request on the
//! connection. rustls has verified the chain against `[server.tls]
//! client_ca_file` by then; this module only reads what was verified. A
//! leaf: the server makes these, the gateway reads them.

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// What the request path knows of a verified client certificate.
#[derive(Debug)]
pub struct ClientCert {
    /// RFC 8705 §3.1 `x5t#S256`: base64url (no padding) of the SHA-256 of
    /// the DER certificate. What a bound token's `cnf` names.
    thumbprint: Box<str>,
    /// The subject as an RFC 4514 string, ASCII only (other bytes escaped
    /// as `\XX`, which RFC 4514 allows), so it is always a header value.
    /// `None`: an empty subject, or a certificate x509-parser cannot read.
    subject: Option<HeaderValue>,
    /// The one `spiffe://` URI SAN (an X.509-SVID has exactly one); `None`
    /// when there is none, or more than one.
    spiffe_id: Option<HeaderValue>,
}

impl ClientCert {
    /// Reads the leaf certificate `der`. The thumbprint needs no parsing and
    /// is always there; subject and SPIFFE ID only if the DER parses.
    pub fn from_der(der: &[u8]) -> ClientCert {
        let thumbprint = thumbprint(der);
        let (subject, spiffe_id) = match X509Certificate::from_der(der) {
            Ok((_, certificate)) => (
                Some(rfc4514(certificate.subject())).filter(|s| !s.is_empty()).and_then(|s| header(&s)),
                spiffe_id(&certificate).and_then(header),
            ),
            Err(error) => {
                tracing::debug!(%error, "client certificate: subject and SAN unreadable");
                (None, None)
            }
        };
        ClientCert { thumbprint, subject, spiffe_id }
    }

    /// `x5t#S256`, as a token's `cnf` carries it.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    pub fn subject(&self) -> Option<&HeaderValue> {
        self.subject.as_ref()
    }

    pub fn spiffe_id(&self) -> Option<&HeaderValue> {
        self.spiffe_id.as_ref()
    }
}

/// RFC 8705 §3.1: base64url-encoded SHA-256 of the DER encoding.
pub fn thumbprint(der: &[u8]) -> Box<str> {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, der)).into_boxed_str()
}

fn header(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}

/// The single `spiffe://` URI SAN. The X.509-SVID standard allows exactly
/// one URI SAN; two SPIFFE IDs name no one workload, so none is reported.
fn spiffe_id<'a>(certificate: &X509Certificate<'a>) -> Option<&'a str> {
    let san = certificate.subject_alternative_name().ok()??;
    let mut ids = san.value.general_names.iter().filter_map(|name| match name {
        GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some(*uri),
        _ => None,
    });
    let id = ids.next()?;
    ids.next().is_none().then_some(id)
}

/// RFC 4514 §2.1: the RDNs last to first, separated by `,`; the values of
/// a multi-valued RDN joined by `+`.
fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<&x509_parser::x509::RelativeDistinguishedName<'_>> = name.iter().collect();
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attribute) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            write_attribute(&mut out, attribute);
        }
    }
    out
}

/// RFC 4514 §3's short names; any other type (`emailAddress` too) is dotted.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// `TYPE=value`. A type without a short name is written dotted, and its
/// value as `#` and the hex of its BER encoding (RFC 4514 §2.4), as is a
/// value that is not a string.
fn write_attribute(out: &mut String, attribute: &AttributeTypeAndValue<'_>) {
    let oid = attribute.attr_type().to_id_string();
    let short = short_name(&oid);
    out.push_str(short.unwrap_or(&oid));
    out.push('=');
    match (short, attribute.as_str()) {
        (Some(_), Ok(text)) => escape(out, text),
        _ => {
            let value = attribute.attr_value();
            match value.header.raw_tag() {
                Some(tag) => {
                    out.push('#');
                    let mut ber = tag.to_vec();
                    ber.extend(der_length(value.data.len()));
                    ber.extend_from_slice(value.data);
                    for byte in ber {
                        out.push_str(&format!("{byte:02X}"));
                    }
                }
                None => escape(out, &String::from_utf8_lossy(value.data)),
            }
        }
    }
}

/// A DER definite length.
fn der_length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

/// RFC 4514 §2.4: `"+,;<>\` escaped with a backslash, as are a leading `#`
/// or space and a trailing space; every byte outside printable ASCII is
/// written `\XX` (allowed for any character), so the string is a header value.
fn escape(out: &mut String, value: &str) {
    let last = value.len().saturating_sub(1);
    for (i, byte) in value.bytes().enumerate() {
        match byte {
            b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\' => {
                out.push('\\');
                out.push(char::from(byte));
            }
            b'#' if i == 0 => out.push_str("\\#"),
            b' ' if i == 0 || i == last => out.push_str("\\ "),
            0x20..=0x7e => out.push(char::from(byte)),
            _ => out.push_str(&format!("\\{byte:02X}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    fn certificate(subject: DistinguishedName, sans: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.distinguished_name = subject;
        params.subject_alt_names = sans;
        params.self_signed(&KeyPair::generate().unwrap()).unwrap().der().to_vec()
    }

    fn uri(text: &str) -> SanType {
        SanType::URI(text.try_into().unwrap())
    }

    /// RFC 8705 §3.1 and RFC 7515's base64url: the SHA-256 of the DER, no padding.
    #[test]
    fn the_thumbprint_is_base64url_sha256_of_the_der() {
        assert_eq!(&*thumbprint(b"abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
        let der = certificate(DistinguishedName::new(), vec![]);
        let cert = ClientCert::from_der(&der);
        assert_eq!(cert.thumbprint().len(), 43);
        assert_eq!(cert.thumbprint(), &*thumbprint(&der));
        assert!(cert.subject().is_none(), "an empty subject is no header");
        // Not a certificate: still a thumbprint, nothing else.
        let garbage = ClientCert::from_der(b"not DER");
        assert_eq!(garbage.thumbprint(), &*thumbprint(b"not DER"));
        assert!(garbage.subject().is_none() && garbage.spiffe_id().is_none());
    }

    /// RFC 4514: last RDN first, short names, special characters escaped,
    /// anything outside printable ASCII as `\XX`.
    #[test]
    fn the_subject_is_an_rfc_4514_string() {
        let mut name = DistinguishedName::new();
        name.push(DnType::CountryName, "DE");
        name.push(DnType::OrganizationName, "Acme, Inc.");
        name.push(DnType::OrganizationalUnitName, "#ops ");
        name.push(DnType::CommonName, "billing+api é");
        let cert = ClientCert::from_der(&certificate(name, vec![]));
        assert_eq!(cert.subject().unwrap(), r"CN=billing\+api \C3\A9,OU=\#ops\ ,O=Acme\, Inc.,C=DE");

        let mut odd = DistinguishedName::new();
        odd.push(DnType::CustomDnType(vec![1, 2, 3, 4]), "x");
        odd.push(DnType::CommonName, "line\nbreak");
        let cert = ClientCert::from_der(&certificate(odd, vec![]));
        // A type without a short name: dotted, its value the hex of its BER (UTF8String "x").
        assert_eq!(cert.subject().unwrap(), r"CN=line\0Abreak,1.2.3.4=#0C0178");
    }

    /// The one spiffe:// URI SAN; none when there are two.
    #[test]
    fn the_spiffe_id_is_the_one_spiffe_uri_san() {
        let id = "spiffe://example.org/ns/billing/sa/api";
        let sans = vec![SanType::DnsName("api.example.org".try_into().unwrap()), uri("https://example.org/x"), uri(id)];
        let cert = ClientCert::from_der(&certificate(DistinguishedName::new(), sans));
        assert_eq!(cert.spiffe_id().unwrap(), id);

        let none = ClientCert::from_der(&certificate(DistinguishedName::new(), vec![uri("https://example.org/")]));
        assert!(none.spiffe_id().is_none());
        let two = vec![uri(id), uri("spiffe://example.org/other")];
        assert!(ClientCert::from_der(&certificate(DistinguishedName::new(), two)).spiffe_id().is_none());
    }

    #[test]
    fn der_lengths() {
        assert_eq!(der_length(5), [5]);
        assert_eq!(der_length(200), [0x81, 200]);
        assert_eq!(der_length(0x1234), [0x82, 0x12, 0x34]);
    }
}
