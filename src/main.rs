//! The `jwtgate` command: parse the command line, set up logging, load the
//! configuration, then hand over to the library.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use jwtgate::cli::{Cli, Command};
use jwtgate::demo::{Demo, DevIssuerSettings};
use jwtgate::token::{self, Format, TokenRequest};
use jwtgate::{Config, Gateway, check, logging, server};
use tokio::net::TcpListener;

/// Exit code for a configuration that does not validate.
const EXIT_INVALID_CONFIG: u8 = 2;
/// Exit code for a command line that cannot be carried out (as clap uses).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match cli.command {
        Command::Run { config } => run(&config),
        Command::Check { config, online } => check(&config, online),
        Command::Demo { listen } => demo(listen),
        Command::Token { token_url, client_id, audience, scope, format, auth, client_secret_file } => {
            let client_secret = match client_secret(client_secret_file.as_deref()) {
                Ok(secret) => secret,
                Err(message) => {
                    eprintln!("{message}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            let request = TokenRequest { token_url, client_id, client_secret, audience, scope, auth };
            token(&request, format)
        }
    }
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|error| {
        eprintln!("{error}");
        ExitCode::from(EXIT_INVALID_CONFIG)
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|error| {
        eprintln!("cannot start the runtime: {error}");
        ExitCode::FAILURE
    })
}

fn run(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let listener = match TcpListener::bind(config.server.listen).await {
            Ok(l) => l,
            Err(error) => {
                eprintln!("cannot listen on {}: {error}", config.server.listen);
                return ExitCode::FAILURE;
            }
        };
        let gateway = match Gateway::new(&config) {
            Ok(g) => Arc::new(g),
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(listen = %config.server.listen, "jwtgate is serving");
        server::run(gateway, &config.server, listener, shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

fn check(path: &Path, online: bool) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    println!("{} is valid", path.display());
    print!("{}", check::summary(&config));
    if !online {
        return ExitCode::SUCCESS;
    }
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let (listing, all_ok) = runtime.block_on(check::online(&config));
    print!("{listing}");
    if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn demo(listen: SocketAddr) -> ExitCode {
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
        println!("{}", demo.instructions(&token));
        shutdown_signal().await;
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
        "no client secret: set JWTGATE_CLIENT_SECRET or pass --client-secret-file (a plain argument would show in ps)".to_string()
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
            println!("{}", token.render(format));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
