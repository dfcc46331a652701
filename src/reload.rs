//! Configuration reload, on SIGHUP or (with `run --watch`) when the file
//! changes. A valid new file replaces the gateway atomically: requests in
//! flight finish on the old one, connections stay open, and issuers whose
//! key source did not change keep their keys. An invalid file is logged and
//! the running configuration stays. The listener's TLS certificate and key
//! are read again; other listener settings, and `[tracing]`, need a restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{error, info, warn};

use crate::config::Config;
use crate::gateway::{Gateway, SharedGateway};
use crate::tls::ServerTls;

/// How often `--watch` looks at the file.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// Editors write in steps; let the file settle before reading it.
const SETTLE: Duration = Duration::from_millis(100);

pub struct Reloader {
    path: PathBuf,
    shared: SharedGateway,
    /// The listener settings in force; changing them needs a restart.
    running: Config,
    /// The listener's certificate, when it serves TLS.
    tls: Option<ServerTls>,
}

impl Reloader {
    pub fn new(path: PathBuf, shared: SharedGateway, running: Config, tls: Option<ServerTls>) -> Reloader {
        Reloader { path, shared, running, tls }
    }

    /// Loads the file and swaps in a new gateway. False when the file was
    /// invalid and the running configuration was kept.
    pub fn reload(&self) -> bool {
        let config = match Config::load_checked(&self.path, crate::check::files) {
            Ok(config) => config,
            Err(problems) => {
                error!(problems = %problems, "configuration reload refused; the running configuration stays");
                return false;
            }
        };
        for key in restart_needed(&self.running, &config) {
            warn!(key, "changing this setting needs a restart; the running value stays");
        }
        if let (Some(tls), Some(files)) = (&self.tls, &config.server.tls) {
            match tls.reload(files) {
                Ok(()) => info!(cert = %files.cert.display(), "TLS certificate reloaded"),
                Err(problem) => error!(
                    key = problem.key,
                    problem = problem.message,
                    "TLS certificate reload refused; the running certificate stays"
                ),
            }
        }
        let current = self.shared.load_full();
        match Gateway::build(&config, Arc::clone(current.metrics()), current.issuer_keys(), current.otel()) {
            Ok(mut gateway) => {
                gateway.carry_over(&current);
                gateway.inherit_assertion_keys(&current, crate::auth::dpop::unix_now());
                self.shared.store(Arc::new(gateway));
                info!(file = %self.path.display(), "configuration reloaded");
                true
            }
            Err(problem) => {
                error!(%problem, "configuration reload failed; the running configuration stays");
                false
            }
        }
    }

    /// Reloads on every SIGHUP, and on file changes when `watch` is set,
    /// until the task is aborted. SIGHUP is handled from this call on, not
    /// from the task's first poll, so a reload asked for right after start
    /// is not the signal's default action (which ends the process).
    /// `seen` is the file as it was before the running configuration was
    /// read, so that a change made while the gateway started (the keys
    /// loading, the listeners binding) counts as a change: a stamp taken
    /// here would miss it (seen under load in `operations::watch_reloads_…`).
    pub fn spawn(self, watch: bool, seen: Option<Stamp>) -> tokio::task::JoinHandle<()> {
        let hangups = hangup_signals();
        tokio::spawn(self.run(hangups, seen, watch))
    }

    async fn run(self, mut hangups: Hangups, mut seen: Option<(SystemTime, u64)>, watch: bool) {
        let mut ticks = tokio::time::interval(WATCH_INTERVAL);
        loop {
            tokio::select! {
                Some(()) = next_hangup(&mut hangups) => {
                    info!("SIGHUP: reloading the configuration");
                    self.reload();
                    seen = stamp(&self.path).await;
                }
                _ = ticks.tick(), if watch => {
                    let now = stamp(&self.path).await;
                    if now != seen {
                        tokio::time::sleep(SETTLE).await;
                        seen = stamp(&self.path).await;
                        info!(file = %self.path.display(), "configuration file changed: reloading");
                        self.reload();
                    }
                }
            }
        }
    }
}

/// The listener settings that differ, by key.
fn restart_needed(running: &Config, new: &Config) -> Vec<&'static str> {
    let (running_limits, new_limits) = (&running.limits, &new.limits);
    let (running_tracing, new_tracing) = (&running.tracing, &new.tracing);
    let (running, new) = (&running.server, &new.server);
    [
        ("server.listen", running.listen != new.listen),
        ("server.admin_listen", running.admin_listen != new.admin_listen),
        ("server.header_read_timeout", running.header_read_timeout != new.header_read_timeout),
        ("server.max_header_bytes", running.max_header_bytes != new.max_header_bytes),
        ("server.shutdown_grace", running.shutdown_grace != new.shutdown_grace),
        ("server.worker_threads", running.worker_threads != new.worker_threads),
        ("server.protocols", running.protocols != new.protocols),
        ("server.max_connections", running.max_connections != new.max_connections),
        ("server.tls", running.tls.is_some() != new.tls.is_some()),
        // The exporter, its batches and its sampler live as long as the process.
        ("tracing", running_tracing != new_tracing),
        (
            "limits.http2_*",
            running_limits.http2_max_concurrent_streams != new_limits.http2_max_concurrent_streams
                || running_limits.http2_max_pending_resets != new_limits.http2_max_pending_resets
                || running_limits.http2_max_error_resets != new_limits.http2_max_error_resets,
        ),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}

/// A file's modification time and size.
pub type Stamp = (SystemTime, u64);

/// The file's stamp now, blocking (before the runtime's work begins).
pub fn stamp_now(path: &std::path::Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().and_then(|meta| Some((meta.modified().ok()?, meta.len())))
}

/// The file's modification time and size, read without blocking the runtime.
async fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let meta = tokio::fs::metadata(path).await.ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

fn hangup_signals() -> Hangups {
    #[cfg(unix)]
    {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The next SIGHUP; never resolves where there are none.
async fn next_hangup(hangups: &mut Hangups) -> Option<()> {
    #[cfg(unix)]
    if let Some(signals) = hangups {
        return signals.recv().await;
    }
    let _ = hangups;
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_changes_need_a_restart() {
        let text = "[server]\nlisten = \"127.0.0.1:1\"\n[upstream]\nurl = \"http://127.0.0.1:2\"\n\
                    [[issuers]]\nissuer = \"https://i/\"\naudiences = [\"a\"]\n";
        let parse = |t: &str| Config::parse(t, "t", std::path::Path::new("."), &|_| None).unwrap();
        let running = parse(text);
        assert!(restart_needed(&running, &parse(text)).is_empty());
        let changed = text.replace("127.0.0.1:1", "127.0.0.1:3").replace("[upstream]", "realm = \"x\"\n[upstream]");
        assert_eq!(restart_needed(&running, &parse(&changed)), ["server.listen"]);
        let traced = format!("{text}[tracing]\notlp_endpoint = \"http://127.0.0.1:4318\"\n");
        assert_eq!(restart_needed(&running, &parse(&traced)), ["tracing"]);
    }
}
