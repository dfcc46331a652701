//! `{tenant}` issuers: where the placeholder is substituted, and keys per tenant.

use super::*;

#[test]
fn templated_issuers_need_tenants_and_their_own_key_source() {
    let templated = MINIMAL.replace("https://tenant.auth0.com/", "https://login.example.com/{tenant}/v2.0");
    assert_eq!(
        problems(&templated),
        ["test.toml: issuers[0].tenants: required with {tenant} in the issuer: a list, or [\"*\"] for any"]
    );
    let good = format!("{templated}\njwks_url = \"https://login.example.com/keys\"\ntenants = [\"a\", \"b\"]\n");
    assert_eq!(parse(&good).unwrap().issuers[0].tenants, Some(Tenants::Only(vec!["a".into(), "b".into()])));
    let star = good.replace("[\"a\", \"b\"]", "[\"*\"]");
    assert_eq!(parse(&star).unwrap().issuers[0].tenants, Some(Tenants::Any));
    let bad = good.replace("[\"a\", \"b\"]", "[\"a/b\", \"*\"]");
    assert!(problems(&bad)[0].contains("tenants are non-empty names"));
    let stray = format!("{MINIMAL}\ntenants = [\"a\"]\n");
    assert!(problems(&stray)[0].contains("applies only to an issuer with {tenant}"));
}

/// Issue 19, part 4: `{tenant}` in `jwks_url` was fetched literally
/// (`/%7Btenant%7D/keys`: no keys, 503 forever) while `check` accepted it.
/// It is now substituted there (keys per tenant); anywhere else it is
/// refused, as is `{tenant}` in `jwks_url` of an issuer without it.
#[test]
fn tenant_placeholders_outside_the_issuer_are_refused_not_read_literally() {
    let template = r#"
        [upstream]
        url = "http://127.0.0.1:9000"
        [[issuers]]
        issuer = "https://login.example.com/{tenant}/v2.0"
        tenants = ["*"]
        jwks_url = "https://login.example.com/{tenant}/keys"
        audiences = ["api://{tenant}"]
    "#;
    assert_eq!(
        problems(template),
        [
            "test.toml: issuers[0].audiences: {tenant} is substituted only in issuer and jwks_url; here it would be read \
          literally"
        ]
    );
    let per_tenant = parse(&template.replace("api://{tenant}", "api://gw")).unwrap();
    assert!(per_tenant.issuers[0].keys_per_tenant());
    let acme = per_tenant.issuers[0].for_tenant("acme");
    assert_eq!(acme.issuer, "https://login.example.com/acme/v2.0");
    assert_eq!(acme.jwks, JwksSource::Url("https://login.example.com/acme/keys".into()));
    let shared =
        parse(&template.replace("{tenant}/keys", "common/keys").replace("api://{tenant}", "api://gw")).unwrap();
    assert!(!shared.issuers[0].keys_per_tenant());

    let untemplated = MINIMAL.replace("[[issuers]]", "[[issuers]]\njwks_url = \"https://idp.example/{tenant}/keys\"");
    assert_eq!(
        problems(&untemplated),
        ["test.toml: issuers[0].jwks_url: {tenant} is substituted here only when the issuer has {tenant} in it too"]
    );
    let twice = template.replace("{tenant}/keys", "{tenant}/{tenant}").replace("api://{tenant}", "api://gw");
    assert_eq!(problems(&twice), ["test.toml: issuers[0].jwks_url: {tenant} may appear once"]);
}

/// Keys per tenant: without `jwks_url`, each tenant's own discovery
/// document; `max_tenants` only where tenants are admitted on first use;
/// listed tenants only with names a key URL can hold.
#[test]
fn keys_per_tenant_come_from_each_tenants_discovery_and_are_bounded() {
    let open = MINIMAL.replace("https://tenant.auth0.com/", "https://sso.example.com/realms/{tenant}")
        + "tenants = [\"*\"]\nmax_tenants = 50\n";
    let config = parse(&open).unwrap();
    let issuer = &config.issuers[0];
    assert!(issuer.keys_per_tenant());
    assert_eq!(issuer.max_tenants, 50);
    assert_eq!(
        issuer.for_tenant("acme").jwks,
        JwksSource::Discovery {
            discovery_url: "https://sso.example.com/realms/acme/.well-known/openid-configuration".into()
        }
    );
    assert_eq!(parse(&open.replace("max_tenants = 50\n", "")).unwrap().issuers[0].max_tenants, 1000);
    assert!(problems(&open.replace("= 50", "= 0"))[0].contains("max_tenants: must be between 1 and 100000 (got 0)"));
    let listed = open.replace("[\"*\"]", "[\"a\", \"b\"]");
    assert!(problems(&listed)[0].contains("max_tenants: applies only to tenants = [\"*\"] with keys per tenant"));
    let shared = open.replace("[[issuers]]", "[[issuers]]\njwks_url = \"https://sso.example.com/keys\"");
    assert!(problems(&shared)[0].contains("max_tenants: applies only to tenants"));
    let odd = listed.replace("max_tenants = 50\n", "").replace("\"b\"", "\"b#x\"");
    assert!(problems(&odd)[0].contains("\"b#x\" cannot name a key source"), "{:?}", problems(&odd));
}
