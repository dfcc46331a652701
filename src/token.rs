//! `jwtgate token`: the client-credentials grant (RFC 6749 §4.4) for
//! machine-to-machine callers, with a per-user cache so repeated calls reuse
//! a token until shortly before it expires.
//!
//! The cache is one file per (token URL, client, audience parameter and
//! value, resources, scope) under
//! `$XDG_CACHE_HOME/jwtgate` (else `~/.cache/jwtgate`), mode 0600, written to
//! a temporary file and renamed so a concurrent reader never sees half of it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A cached token is reused until this long before it expires…
const MAX_EXPIRY_MARGIN: u64 = 60;
/// …or this share of its lifetime, whichever is smaller.
const EXPIRY_MARGIN_SHARE: u64 = 10;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMethod {
    /// a public client: client_id in the form body, no secret
    None,
    /// client_id and client_secret in the form body (client_secret_post)
    Post,
    /// HTTP Basic authentication (client_secret_basic)
    Basic,
}

/// How the client proves who it is; the secret exists exactly when one is sent.
#[derive(Clone)]
pub enum ClientAuth {
    None,
    Post { secret: String },
    Basic { secret: String },
}

impl std::fmt::Debug for ClientAuth {
    // The secret stays out of any debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientAuth::None => "None",
            ClientAuth::Post { .. } => "Post",
            ClientAuth::Basic { .. } => "Basic",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// the access token alone
    Raw,
    /// `Authorization: Bearer …`
    Header,
    /// the token endpoint's JSON answer
    Json,
}

#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub token_url: String,
    pub client_id: String,
    pub auth: ClientAuth,
    /// Sent as `{audience_param}={audience}` when present.
    pub audience: Option<String>,
    /// The form field for `audience`: `audience` (Auth0 and most), `aud` (oauth2-mock-server).
    pub audience_param: String,
    /// RFC 8707 resource indicators, one `resource=` field each, in this order.
    pub resources: Vec<String>,
    pub scope: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token endpoint {url} answered {status}: {error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused { url: String, status: u16, error: String, description: Option<String> },
    #[error("cannot reach the token endpoint {url}: {}", crate::outbound::cause(source, crate::outbound::Timeouts { connect: REQUEST_TIMEOUT, whole: REQUEST_TIMEOUT }))]
    Network {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the token endpoint {url} gave no access_token: {problem}")]
    BadAnswer { url: String, problem: String },
}

/// What the cache file holds.
#[derive(Debug, Serialize, Deserialize)]
struct Cached {
    access_token: String,
    issued_at: u64,
    expires_at: u64,
    response: Value,
}

/// A token and where it came from.
#[derive(Debug)]
pub struct Token {
    pub access_token: String,
    /// The endpoint's JSON, with `expires_in` counting from now.
    pub response: Value,
    pub from_cache: bool,
}

impl Token {
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Raw => self.access_token.clone(),
            Format::Header => format!("Authorization: Bearer {}", self.access_token),
            Format::Json => self.response.to_string(),
        }
    }
}

/// `$XDG_CACHE_HOME/jwtgate`, else `$HOME/.cache/jwtgate`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).filter(|p| p.is_absolute());
    let base = xdg.or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("jwtgate"))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Returns a cached token that is still fresh, or fetches and caches a new one.
pub async fn get_token(request: &TokenRequest, cache_dir: Option<&Path>) -> Result<Token, TokenError> {
    let cache_file = cache_dir.map(|dir| dir.join(format!("{}.json", cache_key(request))));
    let now = now();
    if let Some(cached) = cache_file.as_deref().and_then(read_cache) {
        let margin = MAX_EXPIRY_MARGIN.min(cached.expires_at.saturating_sub(cached.issued_at) / EXPIRY_MARGIN_SHARE);
        if now + margin < cached.expires_at {
            let mut response = cached.response;
            response["expires_in"] = Value::from(cached.expires_at - now);
            return Ok(Token { access_token: cached.access_token, response, from_cache: true });
        }
    }
    let response = fetch(request).await?;
    let bad = |problem: &str| TokenError::BadAnswer { url: request.token_url.clone(), problem: problem.into() };
    let access_token = response.get("access_token").and_then(Value::as_str).ok_or_else(|| bad("no access_token"))?;
    let expires_in = response.get("expires_in").and_then(Value::as_u64).unwrap_or(0);
    let token = Token { access_token: access_token.to_owned(), response: response.clone(), from_cache: false };
    if let (Some(file), true) = (cache_file, expires_in > 0) {
        let cached =
            Cached { access_token: token.access_token.clone(), issued_at: now, expires_at: now + expires_in, response };
        if let Err(error) = write_cache(&file, &cached) {
            tracing::warn!(file = %file.display(), %error, "cannot write the token cache");
        }
    }
    Ok(token)
}

