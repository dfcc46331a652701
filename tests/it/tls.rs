//! TLS on both sides, with certificates made in the test (rcgen): the
//! listener (`[server.tls]`: HTTP/1.1 and h2 by ALPN, reload without
//! restart) and https upstreams (`ca_file`, mTLS with `client_cert`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use crate::support::certs::{LeafFiles, TestCa};
use crate::support::keys::{SigningKey, claims};
use crate::support::{TestGateway, TestIdp, TestUpstream, toml};
use jwtgate::reload::Reloader;
use rustls::pki_types::ServerName;

/// A client that trusts only `ca`, offering these ALPN protocols.
fn client_config(ca: &TestCa, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(jwtgate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

fn https_client(ca: &TestCa) -> reqwest::Client {
    reqwest::Client::builder().no_proxy().tls_backend_preconfigured(client_config(ca, &[])).build().unwrap()
}

/// Completes a handshake with `addr`: the protocol ALPN chose, or the error.
async fn handshake(
    addr: std::net::SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await
}

struct World {
    key: SigningKey,
    idp: TestIdp,
    upstream: TestUpstream,
    ca: TestCa,
    dir: tempfile::TempDir,
    files: LeafFiles,
}

impl World {
    async fn new() -> World {
        let key = SigningKey::rsa("k");
        let idp = TestIdp::start(&[&key]).await;
        let upstream = TestUpstream::start().await;
        let ca = TestCa::new("listener CA");
        let dir = tempfile::tempdir().unwrap();
        let files = ca.server().write(dir.path(), "server");
        World { key, idp, upstream, ca, dir, files }
    }

    fn config_text(&self) -> String {
        toml(&self.upstream.url(), &self.idp.issuer)
            .server(&format!(
                "[server.tls]\ncert = {:?}\nkey = {:?}\n",
                self.files.cert.display().to_string(),
                self.files.key.display().to_string()
            ))
            .text()
    }

    fn token(&self) -> String {
        self.key.mint(&claims(&self.idp.issuer, "api"))
    }
}

async fn start(text: &str) -> TestGateway {
    let gateway = TestGateway::start(text).await;
    gateway.wait_for_keys().await;
    gateway
}

#[tokio::test]
async fn the_listener_serves_https_and_says_so_upstream() {
    let w = World::new().await;
    let gateway = start(&w.config_text()).await;
    let url = format!("https://localhost:{}/orders", gateway.addr.port());
    let response = https_client(&w.ca).get(&url).bearer_auth(w.token()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = w.upstream.last();
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.uri, "/orders");

    let refused = https_client(&w.ca).get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 401);
}

#[tokio::test]
async fn alpn_offers_h2_then_http1_and_h2_requests_work() {
    let w = World::new().await;
    let gateway = start(&w.config_text()).await;

    let tls = handshake(gateway.addr, client_config(&w.ca, &[b"http/1.1"])).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    let tls = handshake(gateway.addr, client_config(&w.ca, &[b"h2", b"http/1.1"])).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (client, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = hyper::Request::get(format!("https://localhost:{}/h2", gateway.addr.port()))
        .header("authorization", format!("Bearer {}", w.token()))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    assert_eq!(w.upstream.last().uri, "/h2");
    assert_eq!(w.upstream.last().headers["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn tls_1_2_is_accepted_and_plain_http_is_not_served() {
    let w = World::new().await;
    let gateway = start(&w.config_text()).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(w.ca.der()).unwrap();
    let tls12 = rustls::ClientConfig::builder_with_provider(jwtgate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = handshake(gateway.addr, tls12).await.unwrap();
    assert_eq!(tls.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));

    // Plain HTTP on the TLS port is a failed handshake, never a request.
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(plain.get(format!("http://{}/", gateway.addr)).send().await.is_err());
    assert_eq!(w.upstream.count(), 0);
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_gets_nothing() {
    let w = World::new().await;
    let gateway = start(&w.config_text()).await;
    let stranger = TestCa::new("another CA");
    assert!(handshake(gateway.addr, client_config(&stranger, &[])).await.is_err());
}

#[tokio::test]
async fn a_reload_swaps_the_certificate_and_keeps_it_when_the_new_one_is_broken() {
    let w = World::new().await;
    let text = w.config_text();
    let config_path = w.dir.path().join("jwtgate.toml");
    std::fs::write(&config_path, &text).unwrap();
    let gateway = start(&text).await;
    let config = jwtgate::Config::load(&config_path).unwrap();
    let reloader = Reloader::new(config_path, Arc::clone(&gateway.shared), config, gateway.tls.clone());

    // An open connection keeps the certificate it started with.
    let before = handshake(gateway.addr, client_config(&w.ca, &[])).await.unwrap();

    let rotated = TestCa::new("rotated CA");
    rotated.server().write(w.dir.path(), "server");
    assert!(reloader.reload());
    assert!(handshake(gateway.addr, client_config(&w.ca, &[])).await.is_err());
    handshake(gateway.addr, client_config(&rotated, &[])).await.unwrap();
    drop(before);

    // A key that does not match: the rotated certificate stays in service.
    std::fs::write(&w.files.key, TestCa::new("x").server().key).unwrap();
    reloader.reload();
    handshake(gateway.addr, client_config(&rotated, &[])).await.unwrap();
    let response = https_client(&rotated)
        .get(format!("https://localhost:{}/", gateway.addr.port()))
        .bearer_auth(w.token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// A gateway in front of `upstream` with these extra `[upstream]` lines.
async fn gateway_to(idp: &TestIdp, upstream: &TestUpstream, lines: &str) -> TestGateway {
    toml(&upstream.url(), &idp.issuer).upstream(lines).start().await
}

fn path_line(key: &str, path: &Path) -> String {
    format!("{key} = {:?}\n", path.display().to_string())
}

/// An issuer, and an upstream CA written to `ca.pem` in a fresh directory.
struct UpstreamTls {
    key: SigningKey,
    idp: TestIdp,
    ca: TestCa,
    dir: tempfile::TempDir,
    ca_file: std::path::PathBuf,
}

impl UpstreamTls {
    async fn new() -> UpstreamTls {
        let key = SigningKey::rsa("k");
        let idp = TestIdp::start(&[&key]).await;
        let ca = TestCa::new("upstream CA");
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        UpstreamTls { key, idp, ca, dir, ca_file }
    }

    fn token(&self) -> String {
        self.key.mint(&claims(&self.idp.issuer, "api"))
    }
}

#[tokio::test]
async fn https_upstreams_are_verified_against_ca_file() {
    let t = UpstreamTls::new().await;
    let (idp, ca_file, token) = (&t.idp, &t.ca_file, t.token());
    let upstream = TestUpstream::start_tls(t.ca.server().server_config(None)).await;
    assert!(upstream.url().starts_with("https://127.0.0.1:"));

    let trusting = gateway_to(idp, &upstream, &path_line("ca_file", ca_file)).await;
    let (status, _, body) = crate::support::get(&trusting.url("/over-tls"), Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upstream.last().uri, "/over-tls");

    // Without ca_file the system roots do not know the test CA.
    let untrusting = gateway_to(idp, &upstream, "").await;
    let answer = crate::support::get(&untrusting.url("/over-tls"), Some(&token)).await;
    crate::support::assert_refused(&answer, 502, "bad_gateway", "TLS handshake with the upstream failed");
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn protocol_auto_negotiates_http2_with_an_https_upstream() {
    let t = UpstreamTls::new().await;
    let (idp, ca_file, token) = (&t.idp, &t.ca_file, t.token());
    let mut server = (*t.ca.server().server_config(None)).clone();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let upstream = TestUpstream::start_tls(Arc::new(server)).await;

    for (protocol, version) in [("auto", http::Version::HTTP_2), ("http1", http::Version::HTTP_11)] {
        let lines = format!("{}protocol = \"{protocol}\"\n", path_line("ca_file", ca_file));
        let gateway = gateway_to(idp, &upstream, &lines).await;
        let (status, _, body) = crate::support::get(&gateway.url("/negotiated"), Some(&token)).await;
        assert_eq!(status, 200, "{protocol}: {body}");
        assert_eq!(upstream.last().version, version, "{protocol}");
    }
}

#[tokio::test]
async fn mtls_upstreams_get_the_client_certificate() {
    let t = UpstreamTls::new().await;
    let (idp, ca_file, token) = (&t.idp, &t.ca_file, t.token());
    let client_ca = TestCa::new("client CA");
    let client = client_ca.client("jwtgate").write(t.dir.path(), "client");
    let upstream = TestUpstream::start_tls(t.ca.server().server_config(Some(&client_ca))).await;

    let without = gateway_to(idp, &upstream, &path_line("ca_file", ca_file)).await;
    let (status, _, _) = crate::support::get(&without.url("/"), Some(&token)).await;
    assert_eq!(status, 502);
    assert_eq!(upstream.count(), 0);

    let lines =
        [path_line("ca_file", ca_file), path_line("client_cert", &client.cert), path_line("client_key", &client.key)];
    let with = gateway_to(idp, &upstream, &lines.concat()).await;
    let (status, _, body) = crate::support::get(&with.url("/mtls"), Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upstream.last().uri, "/mtls");
}

#[test]
fn unusable_tls_files_are_configuration_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    TestCa::new("ca").server().write(dir.path(), "good");
    let issuer = "[[issuers]]\nissuer = \"https://issuer.example/\"\naudiences = [\"api\"]\n";
    let upstream = "[upstream]\nurl = \"https://127.0.0.1:9\"\n";
    let cases = [
        ("[server.tls]\ncert = \"missing.pem\"\nkey = \"good-key.pem\"\n", upstream, "server.tls.cert"),
        ("[server.tls]\ncert = \"good.pem\"\nkey = \"good.pem\"\n", upstream, "server.tls.key"),
        ("", "[upstream]\nurl = \"https://127.0.0.1:9\"\nca_file = \"good-key.pem\"\n", "upstream.ca_file"),
        (
            "",
            "[upstream]\nurl = \"https://127.0.0.1:9\"\nclient_cert = \"good.pem\"\nclient_key = \"nope.pem\"\n",
            "upstream.client_key",
        ),
    ];
    for (server, upstream, key) in cases {
        let path = dir.path().join("jwtgate.toml");
        std::fs::write(&path, format!("{server}{upstream}{issuer}")).unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_jwtgate"))
            .args(["check", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{key}: {stderr}");
        let (file, rest) = stderr.split_once(": ").unwrap();
        assert!(file.starts_with(&format!("{}:", path.display())), "{key}: {stderr}");
        assert!(rest.starts_with(&format!("{key}: ")), "{key}: {stderr}");
    }
}
