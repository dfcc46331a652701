//! The gateway's life, wired in one place: configuration → tracing →
//! gateway → listeners → reload → admin → shutdown (the last spans
//! flushed). `jwtgate run`, the demo and the integration tests all start
//! the gateway through [`App`], so none of them repeats this wiring.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::config::{Config, Problem};
use crate::gateway::{Gateway, GatewayError, SharedGateway};
use crate::otel::{Otel, OtelError};
use crate::reload::Reloader;
use crate::server;
use crate::tls::ServerTls;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A TLS file that was usable when the configuration was checked is not any more.
    #[error("{}: {}", .0.key, .0.message)]
    Tls(Problem),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("tracing: {0}")]
    Tracing(#[from] OtelError),
}

/// The sockets the gateway serves on.
pub struct Listeners {
    pub proxy: TcpListener,
    /// `/healthz`, `/readyz`, `/metrics`.
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Binds `server.listen` and `server.admin_listen`.
    pub async fn bind(config: &Config) -> Result<Listeners, StartError> {
        let bind =
            |addr| async move { TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source }) };
        let proxy = bind(config.server.listen).await?;
        let admin = match config.server.admin_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Listeners { proxy, admin })
    }
}

/// Where the configuration came from, to read it again on SIGHUP (and, with
/// `watch`, when the file changes).
pub struct Reload {
    path: PathBuf,
    watch: bool,
    /// The file as it was before it was read: a change made while the
    /// gateway starts counts as a change.
    seen: Option<crate::reload::Stamp>,
}

impl Reload {
    /// Made before the configuration is read, for the stamp's sake.
    pub fn new(path: PathBuf, watch: bool) -> Reload {
        let seen = crate::reload::stamp_now(&path);
        Reload { path, watch, seen }
    }
}

/// A running gateway. [`App::stop`] drains it; dropping it aborts it.
pub struct App {
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    /// The gateway in force; a reload swaps it.
    pub shared: SharedGateway,
    /// The listener's certificate, with `[server.tls]`.
    pub tls: Option<ServerTls>,
    /// `[tracing]`, for the whole life of the app: flushed by [`App::stop`].
    otel: Otel,
    stop: watch::Sender<bool>,
    /// The admin listener stops after the proxy has drained, so probes
    /// and metrics answer through the drain.
    stop_admin: watch::Sender<bool>,
    proxy: Option<JoinHandle<()>>,
    admin: Option<JoinHandle<()>>,
    reloads: Option<JoinHandle<()>>,
}

impl App {
    /// Builds the gateway for `config` and serves it on `listeners` until
    /// [`App::stop`].
    pub async fn start(config: &Config, listeners: Listeners, reload: Option<Reload>) -> Result<App, StartError> {
        let tls = config.server.tls.as_ref().map(ServerTls::load).transpose().map_err(StartError::Tls)?;
        let local = |listener: &TcpListener| {
            listener.local_addr().map_err(|source| StartError::Bind { addr: config.server.listen, source })
        };
        let addr = local(&listeners.proxy)?;
        let admin_addr = listeners.admin.as_ref().map(local).transpose()?;
        let otel = Otel::start(config.tracing.as_ref())?;
        let gateway = Gateway::build(config, Arc::default(), &[], &otel)?;
        let shared: SharedGateway = Arc::new(ArcSwap::from_pointee(gateway));
        let (stop, stopped) = watch::channel(false);
        let (stop_admin, admin_stopped) = watch::channel(false);
        let proxy = {
            let (shared, config, tls) = (Arc::clone(&shared), config.clone(), tls.clone());
            tokio::spawn(async move { run_gateway(shared, &config, tls, listeners.proxy, until(stopped)).await })
        };
        let admin = listeners
            .admin
            .map(|listener| tokio::spawn(run_admin(Arc::clone(&shared), listener, until(admin_stopped))));
        let reloads = reload.map(|Reload { path, watch, seen }| {
            Reloader::new(path, Arc::clone(&shared), config.clone(), tls.clone()).spawn(watch, seen)
        });
        let admin_shown = admin_addr.map_or_else(|| "none".to_string(), |a| a.to_string());
        let watch = reloads.is_some();
        info!(listen = %addr, admin = %admin_shown, reload = watch, "jwtgate is serving");
        Ok(App { addr, admin_addr, shared, tls, otel, stop, stop_admin, proxy: Some(proxy), admin, reloads })
    }

    /// The gateway in force now.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.shared.load_full()
    }

    /// Serves until `shutdown` resolves, then drains (see [`App::stop`]).
    pub async fn serve_until(self, shutdown: impl Future<Output = ()>) {
        shutdown.await;
        self.stop().await;
    }

    /// Stops accepting and lets open requests finish within
    /// `server.shutdown_grace`; the admin listener answers until then.
    /// Then the last spans are exported (5 s at most).
    pub async fn stop(mut self) {
        if let Some(reloads) = self.reloads.take() {
            reloads.abort();
        }
        let _ = self.stop.send(true);
        if let Some(proxy) = self.proxy.take() {
            let _ = proxy.await;
        }
        let _ = self.stop_admin.send(true);
        if let Some(admin) = self.admin.take() {
            let _ = admin.await;
        }
        self.otel.shutdown().await;
    }
}

/// Serves the current gateway on `listener` until `shutdown` resolves,
/// then stops accepting and waits up to `shutdown_grace` for open
/// connections. Each request runs on the gateway current when it arrived.
pub async fn run_gateway(
    shared: SharedGateway,
    config: &Config,
    tls: Option<ServerTls>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let handler = move |request, peer| {
        let gateway = shared.load_full();
        async move { gateway.handle(request, peer).await }
    };
    server::serve(listener, &server::Limits { tls, ..server::Limits::of(config) }, handler, shutdown).await;
}

/// Serves the admin endpoints on `listener` until `shutdown` resolves.
pub async fn run_admin(shared: SharedGateway, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let handler = move |request, _peer| {
        let response = crate::admin::handle(&request, &shared);
        async move { response }
    };
    let limits = server::Limits { shutdown_grace: std::time::Duration::from_secs(1), ..server::Limits::default() };
    server::serve(listener, &limits, handler, shutdown).await;
}

/// Resolves once `stopped` turns true (or its sender is gone).
async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

impl Drop for App {
    fn drop(&mut self) {
        for task in [&self.proxy, &self.admin, &self.reloads].into_iter().flatten() {
            task.abort();
        }
    }
}