/// The form body's fields, in the order they are sent. Pure, so the exact
/// request is testable without a server.
pub fn form_fields(request: &TokenRequest) -> Vec<(&str, &str)> {
    let mut fields = vec![("grant_type", "client_credentials")];
    match &request.auth {
        ClientAuth::None => fields.push(("client_id", &request.client_id)),
        ClientAuth::Post { secret } => {
            fields.push(("client_id", &request.client_id));
            fields.push(("client_secret", secret));
        }
        // RFC 6749 §2.3.1: with Basic, the credentials are in the header only.
        ClientAuth::Basic { .. } => {}
    }
    if let Some(audience) = &request.audience {
        fields.push((&request.audience_param, audience));
    }
    fields.extend(request.resources.iter().map(|r| ("resource", r.as_str())));
    if let Some(scope) = &request.scope {
        fields.push(("scope", scope));
    }
    fields
}

async fn fetch(request: &TokenRequest) -> Result<Value, TokenError> {
    let url = &request.token_url;
    let network = |source| TokenError::Network { url: url.clone(), source };
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.extend_pairs(form_fields(request));
    let client = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().map_err(network)?;
    let mut http = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(reqwest::header::ACCEPT, "application/json")
        .body(form.finish());
    if let ClientAuth::Basic { secret } = &request.auth {
        // RFC 6749 §2.3.1: form-encode id and secret before Basic encoding.
        let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let credentials = format!("{}:{}", encode(&request.client_id), encode(secret));
        http = http.header(reqwest::header::AUTHORIZATION, format!("Basic {}", STANDARD.encode(credentials)));
    }
    let mut response = http.send().await.map_err(network)?;
    let status = response.status();
    // A token answer is a few KiB; never hold more than this of whatever comes back.
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(network)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(TokenError::BadAnswer { url: url.clone(), problem: "the answer is larger than 1 MiB".into() });
        }
        body.extend_from_slice(&chunk);
    }
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    if !status.is_success() {
        let field = |name| json.as_ref().and_then(|j| j.get(name)).and_then(Value::as_str).map(str::to_owned);
        return Err(TokenError::Refused {
            url: url.clone(),
            status: status.as_u16(),
            error: field("error").unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect()),
            description: field("error_description"),
        });
    }
    json.ok_or_else(|| TokenError::BadAnswer { url: url.clone(), problem: "the answer is not JSON".into() })
}

