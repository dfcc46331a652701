use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::*;

pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
    let env = |name: &str| (name == "AUD").then(|| "https://api.example.com".to_string());
    Config::parse(text, "test.toml", Path::new("/etc/jwtgate"), &env)
}

/// The problems without their positions (tested on their own below).
pub(super) fn problems(text: &str) -> Vec<String> {
    let error = parse(text).unwrap_err().to_string();
    error
        .lines()
        .map(|line| {
            let rest = line.strip_prefix("test.toml:").unwrap_or(line);
            format!("test.toml:{}", rest.trim_start_matches(|c: char| c.is_ascii_digit() || c == ':'))
        })
        .collect()
}

pub(super) const MINIMAL: &str = r#"
        [upstream]
        url = "http://127.0.0.1:9000"
        [[issuers]]
        issuer = "https://tenant.auth0.com/"
        audiences = ["${AUD}"]
    "#;

#[test]
fn the_repository_template_is_valid_once_its_placeholders_are_filled() {
    let text = include_str!("../../../config.toml");
    let errors = problems(text);
    assert!(!errors.is_empty() && errors.iter().all(|e| e.contains("placeholder YOUR_")), "{errors:#?}");
    let config = parse(&text.replace("YOUR_", "my_")).unwrap();
    assert_eq!(config.issuers[0].issuer, "https://my_TENANT.auth0.com/");
}

/// The file a new user wrote (issue 15): an unknown key, a number for a
/// duration, a port for an address, a missing table: all in one run,
/// in file order, each `FILE:LINE:COL: key: problem — fix`.
#[test]
fn a_bad_list_item_is_named_once_not_also_as_a_missing_list() {
    let text = MINIMAL.replace("audiences = [\"${AUD}\"]", "audiences = [\"a\", 5]");
    assert_eq!(
        problems(&text),
        [
            "test.toml: issuers[0].audiences[1]: expected a string in quotes, found the number 5 — write audiences = \"5\""
        ]
    );
}

#[test]
fn every_problem_at_once_with_its_position_and_fix() {
    let text = "[server]\nlisten = \"8080\"\nmax_connections = \"30\"\n\n[[issuers]]\nissuer = \"https://i.example/\"\naudiences = \"api\"\nleeway = 30\ntimout = \"5s\"\n";
    let error = parse(text).unwrap_err().to_string();
    let lines: Vec<&str> = error.lines().collect();
    assert_eq!(
        lines,
        [
            "test.toml:1:1: upstream: required key is missing — add an [upstream] table with url = \"http://127.0.0.1:3000\" (your backend)",
            "test.toml:2:1: server.listen: not an address (got \"8080\") — write listen = \"0.0.0.0:8080\" (all interfaces) or \"127.0.0.1:8080\" (this host only)",
            "test.toml:3:1: server.max_connections: expected a whole number such as 100, found the string \"30\" — write max_connections = 30 without quotes",
            "test.toml:7:1: issuers[0].audiences: expected a list such as [\"a\", \"b\"], found the string \"api\" — write audiences = [\"api\"]",
            "test.toml:8:1: issuers[0].leeway: expected a duration such as \"30s\", found the number 30 — write leeway = \"30s\" (units: ms, s, m, h)",
            "test.toml:9:1: issuers[0].timout: unknown key — the keys allowed here are issuer, audiences, jwks_url, jwks_file, ca_file, algorithms, leeway, refresh_interval, min_refresh_interval, scope_claims, require_typ, max_lifetime, required_claims, token_from, tenants, max_tenants, spiffe_bundle_url, spiffe_bundle_file, introspection, introspect, cache_ttl, dpop, require_cert_binding",
        ],
        "{error}"
    );
}

#[test]
fn defaults_and_interpolation() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.server.listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(config.server.max_header_bytes, 16384);
    assert_eq!(config.server.realm, "jwtgate");
    assert!(!config.upstream.forward_authorization && !config.upstream.preserve_host);
    let issuer = &config.issuers[0];
    assert_eq!(issuer.audiences, ["https://api.example.com"]);
    assert_eq!(issuer.algorithms, [Algorithm::RS256]);
    assert_eq!(issuer.leeway, Duration::from_secs(30));
    assert_eq!(issuer.refresh_interval, Duration::from_secs(600));
    assert_eq!(issuer.min_refresh_interval, Duration::from_secs(30));
    assert_eq!(
        issuer.jwks,
        JwksSource::Discovery { discovery_url: "https://tenant.auth0.com/.well-known/openid-configuration".into() }
    );
}

