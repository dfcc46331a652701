//! The attack corpus: each test is named after an attack on JWT validation
//! or on the proxy, and asserts it fails — and that nothing reached the
//! upstream, or a server the attacker pointed us at.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct World {
    rsa: SigningKey,
    ec: SigningKey,
    a: TestIdp,
    b_key: SigningKey,
    b: TestIdp,
    upstream: TestUpstream,
    gateway: TestGateway,
}

async fn world() -> World {
    let (rsa, ec, b_key) = (SigningKey::rsa("rsa"), SigningKey::p256("ec"), SigningKey::rsa("b-rsa"));
    let a = TestIdp::start(&[&rsa, &ec]).await;
    let b = TestIdp::start(&[&b_key]).await;
    let upstream = TestUpstream::start().await;
    let text = toml(&upstream.url(), &a.issuer)
        .issuer("algorithms = [\"RS256\", \"ES256\"]\n")
        .issuer(&format!("\n[[issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\n", b.issuer))
        .text();
    let gateway = TestGateway::start(&text).await;
    gateway.wait_for_keys().await;
    World { rsa, ec, a, b_key, b, upstream, gateway }
}

impl World {
    fn claims(&self) -> Value {
        claims(&self.a.issuer, "api")
    }

    async fn refused(&self, token: &str) -> Value {
        let (status, _, body) = get(&self.gateway.url("/"), Some(token)).await;
        assert!(status == 401 || status == 400, "{status}: {body} for {token}");
        body
    }

    fn nothing_reached_the_upstream(&self) {
        assert_eq!(self.upstream.count(), 0, "a forged token reached the upstream");
    }
}

fn segments(token: &str) -> (String, String, String) {
    let mut parts = token.split('.').map(str::to_owned);
    (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap())
}

#[tokio::test]
async fn alg_none_in_any_letter_case() {
    let w = world().await;
    for alg in ["none", "None", "NONE", "nOnE"] {
        for signature in ["", "AAAA"] {
            let token = format!("{}.{}.{signature}", b64(json!({"alg": alg}).to_string()), b64(w.claims().to_string()));
            w.refused(&token).await;
        }
    }
    w.nothing_reached_the_upstream();
}

#[tokio::test]
async fn hmac_signed_with_the_public_key_algorithm_confusion() {
    let w = world().await;
    for key in [&w.rsa, &w.ec] {
        let secrets = [key.public_bytes(), key.jwk().to_string().into_bytes()];
        for secret in &secrets {
            for alg in ["HS256", "HS384", "HS512"] {
                // Only HS256 is signed for real; the others carry its MAC, which
                // must fail just as well at the algorithm check.
                let token = hs256(secret, &json!({"alg": alg, "kid": key.kid}), &w.claims());
                let body = w.refused(&token).await;
                assert_eq!(body["error_description"], "token algorithm is not allowed for this issuer");
            }
        }
    }
    w.nothing_reached_the_upstream();
}

#[tokio::test]
async fn empty_truncated_and_swapped_signatures() {
    let w = world().await;
    let good = w.rsa.mint(&w.claims());
    let (h, p, s) = segments(&good);
    let other = w.rsa.mint(&json!({"iss": w.a.issuer, "aud": "api", "exp": now() + 60, "sub": "someone-else"}));
    let (_, _, other_sig) = segments(&other);
    let cases = [
        format!("{h}.{p}."),
        format!("{h}.{p}.{}", &s[..s.len() / 2]),
        format!("{h}.{p}.{}", &s[1..]),
        format!("{h}.{p}.{other_sig}"),
        format!("{h}.{p}.{s}{s}"),
        format!("{h}.{p}.{}", s.replace(|c: char| c.is_ascii_lowercase(), "A")),
        format!("{h}.{p}.{s}=="),
        format!("{h}.{p}.{}", s.replace('-', "+")),
    ];
    for token in &cases {
        w.refused(token).await;
    }
    w.nothing_reached_the_upstream();
}

