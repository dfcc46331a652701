//! Workload identity (issue 19, part 6): SPIFFE JWT-SVIDs verified with a
//! trust domain's bundle (`spiffe_bundle_url`), fetched over https from a
//! private CA, and routes that allow SPIFFE IDs (`spiffe_ids`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::certs::TestCa;
use crate::support::http::serve_maybe_tls;
use crate::support::keys::{SigningKey, now};
use crate::support::{TestGateway, TestIdp, TestUpstream, assert_refused, get, json_response};
use serde_json::{Value, json};

const DOMAIN: &str = "example.org";

/// A JWT-SVID's claims: `sub` the SPIFFE ID, audience `api`, no `iss`.
fn svid(sub: &str) -> Value {
    json!({"sub": sub, "aud": ["api"], "iat": now(), "exp": now() + 300})
}

/// A SPIRE-like bundle endpoint over https from a private CA: the trust
/// domain's JWT-SVID key (ES256, SPIRE's default) and an X.509-SVID CA key
/// that must never verify tokens. Counts its fetches.
struct Bundle {
    url: String,
    ca_file: tempfile::NamedTempFile,
    jwt_key: SigningKey,
    x509_key: SigningKey,
    fetches: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

impl Bundle {
    async fn start(refresh_hint: u64) -> Bundle {
        let ca = TestCa::new("jwtgate test SPIRE CA");
        let (jwt_key, x509_key) = (SigningKey::p256("jwt-a"), SigningKey::rsa("x509-a"));
        let mut jwt = jwt_key.jwk();
        jwt["use"] = json!("jwt-svid");
        let mut x509 = x509_key.jwk();
        x509["use"] = json!("x509-svid");
        x509["kid"] = json!("x509-a");
        let bundle = json!({"keys": [x509, jwt], "spiffe_sequence": 7, "spiffe_refresh_hint": refresh_hint});
        let fetches = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&fetches);
        let (addr, task) = serve_maybe_tls(
            move |_request| {
                counted.fetch_add(1, Ordering::SeqCst);
                let bundle = bundle.clone();
                async move { json_response(200, &bundle) }
            },
            Some(ca.server().server_config(None)),
        )
        .await;
        let ca_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca_file.path(), ca.pem()).unwrap();
        Bundle {
            url: format!("https://127.0.0.1:{}/bundle", addr.port()),
            ca_file,
            jwt_key,
            x509_key,
            fetches,
            _task: task,
        }
    }

    fn issuer_lines(&self) -> String {
        format!(
            "[[issuers]]\nissuer = \"spiffe://{DOMAIN}\"\naudiences = [\"api\"]\nspiffe_bundle_url = \"{}\"\n\
             ca_file = \"{}\"\n",
            self.url,
            self.ca_file.path().display()
        )
    }
}

async fn gateway(bundle: &Bundle, idp: &TestIdp, upstream: &TestUpstream, extra: &str) -> TestGateway {
    let text = format!(
        "[upstream]\nurl = \"{}\"\n{}[[issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\n\
         [headers]\nclaims = {{ sub = \"X-Spiffe-Id\" }}\n\
         [[routes]]\npath = \"/billing\"\nspiffe_ids = [\"spiffe://{DOMAIN}/ns/billing/*\"]\n{extra}",
        upstream.url(),
        bundle.issuer_lines(),
        idp.issuer
    );
    let gateway = TestGateway::start(&text).await;
    gateway.wait_for_keys().await;
    gateway
}