#[test]
fn sources_and_paths() {
    let config = parse(&MINIMAL.replace("audiences", "jwks_file = \"keys.json\"\naudiences")).unwrap();
    assert_eq!(config.issuers[0].jwks, JwksSource::File("/etc/jwtgate/keys.json".into()));
    let config = parse(&MINIMAL.replace("9000\"", "9000/api/\"")).unwrap();
    assert_eq!(config.upstream.base_path, "/api");
    let loopback = MINIMAL.replace("audiences", "jwks_url = \"http://127.0.0.1:1/jwks\"\naudiences");
    assert!(parse(&loopback).is_ok());
}

#[test]
fn tls_keys_are_paths_from_the_config_directory_and_checked_together() {
    let text = MINIMAL
        .replace("http://127.0.0.1:9000", "https://127.0.0.1:9000")
        .replace("[upstream]", "[server.tls]\ncert = \"c.pem\"\nkey = \"/k.pem\"\n[upstream]\nca_file = \"ca.pem\"");
    let config = parse(&text).unwrap();
    let tls = config.server.tls.unwrap();
    assert_eq!((tls.cert.to_str(), tls.key.to_str()), (Some("/etc/jwtgate/c.pem"), Some("/k.pem")));
    assert_eq!(config.upstream.ca_file.as_deref(), Some(Path::new("/etc/jwtgate/ca.pem")));
    assert_eq!(config.upstream.origin.scheme_str(), Some("https"));

    let half = text.replace("ca_file = \"ca.pem\"", "client_cert = \"c.pem\"").replace("key = \"/k.pem\"\n", "");
    assert_eq!(
        problems(&half),
        [
            "test.toml: server.tls.key: required key is missing — add key = … (docs/configuration.md describes it)",
            "test.toml: upstream.client_key: required with upstream.client_cert"
        ]
    );
    let plain = MINIMAL.replace("[upstream]", "[upstream]\nca_file = \"ca.pem\"");
    assert_eq!(
        problems(&plain),
        ["test.toml: upstream.ca_file: applies only to https:// upstreams (upstream.url is \"http://127.0.0.1:9000\")"]
    );
}

#[test]
fn an_issuer_ca_file_is_a_path_from_the_config_directory_for_https_fetches_only() {
    let config = parse(&MINIMAL.replace("audiences", "ca_file = \"internal-ca.pem\"\naudiences")).unwrap();
    assert_eq!(config.issuers[0].ca_file.as_deref(), Some(Path::new("/etc/jwtgate/internal-ca.pem")));
    let https_url = "jwks_url = \"https://keys.internal/jwks\"\nca_file = \"/ca.pem\"\naudiences";
    assert!(parse(&MINIMAL.replace("audiences", https_url)).is_ok());
    let why = "test.toml: issuers[0].ca_file: applies only to keys fetched over https (discovery or jwks_url), not to \
               jwks_file or http:// URLs";
    for source in ["jwks_file = \"keys.json\"", "jwks_url = \"http://127.0.0.1:1/jwks\""] {
        let text = MINIMAL.replace("audiences", &format!("{source}\nca_file = \"ca.pem\"\naudiences"));
        assert_eq!(problems(&text), [why], "{source}");
    }
}

#[test]
fn named_upstreams_are_checked_like_the_default_one() {
    let text = format!(
        "{MINIMAL}\n[upstreams.billing]\nurl = \"https://10.0.0.9/v1\"\nca_file = \"ca.pem\"\n\
         [upstreams.\"bad name\"]\nurl = \"ftp://x\"\n\
         [[routes]]\npath = \"/billing\"\nupstream = \"billing\"\n\
         [[routes]]\npath = \"/x\"\nupstream = \"nowhere\"\n"
    );
    assert_eq!(
        problems(&text),
        [
            "test.toml: upstreams.bad name: a name is letters, digits, '-' and '_'",
            "test.toml: upstreams.bad name.url: must start with http:// or https:// (got \"ftp://x\")",
            "test.toml: routes[1].upstream: there is no [upstreams.nowhere] table",
        ]
    );
    let good = text.replace("[upstreams.\"bad name\"]\nurl = \"ftp://x\"\n", "").replace("nowhere", "billing");
    let config = parse(&good).unwrap();
    let (name, billing) = &config.upstreams[0];
    assert_eq!(
        (name.as_str(), billing.key.as_str(), billing.base_path.as_str()),
        ("billing", "upstreams.billing", "/v1")
    );
    assert_eq!(billing.ca_file.as_deref(), Some(Path::new("/etc/jwtgate/ca.pem")));
    assert_eq!(config.routes[0].upstream.as_deref(), Some("billing"));
    assert_eq!(config.upstream.key, "upstream");
}

