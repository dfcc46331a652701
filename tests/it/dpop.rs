//! RFC 9449 DPoP (issue 19, part 2): a token bound to a key is good only
//! with a fresh proof of that key for the request. Against a real
//! authorization server (node oidc-provider, issuing DPoP-bound JWTs) and a
//! real DPoP client (npm `dpop`, tests/idp/dpop_client.mjs); proofs no
//! client library would make are crafted here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::support::keys::{SigningKey, b64, claims, now};
use crate::support::{Process, TestGateway, TestIdp, TestUpstream, client, node_idp};
use serde_json::{Value, json};

const NEEDS: &str = "needs node with tests/idp/node_modules (.ci/run installs it)";
const RESOURCE: &str = "https://api.jwtgate.test";

/// tests/idp/dpop_client.mjs: holds keys A and B and a token bound to A.
struct DpopClient {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    token: String,
    jkt: String,
}

impl DpopClient {
    fn start(issuer: &str) -> DpopClient {
        let mut child = Command::new("node")
            .arg(format!("{}/tests/idp/dpop_client.mjs", env!("CARGO_MANIFEST_DIR")))
            .env("ISSUER", issuer)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node (.ci/run installs it)");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let started: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first:?}"));
        assert_eq!(started["token_type"], "DPoP", "{started}");
        let token = started["token"].as_str().unwrap().to_string();
        let jkt = started["jkt"].as_str().unwrap().to_string();
        DpopClient { child, stdin, stdout, token, jkt }
    }

    /// A proof by `key` for `htm htu`, with `ath` of `token` and `nonce`.
    fn proof(&mut self, key: &str, htm: &str, htu: &str, token: Option<&str>, nonce: Option<&str>) -> String {
        let ask = json!({"key": key, "htm": htm, "htu": htu, "token": token, "nonce": nonce});
        writeln!(self.stdin, "{ask}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let answer: Value = serde_json::from_str(&line).unwrap();
        answer["proof"].as_str().unwrap().to_string()
    }

    /// A proof of key A for `htm htu` and the bound token.
    fn good(&mut self, htm: &str, htu: &str) -> String {
        let token = self.token.clone();
        self.proof("A", htm, htu, Some(&token), None)
    }
}

impl Drop for DpopClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup {
    _op: Process,
    dpop: DpopClient,
    upstream: TestUpstream,
    gateway: TestGateway,
    /// The gateway's configuration text.
    text: String,
}

/// oidc-provider, a DPoP client holding a token bound to its key A, and a
/// gateway trusting the provider with `dpop = "allowed"`, `/admin`
/// requiring DPoP, and `server_lines` in `[server]`.
async fn setup(server_lines: &str) -> Setup {
    let (op, issuer) = node_idp("oidc_provider.mjs", &[]);
    let dpop = DpopClient::start(&issuer);
    let upstream = TestUpstream::start().await;
    let text = format!(
        "[server]\n{server_lines}\n[upstream]\nurl = \"{}\"\n[[issuers]]\nissuer = \"{issuer}\"\n\
         audiences = [\"{RESOURCE}\"]\ndpop = \"allowed\"\n[headers]\nclaims = {{ sub = \"X-Sub\" }}\n\
         [[routes]]\npath = \"/admin\"\ndpop = \"required\"\n",
        upstream.url()
    );
    let gateway = TestGateway::start(&text).await;
    gateway.wait_for_keys().await;
    Setup { _op: op, dpop, upstream, gateway, text }
}

/// A GET of `path` with `authorization` and, when given, a `DPoP` header.
async fn send(gateway: &TestGateway, path: &str, authorization: &str, proof: Option<&str>) -> reqwest::Response {
    let mut request = client().get(gateway.url(path)).header("authorization", authorization);
    if let Some(proof) = proof {
        request = request.header("dpop", proof);
    }
    request.send().await.unwrap()
}

