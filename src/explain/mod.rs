//! `jwtgate explain`: why a token is (or is not) accepted for a request,
//! step by step. Every decision comes from the request path's own code
//! ([`Gateway::decide`], the Authenticator with a [`Trace`]); this module
//! only builds the gateway, loads keys and writes the report.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Method;
use http::header::{AUTHORIZATION, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::client_cert::ClientCert;
use crate::config::{ClientAuth, Config, JwksSource};
use crate::error::Refusal;
use crate::gateway::{Asked, Gateway};
use crate::keys::{IssuerKeys, IssuerStore};
use crate::routes::Route;

mod fix;
use fix::fix;

#[derive(Default)]
pub struct Options {
    pub method: Method,
    /// The host the request is sent to (`Host`), for routes with `hosts`.
    pub host: Option<String>,
    /// Path and query, as a client would send them.
    pub path: String,
    /// Keys from this JWKS file for every issuer, instead of fetching.
    pub jwks: Option<PathBuf>,
    /// Seconds since the epoch to judge at; the clock when absent.
    pub at: Option<u64>,
    /// The client certificate (PEM, leaf first) the connection presents.
    pub client_cert: Option<PathBuf>,
    /// A DPoP proof: the token is sent as `Authorization: DPoP` with it.
    pub dpop: Option<String>,
}

/// The report, and whether the request would be let through.
pub async fn explain(config: &Config, token: &str, options: &Options) -> Result<(String, bool), String> {
    let mut config = config.clone();
    // Nothing cached: every check runs.
    config.cache.max_tokens = 0;
    if let Some(file) = &options.jwks {
        for issuer in &mut config.issuers {
            issuer.jwks = JwksSource::File(file.clone());
        }
    }
    let gateway = Gateway::new(&config).map_err(|e| e.to_string())?;
    let now = options.at.unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    let mut out = String::new();

    let _ = writeln!(out, "request   {} {}", options.method, options.path);
    let client_cert = match &options.client_cert {
        Some(file) => {
            let chain = crate::tls::read_certificates("--client-cert", file)
                .map_err(|p| format!("{}: {}", p.key, p.message))?;
            let verdict = config.server.tls.as_ref().and_then(|tls| crate::tls::check_client_chain(tls, &chain, now));
            chain.first().map(|leaf| (ClientCert::from_der(leaf), verdict))
        }
        None => None,
    };
    describe_client_cert(&mut out, client_cert.as_ref(), &config);
    let client_cert = client_cert.map(|(certificate, _)| certificate);
    match opaque_route(&config, token) {
        Some(line) => {
            let _ = writeln!(out, "{line}");
        }
        None => describe_token(&mut out, token, now),
    }

    let _ = writeln!(out, "keys");
    let named = token_issuer(&gateway, token);
    for (config, keys) in config.issuers.iter().zip(gateway.issuer_keys()) {
        match keys {
            IssuerStore::Shared(keys) => list_keys(&mut out, &config.issuer, keys).await,
            IssuerStore::PerTenant(tenants) => match named.as_ref().filter(|(name, _)| *name == config.issuer) {
                Some((_, Some(tenant))) => match tenants.keys_for(tenant).await {
                    Ok(store) => list_keys(&mut out, store.issuer(), &store).await,
                    Err(refusal) => {
                        let _ = writeln!(out, "  {}: tenant {tenant}: {refusal:?}", config.issuer);
                    }
                },
                _ => {
                    let _ = writeln!(out, "  {}: keys per tenant, fetched on a tenant's first token", config.issuer);
                }
            },
        }
    }

    describe_issuer_and_key(&mut out, &gateway, token);

    let mut headers = HeaderMap::new();
    let scheme = if options.dpop.is_some() { "DPoP" } else { "Bearer" };
    if let Ok(value) = HeaderValue::try_from(format!("{scheme} {token}")) {
        headers.insert(AUTHORIZATION, value);
    }
    if let Some(proof) = options.dpop.as_deref().and_then(|proof| HeaderValue::try_from(proof.trim()).ok()) {
        headers.insert(http::HeaderName::from_static("dpop"), proof);
    }
    let mut passed: Vec<std::borrow::Cow<'static, str>> = Vec::new();
    let asked = Asked { method: &options.method, host: options.host.as_deref(), path_and_query: &options.path };
    let decision = gateway.decide(asked, headers, now, client_cert.as_ref(), &mut passed).await;

    let _ = writeln!(out, "checks");
    for check in &passed {
        // Borrowed: a check passed; owned: a value (a rule's), shown as is.
        match check {
            std::borrow::Cow::Borrowed(check) => writeln!(out, "  pass  {check}"),
            std::borrow::Cow::Owned(value) => writeln!(out, "  {value}"),
        }
        .ok();
    }
    let fix = decision.result.as_ref().err().and_then(|refusal| {
        let route_index = decision.route.map(Route::index).filter(|&index| index < config.routes.len());
        fix(refusal, &config, token, route_index)
    });
    match &decision.result {
        Err(Refusal::InsufficientScope { .. }) | Ok(_) => {}
        Err(refusal) => {
            let _ = writeln!(out, "  FAIL  {}", refusal.description());
            if let Some(fix) = &fix {
                let _ = writeln!(out, "  fix   {fix}");
            }
        }
    }
    match decision.route {
        Some(route) => {
            let _ = writeln!(out, "route     {}", route.describe());
            match &decision.result {
                Err(refusal @ Refusal::InsufficientScope { .. }) => {
                    let _ = writeln!(out, "  FAIL  {}", refusal.description());
                    if let Some(fix) = &fix {
                        let _ = writeln!(out, "  fix   {fix}");
                    }
                }
                Ok(_) => {
                    let _ = writeln!(out, "  pass  the route's requirements");
                }
                Err(_) => {}
            }
        }
        None => {
            let _ = writeln!(out, "route     none: the path is refused before routing");
        }
    }

    if !decision.rate_limits.is_empty() {
        let _ = writeln!(out, "limits");
        for limit in &decision.rate_limits {
            let _ = writeln!(out, "  {limit}");
        }
    }

    let _ = writeln!(out, "answer");
    let allowed = match decision.result {
        Ok(identity) => {
            let _ = writeln!(out, "  forwarded to the upstream");
            for (name, value) in identity {
                let _ = writeln!(out, "  {name}: {}", String::from_utf8_lossy(value.as_bytes()));
                if gateway.assertion_header() == Some(&name) {
                    describe_assertion(&mut out, value.to_str().unwrap_or_default());
                }
            }
            true
        }
        Err(refusal) => {
            let response = gateway.refusal_response(&refusal);
            let _ = writeln!(out, "  HTTP {}", response.status());
            if let Some(challenge) = response.headers().get(WWW_AUTHENTICATE) {
                let _ = writeln!(out, "  WWW-Authenticate: {}", String::from_utf8_lossy(challenge.as_bytes()));
            }
            let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let _ = writeln!(out, "  {}", String::from_utf8_lossy(&body));
            false
        }
    };
    Ok((out, allowed))
}

/// Fetches one store's keys now and lists them.
async fn list_keys(out: &mut String, issuer: &str, keys: &IssuerKeys) {
    match keys.fetch().await {
        Ok(_) => {
            let listed: Vec<String> = keys
                .load()
                .as_ref()
                .map(|snapshot| {
                    snapshot
                        .keys
                        .keys()
                        .iter()
                        .map(|k| format!("{} ({:?})", k.kid().unwrap_or("no kid"), k.kind))
                        .collect()
                })
                .unwrap_or_default();
            let _ = writeln!(out, "  {issuer}: {}", listed.join(", "));
        }
        Err(error) => {
            let _ = writeln!(out, "  {issuer}: cannot load: {error}");
        }
    }
}

/// The SPIFFE issuer (`spiffe://TD`) a token's `sub` would choose.
pub(super) fn spiffe_issuer_of(claims: &serde_json::Map<String, Value>) -> Option<String> {
    let sub = claims.get("sub").and_then(Value::as_str)?;
    crate::config::spiffe::trust_domain(sub).ok().map(|domain| format!("spiffe://{domain}"))
}

/// The configured issuer the token's `iss` selects, and its tenant.
fn token_issuer(gateway: &Gateway, token: &str) -> Option<(String, Option<String>)> {
    let parsed = crate::auth::token::parse(token, crate::auth::DEFAULT_MAX_JSON_DEPTH).ok()?;
    let iss = parsed.claims.get("iss").and_then(Value::as_str)?;
    gateway.issuer_for(iss).map(|(name, tenant)| (name.to_owned(), tenant.map(str::to_owned)))
}

/// For a token that is not a JWT: where it is sent (RFC 7662), or that
/// nothing can verify it. `None` for a JWT.
fn opaque_route(config: &Config, token: &str) -> Option<String> {
    if !matches!(
        crate::auth::token::parse(token, crate::auth::DEFAULT_MAX_JSON_DEPTH),
        Err(crate::auth::AuthFailure::NotJwt)
    ) {
        return None;
    }
    Some(match config.issuers.iter().enumerate().find(|(_, issuer)| issuer.introspection.is_some()) {
        Some((i, issuer)) => format!(
            "token     opaque (not a JWT): asked of issuers[{i}].introspection.url {} for {}",
            issuer.introspection.as_ref().map_or("", |x| x.url.as_str()),
            issuer.issuer
        ),
        None => "token     opaque (not a JWT), and no issuer has an introspection endpoint".to_string(),
    })
}

/// The client certificate the request is judged with, whether it passes
/// the listener's handshake (`None`: no CA to check it with), and whether
/// the listener would ask for one at all.
fn describe_client_cert(
    out: &mut String,
    certificate: Option<&(ClientCert, Option<Result<(), String>>)>,
    config: &Config,
) {
    let asks = match config.server.tls.as_ref().map(|tls| &tls.client_auth) {
        None | Some(ClientAuth::None) => "the listener asks for none ([server.tls] client_auth = \"none\")",
        Some(ClientAuth::Optional(_)) => "the listener asks for one (client_auth = \"optional\")",
        Some(ClientAuth::Required(_)) => "the listener requires one (client_auth = \"required\")",
    };
    let Some((certificate, verdict)) = certificate else {
        // Said only where certificates play a part: a bound token says so in its checks.
        if !matches!(config.server.tls.as_ref().map(|tls| &tls.client_auth), None | Some(ClientAuth::None)) {
            let _ = writeln!(out, "client    no certificate (--client-cert FILE to give one); {asks}");
        }
        return;
    };
    let text = |value: Option<&HeaderValue>| {
        value.map_or("none".to_string(), |v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let _ = writeln!(out, "client    certificate x5t#S256 {}; {asks}", certificate.thumbprint());
    let _ = match verdict {
        Some(Ok(())) => writeln!(out, "  handshake: verifies against [server.tls] client_ca_file"),
        Some(Err(error)) => writeln!(
            out,
            "  handshake: FAILS against [server.tls] client_ca_file ({error}): no request would get through"
        ),
        None => writeln!(out, "  handshake: not checked (no [server.tls] client_ca_file)"),
    };
    let _ = writeln!(out, "  subject: {}", text(certificate.subject()));
    let _ = writeln!(out, "  SPIFFE ID: {}", text(certificate.spiffe_id()));
}

/// Which configured issuer the token's `iss` selects, and which of its
/// keys the token's `kid` names.
fn describe_issuer_and_key(out: &mut String, gateway: &Gateway, token: &str) {
    let Ok(parsed) = crate::auth::token::parse(token, crate::auth::DEFAULT_MAX_JSON_DEPTH) else { return };
    let iss = parsed.claims.get("iss").and_then(Value::as_str);
    let spiffe =
        spiffe_issuer_of(&parsed.claims).filter(|name| gateway.issuer_keys().iter().any(|k| k.issuer() == name));
    let (name, tenant) = match (iss.and_then(|iss| gateway.issuer_for(iss)), &spiffe) {
        (Some((name, Some(tenant))), _) => {
            let _ = writeln!(out, "issuer    {name} (tenant {tenant})");
            (name, Some(tenant))
        }
        (Some((name, None)), _) => {
            let _ = writeln!(out, "issuer    {name} (iss matches exactly)");
            (name, None)
        }
        (None, Some(name)) => {
            let _ = writeln!(out, "issuer    {name} (a SPIFFE trust domain, chosen by the token's sub)");
            (name.as_str(), None)
        }
        (None, None) => {
            let _ = match iss {
                Some(iss) => writeln!(out, "issuer    {iss:?} is not a configured issuer"),
                None => writeln!(out, "issuer    none: the token has no iss"),
            };
            return;
        }
    };
    let keys = match gateway.issuer_keys().iter().find(|k| k.issuer() == name) {
        Some(IssuerStore::Shared(keys)) => Arc::clone(keys),
        Some(IssuerStore::PerTenant(tenants)) => match tenant.and_then(|tenant| tenants.store(tenant)) {
            Some(keys) => keys,
            None => return,
        },
        None => return,
    };
    let snapshot = keys.load();
    let key = match (&parsed.kid, snapshot.as_ref()) {
        (Some(kid), Some(snapshot)) => match snapshot.keys.by_kid(kid) {
            Some(key) => format!("kid {kid}: in the issuer's set, key type {:?}, token alg {:?}", key.kind, parsed.alg),
            None => format!("kid {kid}: not in the issuer's current set"),
        },
        (None, Some(_)) => format!("no kid: tried against the issuer's keys for {:?}", parsed.alg),
        (_, None) => "the issuer's keys are not loaded".to_string(),
    };
    let _ = writeln!(out, "key       {key}");
}

/// The signed assertion's header and claims, as the backend will read them.
fn describe_assertion(out: &mut String, jws: &str) {
    let decode = |segment: Option<&str>| {
        let bytes = URL_SAFE_NO_PAD.decode(segment?).ok()?;
        serde_json::from_slice::<Value>(&bytes).ok()
    };
    let mut segments = jws.split('.');
    let (header, claims) = (decode(segments.next()), decode(segments.next()));
    if let (Some(header), Some(claims)) = (header, claims) {
        let _ = writeln!(out, "    the signed assertion for the backend (docs/assertion.md): {header}");
        let _ = writeln!(out, "    claims {claims}");
    }
}

/// The token's header and claims as sent, with its times in UTC and
/// relative to `now`. For reading only: no decision is taken here.
fn describe_token(out: &mut String, token: &str, now: u64) {
    let mut segments = token.split('.');
    let decode = |segment: Option<&str>| -> Option<Value> {
        let bytes = URL_SAFE_NO_PAD.decode(segment?).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let (header, claims) = (decode(segments.next()), decode(segments.next()));
    match &header {
        Some(header) => {
            let _ = writeln!(out, "header    {header}");
        }
        None => {
            let _ = writeln!(out, "header    (not base64url JSON)");
        }
    }
    let Some(Value::Object(claims)) = &claims else {
        let _ = writeln!(out, "claims    (not a base64url JSON object)");
        return;
    };
    let _ = writeln!(out, "claims");
    for (name, value) in claims {
        let when = match (name.as_str(), value.as_f64()) {
            ("exp", Some(t)) => format!("  ({}, {})", utc(t), relative(now, t, "expires in", "expired")),
            ("nbf", Some(t)) => format!("  ({}, {})", utc(t), relative(now, t, "valid in", "valid since")),
            ("iat", Some(t)) => format!("  ({}, {})", utc(t), relative(now, t, "issued in", "issued")),
            _ => String::new(),
        };
        let _ = writeln!(out, "  {name}: {value}{when}");
    }
}

fn utc(seconds: f64) -> String {
    if !(0.0..=253_402_300_799.0).contains(&seconds) {
        return "out of range".to_string();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds as u64)).to_string()
}

/// "expires in 12 min" / "expired 3 min ago".
fn relative(now: u64, at: f64, future: &str, past: &str) -> String {
    let delta = at - now as f64;
    let span = |secs: f64| {
        let secs = secs.abs().round() as u64;
        match secs {
            0..=119 => format!("{secs} s"),
            120..=7199 => format!("{} min", secs / 60),
            7200..=172_799 => format!("{} h", secs / 3600),
            _ => format!("{} days", secs / 86_400),
        }
    };
    if delta > 0.0 { format!("{future} {}", span(delta)) } else { format!("{past} {} ago", span(delta)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times() {
        assert_eq!(relative(1000, 820.0, "expires in", "expired"), "expired 3 min ago");
        assert_eq!(relative(1000, 1030.0, "expires in", "expired"), "expires in 30 s");
        assert_eq!(relative(0, 3.0 * 86_400.0, "expires in", "expired"), "expires in 3 days");
        assert_eq!(utc(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(-1.0), "out of range");
    }
}
