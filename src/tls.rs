//! TLS on both sides, on one crypto provider: aws-lc-rs, the library that
//! already checks token signatures. The proxy listener's certificate and
//! its client-certificate CA (`[server.tls]`, both swapped on reload without
//! touching open connections),
//! the client side of https upstreams (system roots plus `upstream.ca_file`,
//! optionally a client certificate), and key fetches.
//!
//! Every loader reports a [`Problem`] named by the configuration key, so a
//! bad file reads like any other configuration error.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_platform_verifier::Verifier;

use crate::config::{ClientAuth, Problem, ServerTlsConfig, UpstreamConfig};

/// The one provider every TLS configuration is built on.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider())))
}

/// The listener's certificate, replaceable while connections are open: each
/// handshake uses the configuration current when it starts.
#[derive(Clone, Debug)]
pub struct ServerTls {
    current: Arc<ArcSwap<ServerConfig>>,
}

impl ServerTls {
    pub fn load(config: &ServerTlsConfig) -> Result<ServerTls, Problem> {
        Ok(ServerTls { current: Arc::new(ArcSwap::new(server_config(config)?)) })
    }

    /// Reads the files again; on a problem the running certificate stays.
    pub fn reload(&self, config: &ServerTlsConfig) -> Result<(), Problem> {
        self.current.store(server_config(config)?);
        Ok(())
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }
}

/// TLS 1.2 and 1.3, ALPN h2 then http/1.1 (those `server.protocols`
/// names), client certificates as `client_auth` says.
fn server_config(config: &ServerTlsConfig) -> Result<Arc<ServerConfig>, Problem> {
    let chain = read_certificates("server.tls.cert", &config.cert)?;
    let key = read_private_key("server.tls.key", &config.key)?;
    let versions = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Problem::new("server.tls", e.to_string()))?;
    let builder = match &config.client_auth {
        ClientAuth::None => versions.with_no_client_auth(),
        ClientAuth::Optional(file) => versions.with_client_cert_verifier(client_verifier(file, false)?),
        ClientAuth::Required(file) => versions.with_client_cert_verifier(client_verifier(file, true)?),
    };
    let mut server = builder
        .with_single_cert(chain, key)
        .map_err(|e| Problem::new("server.tls.key", format!("cannot be used with server.tls.cert: {e}")))?;
    let offered = [(config.protocols.http2, &b"h2"[..]), (config.protocols.http1, &b"http/1.1"[..])];
    server.alpn_protocols = offered.iter().filter(|(on, _)| *on).map(|(_, name)| name.to_vec()).collect();
    Ok(Arc::new(server))
}

