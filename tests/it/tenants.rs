//! Multi-tenant issuers: `issuer = "https://login.example.com/{tenant}/v2.0"`
//! with `tenants`, one key set for all or one per tenant (`{tenant}` in
//! `jwks_url`, or each tenant's discovery), and the tenant available to
//! routes and headers as the claim `{tenant}`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::http::serve;
use crate::support::keys::{SigningKey, claims};
use crate::support::{TestBody, TestGateway, TestIdp, TestUpstream, assert_refused, client, get, json_response, toml};
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

/// A multi-tenant identity provider, as Keycloak lays one out: each
/// tenant (realm) at `/realms/NAME` with its own discovery document and
/// its own key, counting every request by path.
struct RealmIdp {
    base: String,
    keys: Arc<Mutex<HashMap<String, SigningKey>>>,
    requests: Arc<Mutex<Vec<String>>>,
    /// Each answer waits this long (to hold a first fetch open).
    delay_ms: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RealmIdp {
    async fn start(realms: &[&str]) -> RealmIdp {
        let keys: Arc<Mutex<HashMap<String, SigningKey>>> = Arc::new(Mutex::new(
            realms.iter().map(|realm| (realm.to_string(), SigningKey::rsa(&format!("{realm}-key")))).collect(),
        ));
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let base_cell: Arc<Mutex<String>> = Arc::default();
        let (addr, task) = {
            let (keys, requests, delay_ms, base_cell) =
                (Arc::clone(&keys), Arc::clone(&requests), Arc::clone(&delay_ms), Arc::clone(&base_cell));
            serve(move |req: hyper::Request<hyper::body::Incoming>| {
                let path = req.uri().path().to_string();
                requests.lock().unwrap().push(path.clone());
                let delay = Duration::from_millis(delay_ms.load(Ordering::SeqCst));
                let base = base_cell.lock().unwrap().clone();
                let answer = realm_answer(&keys.lock().unwrap(), &base, &path);
                async move {
                    tokio::time::sleep(delay).await;
                    answer
                }
            })
            .await
        };
        let base = format!("http://{addr}");
        *base_cell.lock().unwrap() = base.clone();
        RealmIdp { base, keys, requests, delay_ms, task }
    }

    fn issuer(&self, realm: &str) -> String {
        format!("{}/realms/{realm}", self.base)
    }

    fn template(&self) -> String {
        self.issuer("{tenant}")
    }

    /// A token of `realm`, signed by the key of `signer`.
    fn token(&self, realm: &str, signer: &str) -> String {
        self.keys.lock().unwrap()[signer].mint(&claims(&self.issuer(realm), "api"))
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    fn count(&self, path: &str) -> usize {
        self.requests().iter().filter(|p| *p == path).count()
    }
}

impl Drop for RealmIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn realm_answer(keys: &HashMap<String, SigningKey>, base: &str, path: &str) -> hyper::Response<TestBody> {
    let Some(rest) = path.strip_prefix("/realms/") else { return json_response(404, &json!({})) };
    let (realm, what) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(key) = keys.get(realm) else { return json_response(404, &json!({"error": "realm not found"})) };
    match what {
        ".well-known/openid-configuration" => json_response(
            200,
            &json!({"issuer": format!("{base}/realms/{realm}"), "jwks_uri": format!("{base}/realms/{realm}/keys")}),
        ),
        "keys" => json_response(200, &json!({"keys": [key.jwk()]})),
        _ => json_response(404, &json!({})),
    }
}

async fn per_tenant_gateway(idp: &RealmIdp, upstream: &TestUpstream, issuer_lines: &str) -> TestGateway {
    toml(&upstream.url(), &idp.template())
        .issuer(issuer_lines)
        .issuer("[headers]\nclaims = { \"{tenant}\" = \"X-Tenant\" }\n")
        .start()
        .await
}

/// Issue 19, part 4: a template issuer without `jwks_url` reads each
/// tenant's own discovery document on that tenant's first token, and a
/// tenant's token is verified only by that tenant's keys: signed by
/// another tenant's key it is refused, although that key is a key of the
/// same configured issuer.
#[tokio::test]
async fn a_token_of_one_tenant_signed_by_another_tenants_key_is_refused() {
    let idp = RealmIdp::start(&["acme", "globex"]).await;
    let upstream = TestUpstream::start().await;
    let gateway = per_tenant_gateway(&idp, &upstream, "tenants = [\"*\"]\n").await;
    assert!(idp.requests().is_empty(), "an open issuer fetches nothing before a tenant's first token");
    for tenant in ["acme", "globex"] {
        let (status, _, body) = get(&gateway.url("/x"), Some(&idp.token(tenant, tenant))).await;
        assert_eq!(status, 200, "{tenant}: {body}");
        assert_eq!(upstream.last().headers["x-tenant"], tenant);
        assert_eq!(idp.count(&format!("/realms/{tenant}/.well-known/openid-configuration")), 1);
        assert_eq!(idp.count(&format!("/realms/{tenant}/keys")), 1);
    }
    let forged = get(&gateway.url("/x"), Some(&idp.token("acme", "globex"))).await;
    assert_refused(&forged, 401, "invalid_token", "unknown signing key");
    // Its kid is unknown to acme: one rate-limited refetch of acme's keys, no more.
    let forged_again = get(&gateway.url("/x"), Some(&idp.token("acme", "globex"))).await;
    assert_refused(&forged_again, 401, "invalid_token", "unknown signing key");
    assert!(idp.count("/realms/acme/keys") <= 2, "{:?}", idp.requests());

    let metrics = gateway.metrics_text().await;
    let template = idp.template();
    assert!(metrics.contains(&format!("jwtgate_issuer_tenants{{issuer=\"{template}\"}} 2")), "{metrics}");
    assert!(metrics.contains(&format!("jwtgate_jwks_keys{{issuer=\"{template}\"}} 2")), "{metrics}");
    let ready = client().get(gateway.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

/// The first requests of a new tenant wait for its keys, and however many
/// arrive together, the identity provider is asked once.
#[tokio::test]
async fn a_new_tenants_first_requests_wait_for_one_fetch() {
    let idp = RealmIdp::start(&["acme"]).await;
    let upstream = TestUpstream::start().await;
    let gateway = per_tenant_gateway(&idp, &upstream, "tenants = [\"*\"]\n").await;
    idp.delay_ms.store(300, Ordering::SeqCst);
    let token = idp.token("acme", "acme");
    let answers = futures_util::future::join_all((0..20).map(|_| get_status(gateway.url("/x"), token.clone()))).await;
    assert!(answers.iter().all(|status| *status == 200), "{answers:?}");
    assert_eq!(idp.count("/realms/acme/.well-known/openid-configuration"), 1, "{:?}", idp.requests());
    assert_eq!(idp.count("/realms/acme/keys"), 1, "{:?}", idp.requests());
}

async fn get_status(url: String, token: String) -> u16 {
    get(&url, Some(&token)).await.0
}

/// A tenant whose keys do not load gets 503 (as any issuer without keys),
/// and is not asked for again within `min_refresh_interval`: tokens naming
/// made-up tenants cannot make the gateway hammer the identity provider.
#[tokio::test]
async fn a_tenant_without_keys_is_not_fetched_again_within_min_refresh_interval() {
    let idp = RealmIdp::start(&["acme"]).await;
    let upstream = TestUpstream::start().await;
    let gateway = per_tenant_gateway(&idp, &upstream, "tenants = [\"*\"]\n").await;
    let token = idp.token("initech", "acme");
    for _ in 0..5 {
        let answer = get(&gateway.url("/x"), Some(&token)).await;
        assert_refused(
            &answer,
            503,
            "temporarily_unavailable",
            "signing keys for this issuer are not loaded yet; retry shortly",
        );
    }
    assert_eq!(idp.requests(), ["/realms/initech/.well-known/openid-configuration"]);
    let metrics = gateway.metrics_text().await;
    assert!(metrics.contains(&format!("jwtgate_issuer_tenants{{issuer=\"{}\"}} 0", idp.template())), "{metrics}");
}

/// The tenant comes from a token nobody has verified yet, and goes into a
/// URL the gateway fetches: a name that could move the fetch (`#`, `?`,
/// `@`, `..`, `%`) is refused as an unknown issuer, and nothing is fetched.
#[tokio::test]
async fn tenant_names_that_would_move_the_key_fetch_are_refused_unfetched() {
    let idp = RealmIdp::start(&["acme"]).await;
    let upstream = TestUpstream::start().await;
    let gateway = per_tenant_gateway(&idp, &upstream, "tenants = [\"*\"]\n").await;
    for tenant in ["acme#", "acme?x=", "user@evil.example", "..", ".acme", "acme%2f..", "a b", "ac\\me"] {
        let token = idp.keys.lock().unwrap()["acme"].mint(&claims(&idp.issuer(tenant), "api"));
        let answer = get(&gateway.url("/x"), Some(&token)).await;
        assert_refused(&answer, 401, "invalid_token", "token issuer is not accepted");
    }
    assert!(idp.requests().is_empty(), "{:?}", idp.requests());
}

/// `max_tenants` bounds the key sets an open issuer holds; the tenant past
/// it is refused (401, reason `tenant_limit`), the ones held keep working.
#[tokio::test]
async fn max_tenants_bounds_the_key_sets_an_open_issuer_holds() {
    let idp = RealmIdp::start(&["acme", "globex"]).await;
    let upstream = TestUpstream::start().await;
    let gateway = per_tenant_gateway(&idp, &upstream, "tenants = [\"*\"]\nmax_tenants = 1\n").await;
    assert_eq!(get(&gateway.url("/x"), Some(&idp.token("acme", "acme"))).await.0, 200);
    let refused = get(&gateway.url("/x"), Some(&idp.token("globex", "globex"))).await;
    assert_refused(
        &refused,
        401,
        "invalid_token",
        "token tenant is not served: this issuer's tenant limit (max_tenants) is reached",
    );
    assert_eq!(get(&gateway.url("/x"), Some(&idp.token("acme", "acme"))).await.0, 200);
    assert_eq!(idp.count("/realms/globex/keys"), 0);
    let metrics = gateway.metrics_text().await;
    assert!(metrics.contains("reason=\"tenant_limit\"} 1"), "{metrics}");
}

/// `{tenant}` in `jwks_url` is substituted; listed tenants are loaded at
/// start (readiness waits for each), and a reload that keeps the issuer
/// keeps its tenants' stores.
#[tokio::test]
async fn listed_tenants_with_tenant_in_jwks_url_load_at_start_each_their_own() {
    let idp = RealmIdp::start(&["acme", "globex"]).await;
    let upstream = TestUpstream::start().await;
    let lines = format!("tenants = [\"acme\", \"globex\"]\njwks_url = \"{}/realms/{{tenant}}/keys\"\n", idp.base);
    let gateway = per_tenant_gateway(&idp, &upstream, &lines).await;
    assert_eq!(idp.count("/realms/acme/keys"), 1);
    assert_eq!(idp.count("/realms/globex/keys"), 1);
    assert_eq!(get(&gateway.url("/x"), Some(&idp.token("globex", "globex"))).await.0, 200);
    let forged = get(&gateway.url("/x"), Some(&idp.token("globex", "acme"))).await;
    assert_refused(&forged, 401, "invalid_token", "unknown signing key");
    let unlisted = get(&gateway.url("/x"), Some(&idp.token("initech", "acme"))).await;
    assert_refused(&unlisted, 401, "invalid_token", "token issuer is not accepted");

    let before = gateway.shared.load().issuer_keys()[0].clone();
    let config = jwtgate::Config::parse(
        &toml(&upstream.url(), &idp.template())
            .issuer(&lines)
            .issuer("[[routes]]\npath = \"/open\"\nauth = \"public\"\n")
            .text(),
        "test.toml",
        std::path::Path::new("."),
        &|_| None,
    )
    .unwrap();
    let current = gateway.shared.load_full();
    let rebuilt =
        jwtgate::Gateway::build(&config, Arc::clone(current.metrics()), current.issuer_keys(), current.otel()).unwrap();
    assert!(before.same_store(&rebuilt.issuer_keys()[0]), "a reload keeps the tenants' key sets");
}

/// `explain` fetches the keys of the tenant the token names and says so;
/// `check --online` fetches each listed tenant's keys and names the one
/// whose keys are missing.
#[tokio::test]
async fn explain_and_check_online_see_each_tenants_own_keys() {
    let idp = RealmIdp::start(&["acme"]).await;
    let text = toml("http://127.0.0.1:9", &idp.template()).issuer("tenants = [\"*\"]\n").text();
    let config = jwtgate::Config::parse(&text, "test.toml", std::path::Path::new("."), &|_| None).unwrap();
    let options = |path: &str| jwtgate::explain::Options { path: path.to_string(), ..Default::default() };
    let (report, allowed) =
        jwtgate::explain::explain(&config, &idp.token("acme", "acme"), &options("/x")).await.unwrap();
    assert!(allowed, "{report}");
    assert!(report.contains(&format!("{}: acme-key (Rsa)", idp.issuer("acme"))), "{report}");
    assert!(report.contains(&format!("issuer    {} (tenant acme)", idp.template())), "{report}");

    let (summary, online) = jwtgate::check::online(&config).await;
    assert_eq!(online, jwtgate::check::Online::Usable, "{summary}");
    assert!(summary.contains("keys per tenant, fetched on each tenant's first token (not checked)"), "{summary}");
    let listed = toml("http://127.0.0.1:9", &idp.template()).issuer("tenants = [\"acme\", \"initech\"]\n").text();
    let config = jwtgate::Config::parse(&listed, "test.toml", std::path::Path::new("."), &|_| None).unwrap();
    let (summary, online) = jwtgate::check::online(&config).await;
    assert_eq!(online, jwtgate::check::Online::Unreachable, "{summary}");
    assert!(summary.contains(&format!("{}: keys", idp.issuer("acme"))), "{summary}");
    assert!(summary.contains(&format!("cannot fetch the keys of {}", idp.issuer("initech"))), "{summary}");
}

/// Keys per tenant against a real identity provider: node oidc-provider,
/// one provider per realm mounted as Keycloak lays realms out
/// (tests/idp/oidc_realms.mjs), each with its own discovery document and
/// key. Tokens come from each realm's token endpoint; each realm's keys are
/// found through that realm's discovery, on its first token.
#[tokio::test]
#[ignore = "needs node with tests/idp/node_modules (.ci/run installs it)"]
async fn each_realm_of_a_real_provider_is_verified_with_its_own_discovered_keys() {
    let (_op, base) = crate::support::node_idp("oidc_realms.mjs", &[("REALMS", "acme,globex")]);
    let upstream = TestUpstream::start().await;
    let resource = "https://api.jwtgate.test";
    let text = toml(&upstream.url(), &format!("{base}/realms/{{tenant}}"))
        .issuer("tenants = [\"*\"]\n[headers]\nclaims = { \"{tenant}\" = \"X-Tenant\", client_id = \"X-Client\" }\n")
        .text()
        .replace("audiences = [\"api\"]", &format!("audiences = [\"{resource}\"]"));
    let gateway = TestGateway::start(&text).await;
    let token = |realm: &'static str| {
        let url = format!("{base}/realms/{realm}/token");
        async move {
            let form = "grant_type=client_credentials&client_id=jwtgate-post&client_secret=post-secret&scope=read\
                        &resource=https%3A%2F%2Fapi.jwtgate.test";
            let text = client()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
            answer["access_token"].as_str().unwrap_or_else(|| panic!("{realm}: {answer}")).to_string()
        }
    };
    let (acme, globex) = (token("acme").await, token("globex").await);
    for (realm, token) in [("acme", &acme), ("globex", &globex)] {
        let (status, _, body) = get(&gateway.url("/x"), Some(token)).await;
        assert_eq!(status, 200, "{realm}: {body}");
        let seen = upstream.last();
        assert_eq!(seen.headers["x-tenant"], realm);
        assert_eq!(seen.headers["x-client"], "jwtgate-post");
    }
    let metrics = gateway.metrics_text().await;
    assert!(metrics.contains(&format!("jwtgate_issuer_tenants{{issuer=\"{base}/realms/{{tenant}}\"}} 2")), "{metrics}");

    // A realm the provider does not have: its discovery is a 404, so no keys.
    let mut claims = claims(&format!("{base}/realms/initech"), resource);
    claims["client_id"] = json!("jwtgate-post");
    let stray = SigningKey::rsa("initech-key").mint(&claims);
    let answer = get(&gateway.url("/x"), Some(&stray)).await;
    assert_refused(
        &answer,
        503,
        "temporarily_unavailable",
        "signing keys for this issuer are not loaded yet; retry shortly",
    );
}
