//! `jwtgate demo`: the whole product on one machine with no account
//! anywhere. A development issuer ([`issuer`]) and a private backend
//! ([`backend`]) on loopback, and the real gateway — configured from TOML
//! text through the same validation as `run` — in front of the backend,
//! finding the issuer's keys through OIDC discovery.

pub mod backend;
pub mod issuer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::{App, Listeners};
use crate::config::Config;
use crate::gateway::Gateway;
use crate::server::{self, Limits};
pub use issuer::{DevIssuer, DevIssuerError, DevIssuerSettings};

/// The demo's default gateway address.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 8080));

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Issuer(#[from] DevIssuerError),
    #[error("cannot listen on {addr}: {source}; choose another address with --listen")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the demo configuration is invalid: {0}")]
    Config(String),
    #[error("{0}")]
    Gateway(#[from] crate::app::StartError),
    #[error("the gateway could not load the development issuer's keys")]
    Keys,
}

/// The three running parts. Dropping it stops them; [`Demo::stop`] drains first.
pub struct Demo {
    pub gateway_addr: SocketAddr,
    /// The default address was taken, so the gateway listens on a free port.
    pub default_was_busy: bool,
    pub backend_addr: SocketAddr,
    pub issuer: Arc<DevIssuer>,
    pub gateway: Arc<Gateway>,
    /// The real gateway, started as `jwtgate run` starts it.
    app: Option<App>,
    /// Stops the issuer and the backend.
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Demo {
    /// Starts issuer, backend and gateway; returns once the gateway has the
    /// keys. Without `listen`, the gateway takes [`DEFAULT_LISTEN`], or a
    /// free loopback port when that is busy; a given address must be free.
    pub async fn start(listen: Option<SocketAddr>, settings: DevIssuerSettings) -> Result<Demo, DemoError> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let (issuer, issuer_listener) = DevIssuer::bind(loopback, settings).await?;
        let issuer = Arc::new(issuer);
        let bind =
            |addr| async move { TcpListener::bind(addr).await.map_err(|source| DemoError::Bind { addr, source }) };
        let backend_listener = bind(loopback).await?;
        let default = DEFAULT_LISTEN;
        let (gateway_listener, listen, default_was_busy) = match listen {
            Some(addr) => (bind(addr).await?, addr, false),
            None => match TcpListener::bind(default).await {
                Ok(listener) => (listener, default, false),
                Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => (bind(loopback).await?, loopback, true),
                Err(source) => return Err(DemoError::Bind { addr: default, source }),
            },
        };
        let local = |l: &TcpListener, addr| l.local_addr().map_err(|source| DemoError::Bind { addr, source });
        let backend_addr = local(&backend_listener, loopback)?;
        let gateway_addr = local(&gateway_listener, listen)?;

        let toml = format!(
            "[server]\nlisten = \"{gateway_addr}\"\nshutdown_grace = \"2s\"\n\
             [upstream]\nurl = \"http://{backend_addr}\"\n\
             [[issuers]]\nissuer = \"{}\"\naudiences = [\"{}\"]\n",
            issuer.issuer(),
            issuer.settings().audience
        );
        let config = Config::parse(&toml, "(demo)", std::path::Path::new("."), &|_| None)
            .map_err(|e| DemoError::Config(e.to_string()))?;

        let (stop, stopped) = watch::channel(false);
        let until_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let limits = Limits { shutdown_grace: Duration::from_secs(2), ..Limits::default() };
        let mut tasks = Vec::new();
        {
            let issuer = Arc::clone(&issuer);
            let handler = move |request, _peer| {
                let issuer = Arc::clone(&issuer);
                async move { issuer.handle(request).await }
            };
            let (limits, shutdown) = (limits.clone(), until_stopped());
            tasks.push(tokio::spawn(async move { server::serve(issuer_listener, &limits, handler, shutdown).await }));
        }
        {
            let handler = |request, _peer| async move { backend::handle(&request) };
            let (limits, shutdown) = (limits.clone(), until_stopped());
            tasks.push(tokio::spawn(async move { server::serve(backend_listener, &limits, handler, shutdown).await }));
        }
        // The issuer is serving: the gateway's first discovery fetch can succeed.
        let app = App::start(&config, Listeners { proxy: gateway_listener, admin: None }, None).await?;
        let gateway = app.gateway();
        let demo = Demo { gateway_addr, default_was_busy, backend_addr, issuer, gateway, app: Some(app), stop, tasks };
        demo.wait_for_keys().await?;
        Ok(demo)
    }

    async fn wait_for_keys(&self) -> Result<(), DemoError> {
        for _ in 0..500 {
            if self.gateway.issuer_keys().iter().all(|k| k.has_keys()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(DemoError::Keys)
    }

    /// What `jwtgate demo` prints: ready-to-paste commands.
    pub fn instructions(&self, token: &str) -> String {
        let gateway = format!("http://{}", self.gateway_addr);
        let settings = self.issuer.settings();
        let token_url = self.issuer.token_url();
        let busy = if self.default_was_busy {
            format!("{DEFAULT_LISTEN} is busy, so the gateway listens on {} instead.\n", self.gateway_addr)
        } else {
            String::new()
        };
        format!(
            "{busy}jwtgate demo: everything runs on this machine; Ctrl-C stops it.\n\
             \n  gateway   {gateway}/  (jwtgate, in front of the backend)\
             \n  backend   http://{backend}/  (private: answers {{\"message\": \"This is private\"}})\
             \n  issuer    {issuer}  (OIDC discovery, JWKS, POST /oauth/token)\n\
             \nCall the backend through the gateway with a token (valid for one hour):\n\
             \n  curl -H 'Authorization: Bearer {token}' {gateway}/\n\
             \nWithout a token the gateway answers 401:\n\
             \n  curl -i {gateway}/\n\
             \nGet a fresh token (cached until shortly before it expires):\n\
             \n  JWTGATE_CLIENT_SECRET={secret} cargo run --release -- token --token-url {token_url} --client-id {client} --audience {audience}\n\
             \nor ask the issuer directly:\n\
             \n  curl -s {token_url} -d grant_type=client_credentials -d client_id={client} -d client_secret={secret} -d audience={audience}\n",
            backend = self.backend_addr,
            issuer = self.issuer.issuer(),
            secret = settings.client_secret,
            client = settings.client_id,
            audience = settings.audience,
        )
    }

    /// Stops all three parts, letting open requests finish.
    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
