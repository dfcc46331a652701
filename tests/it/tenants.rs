//! Multi-tenant issuers: `issuer = "https://login.example.com/{tenant}/v2.0"`
//! with `tenants`, one key set for all, and the tenant available to routes
//! and headers as the claim `{tenant}`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::keys::{SigningKey, claims};
use crate::support::{TestIdp, TestUpstream, assert_refused, get, toml};
use serde_json::json;

const TEMPLATE: &str = "https://login.example.com/{tenant}/v2.0";

fn issuer_of(tenant: &str) -> String {
    TEMPLATE.replace("{tenant}", tenant)
}

async fn gateway(tenants: &str) -> (SigningKey, TestIdp, TestUpstream, crate::support::TestGateway) {
    let key = SigningKey::rsa("k");
    let idp = TestIdp::start(&[&key]).await;
    let upstream = TestUpstream::start().await;
    let gateway = toml(&upstream.url(), TEMPLATE)
        .issuer(&format!("tenants = {tenants}\njwks_url = \"{}\"\n", idp.jwks_url()))
        .issuer(&format!("[[issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\n", idp.issuer))
        .issuer(
            "[headers]\nclaims = { \"{tenant}\" = \"X-Tenant\" }\n\
             [[routes]]\npath = \"/acme\"\nclaims = { \"{tenant}\" = \"acme\" }\n",
        )
        .start()
        .await;
    (key, idp, upstream, gateway)
}

#[tokio::test]
async fn listed_tenants_share_one_key_set_and_name_their_tenant() {
    let (key, idp, upstream, gateway) = gateway("[\"acme\", \"globex\"]").await;
    for tenant in ["acme", "globex"] {
        let (status, _, _) = get(&gateway.url("/x"), Some(&key.mint(&claims(&issuer_of(tenant), "api")))).await;
        assert_eq!(status, 200, "{tenant}");
        assert_eq!(upstream.last().headers["x-tenant"], tenant);
    }
    for iss in [issuer_of("initech"), issuer_of(""), issuer_of("a/b"), "https://login.example.com/acme".into()] {
        let answer = get(&gateway.url("/x"), Some(&key.mint(&claims(&iss, "api")))).await;
        assert_refused(&answer, 401, "invalid_token", "token issuer is not accepted");
    }

    // Route rules see the tenant.
    let (status, _, _) = get(&gateway.url("/acme"), Some(&key.mint(&claims(&issuer_of("acme"), "api")))).await;
    assert_eq!(status, 200);
    let (status, _, _) = get(&gateway.url("/acme"), Some(&key.mint(&claims(&issuer_of("globex"), "api")))).await;
    assert_eq!(status, 403);

    // A token cannot name its own tenant: the claim is ours.
    let mut spoofed = claims(&idp.issuer, "api");
    spoofed["{tenant}"] = json!("acme");
    let (status, _, _) = get(&gateway.url("/acme"), Some(&key.mint(&spoofed))).await;
    assert_eq!(status, 403);
    let (status, _, _) = get(&gateway.url("/x"), Some(&key.mint(&spoofed))).await;
    assert_eq!(status, 200);
    assert!(upstream.last().headers.get("x-tenant").is_none());
}

#[tokio::test]
async fn any_tenant_with_a_star() {
    let (key, _idp, upstream, gateway) = gateway("[\"*\"]").await;
    let (status, _, _) = get(&gateway.url("/x"), Some(&key.mint(&claims(&issuer_of("0f3c-any"), "api")))).await;
    assert_eq!(status, 200);
    assert_eq!(upstream.last().headers["x-tenant"], "0f3c-any");
}