/// The status, the `WWW-Authenticate` challenge and the body's `error_description`.
async fn refusal(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    let body: Value = serde_json::from_str(&response.text().await.unwrap_or_default()).unwrap_or(Value::Null);
    (status, challenge.unwrap_or_default(), body["error_description"].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
#[ignore = "needs node with tests/idp/node_modules (.ci/run installs it)"]
async fn a_dpop_bound_token_passes_only_with_a_fresh_proof_of_its_key_for_this_request() {
    let _ = NEEDS;
    let mut s = setup("").await;
    let url = s.gateway.url("/orders");
    let token = s.dpop.token.clone();
    let authorization = format!("DPoP {token}");

    let proof = s.dpop.good("GET", &url);
    let answer = send(&s.gateway, "/orders", &authorization, Some(&proof)).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(s.upstream.last().headers["x-sub"], "jwtgate-post");
    // From the verified-token cache now, and still each proof is judged.
    let again = s.dpop.good("GET", &url);
    assert_eq!(send(&s.gateway, "/orders", &authorization, Some(&again)).await.status(), 200);
    let metrics = s.gateway.metrics_text().await;
    assert!(metrics.contains("jwtgate_token_cache_lookups_total{result=\"hit\"} 1"), "{metrics}");

    let dpop_refusal = |description: &str| {
        let description = description.to_string();
        move |(status, challenge, said): (u16, String, String)| {
            assert_eq!(status, 401);
            assert!(challenge.starts_with("DPoP realm=\"jwtgate\", algs=\"RS256 "), "{challenge}");
            assert!(challenge.contains("error=\"invalid_dpop_proof\""), "{challenge}");
            assert_eq!(said, description);
        }
    };
    // The same proof again: replayed.
    dpop_refusal("DPoP proof was already used (jti seen before)")(
        refusal(send(&s.gateway, "/orders", &authorization, Some(&again)).await).await,
    );
    // For another URL, another method, another token.
    let other_url = s.dpop.good("GET", &s.gateway.url("/other"));
    dpop_refusal("DPoP proof htu is not this request's URL")(
        refusal(send(&s.gateway, "/orders", &authorization, Some(&other_url)).await).await,
    );
    let other_method = s.dpop.good("POST", &url);
    dpop_refusal("DPoP proof htm is not this request's method")(
        refusal(send(&s.gateway, "/orders", &authorization, Some(&other_method)).await).await,
    );
    let other_token = s.dpop.proof("A", "GET", &url, Some("another-access-token"), None);
    dpop_refusal("DPoP proof ath is not the hash of this access token")(
        refusal(send(&s.gateway, "/orders", &authorization, Some(&other_token)).await).await,
    );
    let no_ath = s.dpop.proof("A", "GET", &url, None, None);
    dpop_refusal("DPoP proof ath is not the hash of this access token")(
        refusal(send(&s.gateway, "/orders", &authorization, Some(&no_ath)).await).await,
    );
    // Signed by a key the token is not bound to: the token's fault, invalid_token.
    let key_b = s.dpop.proof("B", "GET", &url, Some(&token), None);
    let (status, challenge, said) = refusal(send(&s.gateway, "/orders", &authorization, Some(&key_b)).await).await;
    assert_eq!((status, said.as_str()), (401, "DPoP proof key is not the key the token is bound to (cnf.jkt)"));
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    // No proof at all.
    dpop_refusal("the DPoP header with a proof is missing")(
        refusal(send(&s.gateway, "/orders", &authorization, None).await).await,
    );
    // The bound token as a bearer token: the downgrade RFC 9449 §7.1 warns of.
    let (status, challenge, said) = refusal(send(&s.gateway, "/orders", &format!("Bearer {token}"), None).await).await;
    assert_eq!(said, "token is DPoP-bound: send it as Authorization: DPoP with a DPoP proof");
    assert_eq!(status, 401);
    assert!(challenge.starts_with("DPoP ") && challenge.contains("error=\"invalid_token\""), "{challenge}");
    let fresh = s.dpop.good("GET", &url);
    let (status, _, _) = refusal(send(&s.gateway, "/orders", &format!("Bearer {token}"), Some(&fresh)).await).await;
    assert_eq!(status, 401, "a proof beside a Bearer scheme does not make it DPoP");

    let metrics = s.gateway.metrics_text().await;
    for reason in ["dpop_replayed", "invalid_dpop_proof", "dpop_binding"] {
        assert!(metrics.contains(&format!("reason=\"{reason}\"")), "{reason}: {metrics}");
    }
    assert_eq!(s.dpop.jkt.len(), 43, "a SHA-256 thumbprint");
}

/// `dpop = "required"` on a route refuses an unbound bearer token the
/// issuer's `"allowed"` would take; an unbound token under the DPoP scheme
/// is refused everywhere.
#[tokio::test]
#[ignore = "needs node with tests/idp/node_modules (.ci/run installs it)"]
async fn a_route_requiring_dpop_refuses_bearer_tokens_and_unbound_tokens_never_pass_as_dpop() {
    let mut s = setup("").await;
    let key = SigningKey::rsa("other");
    let idp = TestIdp::start(&[&key]).await;
    // A second gateway: the same provider and a local one whose tokens are unbound.
    let text = format!(
        "[upstream]\nurl = \"{}\"\n[[issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\ndpop = \"allowed\"\n\
         [[routes]]\npath = \"/admin\"\ndpop = \"required\"\n",
        s.upstream.url(),
        idp.issuer
    );
    let gateway = TestGateway::start(&text).await;
    gateway.wait_for_keys().await;
    let unbound = key.mint(&claims(&idp.issuer, "api"));
    assert_eq!(send(&gateway, "/orders", &format!("Bearer {unbound}"), None).await.status(), 200);
    let (status, challenge, said) = refusal(send(&gateway, "/admin", &format!("Bearer {unbound}"), None).await).await;
    assert_eq!((status, said.as_str()), (401, "this API requires DPoP-bound tokens sent with a DPoP proof"));
    assert!(challenge.starts_with("DPoP "), "{challenge}");
    let proof = s.dpop.proof("A", "GET", &gateway.url("/orders"), Some(&unbound), None);
    let (status, _, said) = refusal(send(&gateway, "/orders", &format!("DPoP {unbound}"), Some(&proof)).await).await;
    assert_eq!((status, said.as_str()), (401, "token sent with the DPoP scheme is not bound to a key (no cnf.jkt)"));

    // The bound token with its proof passes the route that requires DPoP.
    let url = s.gateway.url("/admin");
    let proof = s.dpop.good("GET", &url);
    let token = s.dpop.token.clone();
    assert_eq!(send(&s.gateway, "/admin", &format!("DPoP {token}"), Some(&proof)).await.status(), 200);
}

/// `dpop_nonce = true`: a proof without the gateway's nonce is answered
/// with `use_dpop_nonce` and a nonce, which the client signs into its next
/// proof; and `public_url` is the URL proofs name (here with the path
/// prefix an edge would strip, and a percent-encoded spelling of the path).
#[tokio::test]
#[ignore = "needs node with tests/idp/node_modules (.ci/run installs it)"]
async fn nonces_and_public_url_are_what_proofs_must_carry_and_name() {
    let mut s = setup("public_url = \"https://API.example.com:443/v1/\"\ndpop_nonce = true\n").await;
    let token = s.dpop.token.clone();
    let authorization = format!("DPoP {token}");
    let htu = "https://api.example.com/v1/or%64ers";
    let proof = s.dpop.good("GET", htu);
    let answer = send(&s.gateway, "/orders", &authorization, Some(&proof)).await;
    let nonce = answer.headers().get("dpop-nonce").map(|v| v.to_str().unwrap().to_string()).expect("DPoP-Nonce");
    let (status, challenge, _) = refusal(answer).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("error=\"use_dpop_nonce\""), "{challenge}");

    let proof = s.dpop.proof("A", "GET", htu, Some(&token), Some(&nonce));
    let answer = send(&s.gateway, "/orders", &authorization, Some(&proof)).await;
    assert_eq!(answer.status(), 200);
    let tampered = format!("{}x", &nonce[..nonce.len() - 1]);
    let proof = s.dpop.proof("A", "GET", htu, Some(&token), Some(&tampered));
    let (status, challenge, _) = refusal(send(&s.gateway, "/orders", &authorization, Some(&proof)).await).await;
    assert_eq!(status, 401, "a nonce the gateway did not make");
    assert!(challenge.contains("error=\"use_dpop_nonce\""), "{challenge}");
    // The listener's own URL is not the public one.
    let local = s.dpop.proof("A", "GET", &s.gateway.url("/orders"), Some(&token), Some(&nonce));
    let (status, _, said) = refusal(send(&s.gateway, "/orders", &authorization, Some(&local)).await).await;
    assert_eq!((status, said.as_str()), (401, "DPoP proof htu is not this request's URL"));
    let outside = s.dpop.proof("A", "GET", "https://api.example.com/orders", Some(&token), Some(&nonce));
    let (status, _, said) = refusal(send(&s.gateway, "/orders", &authorization, Some(&outside)).await).await;
    assert_eq!((status, said.as_str()), (401, "DPoP proof htu is not this request's URL"), "without the /v1 prefix");
}

/// Proofs no client library makes, crafted: each is refused for what it is.
#[tokio::test]
#[ignore = "needs node with tests/idp/node_modules (.ci/run installs it)"]
async fn proofs_with_a_private_key_a_wrong_type_a_stale_iat_or_a_symmetric_alg_are_refused() {
    let s = setup("").await;
    let token = s.dpop.token.clone();
    let url = s.gateway.url("/orders");
    let key = SigningKey::p256("client");
    let ath = b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref());
    let payload = |iat: u64| json!({"jti": format!("j{iat}"), "htm": "GET", "htu": url, "iat": iat, "ath": ath});
    let header = |typ: &str, jwk: Value| json!({"typ": typ, "alg": "ES256", "jwk": jwk});
    let mut private = key.jwk();
    private["d"] = json!("AAAA");
    let cases = [
        (key.sign(&header("dpop+jwt", private), &payload(now())), "DPoP proof jwk holds private key members"),
        (key.sign(&header("JWT", key.jwk()), &payload(now())), "DPoP proof typ is not dpop+jwt"),
        (
            key.sign(&header("dpop+jwt", key.jwk()), &payload(now() - 400)),
            "DPoP proof iat is outside the accepted window",
        ),
        (
            key.sign(&header("dpop+jwt", key.jwk()), &payload(now() + 120)),
            "DPoP proof iat is outside the accepted window",
        ),
        (
            crate::support::hs256(b"k", &json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": key.jwk()}), &payload(now())),
            "DPoP proof alg is not an accepted asymmetric algorithm",
        ),
        ("a.b".to_string(), "DPoP proof is not a JWS with a JSON header and payload and the claims RFC 9449 requires"),
    ];
    for (proof, expected) in cases {
        let (status, _, said) =
            refusal(send(&s.gateway, "/orders", &format!("DPoP {token}"), Some(&proof)).await).await;
        assert_eq!((status, said.as_str()), (401, expected));
    }
    // A well-made proof by a key the token is not bound to.
    let stranger = key.sign(&header("dpop+jwt", key.jwk()), &payload(now()));
    let (status, _, said) = refusal(send(&s.gateway, "/orders", &format!("DPoP {token}"), Some(&stranger)).await).await;
    assert_eq!((status, said.as_str()), (401, "DPoP proof key is not the key the token is bound to (cnf.jkt)"));
    // Two DPoP headers.
    let response = client()
        .get(&url)
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", &stranger)
        .header("dpop", &stranger)
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(response).await.2, "more than one DPoP header");
}

