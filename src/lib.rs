//! frontdesk: a reverse proxy and edge server.
//!
//! Wiring only. The request path is: `server` (accept, TLS, HTTP) → `pipeline` (limits, route,
//! stages, action) → `upstream` (balance, pool, retry) → back through `pipeline` → `observe`.
//! Configuration flows `config` (parse → compile) → `snapshot`, swapped into the `runtime`.

pub mod admin;
#[cfg(feature = "acceleration")]
pub mod cache;
#[cfg(feature = "acceleration")]
pub mod compress;
pub mod config;
pub mod demo;
#[cfg(feature = "acceleration")]
pub mod files;
pub mod observe;
pub mod pipeline;
pub mod route;
pub mod runtime;
pub mod server;
pub mod snapshot;
pub mod transform;
pub mod upstream;

use config::reload::Reloader;
use config::{Diagnostics, Source};
use runtime::Runtime;
use server::Listeners;
use snapshot::Snapshot;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration:\n{0}")]
    Config(Diagnostics),
    #[error("cannot start: {0}")]
    Io(#[from] std::io::Error),
}

/// A running proxy: listeners, admin listener and background tasks.
pub struct Proxy {
    rt: Arc<Runtime>,
    listeners: Mutex<Listeners>,
    reloader: Reloader,
    admin: Option<(SocketAddr, JoinHandle<()>)>,
}

impl Proxy {
    /// Compiles `source`, binds every listener and starts serving. Must run inside tokio.
    pub async fn start(source: &Source) -> Result<Proxy, StartError> {
        let rt = Runtime::new();
        let reloader = Reloader::default();
        let snap = reloader.prepare(source, &rt).map_err(StartError::Config)?;
        if let Some(log) = observe::access_log::AccessLog::start(&snap.access_log)? {
            rt.set_access_log(log);
        }
        let mut listeners = Listeners::default();
        reloader
            .commit(&snap, source, &rt, &mut listeners)
            .map_err(StartError::Config)?;
        let admin = match snap.admin {
            Some(addr) => Some(admin::start(addr, rt.clone()).await?),
            None => None,
        };
        Ok(Proxy {
            rt,
            listeners: Mutex::new(listeners),
            reloader,
            admin,
        })
    }

    /// Validates and applies a new configuration; on error the running one stays.
    pub fn reload(&self, source: &Source) -> Result<Arc<Snapshot>, Diagnostics> {
        let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.rt.snapshot();
        let snap = self.reloader.apply(source, &self.rt, &mut listeners)?;
        if snap.admin != old.admin || snap.access_log != old.access_log || snap.workers != old.workers {
            tracing::warn!("changes to [admin], [log] access and [runtime] workers take effect after a restart");
        }
        Ok(snap)
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.rt.snapshot()
    }

    /// Bound address of the listener configured as `listen` (resolves port 0).
    pub fn listener_addr(&self, listen: &str) -> Option<SocketAddr> {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .local_addrs()
            .get(listen)
            .copied()
    }

    /// Bound addresses in configuration order.
    pub fn listener_addrs(&self) -> Vec<SocketAddr> {
        let addrs = self.listeners.lock().unwrap_or_else(|p| p.into_inner()).local_addrs();
        self.rt
            .snapshot()
            .listeners
            .iter()
            .filter_map(|l| addrs.get(&l.listen).copied())
            .collect()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(a, _)| *a)
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    /// Stops accepting, lets in-flight requests finish for up to `timeout`, then stops.
    /// Returns the number of connections still open when it gave up.
    pub async fn shutdown(&self, timeout: Duration) -> usize {
        let tracker = {
            let mut l = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            l.stop_all();
            l.tracker.clone()
        };
        let left = tracker.wait_closed(timeout).await;
        if let Some((_, t)) = &self.admin {
            t.abort();
        }
        self.rt.stop();
        left
    }
}

/// `frontdesk run`: serve until SIGTERM/SIGINT; reload on SIGHUP and when the file changes.
pub async fn run(path: PathBuf, source: Source) -> Result<(), StartError> {
    let proxy = Proxy::start(&source).await?;
    announce_ready(&proxy);
    serve_until_signal(&proxy, Some((path, source.text))).await
}

pub fn announce_ready(proxy: &Proxy) {
    let addrs: Vec<String> = proxy.listener_addrs().iter().map(ToString::to_string).collect();
    tracing::info!(summary = %proxy.snapshot().summary(), "configuration loaded");
    let admin = proxy.admin_addr().map(|a| format!(" admin={a}")).unwrap_or_default();
    // A stable line that scripts and tests wait for.
    eprintln!("frontdesk ready listeners={}{admin}", addrs.join(","));
}

/// `file`: the config file and the text the running configuration was loaded from (the baseline
/// for noticing changes: re-reading it here would miss an edit made right after start).
pub async fn serve_until_signal(proxy: &Proxy, file: Option<(PathBuf, String)>) -> Result<(), StartError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let (path, mut last_text) = match file {
        Some((p, text)) => (Some(p), Some(text)),
        None => (None, None),
    };
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = hup.recv() => {
                if let Some(p) = &path {
                    last_text = std::fs::read_to_string(p).ok();
                    reload_from(proxy, p, "SIGHUP");
                }
            }
            _ = poll.tick(), if path.is_some() && proxy.snapshot().watch => {
                if let Some(p) = &path {
                    // An empty read is a file caught between truncation and write: wait for the rest.
                    let now = std::fs::read_to_string(p).ok().filter(|t| !t.is_empty());
                    if now.is_some() && now != last_text {
                        last_text = now;
                        reload_from(proxy, p, "file change");
                    }
                }
            }
            _ = usr1.recv() => {
                if let Some(log) = proxy.runtime().access_log() {
                    log.reopen();
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let timeout = proxy.snapshot().shutdown_timeout;
    tracing::info!(?timeout, "shutting down: draining connections");
    let left = proxy.shutdown(timeout).await;
    if left > 0 {
        tracing::warn!(
            connections = left,
            "drain timeout reached; closing remaining connections"
        );
    }
    if let Some(log) = proxy.runtime().access_log() {
        log.sync(Duration::from_secs(2));
    }
    eprintln!("frontdesk stopped");
    Ok(())
}

fn reload_from(proxy: &Proxy, path: &std::path::Path, why: &str) {
    let result = Source::read(path).and_then(|s| proxy.reload(&s));
    match result {
        Ok(snap) => {
            tracing::info!(trigger = why, generation = snap.generation, summary = %snap.summary(), "configuration reloaded");
            eprintln!("frontdesk reloaded generation={}", snap.generation);
        }
        Err(diags) => {
            tracing::error!(
                trigger = why,
                "reload rejected; the previous configuration keeps serving:\n{diags}"
            );
            eprintln!("frontdesk reload rejected");
        }
    }
}
