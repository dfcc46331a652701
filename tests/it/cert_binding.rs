//! Client certificates on the listener (`[server.tls] client_auth`) and
//! certificate-bound access tokens (RFC 8705): a CA and client certificates
//! made here with rcgen, the gateway's real TLS listener, and rustls clients
//! presenting one certificate or none.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde_json::{Value, json};

use crate::support::certs::{Leaf, TestCa};
use crate::support::keys::{SigningKey, claims};
use crate::support::{TestGateway, TestIdp, TestUpstream, toml};

const NOT_PRESENTED: &str =
    "token is bound to a client certificate that this connection did not present (RFC 8705 cnf x5t#S256)";
const MISMATCH: &str = "token is bound to a different client certificate than the one this connection presented";
const SPIFFE_ID: &str = "spiffe://example.org/ns/billing/sa/api";

struct World {
    key: SigningKey,
    idp: TestIdp,
    upstream: TestUpstream,
    /// Signs the listener's certificate.
    server_ca: TestCa,
    /// Signs the clients' certificates (`client_ca_file`).
    client_ca: TestCa,
    dir: tempfile::TempDir,
    /// A workload certificate: CN billing, O Acme, a SPIFFE ID.
    billing: Leaf,
    /// Another certificate from the same CA.
    other: Leaf,
}

impl World {
    async fn new() -> World {
        let key = SigningKey::rsa("k");
        let idp = TestIdp::start(&[&key]).await;
        let upstream = TestUpstream::start().await;
        let (server_ca, client_ca) = (TestCa::new("listener CA"), TestCa::new("clients CA"));
        let billing = client_ca.workload("billing", SPIFFE_ID);
        let other = client_ca.client("other");
        World { key, idp, upstream, server_ca, client_ca, dir: tempfile::tempdir().unwrap(), billing, other }
    }

    /// A gateway whose listener asks for client certificates as
    /// `client_auth` says, with the certificate headers, and these lines
    /// added to its issuer.
    async fn gateway(&self, client_auth: &str, issuer_lines: &str) -> TestGateway {
        self.gateway_for(&self.idp.issuer, client_auth, issuer_lines).await
    }

    /// The same, for the issuer `issuer` (a `{tenant}` template, say).
    async fn gateway_for(&self, issuer: &str, client_auth: &str, issuer_lines: &str) -> TestGateway {
        let server = self.server_ca.server().write(self.dir.path(), "server");
        let ca_file = self.dir.path().join("clients-ca.pem");
        std::fs::write(&ca_file, self.client_ca.pem()).unwrap();
        let text = toml(&self.upstream.url(), issuer)
            .server(&format!(
                "[server.tls]\ncert = {:?}\nkey = {:?}\nclient_ca_file = {:?}\nclient_auth = {client_auth:?}\n",
                server.cert.display().to_string(),
                server.key.display().to_string(),
                ca_file.display().to_string(),
            ))
            .issuer(issuer_lines)
            .issuer(
                "[headers]\nclaims = { sub = \"X-Auth-Subject\" }\n\
                 client_cert_subject = \"X-Client-Cert-Subject\"\nclient_spiffe_id = \"X-Client-Spiffe-Id\"\n",
            )
            .text();
        let gateway = TestGateway::start(&text).await;
        gateway.wait_for_keys().await;
        gateway
    }

    /// A token bound to `leaf` (RFC 8705 §3.1: `cnf` with `x5t#S256`).
    fn bound_to(&self, leaf: &Leaf) -> String {
        let mut claims = claims(&self.idp.issuer, "api");
        claims["cnf"] = json!({ "x5t#S256": leaf.thumbprint() });
        self.key.mint(&claims)
    }

    fn unbound(&self) -> String {
        self.key.mint(&claims(&self.idp.issuer, "api"))
    }

    /// An HTTPS client of its own (its own connections) presenting `leaf`, or no certificate.
    fn client(&self, leaf: Option<&Leaf>) -> reqwest::Client {
        let config = match leaf {
            Some(leaf) => leaf.client_config(&self.server_ca),
            None => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(self.server_ca.der()).unwrap();
                rustls::ClientConfig::builder_with_provider(jwtgate::tls::provider())
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_root_certificates(roots)
                    .with_no_client_auth()
            }
        };
        reqwest::Client::builder().no_proxy().tls_backend_preconfigured(config).build().unwrap()
    }
}