/// `explain --dpop PROOF` judges the proof as the gateway would (its URL
/// from `public_url`), and names the failed check; a forward-auth check,
/// which never sees the request's URL, refuses proofs without `public_url`.
#[tokio::test]
#[ignore = "needs node with tests/idp/node_modules (.ci/run installs it)"]
async fn explain_judges_a_proof_and_forward_auth_needs_public_url() {
    let mut s = setup("public_url = \"https://api.example.com\"").await;
    let token = s.dpop.token.clone();
    let config = jwtgate::config::Config::parse(&s.text, "dpop.toml", std::path::Path::new("."), &|_| None).unwrap();
    let proof = s.dpop.good("GET", "https://api.example.com/orders");
    let options = |dpop: &str| jwtgate::explain::Options {
        path: "/orders".into(),
        dpop: Some(dpop.to_string()),
        ..Default::default()
    };
    let (report, allowed) = jwtgate::explain::explain(&config, &token, &options(&proof)).await.unwrap();
    assert!(allowed, "{report}");
    assert!(report.contains("pass  DPoP: a proof of the token's key for this request"), "{report}");
    let wrong = s.dpop.good("GET", "https://api.example.com/other");
    let (report, allowed) = jwtgate::explain::explain(&config, &token, &options(&wrong)).await.unwrap();
    assert!(!allowed);
    assert!(report.contains("FAIL  DPoP proof htu is not this request's URL"), "{report}");
    assert!(report.contains("WWW-Authenticate: DPoP realm=\"jwtgate\""), "{report}");

    // Forward-auth never sees the URL the client used: without public_url
    // no proof can be judged, so none is approved.
    let text = format!(
        "[upstream]\nurl = \"{}\"\n[forward_auth]\npath = \"/auth\"\nedge = \"nginx\"\n{}",
        s.upstream.url(),
        &s.text[s.text.find("[[issuers]]").unwrap()..]
    );
    let edge = TestGateway::start(&text).await;
    edge.wait_for_keys().await;
    let proof = s.dpop.good("GET", &edge.url("/orders"));
    let response = client()
        .get(edge.url("/auth"))
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .header("x-original-uri", "/orders")
        .header("x-original-method", "GET")
        .send()
        .await
        .unwrap();
    let (status, _, said) = refusal(response).await;
    assert_eq!(
        (status, said.as_str()),
        (401, "the gateway cannot tell this request's URL to check the proof's htu ([server] public_url)")
    );
    // With public_url it can: the same check passes with a proof for it.
    let text = text.replacen("[upstream]", "[server]\npublic_url = \"https://api.example.com\"\n[upstream]", 1);
    let edge = TestGateway::start(&text).await;
    edge.wait_for_keys().await;
    let proof = s.dpop.good("GET", "https://api.example.com/orders");
    let response = client()
        .get(edge.url("/auth"))
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .header("x-original-uri", "/orders")
        .header("x-original-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-sub"], "jwtgate-post");
}

