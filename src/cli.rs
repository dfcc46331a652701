//! The command line (clap). `main.rs` dispatches on [`Command`].

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "jwtgate", version, about = "A reverse proxy that admits only requests with a valid bearer JWT")]
pub struct Cli {
    /// Log line format on stderr; the level comes from RUST_LOG (default info).
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
        /// Configuration file [default: $JWTGATE_CONFIG, else config.toml]
        #[arg(short, long, env = "JWTGATE_CONFIG", default_value = "config.toml")]
        config: PathBuf,
    },
    /// Validate the configuration and print a summary.
    Check {
        /// Configuration file [default: $JWTGATE_CONFIG, else config.toml]
        #[arg(short, long, env = "JWTGATE_CONFIG", default_value = "config.toml")]
        config: PathBuf,
        /// Also fetch each issuer's keys and list them.
        #[arg(long)]
        online: bool,
    },
}
