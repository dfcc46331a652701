//! The `fix` line of `jwtgate explain`: for each refusal, the configuration
//! key to change or what the token lacks.

use super::*;

/// What to change, named by its config key, or what the token lacks.
pub(super) fn fix(refusal: &Refusal, config: &Config, token: &str, route: Option<usize>) -> Option<String> {
    use crate::auth::AuthFailure as F;
    use crate::error::ScopeFailure as S;
    let parsed = crate::auth::token::parse(token, crate::auth::DEFAULT_MAX_JSON_DEPTH).ok();
    let claim = |name: &str| parsed.as_ref().and_then(|p| p.claims.get(name)).map(Value::to_string);
    let iss = parsed.as_ref().and_then(|p| p.claims.get("iss")).and_then(Value::as_str).unwrap_or("");
    // The issuer the token names: exactly, or by a template; else the first.
    let issuer_index = config
        .issuers
        .iter()
        .position(|i| i.issuer == iss)
        .or_else(|| {
            let spiffe = parsed.as_ref().and_then(|p| spiffe_issuer_of(&p.claims))?;
            config.issuers.iter().position(|i| i.spiffe && i.issuer == spiffe)
        })
        .or_else(|| config.issuers.iter().position(|i| i.issuer.contains(crate::config::TENANT)));
    // An opaque token names no issuer: the one that introspects answers for it.
    let introspecting = config.issuers.iter().position(|i| i.introspection.is_some());
    let i = if parsed.is_none() { introspecting.or(issuer_index) } else { issuer_index }.unwrap_or(0);
    let issuer = config.issuers.get(i)?;
    let alg = parsed.as_ref().map_or_else(|| "?".to_string(), |p| format!("{:?}", p.alg));
    let route_key = |field: &str| match route {
        Some(r) => format!("routes[{r}].{field}"),
        None => format!("the route's {field}"),
    };
    let quoted = |list: &[String]| list.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
    Some(match refusal {
        Refusal::MissingToken => "send the token as `Authorization: Bearer TOKEN`".to_string(),
        Refusal::InvalidToken(failure) => match failure {
            F::TooLarge => format!("raise limits.max_token_bytes (now {})", config.limits.max_token_bytes),
            F::NotJwt | F::BadHeader | F::BadPayload => "this is not a JWT (an opaque token?): ask the identity provider \
                 for a JWT access token — many issue one only when the request names the API (jwtgate token \
                 --resource URI, or --audience)"
                .to_string(),
            F::UnsupportedCritical => {
                "the token's crit header names extensions jwtgate does not implement: the issuer must not mark them critical".to_string()
            }
            F::AlgorithmNotAllowed => match parsed.as_ref().map(|p| p.alg) {
                // Only an algorithm the gateway verifies with public keys is worth allowing.
                Some(a) if crate::config::SUPPORTED_ALGORITHMS.contains(&a) => {
                    format!("the token is signed with {alg}: add \"{alg}\" to issuers[{i}].algorithms")
                }
                _ => "the token's alg is one jwtgate never accepts (none, or HMAC, whose key would have to be public): \
                      the issuer must sign with RS*, PS*, ES256/384 or EdDSA"
                    .to_string(),
            },
            F::MissingIssuer => "the token has no iss: an access token for an API carries one (is this an ID token?)".to_string(),
            F::UnknownIssuer => {
                let configured: Vec<String> = config.issuers.iter().map(|i| i.issuer.clone()).collect();
                match configured.iter().position(|c| c.trim_end_matches('/') == iss.trim_end_matches('/')) {
                    Some(j) => format!("the token's iss is {iss:?}: write issuers[{j}].issuer = {iss:?} (iss is compared exactly, trailing slash included)"),
                    None => format!("the token's iss is {iss:?}, configured are {}: add an [[issuers]] with issuer = {iss:?} if you trust it", quoted(&configured)),
                }
            }
            F::TenantLimit => format!(
                "issuers[{i}] holds key sets for max_tenants ({}) tenants already: raise issuers[{i}].max_tenants",
                issuer.max_tenants
            ),
            F::KeysUnavailable => format!("the keys of issuers[{i}] did not load (see keys above): check issuers[{i}].issuer or jwks_url, and `jwtgate check --online`"),
            F::UnknownKey | F::KeyMismatch | F::BadSignature => format!(
                "no key issuers[{i}] publishes verifies this token: it was signed by another key set (another tenant or environment?), or altered"
            ),
            F::MissingExp => "the token has no exp: jwtgate accepts only tokens that expire".to_string(),
            F::BadTimeClaim => "exp, nbf or iat is not a number of seconds: the issuer sent a malformed token".to_string(),
            F::Expired | F::NotYetValid => format!(
                "get a new token; if the clocks disagree, issuers[{i}].leeway ({}) allows for skew",
                humantime::format_duration(issuer.leeway)
            ),
            F::MissingAudience | F::WrongAudience => format!(
                "the token's aud is {}; issuers[{i}].audiences accepts {}: add it to issuers[{i}].audiences, or ask the identity provider for a token for {} (jwtgate token --audience or --resource)",
                claim("aud").unwrap_or_else(|| "missing".to_string()),
                quoted(&issuer.audiences),
                issuer.audiences.first().map_or("", String::as_str)
            ),
            F::WrongType => format!(
                "the token's typ is {}; issuers[{i}].require_typ wants {:?}: remove issuers[{i}].require_typ or ask for RFC 9068 tokens",
                parsed.as_ref().and_then(|p| p.typ.clone()).map_or_else(|| "missing".to_string(), |t| format!("{t:?}")),
                issuer.require_typ.as_deref().unwrap_or("")
            ),
            F::LifetimeTooLong => format!("the token lives longer than issuers[{i}].max_lifetime allows: raise it, or shorten the tokens' lifetime at the identity provider"),
            F::MissingRequiredClaim => {
                let missing: Vec<&str> = issuer
                    .required_claims
                    .iter()
                    .filter(|c| parsed.as_ref().is_none_or(|p| c.lookup(&p.claims).is_none()))
                    .map(|c| c.name())
                    .collect();
                format!("the token lacks {} that issuers[{i}].required_claims lists", missing.join(", "))
            }
            F::NotSpiffeId => format!(
                "issuers[{i}] is a SPIFFE trust domain: the token's sub must be a SPIFFE ID in it (spiffe://{}/…), \
                 it is {}",
                issuer.issuer.trim_start_matches("spiffe://"),
                claim("sub").unwrap_or_else(|| "missing".to_string())
            ),
            F::WrongLocation => format!("send the token where issuers[{i}].token_from allows, or add that place to it"),
            F::Inactive => format!(
                "issuers[{i}].introspection.url says the token is not active (expired, revoked, or not this issuer's): get a new token"
            ),
            F::IntrospectionUnavailable => format!(
                "issuers[{i}].introspection.url gave no usable answer (the log says why): check the url, client_id, client_secret and auth, and issuers[{i}].ca_file for a private CA"
            ),
            F::BoundWithoutProof => "the token is sender-constrained by a cnf method jwtgate cannot check: have the issuer bind it with DPoP (cnf.jkt) or a client certificate (cnf.x5t#S256)".to_string(),
            F::CertificateNotPresented => {
                "the token is bound to a client certificate (cnf x5t#S256): the client must present it over TLS, with \
                 [server.tls] client_auth = \"optional\" or \"required\" and client_ca_file; to explain, give it with --client-cert FILE"
                    .to_string()
            }
            F::CertificateMismatch => format!(
                "the token is bound to the certificate with x5t#S256 {}: present that certificate, or get a token bound to this one",
                parsed.as_ref().and_then(|p| p.claims.get("cnf")).and_then(|cnf| cnf.get("x5t#S256")).map_or_else(|| "?".to_string(), Value::to_string)
            ),
            F::CertificateUnseen => "a forward-auth check cannot see the client's certificate: let clients with bound tokens reach jwtgate directly, over TLS with [server.tls] client_auth".to_string(),
            F::CertificateBindingRequired => format!(
                "issuers[{i}].require_cert_binding = true: ask the identity provider for a certificate-bound token \
                 (RFC 8705: the token request made over mutual TLS), or set issuers[{i}].require_cert_binding = false"
            ),
        },
        Refusal::InsufficientScope { failure, scope } => {
            let has = issuer
                .scope_claims
                .iter()
                .filter_map(|c| parsed.as_ref().and_then(|p| c.lookup(&p.claims)))
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(" ");
            let has = if has.is_empty() { "none".to_string() } else { has };
            match failure {
                S::Scopes => format!(
                    "the token's scopes are {has}; {} requires \"{scope}\": ask for them (jwtgate token --scope \"{scope}\") or change {}",
                    route_key("scopes"),
                    route_key("scopes")
                ),
                S::AnyScopes => format!(
                    "the token's scopes are {has}; {} accepts any of \"{scope}\": ask for one of them or change {}",
                    route_key("any_scopes"),
                    route_key("any_scopes")
                ),
                S::Claims => format!("the token's claims do not equal what {} lists", route_key("claims")),
                S::Issuer => format!("the token's issuer {iss:?} is not in {}", route_key("issuers")),
                S::SpiffeId => format!(
                    "the token's SPIFFE ID is {}; {} does not allow it: add it (or a prefix/*) to {}",
                    claim("sub").unwrap_or_else(|| "missing".to_string()),
                    route_key("spiffe_ids"),
                    route_key("spiffe_ids")
                ),
                S::Rule(_) => "the rule's value is shown above: send what it asks for, or change the rule it names"
                    .to_string(),
            }
        }
        Refusal::KeysUnavailable => format!("the keys of issuers[{i}] did not load (see keys above): `jwtgate check --online` says why"),
        Refusal::IntrospectionUnavailable => format!(
            "issuers[{i}].introspection.url gave no usable answer (the log says why): check the url, client_id, client_secret and auth, and issuers[{i}].ca_file for a private CA"
        ),
        _ => return None,
    })
}