/// rustls' WebPKI verification of client certificates against the roots
/// in `file` (chain, validity, the clientAuth extended key usage). Not
/// `required`: a client may send no certificate, and then has none.
fn client_verifier(
    file: &Path,
    required: bool,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, Problem> {
    const KEY: &str = "server.tls.client_ca_file";
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(KEY, file)? {
        roots.add(certificate).map_err(|e| {
            Problem::new(KEY, format!("{}: a certificate is not a usable CA certificate: {e}", file.display()))
        })?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    let builder = if required { builder } else { builder.allow_unauthenticated() };
    builder
        .build()
        .map_err(|e| Problem::new(KEY, format!("{}: cannot verify client certificates with it: {e}", file.display())))
}

/// Whether `chain` (leaf first) passes the listener's client-certificate
/// check at `now` (seconds since the epoch): what `jwtgate explain
/// --client-cert` reports. `None`: the listener asks for no certificate.
pub fn check_client_chain(
    config: &ServerTlsConfig,
    chain: &[CertificateDer<'_>],
    now: u64,
) -> Option<Result<(), String>> {
    let file = config.client_auth.ca_file()?;
    let verifier = match client_verifier(file, true) {
        Ok(verifier) => verifier,
        Err(problem) => return Some(Err(format!("{}: {}", problem.key, problem.message))),
    };
    let Some((leaf, intermediates)) = chain.split_first() else { return Some(Err("no certificate".into())) };
    let at = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(now));
    Some(verifier.verify_client_cert(leaf, intermediates, at).map(|_| ()).map_err(|e| e.to_string()))
}

/// The client configuration for an https upstream: the system's roots plus
/// `ca_file`, and the client certificate when one is configured. A plain
/// http:// upstream gets one that trusts nothing, never used.
pub fn upstream_client_config(upstream: &UpstreamConfig) -> Result<ClientConfig, Problem> {
    let key = |name: &str| format!("{}.{name}", upstream.key);
    let versions = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Problem::new(&upstream.key, e.to_string()))?;
    if upstream.origin.scheme() != Some(&http::uri::Scheme::HTTPS) {
        return Ok(versions.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth());
    }
    let extra_roots = match &upstream.ca_file {
        Some(file) => read_certificates(&key("ca_file"), file)?,
        None => Vec::new(),
    };
    let verifier = Verifier::new_with_extra_roots(extra_roots, provider())
        .map_err(|e| Problem::new(key("ca_file"), format!("cannot build the trust store: {e}")))?;
    let builder = versions
        .dangerous() // Not dangerous: this is rustls' own WebPKI verification over the platform roots.
        .with_custom_certificate_verifier(Arc::new(verifier));
    // No ALPN here: the pool's connector sets it from `upstream.protocol`.
    let client = match &upstream.client_identity {
        Some(identity) => {
            let chain = read_certificates(&key("client_cert"), &identity.cert)?;
            let private_key = read_private_key(&key("client_key"), &identity.key)?;
            builder.with_client_auth_cert(chain, private_key).map_err(|e| {
                Problem::new(key("client_key"), format!("cannot be used with {}: {e}", key("client_cert")))
            })?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(client)
}

/// For key and discovery fetches: the system's roots.
pub fn fetch_client_config() -> Result<ClientConfig, rustls::Error> {
    fetch_client_config_trusting(Vec::new())
}

/// For key and discovery fetches: the system's roots and `extra_roots`
/// (an issuer's `ca_file`).
pub fn fetch_client_config_trusting(extra_roots: Vec<CertificateDer<'static>>) -> Result<ClientConfig, rustls::Error> {
    let verifier = Verifier::new_with_extra_roots(extra_roots, provider())?;
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// The PEM certificates of `file`, for the configuration key `key`: at
/// least one, or a problem naming the key and the file.
pub fn read_certificates(key: &str, file: &Path) -> Result<Vec<CertificateDer<'static>>, Problem> {
    let problem = |what: String| Problem::new(key, format!("{}: {what}", file.display()));
    let certificates = CertificateDer::pem_file_iter(file)
        .map_err(|e| problem(pem_problem(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| problem(pem_problem(&e)))?;
    if certificates.is_empty() {
        return Err(problem("no PEM certificate (-----BEGIN CERTIFICATE-----) in the file".into()));
    }
    Ok(certificates)
}

fn read_private_key(key: &str, file: &Path) -> Result<PrivateKeyDer<'static>, Problem> {
    PrivateKeyDer::from_pem_file(file).map_err(|e| {
        let what = match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PEM private key (PKCS#8, PKCS#1 or SEC1) in the file".into()
            }
            e => pem_problem(&e),
        };
        Problem::new(key, format!("{}: {what}", file.display()))
    })
}

fn pem_problem(error: &rustls::pki_types::pem::Error) -> String {
    match error {
        rustls::pki_types::pem::Error::Io(io) => format!("cannot read the file: {io}"),
        other => format!("not valid PEM: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn file_problems_name_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let empty = write(dir.path(), "empty.pem", "");
        let garbage = write(dir.path(), "garbage.pem", "-----BEGIN CERTIFICATE-----\n!!!\n");

        let problem = ServerTls::load(&ServerTlsConfig {
            cert: missing.clone(),
            key: missing.clone(),
            protocols: crate::config::Protocols::default(),
            client_auth: ClientAuth::None,
        })
        .err()
        .unwrap();
        assert_eq!(problem.key, "server.tls.cert");
        assert!(problem.message.contains("missing.pem: cannot read the file"), "{}", problem.message);

        let problem = ServerTls::load(&ServerTlsConfig {
            cert: empty.clone(),
            key: empty,
            protocols: crate::config::Protocols::default(),
            client_auth: ClientAuth::None,
        })
        .err()
        .unwrap();
        assert!(problem.message.contains("no PEM certificate"), "{}", problem.message);

        let problem = ServerTls::load(&ServerTlsConfig {
            cert: garbage,
            key: missing,
            protocols: crate::config::Protocols::default(),
            client_auth: ClientAuth::None,
        })
        .err()
        .unwrap();
        assert!(problem.message.contains("not valid PEM"), "{}", problem.message);
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let one = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let cert = write(dir.path(), "cert.pem", &one.cert.pem());
        let key = write(dir.path(), "key.pem", &other.serialize_pem());
        let problem = ServerTls::load(&ServerTlsConfig {
            cert: cert.clone(),
            key,
            protocols: crate::config::Protocols::default(),
            client_auth: ClientAuth::None,
        })
        .err()
        .unwrap();
        assert_eq!(problem.key, "server.tls.key");

        let key = write(dir.path(), "right.pem", &one.signing_key.serialize_pem());
        let tls = ServerTls::load(&ServerTlsConfig {
            cert: cert.clone(),
            key: key.clone(),
            protocols: crate::config::Protocols::default(),
            client_auth: ClientAuth::None,
        })
        .unwrap();
        assert_eq!(tls.current.load().alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        // server.protocols = ["http1"]: ALPN offers HTTP/1.1 alone.
        let http1 = crate::config::Protocols { http1: true, http2: false };
        let tls =
            ServerTls::load(&ServerTlsConfig { cert, key, protocols: http1, client_auth: ClientAuth::None }).unwrap();
        assert_eq!(tls.current.load().alpn_protocols, [b"http/1.1".to_vec()]);
    }
}