/// GET `path` on `gateway` with `client`: status and JSON body.
async fn get(
    client: &reqwest::Client,
    gateway: &TestGateway,
    path: &str,
    token: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = client.get(format!("https://localhost:{}{path}", gateway.addr.port())).bearer_auth(token);
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn assert_invalid_token(answer: &(u16, Value), description: &str) {
    assert_eq!(answer.0, 401, "{}", answer.1);
    assert_eq!(answer.1["error"], "invalid_token", "{}", answer.1);
    assert_eq!(answer.1["error_description"], description, "{}", answer.1);
}

#[tokio::test]
async fn a_bound_token_with_its_certificate_passes_with_the_certificate_identity() {
    let w = World::new().await;
    let gateway = w.gateway("optional", "").await;
    let answer = get(&w.client(Some(&w.billing)), &gateway, "/orders", &w.bound_to(&w.billing), &[]).await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    let seen = w.upstream.last();
    assert_eq!(seen.headers["x-client-cert-subject"], "CN=billing,O=Acme");
    assert_eq!(seen.headers["x-client-spiffe-id"], SPIFFE_ID);
    assert_eq!(seen.headers["x-auth-subject"], "user-1");

    // An unbound token over the same kind of connection: passes, and the
    // certificate's identity still goes upstream (it is the connection's).
    let answer = get(&w.client(Some(&w.other)), &gateway, "/plain", &w.unbound(), &[]).await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    let seen = w.upstream.last();
    assert_eq!(seen.headers["x-client-cert-subject"], "CN=other");
    assert!(!seen.headers.contains_key("x-client-spiffe-id"), "a certificate without a SPIFFE ID");
}

#[tokio::test]
async fn a_bound_token_over_a_connection_with_another_certificate_or_none_is_refused() {
    let w = World::new().await;
    let gateway = w.gateway("optional", "").await;
    let token = w.bound_to(&w.billing);
    assert_invalid_token(&get(&w.client(Some(&w.other)), &gateway, "/", &token, &[]).await, MISMATCH);
    assert_invalid_token(&get(&w.client(None), &gateway, "/", &token, &[]).await, NOT_PRESENTED);
    // A cnf x5t#S256 that is not a string binds to no certificate at all.
    let mut odd = claims(&w.idp.issuer, "api");
    odd["cnf"] = json!({ "x5t#S256": [w.billing.thumbprint()] });
    assert_invalid_token(&get(&w.client(Some(&w.billing)), &gateway, "/", &w.key.mint(&odd), &[]).await, MISMATCH);
    assert_eq!(w.upstream.count(), 0);
    let metrics = gateway.metrics_text().await;
    for (reason, count) in [("cert_mismatch", 2), ("cert_not_presented", 1)] {
        let line = format!("jwtgate_auth_failures_total{{issuer=\"{}\",reason=\"{reason}\"}} {count}\n", w.idp.issuer);
        assert!(metrics.contains(&line), "{line} missing from\n{metrics}");
    }
}

/// The verified-token cache answers the second request without verifying
/// the token again; the binding must still be checked against the
/// connection that request came on.
#[tokio::test]
async fn a_bound_token_admitted_from_the_cache_is_still_checked_against_each_connection() {
    let w = World::new().await;
    let gateway = w.gateway("optional", "").await;
    let token = w.bound_to(&w.billing);
    let billing = w.client(Some(&w.billing));
    assert_eq!(get(&billing, &gateway, "/first", &token, &[]).await.0, 200);
    // Replayed: from the cache now, over connections with another certificate, and with none.
    assert_invalid_token(&get(&w.client(Some(&w.other)), &gateway, "/replay", &token, &[]).await, MISMATCH);
    assert_invalid_token(&get(&w.client(None), &gateway, "/replay", &token, &[]).await, NOT_PRESENTED);
    // The rightful client still passes, on its open connection and on a new one.
    assert_eq!(get(&billing, &gateway, "/again", &token, &[]).await.0, 200);
    assert_eq!(get(&w.client(Some(&w.billing)), &gateway, "/again", &token, &[]).await.0, 200);
    assert_eq!(w.upstream.count(), 3);
    let metrics = gateway.metrics_text().await;
    let hits: f64 = metrics
        .lines()
        .find(|line| line.starts_with("jwtgate_token_cache_lookups_total{result=\"hit\"}"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap();
    assert!(hits >= 3.0, "the replays were answered from the cache: {hits} hits\n{metrics}");
}

#[tokio::test]
async fn require_cert_binding_refuses_an_unbound_token_of_that_issuer() {
    let w = World::new().await;
    let gateway = w.gateway("optional", "require_cert_binding = true\n").await;
    let billing = w.client(Some(&w.billing));
    assert_invalid_token(
        &get(&billing, &gateway, "/", &w.unbound(), &[]).await,
        "this issuer accepts only tokens bound to a client certificate (cnf x5t#S256), and this one is not",
    );
    assert_eq!(get(&billing, &gateway, "/", &w.bound_to(&w.billing), &[]).await.0, 200);
    let metrics = gateway.metrics_text().await;
    assert!(metrics.contains("reason=\"cert_binding_required\"} 1"), "{metrics}");
}

/// `require_cert_binding` holds for every tenant of a `{tenant}` issuer.
#[tokio::test]
async fn require_cert_binding_holds_for_each_tenant_of_a_template_issuer() {
    let w = World::new().await;
    let template = "https://login.example.com/{tenant}/v2.0";
    let lines = format!("tenants = [\"acme\"]\njwks_url = \"{}\"\nrequire_cert_binding = true\n", w.idp.jwks_url());
    let gateway = w.gateway_for(template, "optional", &lines).await;
    let mut unbound = claims(&template.replace("{tenant}", "acme"), "api");
    let billing = w.client(Some(&w.billing));
    assert_invalid_token(
        &get(&billing, &gateway, "/", &w.key.mint(&unbound), &[]).await,
        "this issuer accepts only tokens bound to a client certificate (cnf x5t#S256), and this one is not",
    );
    unbound["cnf"] = json!({ "x5t#S256": w.billing.thumbprint() });
    assert_eq!(get(&billing, &gateway, "/", &w.key.mint(&unbound), &[]).await.0, 200);
}

#[tokio::test]
async fn client_auth_required_fails_the_handshake_without_a_trusted_certificate() {
    let w = World::new().await;
    let gateway = w.gateway("required", "").await;
    // No certificate: no request gets through (TLS 1.3 may finish the
    // client's side of the handshake; the server's alert ends it).
    let url = format!("https://localhost:{}/", gateway.addr.port());
    assert!(w.client(None).get(&url).bearer_auth(w.unbound()).send().await.is_err());
    // A certificate from a CA the listener does not trust: the same.
    let stranger = TestCa::new("stranger CA").client("stranger");
    assert!(w.client(Some(&stranger)).get(&url).bearer_auth(w.unbound()).send().await.is_err());
    assert_eq!(w.upstream.count(), 0);
    // A certificate from client_ca_file: served.
    assert_eq!(get(&w.client(Some(&w.billing)), &gateway, "/", &w.bound_to(&w.billing), &[]).await.0, 200);

    // The same, at the TLS layer: the connection is closed with an alert, never served.
    let tcp = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(w.server_ca.der()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(jwtgate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let outcome = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await?;
        tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n").await?;
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    match outcome.await {
        Err(error) => assert!(error.to_string().to_lowercase().contains("certificate"), "{error}"),
        Ok(answer) => assert!(answer.is_empty(), "served without a certificate: {}", String::from_utf8_lossy(&answer)),
    }
}

#[tokio::test]
async fn certificate_identity_headers_sent_by_the_client_are_stripped() {
    let w = World::new().await;
    let gateway = w.gateway("optional", "").await;
    let spoofed = [("X-Client-Cert-Subject", "CN=admin"), ("X-Client-Spiffe-Id", "spiffe://example.org/ns/admin")];
    // No certificate: the client's values are removed, none added.
    let answer = get(&w.client(None), &gateway, "/", &w.unbound(), &spoofed).await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    let seen = w.upstream.last();
    assert!(!seen.headers.contains_key("x-client-cert-subject"), "{:?}", seen.headers);
    assert!(!seen.headers.contains_key("x-client-spiffe-id"), "{:?}", seen.headers);
    // With a certificate: only the gateway's values, once each.
    assert_eq!(get(&w.client(Some(&w.billing)), &gateway, "/", &w.unbound(), &spoofed).await.0, 200);
    let seen = w.upstream.last();
    let values =
        |name: &str| seen.headers.get_all(name).iter().map(|v| v.to_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(values("x-client-cert-subject"), ["CN=billing,O=Acme"]);
    assert_eq!(values("x-client-spiffe-id"), [SPIFFE_ID]);
}

/// Forward-auth: the edge terminates the client's TLS, so the gateway never
/// sees the certificate a bound token needs; such a token is refused there.
#[tokio::test]
async fn a_forward_auth_check_refuses_a_bound_token() {
    let w = World::new().await;
    let gateway = toml(&w.upstream.url(), &w.idp.issuer).issuer("[forward_auth]\npath = \"/auth\"\n").start().await;
    let check = |token: String| {
        crate::support::client()
            .get(gateway.url("/auth"))
            .header("x-original-uri", "/orders")
            .header("x-original-method", "GET")
            .bearer_auth(token)
            .send()
    };
    let refused = check(w.bound_to(&w.billing)).await.unwrap();
    assert_eq!(refused.status(), 401);
    let body: Value = serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert_eq!(
        body["error_description"],
        "token is bound to a client certificate, which a forward-auth check cannot see: send it to the gateway directly"
    );
    assert_eq!(check(w.unbound()).await.unwrap().status(), 200);
}

/// `jwtgate explain --client-cert FILE`: the binding check reported, and
/// without the certificate (or with an unbound token) the key to change.
#[test]
fn explain_reports_the_binding_and_names_the_key_to_change() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::rsa("k1");
    let (server_ca, client_ca) = (TestCa::new("listener CA"), TestCa::new("clients CA"));
    let server = server_ca.server().write(dir.path(), "server");
    let billing = client_ca.workload("billing", SPIFFE_ID);
    billing.write(dir.path(), "billing");
    client_ca.client("other").write(dir.path(), "other");
    TestCa::new("stranger CA").client("stranger").write(dir.path(), "stranger");
    std::fs::write(dir.path().join("clients-ca.pem"), client_ca.pem()).unwrap();
    std::fs::write(dir.path().join("jwks.json"), json!({"keys": [key.jwk()]}).to_string()).unwrap();
    let config = format!(
        "[server.tls]\ncert = {:?}\nkey = {:?}\nclient_ca_file = \"clients-ca.pem\"\nclient_auth = \"optional\"\n\
         [upstream]\nurl = \"http://127.0.0.1:9\"\n\
         [[issuers]]\nissuer = \"https://issuer.example/\"\naudiences = [\"api\"]\nrequire_cert_binding = true\n\
         [headers]\nclient_cert_subject = \"X-Client-Cert-Subject\"\nclient_spiffe_id = \"X-Client-Spiffe-Id\"\n",
        server.cert.display().to_string(),
        server.key.display().to_string()
    );
    std::fs::write(dir.path().join("jwtgate.toml"), config).unwrap();
    let at = 1_800_000_000u64;
    let mint = |cnf: Option<String>| {
        let mut claims =
            json!({"iss": "https://issuer.example/", "aud": "api", "sub": "alice", "iat": at - 60, "exp": at + 600});
        if let Some(thumbprint) = cnf {
            claims["cnf"] = json!({ "x5t#S256": thumbprint });
        }
        key.mint(&claims)
    };
    let explain = |token: &str, cert: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_jwtgate"));
        command.current_dir(dir.path()).args(["explain", "-c", "jwtgate.toml", "--offline", "--jwks", "jwks.json"]);
        command.args(["--at", &at.to_string()]);
        if let Some(cert) = cert {
            command.args(["--client-cert", cert]);
        }
        let mut child = command
            .arg("-")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(token.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        let text = String::from_utf8(output.stdout).unwrap() + &String::from_utf8_lossy(&output.stderr);
        (text, output.status.code().unwrap())
    };
    let bound = mint(Some(billing.thumbprint()));

    let (out, code) = explain(&bound, Some("billing.pem"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("client    certificate x5t#S256 {}", billing.thumbprint())), "{out}");
    assert!(out.contains("  handshake: verifies against [server.tls] client_ca_file\n"), "{out}");
    assert!(out.contains("  subject: CN=billing,O=Acme\n"), "{out}");
    assert!(out.contains(&format!("  SPIFFE ID: {SPIFFE_ID}\n")), "{out}");
    assert!(
        out.contains(
            "  pass  certificate binding: cnf x5t#S256 is the thumbprint of the client certificate presented\n"
        ),
        "{out}"
    );
    assert!(out.contains("  x-client-cert-subject: CN=billing,O=Acme\n"), "{out}");
    assert!(out.contains(&format!("  x-client-spiffe-id: {SPIFFE_ID}\n")), "{out}");

    let (out, code) = explain(&bound, None);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("client    no certificate (--client-cert FILE to give one)"), "{out}");
    assert!(out.contains(&format!("  FAIL  {NOT_PRESENTED}\n")), "{out}");
    assert!(out.contains("fix   the token is bound to a client certificate (cnf x5t#S256)"), "{out}");
    assert!(out.contains("[server.tls] client_auth"), "{out}");

    let (out, code) = explain(&bound, Some("other.pem"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("  FAIL  {MISMATCH}\n")), "{out}");

    let (out, _) = explain(&bound, Some("stranger.pem"));
    assert!(out.contains("  handshake: FAILS against [server.tls] client_ca_file ("), "{out}");

    let (out, code) = explain(&mint(None), Some("billing.pem"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("fix   issuers[0].require_cert_binding = true"), "{out}");
}

/// `client_ca_file` is read again on reload, like the listener's
/// certificate: new handshakes trust the new CA; a file that does not load
/// keeps the running one.
#[tokio::test]
async fn a_reload_swaps_the_client_ca_and_keeps_it_when_the_new_file_is_broken() {
    let w = World::new().await;
    let gateway = w.gateway("required", "").await;
    let config_path = w.dir.path().join("jwtgate.toml");
    let ca_file = w.dir.path().join("clients-ca.pem");
    // The same text the gateway started from, as a file.
    let server = w.dir.path().join("server.pem");
    let text = format!(
        "[server.tls]\ncert = {:?}\nkey = {:?}\nclient_ca_file = {:?}\nclient_auth = \"required\"\n\
         [upstream]\nurl = \"{}\"\n[[issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\n",
        server.display().to_string(),
        w.dir.path().join("server-key.pem").display().to_string(),
        ca_file.display().to_string(),
        w.upstream.url(),
        w.idp.issuer
    );
    std::fs::write(&config_path, &text).unwrap();
    let config = jwtgate::Config::load(&config_path).unwrap();
    let reloader =
        jwtgate::reload::Reloader::new(config_path, Arc::clone(&gateway.shared), config, gateway.tls.clone());
    let url = format!("https://localhost:{}/", gateway.addr.port());
    let token = w.unbound();
    assert_eq!(get(&w.client(Some(&w.billing)), &gateway, "/", &token, &[]).await.0, 200);

    let rotated = TestCa::new("rotated clients CA");
    let renewed = rotated.client("billing");
    std::fs::write(&ca_file, rotated.pem()).unwrap();
    assert!(reloader.reload());
    assert!(w.client(Some(&w.billing)).get(&url).bearer_auth(&token).send().await.is_err());
    assert_eq!(get(&w.client(Some(&renewed)), &gateway, "/", &token, &[]).await.0, 200);

    // A broken CA file: logged, and the rotated CA stays in service.
    std::fs::write(&ca_file, "-----BEGIN CERTIFICATE-----\n!!!\n").unwrap();
    reloader.reload();
    assert_eq!(get(&w.client(Some(&renewed)), &gateway, "/", &token, &[]).await.0, 200);
}

/// The complete configuration of docs/client-certificates.md passes
/// `jwtgate check` beside the three PEM files it names.
#[test]
fn the_documented_configuration_passes_check() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/client-certificates.md")).unwrap();
    let start = docs.find("## A complete configuration").unwrap();
    let block = docs[start..].split("```ini\n").nth(1).unwrap().split("```").next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (server_ca, client_ca) = (TestCa::new("listener CA"), TestCa::new("clients CA"));
    server_ca.server().write(dir.path(), "server");
    std::fs::write(dir.path().join("clients-ca.pem"), client_ca.pem()).unwrap();
    std::fs::write(dir.path().join("jwtgate.toml"), block).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jwtgate"))
        .current_dir(dir.path())
        .args(["check", "-c", "jwtgate.toml"])
        .env_remove("JWTGATE_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("TLS: HTTP/1.1 and h2, client certificates optional"), "{text}");
}

/// HTTP/2 (ALPN h2) over mutual TLS: every stream of the connection carries
/// the certificate the handshake verified.
#[tokio::test]
async fn http2_streams_are_judged_with_their_connections_certificate() {
    let w = World::new().await;
    let gateway = w.gateway("optional", "").await;
    let mut config = w.billing.client_config(&w.server_ca);
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (client, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    for (token, status) in [(w.bound_to(&w.billing), 200), (w.bound_to(&w.other), 401), (w.bound_to(&w.billing), 200)] {
        let mut client = client.clone().ready().await.unwrap();
        let request = hyper::Request::get(format!("https://localhost:{}/h2", gateway.addr.port()))
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        assert_eq!(response.await.unwrap().status(), status);
    }
    assert_eq!(w.upstream.count(), 2);
    assert_eq!(w.upstream.last().headers["x-client-spiffe-id"], SPIFFE_ID);
}
