//! An issuer's `introspection`, `introspect` and `cache_ttl` (RFC 7662),
//! and the rule across issuers: an opaque token names no issuer, so at most
//! one issuer may introspect.

use super::Problems;
use crate::config::raw::RawIssuer;
use crate::config::{IntrospectMode, IntrospectionAuth, IntrospectionConfig, IssuerConfig, Secret, TENANT, defaults};

/// The issuer at `key`'s introspection; `None` when it has none (or a
/// problem was reported).
pub(super) fn introspection(key: &str, raw: &RawIssuer, p: &mut Problems) -> Option<IntrospectionConfig> {
    let Some(table) = &raw.introspection else {
        for (name, set) in [("introspect", raw.introspect.is_some()), ("cache_ttl", raw.cache_ttl.is_some())] {
            if set {
                p.add(
                    &format!("{key}.{name}"),
                    "applies only with introspection = { url = \"https://…\", client_id = \"…\", client_secret = \
                     \"${SECRET}\" } in the same issuer",
                );
            }
        }
        return None;
    };
    let at = format!("{key}.introspection");
    if raw.issuer.as_deref().is_some_and(|issuer| issuer.contains(TENANT)) {
        p.add(
            &at,
            "not available for an issuer with {tenant}: an opaque token names no tenant — configure one issuer per \
             tenant that introspects",
        );
    }
    let url = p.required(&format!("{at}.url"), table.url.as_ref()).filter(|url| endpoint(&format!("{at}.url"), url, p));
    let client_id = p.required(&format!("{at}.client_id"), table.client_id.as_ref());
    let client_secret = p.required(&format!("{at}.client_secret"), table.client_secret.as_ref());
    for (name, value) in [("client_id", client_id), ("client_secret", client_secret)] {
        if value.is_some_and(String::is_empty) {
            p.add(&format!("{at}.{name}"), "must not be empty: RFC 7662 endpoints authenticate their callers");
        }
    }
    let auth = match table.auth.as_deref() {
        None | Some("basic") => IntrospectionAuth::Basic,
        Some("post") => IntrospectionAuth::Post,
        Some(other) => {
            p.add(&format!("{at}.auth"), format!("must be \"basic\" or \"post\" (got {other:?})"));
            IntrospectionAuth::Basic
        }
    };
    let timeout = p.duration(&format!("{at}.timeout"), table.timeout.as_deref(), defaults::INTROSPECTION_TIMEOUT);
    if timeout.is_zero() {
        p.add(&format!("{at}.timeout"), "must be longer than 0s");
    }
    let mode = match raw.introspect.as_deref() {
        None | Some("opaque") => IntrospectMode::Opaque,
        Some("always") => IntrospectMode::Always,
        Some(other) => {
            p.add(&format!("{key}.introspect"), format!("must be \"opaque\" or \"always\" (got {other:?})"));
            IntrospectMode::Opaque
        }
    };
    let cache_ttl =
        p.duration(&format!("{key}.cache_ttl"), raw.cache_ttl.as_deref(), defaults::INTROSPECTION_CACHE_TTL);
    Some(IntrospectionConfig {
        url: url?.clone(),
        client_id: client_id?.clone(),
        client_secret: Secret(client_secret?.clone()),
        auth,
        timeout,
        mode,
        cache_ttl,
    })
}

/// The client secret and every token travel to the endpoint.
fn endpoint(key: &str, url: &str, p: &mut Problems) -> bool {
    super::https_or_loopback(
        key,
        url,
        "tokens and the client secret travel there; http:// is allowed only for loopback hosts",
        p,
    )
}