/// Every request field that can change the token, JSON-encoded so that no
/// two different requests share a key (a list of resources has no separator
/// to collide with). The secret and how it is sent do not change the token.
fn cache_key(request: &TokenRequest) -> String {
    let audience = request.audience.as_ref().map(|a| (&request.audience_param, a));
    let material =
        serde_json::json!([request.token_url, request.client_id, audience, request.resources, request.scope])
            .to_string();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, material.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A missing, unreadable or corrupt cache file is simply a miss.
fn read_cache(file: &Path) -> Option<Cached> {
    serde_json::from_slice(&std::fs::read(file).ok()?).ok()
}

fn write_cache(file: &Path, cached: &Cached) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let temp = dir.join(format!(".tmp-{}-{nanos}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = options.open(&temp).and_then(|mut f| {
        f.write_all(&serde_json::to_vec(cached).map_err(std::io::Error::other)?)?;
        f.sync_all()
    });
    match result.and_then(|()| std::fs::rename(&temp, file)) {
        Ok(()) => Ok(()),
        Err(error) => {
            let _ = std::fs::remove_file(&temp);
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(scope: Option<&str>) -> TokenRequest {
        TokenRequest {
            token_url: "https://idp/oauth/token".into(),
            client_id: "c".into(),
            auth: ClientAuth::Post { secret: "s".into() },
            audience: Some("a".into()),
            audience_param: "audience".into(),
            resources: Vec::new(),
            scope: scope.map(str::to_owned),
        }
    }

    #[test]
    fn cache_keys_differ_by_every_field_that_changes_the_token() {
        let base = cache_key(&request(None));
        assert_eq!(base.len(), 64);
        let variants: [fn(&mut TokenRequest); 8] = [
            |r| r.scope = Some("read".into()),
            |r| r.audience = None,
            |r| r.audience_param = "aud".into(),
            |r| r.resources = vec!["https://api".into()],
            |r| r.token_url = "https://other/oauth/token".into(),
            |r| r.client_id = "d".into(),
            // An empty audience is still an audience field, unlike none.
            |r| r.audience = Some(String::new()),
            // Not a separator game: a resource is not mistaken for the audience.
            |r| {
                r.audience = None;
                r.resources = vec!["a".into()];
            },
        ];
        let mut seen = std::collections::HashSet::from([base.clone()]);
        for (i, change) in variants.iter().enumerate() {
            let mut changed = request(None);
            change(&mut changed);
            assert!(seen.insert(cache_key(&changed)), "variant {i} shares a cache key");
        }
        // Resources in another order are another request.
        let (mut ab, mut ba) = (request(None), request(None));
        ab.resources = vec!["https://a".into(), "https://b".into()];
        ba.resources = vec!["https://b".into(), "https://a".into()];
        assert_ne!(cache_key(&ab), cache_key(&ba));
    }

    #[test]
    fn cache_keys_do_not_depend_on_the_secret_or_how_it_is_sent() {
        let base = cache_key(&request(None));
        for auth in
            [ClientAuth::Post { secret: "other".into() }, ClientAuth::Basic { secret: "s".into() }, ClientAuth::None]
        {
            let mut other = request(None);
            other.auth = auth;
            assert_eq!(cache_key(&other), base);
        }
    }

    #[test]
    fn form_fields_per_auth_method() {
        let mut r = request(Some("read write"));
        r.resources = vec!["https://api.one".into(), "https://api.two".into()];
        assert_eq!(
            form_fields(&r),
            [
                ("grant_type", "client_credentials"),
                ("client_id", "c"),
                ("client_secret", "s"),
                ("audience", "a"),
                ("resource", "https://api.one"),
                ("resource", "https://api.two"),
                ("scope", "read write"),
            ]
        );

        // Basic: the credentials go in the header, none of them in the body.
        r.auth = ClientAuth::Basic { secret: "s".into() };
        r.audience_param = "aud".into();
        assert_eq!(
            form_fields(&r),
            [
                ("grant_type", "client_credentials"),
                ("aud", "a"),
                ("resource", "https://api.one"),
                ("resource", "https://api.two"),
                ("scope", "read write"),
            ]
        );

        // None: a public client names itself and sends no secret; no audience, no scope.
        let mut public = request(None);
        public.auth = ClientAuth::None;
        public.audience = None;
        assert_eq!(form_fields(&public), [("grant_type", "client_credentials"), ("client_id", "c")]);
    }

    #[tokio::test]
    async fn network_errors_say_why() {
        // A port nothing listens on: bind one, learn it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut r = request(None);
        r.token_url = format!("http://127.0.0.1:{port}/token");
        let error = fetch(&r).await.unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "cannot reach the token endpoint {}: connection refused: nothing listens on 127.0.0.1 at that port",
                r.token_url
            )
        );

        // RFC 6761: .invalid never resolves.
        r.token_url = "http://no-such-host.invalid/token".into();
        let error = fetch(&r).await.unwrap_err().to_string();
        assert!(error.contains(": the name no-such-host.invalid was not resolved"), "{error}");
        assert!(!error.contains("error sending request"), "{error}");
    }

    #[test]
    fn cache_round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/x.json");
        let cached = Cached { access_token: "t".into(), issued_at: 1, expires_at: 2, response: Value::Null };
        write_cache(&file, &cached).unwrap();
        assert_eq!(read_cache(&file).unwrap().access_token, "t");
        std::fs::write(&file, b"{not json").unwrap();
        assert!(read_cache(&file).is_none());
    }
}
