//! The `jwtgate` command: parse the command line, set up logging, load the
//! configuration, then hand over to the library.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use jwtgate::app::{App, Listeners, Reload, StartError};
use jwtgate::cli::{self, Cli, Command};
use jwtgate::config::ConfigError;
use jwtgate::demo::{Demo, DevIssuerSettings};
use jwtgate::token::{self, AuthMethod, ClientAuth, Format, TokenRequest};
use jwtgate::{Config, check, logging};

// jemalloc by default: its background thread gives freed pages back to the
// system, so the buffers an idle connection let go leave RSS too (glibc's
// malloc keeps them). mimalloc, if asked for, takes precedence
// (benches/load.sh ALLOCATORS=…); --no-default-features is glibc.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit code for a configuration that does not validate.
const EXIT_INVALID_CONFIG: u8 = 2;
/// Exit code for a command line that cannot be carried out (as clap uses).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The commands that print a report keep progress lines (`loaded signing
    // keys`) out of it; RUST_LOG still shows them.
    let default_level = match cli.command {
        Command::Run { .. } | Command::Demo { .. } => "info",
        _ => "warn",
    };
    let _log_writer = logging::init(cli.log_format, default_level);
    match cli.command {
        Command::Run { config, watch } => run(&config, watch),
        Command::Check { config, online } => check(&config, online),
        Command::Demo { listen } => demo(listen),
        Command::Explain { config, method, path, host, offline: _, jwks, at, client_cert, dpop, token } => {
            let options =
                Explain { method: &method, host, request_path: path, jwks, at: at.as_deref(), client_cert, dpop };
            explain(&config, options, token.as_deref())
        }
        Command::Token {
            token_url,
            client_id,
            audience,
            audience_param,
            resources,
            scope,
            format,
            auth,
            client_secret_file,
        } => {
            // A public client has no secret to find; the others must have one.
            let secret = || client_secret(client_secret_file.as_deref());
            let auth = match auth {
                AuthMethod::None => Ok(ClientAuth::None),
                AuthMethod::Post => secret().map(|secret| ClientAuth::Post { secret }),
                AuthMethod::Basic => secret().map(|secret| ClientAuth::Basic { secret }),
            };
            let auth = match auth {
                Ok(auth) => auth,
                Err(message) => {
                    eprintln!("{message}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            let request = TokenRequest { token_url, client_id, auth, audience, audience_param, resources, scope };
            token(&request, format)
        }
        Command::Probe { url, timeout } => probe(&url, timeout),
        Command::Completions { shell } => {
            say_bytes(&cli::completions(shell));
            ExitCode::SUCCESS
        }
        Command::Man => match cli::man_page() {
            Ok(page) => {
                say_bytes(&page);
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("cannot write the manual page: {error}");
                ExitCode::FAILURE
            }
        },
    }
}

/// The configuration, once it validates and the files it names can be used.
fn load(path: &Path) -> Result<Config, ExitCode> {
    load_with(path, check::files)
}

/// [`load`] with another check of the files the configuration names.
fn load_with(path: &Path, files: impl FnOnce(&Config) -> Vec<jwtgate::config::Problem>) -> Result<Config, ExitCode> {
    if matches!(std::fs::metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound) {
        eprintln!(
            "{}: no such file — name the configuration with -c FILE or $JWTGATE_CONFIG; to start one, copy the \
             commented template config.toml from the repository (every key: docs/configuration.md)",
            path.display()
        );
        return Err(ExitCode::from(EXIT_INVALID_CONFIG));
    }
    let invalid = |error: ConfigError| {
        eprintln!("{error}");
        ExitCode::from(EXIT_INVALID_CONFIG)
    };
    Config::load_checked(path, files).map_err(invalid)
}

/// Writes a command's output. A reader that went away (`jwtgate check |
/// head -1`, a test that read what it needed) is not an error of ours, and
/// must not panic the way `println!` would.
fn say(text: &str) {
    say_bytes(text.as_bytes());
}

/// [`say`] for output that is bytes already (a completion script, a man page).
fn say_bytes(bytes: &[u8]) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(bytes).and_then(|()| stdout.flush());
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    runtime_with(None)
}

/// A runtime with `workers` threads (default: one per core). One worker is
/// a current-thread runtime: no work-stealing machinery to pay for.
fn runtime_with(workers: Option<usize>) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut builder = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build().map_err(|error| {
        eprintln!("cannot start the runtime: {error}");
        ExitCode::FAILURE
    })
}

/// The gateway's life: load the configuration before binding anything,
/// bind, serve until SIGTERM/SIGINT, drain, exit 0 ([`App`] does the wiring).
fn run(path: &Path, watch: bool) -> ExitCode {
    // Before the file is read: a change from here on triggers a reload.
    let reload = Reload::new(path.to_path_buf(), watch);
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = match runtime_with(config.server.worker_threads) {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let started = match Listeners::bind(&config).await {
            Ok(listeners) => {
                let stop_signal = shutdown_signal();
                App::start(&config, listeners, Some(reload)).await.map(|app| (app, stop_signal))
            }
            Err(error) => Err(error),
        };
        match started {
            Ok((app, stop_signal)) => {
                app.serve_until(stop_signal).await;
                ExitCode::SUCCESS
            }
            Err(StartError::Tls(problem)) => {
                eprintln!("{}", ConfigError { file: path.display().to_string(), problems: vec![problem] });
                ExitCode::from(EXIT_INVALID_CONFIG)
            }
            Err(error) => {
                eprintln!("{error}");
                ExitCode::FAILURE
            }
        }
    })
}