/// At most one issuer introspects: an opaque token names no issuer, so
/// with two endpoints a token of one would be shown to the other.
pub(super) fn one_endpoint(issuers: &[IssuerConfig], p: &mut Problems) {
    let mut introspecting = issuers.iter().enumerate().filter(|(_, issuer)| issuer.introspection.is_some());
    let Some((first, _)) = introspecting.next() else { return };
    for (i, _) in introspecting {
        p.add(
            &format!("issuers[{i}].introspection"),
            format!(
                "issuers[{first}] introspects already: an opaque token names no issuer, so only one issuer may \
                 have an introspection endpoint (docs/introspection.md)"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::{Config, IntrospectMode, IntrospectionAuth};

    const BASE: &str = "[upstream]\nurl = \"http://127.0.0.1:9000\"\n";

    fn issuer(name: &str, lines: &str) -> String {
        format!("[[issuers]]\nissuer = \"{name}\"\naudiences = [\"api\"]\n{lines}\n")
    }

    fn parse(text: &str) -> Result<Config, String> {
        let env = |name: &str| (name == "SECRET").then(|| "from-env".to_string());
        Config::parse(&format!("{BASE}{text}"), "t.toml", Path::new("/"), &env).map_err(|e| e.to_string())
    }

    const INTROSPECTION: &str = "introspection = { url = \"https://idp.example/introspect\", client_id = \"gw\", client_secret = \"${SECRET}\" }";

    #[test]
    fn defaults_and_the_secret_from_the_environment() {
        let config = parse(&issuer("https://idp.example", INTROSPECTION)).unwrap();
        let introspection = config.issuers[0].introspection.clone().unwrap();
        assert_eq!(introspection.client_secret.expose(), "from-env");
        assert_eq!(introspection.auth, IntrospectionAuth::Basic);
        assert_eq!(introspection.mode, IntrospectMode::Opaque);
        assert_eq!(introspection.cache_ttl, Duration::from_secs(60));
        assert_eq!(introspection.timeout, Duration::from_secs(5));
        assert!(!format!("{introspection:?}").contains("from-env"), "the secret is never printed");
        let lines = format!(
            "{}\nintrospect = \"always\"\ncache_ttl = \"0s\"",
            INTROSPECTION.replace(" }", ", auth = \"post\" }")
        );
        let introspection =
            parse(&issuer("https://idp.example", &lines)).unwrap().issuers[0].introspection.clone().unwrap();
        assert_eq!(
            (introspection.auth, introspection.mode, introspection.cache_ttl),
            (IntrospectionAuth::Post, IntrospectMode::Always, Duration::ZERO)
        );
    }

    /// An opaque token names no issuer: with two endpoints, one issuer's
    /// tokens would be shown to the other.
    #[test]
    fn a_second_introspecting_issuer_is_refused() {
        let text =
            format!("{}{}", issuer("https://a.example", INTROSPECTION), issuer("https://b.example", INTROSPECTION));
        let error = parse(&text).unwrap_err();
        assert!(error.contains("issuers[1].introspection: issuers[0] introspects already"), "{error}");
    }

    /// Tokens and the client secret travel to the endpoint.
    #[test]
    fn the_endpoint_is_https_or_loopback() {
        let plain = INTROSPECTION.replace("https://idp.example", "http://idp.example");
        let error = parse(&issuer("https://idp.example", &plain)).unwrap_err();
        assert!(
            error.contains("issuers[0].introspection.url: must be https (got http://idp.example/introspect)"),
            "{error}"
        );
        let local = INTROSPECTION.replace("https://idp.example", "http://127.0.0.1:8081");
        assert!(parse(&issuer("https://idp.example", &local)).is_ok());
    }

    #[test]
    fn every_problem_is_named_by_its_key() {
        let lines = "introspection = { url = \"https://idp.example/i\", client_secret = \"\", auth = \"jwt\", tmeout = \"1s\" }";
        let error = parse(&issuer("https://idp.example", lines)).unwrap_err();
        assert!(error.contains("issuers[0].introspection.tmeout: unknown key"), "{error}");
        let lines = "introspection = { url = \"https://idp.example/i\", client_secret = \"\", auth = \"jwt\" }\nintrospect = \"jwt\"";
        let error = parse(&issuer("https://idp.example", lines)).unwrap_err();
        for expected in [
            "issuers[0].introspection.client_id: required key is missing",
            "issuers[0].introspection.client_secret: must not be empty",
            "issuers[0].introspection.auth: must be \"basic\" or \"post\" (got \"jwt\")",
            "issuers[0].introspect: must be \"opaque\" or \"always\" (got \"jwt\")",
        ] {
            assert!(error.contains(expected), "{expected}\n{error}");
        }
        let error = parse(&issuer("https://idp.example", "introspect = \"always\"\ncache_ttl = \"1s\"")).unwrap_err();
        assert!(error.contains("issuers[0].introspect: applies only with introspection"), "{error}");
        assert!(error.contains("issuers[0].cache_ttl: applies only with introspection"), "{error}");
    }

    /// An opaque token names no tenant either.
    #[test]
    fn a_tenant_template_cannot_introspect() {
        let lines = format!("tenants = [\"*\"]\njwks_url = \"https://idp.example/keys\"\n{INTROSPECTION}");
        let error = parse(&issuer("https://idp.example/{tenant}", &lines)).unwrap_err();
        assert!(error.contains("issuers[0].introspection: not available for an issuer with {tenant}"), "{error}");
    }
}
