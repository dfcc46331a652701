//! Log output: `tracing` to stderr, pretty or JSON, filtered by `RUST_LOG`.
//! Lines are formatted on the request's thread but written by a background
//! thread, so a request never waits on a `write` to stderr. Nothing is
//! dropped: when that thread falls behind, logging waits for it.

use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Log lines waiting for the writer thread at most.
const LOG_QUEUE_LINES: usize = 8_192;

/// Keep the guard for the life of the process: dropping it flushes the last lines.
pub fn init(format: LogFormat, default_level: &str) -> WorkerGuard {
    // The default queue of 128,000 lines is allocated up front: 4 MiB of a
    // ~15 MiB idle process (massif). 8,192 lines is still seconds of access
    // log at full load; when it is full, writers wait (lossy: false).
    let (writer, guard) =
        NonBlockingBuilder::default().buffered_lines_limit(LOG_QUEUE_LINES).lossy(false).finish(std::io::stderr());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal());
    // A second init (e.g. in tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    guard
}