#[test]
fn limits_have_defaults_and_ranges() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.limits, LimitsConfig::default());
    assert_eq!(config.issuers[0].jwks_limits, JwksLimits::default());
    let text = format!(
        "{MINIMAL}\n[limits]\nmax_token_bytes = 100\nmax_json_depth = 129\nmax_jwks_keys = 0\n\
         jwks_fetch_timeout = \"0s\"\nhttp2_max_concurrent_streams = 5\nmax_jwks_bytes = 2048\n"
    );
    assert_eq!(
        problems(&text),
        [
            "test.toml: limits.max_token_bytes: must be between 256 and 1048576 (got 100)",
            "test.toml: limits.max_json_depth: must be between 2 and 128 (got 129)",
            "test.toml: limits.max_jwks_keys: must be between 1 and 10000 (got 0)",
            "test.toml: limits.jwks_fetch_timeout: must be longer than 0s",
        ]
    );
    let good = text
        .replace("max_token_bytes = 100", "max_token_bytes = 4096")
        .replace("129", "8")
        .replace("keys = 0", "keys = 7")
        .replace("\"0s\"", "\"3s\"");
    let config = parse(&good).unwrap();
    assert_eq!((config.limits.max_token_bytes, config.limits.max_json_depth), (4096, 8));
    assert_eq!(config.limits.http2_max_concurrent_streams, 5);
    let jwks = JwksLimits { max_bytes: 2048, max_keys: 7, fetch_timeout: Duration::from_secs(3) };
    assert_eq!((config.limits.jwks, config.issuers[0].jwks_limits), (jwks, jwks));
}

#[test]
fn upstream_protocols() {
    assert_eq!(parse(MINIMAL).unwrap().upstream.protocol, UpstreamProtocol::Http1);
    let h2c = MINIMAL.replace("[upstream]", "[upstream]\nprotocol = \"h2c\"");
    assert_eq!(parse(&h2c).unwrap().upstream.protocol, UpstreamProtocol::H2c);
    let tls_h2c = h2c.replace("http://127", "https://127");
    assert!(problems(&tls_h2c)[0].starts_with("test.toml: upstream.protocol: h2c is cleartext HTTP/2"));
    let auto = tls_h2c.replace("\"h2c\"", "\"auto\"");
    assert_eq!(parse(&auto).unwrap().upstream.protocol, UpstreamProtocol::Auto);
    let bad = h2c.replace("\"h2c\"", "\"spdy\"");
    assert_eq!(problems(&bad), ["test.toml: upstream.protocol: must be \"http1\", \"h2c\" or \"auto\" (got \"spdy\")"]);
}

#[test]
fn resource_metadata_and_rfc_9068_keys() {
    let text = format!(
        "{MINIMAL}\nrequire_typ = \"Application/AT+JWT\"\nmax_lifetime = \"2h\"\nrequired_claims = [\"sub\", \"/act/sub\"]\n\
         [resource_metadata]\nresource = \"https://api.example.com:8443/v1/\"\n"
    );
    let config = parse(&text).unwrap();
    let issuer = &config.issuers[0];
    assert_eq!(issuer.require_typ.as_deref(), Some("at+jwt"));
    assert_eq!(issuer.max_lifetime, Some(Duration::from_secs(7200)));
    assert_eq!(issuer.required_claims.len(), 2);
    let metadata = config.resource_metadata.unwrap();
    assert_eq!(metadata.well_known_path, "/.well-known/oauth-protected-resource/v1");
    assert_eq!(metadata.url, "https://api.example.com:8443/.well-known/oauth-protected-resource/v1");
    assert_eq!(metadata.authorization_servers, ["https://tenant.auth0.com/"]);

    let bad = text
        .replace("https://api.example.com:8443/v1/", "http://api.example.com/")
        .replace("\"2h\"", "\"0s\"")
        .replace("Application/AT+JWT", "");
    assert_eq!(
        problems(&bad),
        [
            "test.toml: issuers[0].require_typ: not a media type (got \"\"); RFC 9068 uses \"at+jwt\"",
            "test.toml: issuers[0].max_lifetime: must be longer than 0s",
            "test.toml: resource_metadata.resource: must be an https URL (http only on loopback) (got \"http://api.example.com/\")",
        ]
    );
}