fn check(path: &Path, online: bool) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    say(&format!("{} is valid\n", path.display()));
    say(&check::summary(&config));
    for warning in check::warnings(&config) {
        say(&format!("warning     {warning}\n"));
    }
    if !online {
        return ExitCode::SUCCESS;
    }
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let (listing, found) = runtime.block_on(check::online(&config));
    say(&listing);
    match found {
        check::Online::Usable => ExitCode::SUCCESS,
        check::Online::Unreachable => ExitCode::FAILURE,
        check::Online::Misconfigured => ExitCode::from(EXIT_INVALID_CONFIG),
    }
}

/// `jwtgate explain`'s options, as given.
struct Explain<'a> {
    method: &'a str,
    host: Option<String>,
    request_path: String,
    jwks: Option<PathBuf>,
    at: Option<&'a str>,
    client_cert: Option<PathBuf>,
    dpop: Option<String>,
}

fn explain(path: &Path, options: Explain<'_>, token: Option<&str>) -> ExitCode {
    let Explain { method, host, request_path, jwks, at, client_cert, dpop } = options;
    let usage = |message: String| {
        eprintln!("{message}");
        ExitCode::from(EXIT_USAGE)
    };
    let Ok(method) = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
        return usage(format!("not an HTTP method: {method:?}"));
    };
    let at = match at.map(parse_time).transpose() {
        Ok(at) => at,
        Err(message) => return usage(message),
    };
    let token = match token {
        Some(token) if token != "-" => token.trim().to_string(),
        _ => {
            let mut text = String::new();
            if let Err(error) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
                return usage(format!("cannot read the token from standard input: {error}"));
            }
            text.trim().to_string()
        }
    };
    // With --jwks, the configured key files are not used: their absence here is no problem.
    let replaced_by_jwks = |config: &Config| {
        let mut problems = check::files(config);
        if jwks.is_some() {
            problems.retain(|p| !p.key.ends_with(".jwks_file"));
        }
        problems
    };
    let config = match load_with(path, replaced_by_jwks) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let options = jwtgate::explain::Options { method, host, path: request_path, jwks, at, client_cert, dpop };
    match runtime.block_on(jwtgate::explain::explain(&config, &token, &options)) {
        Ok((report, allowed)) => {
            say(&report);
            if allowed { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// RFC 3339, or seconds since the epoch.
fn parse_time(text: &str) -> Result<u64, String> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(seconds);
    }
    humantime::parse_rfc3339(text)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .ok_or_else(|| format!("--at: not an RFC 3339 time or seconds since the epoch: {text:?}"))
}

fn demo(listen: Option<SocketAddr>) -> ExitCode {
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let demo = match Demo::start(listen, DevIssuerSettings::default()).await {
            Ok(demo) => demo,
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::FAILURE;
            }
        };
        let Some(token) = demo
            .issuer
            .mint(&format!("{}@clients", demo.issuer.settings().client_id), &demo.issuer.settings().scopes.join(" "))
        else {
            eprintln!("cannot sign the demo token");
            return ExitCode::FAILURE;
        };
        let stop = shutdown_signal();
        say(&format!("{}\n", demo.instructions(&token)));
        stop.await;
        demo.stop().await;
        ExitCode::SUCCESS
    })
}

/// The client secret from a file (trailing newline dropped) or `$JWTGATE_CLIENT_SECRET`.
fn client_secret(file: Option<&Path>) -> Result<String, String> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        return Ok(text.trim_end_matches(['\r', '\n']).to_string());
    }
    std::env::var("JWTGATE_CLIENT_SECRET").map_err(|_| {
        "no client secret: set JWTGATE_CLIENT_SECRET or pass --client-secret-file (a plain argument would show in ps); \
         a public client without a secret uses --auth none"
            .to_string()
    })
}

fn token(request: &TokenRequest, format: Format) -> ExitCode {
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let cache_dir: Option<PathBuf> = token::default_cache_dir();
    match runtime.block_on(token::get_token(request, cache_dir.as_deref())) {
        Ok(token) => {
            say(&format!("{}\n", token.render(format)));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// Exit 0 on a 2xx answer, 1 on anything else (Docker's HEALTHCHECK
/// reserves 2), with one line on stderr saying why.
fn probe(url: &str, timeout: std::time::Duration) -> ExitCode {
    let runtime = match runtime_with(Some(1)) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(jwtgate::probe::probe(url, timeout)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("probe {url}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C). The handlers are installed
/// when this is called, not when first polled, so a signal sent right after
/// the caller announced itself is not lost to the default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term) => {}
                () = wait(interrupt) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
