//! SPIFFE issuers (`issuer = "spiffe://TD"`) and routes' `spiffe_ids`.

use super::*;

const SPIFFE: &str = r#"
    [upstream]
    url = "http://127.0.0.1:9000"
    [[issuers]]
    issuer = "spiffe://example.org"
    audiences = ["api"]
    spiffe_bundle_url = "https://spire.example.org/bundle"
    [[routes]]
    path = "/billing"
    spiffe_ids = ["spiffe://example.org/ns/billing/*", "spiffe://example.org/ns/ops/sa/admin"]
"#;

#[test]
fn a_spiffe_issuer_is_a_trust_domain_with_its_bundle() {
    let config = parse(SPIFFE).unwrap();
    let issuer = &config.issuers[0];
    assert!(issuer.spiffe);
    assert_eq!(issuer.jwks, JwksSource::Url("https://spire.example.org/bundle".into()));
    assert_eq!(issuer.algorithms, defaults::SPIFFE_ALGORITHMS);
    let ids: Vec<String> = config.routes[0].spiffe_ids.iter().map(ToString::to_string).collect();
    assert_eq!(ids, ["spiffe://example.org/ns/billing/*", "spiffe://example.org/ns/ops/sa/admin"]);
    let file =
        SPIFFE.replace("spiffe_bundle_url = \"https://spire.example.org/bundle\"", "spiffe_bundle_file = \"b.json\"");
    assert_eq!(parse(&file).unwrap().issuers[0].jwks, JwksSource::File("/etc/jwtgate/b.json".into()));

    let cases = [
        ("spiffe://example.org\"", "spiffe://example.org/ns\"", "a SPIFFE issuer is a trust domain"),
        ("spiffe://example.org\"", "spiffe://Example.org\"", "trust domain with characters other than"),
        ("spiffe_bundle_url = \"https://spire.example.org/bundle\"", "", "a SPIFFE issuer needs its trust bundle"),
        (
            "spiffe_bundle_url = \"https://spire.example.org/bundle\"",
            "spiffe_bundle_url = \"http://spire.example.org/b\"",
            "must be https",
        ),
        (
            "spiffe_bundle_url",
            "jwks_url = \"https://x.example/k\"\nspiffe_bundle_url",
            "jwks_url: not with a SPIFFE issuer",
        ),
        ("ns/billing/*", "ns/*/billing", "\"spiffe://example.org/ns/*/billing\" has a path with characters"),
        (
            "spiffe://example.org/ns/ops",
            "spiffe://other.org/ns/ops",
            "no [[issuers]] has issuer = \"spiffe://other.org\"",
        ),
    ];
    for (from, to, expected) in cases {
        let problems = problems(&SPIFFE.replacen(from, to, 1));
        assert!(problems.iter().any(|p| p.contains(expected)), "{from} -> {to}: {problems:?}");
    }
    let stray = MINIMAL.replace("[[issuers]]", "[[issuers]]\nspiffe_bundle_url = \"https://spire.example.org/bundle\"");
    assert!(problems(&stray)[0].contains("spiffe_bundle_url: applies only to issuer = \"spiffe://TRUST_DOMAIN\""));
    let optional = SPIFFE.replace("spiffe_ids", "auth = \"optional\"\nspiffe_ids");
    assert!(problems(&optional)[0].contains("spiffe_ids needs auth = \"required\""));
}