/// A DPoP-bound token minted locally (no node): `cnf.jkt` names `client`.
fn bound_token(idp_key: &SigningKey, issuer: &str, client: &SigningKey) -> String {
    let jwk = client.jwk();
    let jkt = jwtgate::auth::dpop::thumbprint(jwk.as_object().unwrap()).unwrap();
    let mut claims = claims(issuer, "api");
    claims["cnf"] = json!({ "jkt": jkt });
    idp_key.mint(&claims)
}

/// A proof by `client` for `GET url` with `token`'s `ath`, `jti` and `iat`.
pub(crate) fn local_proof(client: &SigningKey, url: &str, token: &str, jti: &str, iat: u64) -> String {
    let mut jwk = client.jwk();
    jwk.as_object_mut().unwrap().remove("kid");
    let ath = b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref());
    client.sign(
        &json!({"typ": "dpop+jwt", "alg": client.alg(), "jwk": jwk}),
        &json!({"jti": jti, "htm": "GET", "htu": url, "iat": iat, "ath": ath}),
    )
}

/// Red team: the `jti`s of accepted proofs lived in the gateway a reload
/// replaces, so every reload (SIGHUP, or any change `--watch` sees) forgot
/// them and a proof used a moment before could be replayed at once.
#[tokio::test]
async fn dpop_replay_cache_survives_a_configuration_reload() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwtgate.toml");
    let base = crate::support::toml(&upstream.url(), &idp.issuer).issuer("dpop = \"allowed\"\n").text();
    std::fs::write(&path, &base).unwrap();
    let gateway = TestGateway::start(&base).await;
    gateway.wait_for_keys().await;
    let running = jwtgate::Config::load(&path).unwrap();
    let reloader = jwtgate::reload::Reloader::new(path.clone(), std::sync::Arc::clone(&gateway.shared), running, None);

    let client_key = SigningKey::p256("client");
    let token = bound_token(&key, &idp.issuer, &client_key);
    let url = gateway.url("/orders");
    let proof = local_proof(&client_key, &url, &token, "once", now());
    let authorization = format!("DPoP {token}");
    assert_eq!(send(&gateway, "/orders", &authorization, Some(&proof)).await.status(), 200);
    assert_eq!(send(&gateway, "/orders", &authorization, Some(&proof)).await.status(), 401, "replayed");

    // A reload that changes nothing about DPoP.
    std::fs::write(&path, format!("{base}\n[[routes]]\npath = \"/open\"\nauth = \"public\"\n")).unwrap();
    assert!(reloader.reload());
    assert_eq!(get_status(&gateway.url("/open")).await, 200, "the new configuration is in force");
    let (status, _, said) = refusal(send(&gateway, "/orders", &authorization, Some(&proof)).await).await;
    assert_eq!((status, said.as_str()), (401, "DPoP proof was already used (jti seen before)"));
}

async fn get_status(url: &str) -> u16 {
    client().get(url).send().await.unwrap().status().as_u16()
}

/// RFC 7800 `cnf` by a method the gateway cannot check (here `jwk`) binds
/// the token to a proof nobody verifies: refused, never taken as bearer.
#[tokio::test]
async fn a_token_bound_by_a_cnf_method_the_gateway_cannot_check_is_refused() {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = crate::support::toml(&upstream.url(), &idp.issuer).issuer("dpop = \"allowed\"\n").start().await;
    let mut bound = claims(&idp.issuer, "api");
    bound["cnf"] = json!({"jwk": SigningKey::p256("client").jwk()});
    let (status, _, said) =
        refusal(send(&gateway, "/orders", &format!("Bearer {}", key.mint(&bound)), None).await).await;
    assert_eq!(
        (status, said.as_str()),
        (
            401,
            "token is bound (cnf) by a method this gateway cannot check: only cnf.jkt (DPoP) and cnf.x5t#S256 (a client certificate) are"
        )
    );
    bound["cnf"] = json!("not an object");
    assert_eq!(send(&gateway, "/orders", &format!("Bearer {}", key.mint(&bound)), None).await.status(), 401);
}