#[test]
fn token_locations_are_validated() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.issuers[0].token_from, [TokenLocation::Header]);
    let text = format!("{MINIMAL}\ntoken_from = [\"cookie:at\", \"query:access_token\"]\n");
    let config = parse(&text).unwrap();
    assert_eq!(
        config.issuers[0].token_from,
        [TokenLocation::Cookie("at".into()), TokenLocation::Query("access_token".into())]
    );
    let bad = text.replace("cookie:at", "body");
    assert_eq!(
        problems(&bad),
        ["test.toml: issuers[0].token_from: \"body\" is not \"header\", \"cookie:NAME\" or \"query:NAME\""]
    );
    assert!(problems(&format!("{MINIMAL}\ntoken_from = []\n"))[0].contains("at least one location"));
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    let errors = problems(&MINIMAL.replace("[upstream]", "[upstream]\ntimout = \"1s\""));
    assert_eq!(errors.len(), 1);
    assert_eq!(errors, ["test.toml: upstream.timout: unknown key — did you mean `timeout`?"]);
}

#[test]
fn http_jwks_urls_are_refused_unless_loopback() {
    let text = MINIMAL.replace("audiences", "jwks_url = \"http://idp.example/keys\"\naudiences");
    assert_eq!(
        problems(&text),
        [
            "test.toml: issuers[0].jwks_url: must be https (got http://idp.example/keys) — http:// is allowed only for loopback hosts, since anyone on the path could swap the keys"
        ]
    );
    let text = MINIMAL.replace("https://tenant", "http://tenant");
    assert!(problems(&text)[0].starts_with("test.toml: issuers[0].issuer: must be https"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
            [server]
            listen = "nowhere"
            request_timeout = "soon"
            max_header_bytes = 10
            [[issuers]]
            algorithms = ["HS256", "XY1"]
            jwks_url = "https://a/"
            jwks_file = "b"
        "#;
    let errors = problems(text);
    let expected_keys = [
        "server.listen",
        "server.request_timeout",
        "server.max_header_bytes",
        "upstream: required",
        "issuers[0].algorithms: HS256 is symmetric",
        "issuers[0].algorithms: unknown algorithm",
        "issuers[0].audiences: required",
        "issuers[0].issuer: required",
        "issuers[0].jwks_file: set either",
    ];
    for key in expected_keys {
        assert!(errors.iter().any(|e| e.contains(key)), "missing {key:?} in {errors:#?}");
    }
    assert_eq!(errors.len(), expected_keys.len(), "{errors:#?}");
}

#[test]
fn syntax_errors_and_missing_variables() {
    let error = parse("[server\nlisten = 1").unwrap_err().to_string();
    assert!(error.starts_with("test.toml:1:8: invalid TOML: unclosed table"), "{error}");
    let errors = problems(&MINIMAL.replace("${AUD}", "${MISSING}"));
    assert_eq!(errors, ["test.toml: issuers[0].audiences[0]: environment variable MISSING is not set"]);
    let errors = problems(&MINIMAL.replace("[upstream]", "[upstream]\nforward_authorization = \"yes\""));
    assert_eq!(
        errors,
        [
            "test.toml: upstream.forward_authorization: expected true or false, found the string \"yes\" — write forward_authorization as true or false"
        ]
    );
}

#[test]
fn routes_and_headers_are_validated() {
    let text = format!(
        "{MINIMAL}{}",
        r#"
            [[routes]]
            path = "/public/"
            auth = "public"
            scopes = ["read"]
            issuers = ["https://tenant.auth0.com/"]
            [[routes]]
            path = "/a/../b"
            auth = "maybe"
            methods = ["G ET"]
            [[routes]]
            path = "/x"
            issuers = ["https://other/"]
            claims = { "/bad~pointer" = "v", tenant = 1.5 }
            cors_preflight = "always"
            [headers]
            claims = { sub = "Authorization", email = "X-Email", name = "x-email" }
            payload = "bad header"
            "#
    );
    let errors = problems(&text);
    let expected = [
        "routes[0].auth: scopes, any_scopes and claims need auth = \"required\"",
        "routes[0].issuers: a public route never looks at tokens",
        "routes[1].path: write the path without dot segments: \"/b\"",
        "routes[1].methods: not an HTTP method",
        "routes[1].auth: must be \"required\", \"optional\" or \"public\"",
        "routes[2].issuers: \"https://other/\" is not one of the configured",
        "routes[2].claims.\"/bad~pointer\": \"/bad~pointer\" is not a JSON Pointer",
        "routes[2].claims.\"tenant\": the expected value must be",
        "routes[2].cors_preflight: must be \"public\" or \"route\"",
        "headers.claims.\"sub\": Authorization cannot carry identity",
        "headers.claims.\"name\": x-email is used twice",
        "headers.payload: not a valid header name",
    ];
    for e in expected {
        assert!(errors.iter().any(|line| line.contains(e)), "missing {e:?} in {errors:#?}");
    }
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");

    let config = parse(&format!("{MINIMAL}\n[[routes]]\npath = \"/public/\"\nauth = \"public\"\n")).unwrap();
    assert_eq!(config.routes[0].path, "/public");
    assert_eq!(config.routes[0].auth, AuthMode::Public);
}

#[test]
fn route_paths_are_canonical_and_cors_is_validated() {
    let config = parse(&format!(
        "{MINIMAL}\n[[routes]]\npath = \"/café/admin\"\n[[routes]]\npath = \"/v1/items%3Apurge\"\n\
         [[routes]]\npath = \"/c\"\n[routes.cors]\nallow_origins = [\"https://App.example\"]\n"
    ))
    .unwrap();
    assert_eq!(config.routes[0].path, "/caf%C3%A9/admin");
    assert_eq!(config.routes[1].path, "/v1/items:purge");
    let cors = config.routes[2].cors.as_ref().unwrap();
    assert_eq!(cors.allow_origins.as_deref(), Some(&["https://app.example".to_string()][..]));
    assert_eq!(cors.allow_headers, ["authorization", "content-type"]);
    let errors = problems(&format!(
        "{MINIMAL}\n[[routes]]\npath = \"/a;b\"\n[[routes]]\npath = \"/x\"\n[routes.cors]\n\
         allow_origins = [\"*\"]\nallow_credentials = true\n[[routes]]\npath = \"/y\"\n[routes.cors]\n\
         allow_origins = [\"https://a.example/path\"]\n[[routes]]\npath = \"/adm%C4%B1n\"\n"
    ));
    for expected in [
        "routes[0].path: ';' starts a path parameter",
        "routes[1].cors.allow_credentials: browsers refuse credentials",
        "routes[2].cors.allow_origins: not an origin",
        "routes[3].path: request path has a letter",
    ] {
        assert!(errors.iter().any(|e| e.contains(expected)), "missing {expected:?} in {errors:#?}");
    }
}

#[test]
fn unreadable_file() {
    let error = Config::load(Path::new("/nonexistent/jwtgate.toml")).unwrap_err().to_string();
    assert!(error.starts_with("/nonexistent/jwtgate.toml: cannot read the file"), "{error}");
}

#[test]
fn protocols_name_the_versions_the_listener_speaks() {
    let with = |line: &str| format!("[server]\n{line}\n{MINIMAL}");
    assert_eq!(parse(MINIMAL).unwrap().server.protocols, Protocols { http1: true, http2: true });
    let http1 = parse(&with("protocols = [\"http1\"]")).unwrap();
    assert_eq!(http1.server.protocols, Protocols { http1: true, http2: false });
    assert_eq!(
        parse(&with("protocols = [\"h2c\"]")).unwrap().server.protocols,
        Protocols { http1: false, http2: true }
    );
    assert_eq!(
        problems(&with("protocols = [\"h2\"]")),
        [
            "test.toml: server.protocols: \"h2\" is HTTP/2 over TLS, and this listener has no [server.tls] — write \"h2c\""
        ]
    );
    assert_eq!(
        problems(&with("protocols = []")),
        ["test.toml: server.protocols: must name at least one protocol, e.g. [\"http1\", \"h2c\"]"]
    );
    assert!(problems(&with("protocols = [\"spdy\"]"))[0].contains("unknown protocol \"spdy\""));
}

mod spiffe;
mod tenants;
