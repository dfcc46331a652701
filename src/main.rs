//! The `jwtgate` command: parse the command line, set up logging, load the
//! configuration, then hand over to the library.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use jwtgate::cli::{Cli, Command};
use jwtgate::{Config, Gateway, check, logging, server};
use tokio::net::TcpListener;

/// Exit code for a configuration that does not validate.
const EXIT_INVALID_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match cli.command {
        Command::Run { config } => run(&config),
        Command::Check { config, online } => check(&config, online),
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