/// A JWT-SVID without `iss` is judged by the trust domain of its `sub`,
/// with the bundle's `jwt-svid` keys only; its `sub` must be a SPIFFE ID
/// of that trust domain.
#[tokio::test]
async fn jwt_svids_are_verified_with_their_trust_domains_bundle() {
    let bundle = Bundle::start(300).await;
    let idp = TestIdp::start(&[&SigningKey::rsa("idp")]).await;
    let upstream = TestUpstream::start().await;
    let gateway = gateway(&bundle, &idp, &upstream, "").await;
    let api = format!("spiffe://{DOMAIN}/ns/billing/sa/api");

    let (status, _, body) = get(&gateway.url("/x"), Some(&bundle.jwt_key.mint(&svid(&api)))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upstream.last().headers["x-spiffe-id"], api.as_str());

    // SPIRE with jwt_issuer set: an iss that is not configured; the sub's trust domain decides.
    let mut with_iss = svid(&api);
    with_iss["iss"] = json!("https://oidc.spire.example");
    assert_eq!(get(&gateway.url("/x"), Some(&bundle.jwt_key.mint(&with_iss))).await.0, 200);

    // The bundle's X.509-SVID key is for certificates: it never verifies a token.
    let x509_signed = get(&gateway.url("/x"), Some(&bundle.x509_key.mint(&svid(&api)))).await;
    assert_refused(&x509_signed, 401, "invalid_token", "unknown signing key");

    // A trust domain with no issuer configured.
    let foreign = get(&gateway.url("/x"), Some(&bundle.jwt_key.mint(&svid("spiffe://other.org/x")))).await;
    assert_refused(&foreign, 401, "invalid_token", "token issuer is not accepted");

    // Named by iss, but its sub is no SPIFFE ID of the trust domain.
    for sub in ["spiffe://other.org/ns/billing/sa/api", "spiffe://example.org/a/../b", "billing"] {
        let mut claims = svid(sub);
        claims["iss"] = json!(format!("spiffe://{DOMAIN}"));
        let answer = get(&gateway.url("/x"), Some(&bundle.jwt_key.mint(&claims))).await;
        assert_refused(&answer, 401, "invalid_token", "token sub is not a SPIFFE ID of the issuer's trust domain");
    }
    let metrics = gateway.metrics_text().await;
    assert!(metrics.contains(&format!("issuer=\"spiffe://{DOMAIN}\",reason=\"not_spiffe_id\"}} 3")), "{metrics}");
}

/// `spiffe_ids` allows an ID or every ID below a prefix, and only the
/// SPIFFE ID of a JWT-SVID: another issuer's token whose `sub` looks like
/// one is not a workload identity.
#[tokio::test]
async fn routes_allow_spiffe_ids_by_id_or_prefix_and_only_from_jwt_svids() {
    let bundle = Bundle::start(300).await;
    let idp_key = SigningKey::rsa("idp");
    let idp = TestIdp::start(&[&idp_key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = gateway(&bundle, &idp, &upstream, "").await;

    for (sub, status) in [
        (format!("spiffe://{DOMAIN}/ns/billing/sa/api"), 200),
        (format!("spiffe://{DOMAIN}/ns/billing/sa/api/v2"), 200),
        (format!("spiffe://{DOMAIN}/ns/billing"), 403),
        (format!("spiffe://{DOMAIN}/ns/billing-old/sa/api"), 403),
        (format!("spiffe://{DOMAIN}/ns/payments/sa/api"), 403),
    ] {
        let answer = get(&gateway.url("/billing/invoices"), Some(&bundle.jwt_key.mint(&svid(&sub)))).await;
        assert_eq!(answer.0, status, "{sub}: {:?}", answer.2);
        if status == 403 {
            assert_refused(&answer, 403, "insufficient_scope", "token SPIFFE ID is not allowed on this route");
        }
    }
    let mut lookalike = crate::support::claims(&idp.issuer, "api");
    lookalike["sub"] = json!(format!("spiffe://{DOMAIN}/ns/billing/sa/api"));
    let answer = get(&gateway.url("/billing/invoices"), Some(&idp_key.mint(&lookalike))).await;
    assert_refused(&answer, 403, "insufficient_scope", "token SPIFFE ID is not allowed on this route");
    assert_eq!(get(&gateway.url("/other"), Some(&idp_key.mint(&lookalike))).await.0, 200);
}

/// The bundle's `spiffe_refresh_hint` schedules its refresh, as a
/// `Cache-Control: max-age` would (bounded below by `min_refresh_interval`).
#[tokio::test]
async fn the_bundles_refresh_hint_schedules_its_refresh() {
    let bundle = Bundle::start(1).await;
    let upstream = TestUpstream::start().await;
    let text =
        format!("[upstream]\nurl = \"{}\"\n{}min_refresh_interval = \"1s\"\n", upstream.url(), bundle.issuer_lines());
    let gateway = TestGateway::start(&text).await;
    gateway.wait_for_keys().await;
    let started = tokio::time::Instant::now();
    while bundle.fetches.load(Ordering::SeqCst) < 3 {
        assert!(started.elapsed() < Duration::from_secs(10), "refresh_interval is 10m: only the hint refreshes sooner");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
