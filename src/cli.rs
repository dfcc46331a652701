//! The command line (clap). `main.rs` dispatches on [`Command`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::token::{AuthMethod, Format};

#[derive(Debug, Parser)]
#[command(name = "jwtgate", version = crate::version::LONG, about = "A reverse proxy that admits only requests with a valid bearer JWT")]
pub struct Cli {
    /// Log line format on stderr (RUST_LOG sets the level: info for run and demo, warn for the rest)
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Run {
        /// Configuration file
        #[arg(short, long, env = "JWTGATE_CONFIG", default_value = "config.toml")]
        config: PathBuf,
        /// Also reload when the file changes (SIGHUP always reloads).
        #[arg(long)]
        watch: bool,
    },
    /// Validate the configuration and print a summary.
    Check {
        /// Configuration file
        #[arg(short, long, env = "JWTGATE_CONFIG", default_value = "config.toml")]
        config: PathBuf,
        /// Also fetch each issuer's keys and list them.
        #[arg(long)]
        online: bool,
    },
    /// Explain, check by check, what the gateway would answer a request carrying TOKEN.
    ///
    /// Exit 0 if the request would be let through, 1 if refused.
    Explain {
        /// Configuration file
        #[arg(short, long, env = "JWTGATE_CONFIG", default_value = "config.toml")]
        config: PathBuf,
        /// The request method
        #[arg(long, default_value = "GET")]
        method: String,
        /// The request path, with a query if any
        #[arg(long, default_value = "/")]
        path: String,
        /// The host the request is sent to (its Host header), for routes with `hosts`
        #[arg(long)]
        host: Option<String>,
        /// Do not fetch keys: take every issuer's keys from --jwks
        #[arg(long, requires = "jwks")]
        offline: bool,
        /// A JWKS file, with --offline
        #[arg(long, requires = "offline")]
        jwks: Option<PathBuf>,
        /// Judge as of this time (RFC 3339, or seconds since the epoch) instead of now
        #[arg(long)]
        at: Option<String>,
        /// The client certificate (PEM, leaf first) the request's TLS connection presents,
        /// for tokens bound to one (RFC 8705 cnf x5t#S256) and the certificate headers
        #[arg(long, value_name = "FILE")]
        client_cert: Option<PathBuf>,
        /// A DPoP proof (RFC 9449) sent with the token, which then goes as `Authorization: DPoP`;
        /// its htu is checked against [server] public_url
        #[arg(long, value_name = "PROOF")]
        dpop: Option<String>,
        /// The token; "-" or nothing reads it from standard input
        token: Option<String>,
    },
    /// Run a development issuer, a private backend and the gateway in front of it, all on loopback.
    Demo {
        /// Where the gateway listens [default: 127.0.0.1:8080, or a free port, printed, when that is busy]
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Get an access token with the client-credentials grant (cached until shortly before it expires).
    ///
    /// The client secret comes from $JWTGATE_CLIENT_SECRET or --client-secret-file, never from an argument;
    /// --auth none needs no secret.
    Token {
        /// The token endpoint, e.g. https://YOUR_TENANT.auth0.com/oauth/token
        #[arg(long)]
        token_url: String,
        /// The client's identifier at the token endpoint
        #[arg(long)]
        client_id: String,
        /// The API the token is for (its aud), sent in the form field named by --audience-param
        #[arg(long)]
        audience: Option<String>,
        /// The form field that carries --audience: oauth2-mock-server reads aud
        #[arg(long, value_name = "NAME", default_value = "audience", requires = "audience", value_parser = audience_param)]
        audience_param: String,
        /// A resource indicator (RFC 8707), e.g. https://api.example.com; repeat for several
        #[arg(long = "resource", value_name = "URI", value_parser = resource)]
        resources: Vec<String>,
        /// Space-separated scopes to ask for
        #[arg(long)]
        scope: Option<String>,
        /// What to print
        #[arg(long, value_enum, default_value_t = Format::Raw)]
        format: Format,
        /// How the client authenticates to the token endpoint
        #[arg(long, value_enum, default_value_t = AuthMethod::Post)]
        auth: AuthMethod,
        /// Read the client secret from this file instead of $JWTGATE_CLIENT_SECRET
        #[arg(long)]
        client_secret_file: Option<PathBuf>,
    },
    /// GET a plain http:// URL; exit 0 on a 2xx answer, 1 otherwise (the image's HEALTHCHECK).
    ///
    /// On failure, one line on stderr says why: connection refused, no answer in time, or the status.
    Probe {
        /// The URL, e.g. http://127.0.0.1:9901/readyz
        url: String,
        /// Give up after this long: resolving, connecting and the answer's head
        #[arg(long, default_value = "2s", value_parser = duration)]
        timeout: Duration,
    },
    /// Print a shell completion script to stdout.
    Completions {
        /// The shell to write it for
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print the manual page (roff) to stdout, e.g. jwtgate man > /usr/local/share/man/man1/jwtgate.1
    Man,
}

/// The shells `jwtgate completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

impl From<CompletionShell> for clap_complete::Shell {
    fn from(shell: CompletionShell) -> Self {
        match shell {
            CompletionShell::Bash => clap_complete::Shell::Bash,
            CompletionShell::Zsh => clap_complete::Shell::Zsh,
            CompletionShell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// The completion script for `shell`, for every command and flag.
pub fn completions(shell: CompletionShell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(clap_complete::Shell::from(shell), &mut Cli::command(), "jwtgate", &mut script);
    script
}

/// The manual page `jwtgate(1)` in roff: synopsis, options, the commands.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    Ok(page)
}

/// A duration such as "2s" or "500ms", more than zero.
fn duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. 2s or 500ms)"))?;
    if duration.is_zero() {
        return Err("must be more than 0".into());
    }
    Ok(duration)
}

/// A form field name that does not overwrite one the grant itself sends.
fn audience_param(name: &str) -> Result<String, String> {
    match name {
        "" => Err("must not be empty".into()),
        "grant_type" | "client_id" | "client_secret" | "resource" | "scope" => {
            Err(format!("{name} is a field of the grant itself"))
        }
        _ => Ok(name.to_string()),
    }
}

/// RFC 8707 §2: an absolute URI without a fragment; checked here so the
/// mistake is named before anything is sent.
fn resource(value: &str) -> Result<String, String> {
    let parsed = url::Url::parse(value).map_err(|e| format!("not an absolute URI: {e}"))?;
    if parsed.fragment().is_some() {
        return Err("a resource indicator must not have a fragment (RFC 8707 §2)".into());
    }
    Ok(value.to_string())
}