#[tokio::test]
async fn ecdsa_zero_and_out_of_range_signatures() {
    let w = world().await;
    let header = b64(json!({"alg": "ES256", "kid": "ec"}).to_string());
    let payload = b64(w.claims().to_string());
    // r = s = 0 ("psychic signatures"), r = s = n (the curve order), all ones.
    let order = hex("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");
    for signature in [vec![0u8; 64], [order.clone(), order].concat(), vec![0xff; 64], vec![0u8; 63], vec![1u8; 65]] {
        let body = w.refused(&format!("{header}.{payload}.{}", b64(signature))).await;
        assert_eq!(body["error_description"], "token signature is invalid");
    }
    w.nothing_reached_the_upstream();
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[tokio::test]
async fn two_four_and_five_segments_jwe_included() {
    let w = world().await;
    let (h, p, s) = segments(&w.rsa.mint(&w.claims()));
    for token in [format!("{h}.{p}"), format!("{h}.{p}.{s}.{s}"), format!("{h}.{p}.{s}.{s}.{s}"), format!("{h}..{s}")] {
        let body = w.refused(&token).await;
        assert_eq!(body["error"], "invalid_token", "{token}");
    }
    let jwe_header = b64(json!({"alg": "RSA-OAEP", "enc": "A256GCM"}).to_string());
    w.refused(&format!("{jwe_header}.AAAA.AAAA.AAAA.AAAA")).await;
    w.nothing_reached_the_upstream();
}

#[tokio::test]
async fn hostile_kid_values() {
    let w = world().await;
    let fetches = w.a.fetches();
    for kid in ["../../../../etc/passwd", "' OR '1'='1", "rsa\u{0}", &"k".repeat(8 * 1024), "", "rsa "] {
        let token = w.rsa.sign(&json!({"alg": "RS256", "kid": kid}), &w.claims());
        let body = w.refused(&token).await;
        assert_eq!(body["error_description"], "unknown signing key", "{kid:?}");
    }
    assert!(w.a.fetches() <= fetches + 1, "hostile kids caused at most one rate-limited refetch");
    w.nothing_reached_the_upstream();
}

#[tokio::test]
async fn jku_x5u_jwk_and_x5c_are_never_followed() {
    let w = world().await;
    let hits = Arc::new(AtomicUsize::new(0));
    let trap = {
        let hits = Arc::clone(&hits);
        crate::support::http::serve(move |_req| {
            hits.fetch_add(1, Ordering::SeqCst);
            async { json_response(200, &json!({"keys": []})) }
        })
        .await
    };
    let trap_url = format!("http://{}/jwks.json", trap.0);
    let attacker = SigningKey::rsa("attacker");
    let headers = [
        json!({"alg": "RS256", "kid": "attacker", "jku": trap_url}),
        json!({"alg": "RS256", "kid": "attacker", "x5u": trap_url}),
        json!({"alg": "RS256", "jwk": attacker.jwk()}),
        json!({"alg": "RS256", "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]}),
        json!({"alg": "RS256", "kid": "rsa", "jku": trap_url, "jwk": attacker.jwk()}),
    ];
    for header in headers {
        w.refused(&attacker.sign(&header, &w.claims())).await;
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the gateway fetched a key URL from a token header");
    trap.1.abort();
    w.nothing_reached_the_upstream();
}

#[tokio::test]
async fn unknown_crit_headers() {
    let w = world().await;
    for crit in [json!(["exp"]), json!(["b64"]), json!([]), json!("exp"), json!(null)] {
        let token = w.rsa.sign(&json!({"alg": "RS256", "kid": "rsa", "crit": crit, "b64": false}), &w.claims());
        let body = w.refused(&token).await;
        assert_eq!(body["error_description"], "token has critical header parameters that are not supported", "{crit}");
    }
    w.nothing_reached_the_upstream();
}

#[tokio::test]
async fn time_claims_of_the_wrong_type_or_range() {
    let w = world().await;
    let now = now();
    const BAD: &str = "token exp, nbf or iat is not a number of seconds within the signed 64-bit range";
    let cases = [
        (json!({"exp": format!("{}", now + 600)}), BAD),
        (json!({"exp": "tomorrow"}), BAD),
        (json!({"exp": [now + 600]}), BAD),
        (json!({"exp": -1}), "token expired"),
        (json!({"exp": 0}), "token expired"),
        (json!({"exp": (now - 3600) as f64 + 0.5}), "token expired"),
        (json!({"exp": now + 600, "nbf": "0"}), BAD),
        // Issue 13, finding 8d: beyond 2^63 is malformed, not "far future"
        // (Envoy and jsonwebtoken refuse it too).
        (json!({"exp": now + 600, "nbf": 1e300}), BAD),
        (json!({"exp": now + 600, "nbf": -1e300}), BAD),
        (json!({"exp": 1e300}), BAD),
        (json!({"exp": 1e30}), BAD),
        (json!({"exp": 18446744073709551615u64}), BAD),
        (json!({"exp": 9_000_000_000_000_000_000u64}), ""),
    ];
    for (patch, description) in cases {
        let mut c = w.claims();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        let (status, _, body) = get(&w.gateway.url("/"), Some(&w.rsa.mint(&c))).await;
        if description.is_empty() {
            assert_eq!(status, 200, "{patch}: {body}");
        } else {
            assert_eq!((status, body["error_description"].as_str().unwrap()), (401, description), "{patch}");
        }
    }
}

#[tokio::test]
async fn audience_of_the_wrong_shape() {
    let w = world().await;
    for aud in [json!({"api": true}), json!(["API"]), json!([["api"]]), json!(null), json!(1), json!("")] {
        let mut c = w.claims();
        c["aud"] = aud.clone();
        let body = w.refused(&w.rsa.mint(&c)).await;
        assert_eq!(body["error_description"], "audience not accepted", "{aud}");
    }
    w.nothing_reached_the_upstream();
}

#[tokio::test]
async fn a_token_of_issuer_a_presented_as_issuer_b() {
    let w = world().await;
    // Signed by A's key but claiming B: B's keys do not verify it.
    let mut c = claims(&w.b.issuer, "api");
    c["sub"] = json!("b-admin");
    let body = w.refused(&w.rsa.mint(&c)).await;
    assert_eq!(body["error_description"], "unknown signing key");
    // Signed by A's key, naming B's kid.
    let body = w.refused(&w.rsa.sign(&json!({"alg": "RS256", "kid": "b-rsa"}), &c)).await;
    assert_eq!(body["error_description"], "token signature is invalid");
    // And the honest B token works.
    assert_eq!(get(&w.gateway.url("/"), Some(&w.b_key.mint(&c))).await.0, 200);
}

#[tokio::test]
async fn payloads_that_are_not_json_objects() {
    let w = world().await;
    let header = b64(json!({"alg": "RS256", "kid": "rsa"}).to_string());
    for payload in ["[]", "\"iss\"", "null", "{\"iss\": ", "{'iss': 1}", "\u{feff}{}"] {
        let input = format!("{header}.{}", b64(payload));
        let token = format!("{input}.{}", b64(w.rsa.signature(input.as_bytes())));
        let body = w.refused(&token).await;
        assert_eq!(body["error_description"], "token payload is not a base64url JSON object", "{payload}");
    }
    // Nesting deeper than limits.max_json_depth (32 by default) is refused
    // before anything else is looked at: the payload object is level 1.
    let deep = |depth: usize| format!("{{\"iss\": \"x\", \"x\": {}{}}}", "[".repeat(depth), "]".repeat(depth));
    for depth in [32, 200] {
        let input = format!("{header}.{}", b64(deep(depth)));
        let token = format!("{input}.{}", b64(w.rsa.signature(input.as_bytes())));
        let body = w.refused(&token).await;
        assert_eq!(body["error_description"], "token payload is not a base64url JSON object", "{depth}");
    }
    // Within the limit it parses, and fails later for what it is (an unknown issuer).
    let input = format!("{header}.{}", b64(deep(31)));
    let token = format!("{input}.{}", b64(w.rsa.signature(input.as_bytes())));
    assert_eq!(w.refused(&token).await["error_description"], "token issuer is not accepted");
    w.nothing_reached_the_upstream();
}

/// Sends raw bytes, returns everything the gateway answered.
async fn raw(gateway: &TestGateway, bytes: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    stream.write_all(bytes.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn request_smuggling_shapes_never_reach_the_upstream_as_a_second_request() {
    let w = world().await;
    let token = w.rsa.mint(&w.claims());
    let auth = format!("Authorization: Bearer {token}\r\n");
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let shapes = [
        // CL.TE: Content-Length and Transfer-Encoding together.
        format!(
            "POST /echo HTTP/1.1\r\nHost: gw\r\n{auth}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        // Two different Content-Lengths.
        format!(
            "POST /echo HTTP/1.1\r\nHost: gw\r\n{auth}Content-Length: 3\r\nContent-Length: 40\r\n\r\nabc{smuggled}"
        ),
        // Obsolete line folding in a header.
        format!("GET / HTTP/1.1\r\nHost: gw\r\n{auth}X-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n{smuggled}"),
        // Bare LF line endings.
        format!("GET / HTTP/1.1\nHost: gw\n{auth}Content-Length: 0\n\n{smuggled}"),
        // Transfer-Encoding that is not exactly chunked.
        format!("POST /echo HTTP/1.1\r\nHost: gw\r\n{auth}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}"),
    ];
    for shape in &shapes {
        let _ = raw(&w.gateway, shape).await;
    }
    let seen: Vec<String> = w.upstream.seen.lock().unwrap().iter().map(|s| s.uri.clone()).collect();
    assert!(!seen.iter().any(|uri| uri.contains("smuggled")), "the upstream saw a smuggled request: {seen:?}");
}

#[tokio::test]
async fn duplicate_json_keys_in_header_or_payload() {
    let w = world().await;
    let exp = now() + 600;
    let iss = &w.a.issuer;
    let cases = [
        (
            r#"{"alg":"RS256","kid":"rsa","alg":"none"}"#.to_string(),
            format!(r#"{{"iss":"{iss}","aud":"api","exp":{exp}}}"#),
        ),
        (
            r#"{"alg":"RS256","kid":"rsa"}"#.to_string(),
            format!(r#"{{"iss":"{iss}","aud":"api","exp":{exp},"sub":"user","sub":"admin"}}"#),
        ),
        (
            r#"{"alg":"RS256","kid":"rsa"}"#.to_string(),
            format!(r#"{{"iss":"{iss}","aud":"api","aud":"other","exp":{exp}}}"#),
        ),
        (
            r#"{"alg":"RS256","kid":"rsa"}"#.to_string(),
            format!(r#"{{"iss":"{iss}","aud":"api","exp":{exp},"realm_access":{{"roles":["a"],"roles":["admin"]}}}}"#),
        ),
    ];
    for (header, payload) in cases {
        // Signed for real: only the duplicate makes it invalid.
        let input = format!("{}.{}", b64(&header), b64(&payload));
        let token = format!("{input}.{}", b64(w.rsa.signature(input.as_bytes())));
        let body = w.refused(&token).await;
        assert_eq!(body["error"], "invalid_token", "{header} {payload}");
    }
    w.nothing_reached_the_upstream();
}
