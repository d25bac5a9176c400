//! The immutable, compiled form of one configuration. Requests hold an `Arc<Snapshot>` for their
//! whole life, so a reload never changes the rules under a running request.

use crate::route::Router;
use crate::server::ListenerSpec;
use crate::upstream::Upstream;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Where access log lines go. Chosen at start; a change needs a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Off,
    Stdout,
    Stderr,
    File(String),
}

pub struct Snapshot {
    pub generation: u64,
    pub listeners: Vec<Arc<ListenerSpec>>,
    pub router: Router,
    pub upstreams: Vec<Arc<Upstream>>,
    #[cfg(feature = "acceleration")]
    pub caches: Vec<Arc<crate::cache::Cache>>,
    pub admin: Option<SocketAddr>,
    /// Bearer token for the admin API's write operations.
    pub admin_token: Option<String>,
    pub access_log: AccessLogTarget,
    pub log_level: Option<String>,
    /// Worker threads (0 = one per core). Read at start only.
    pub workers: usize,
    pub shutdown_timeout: Duration,
    pub watch: bool,
}

impl Snapshot {
    pub fn empty() -> Snapshot {
        Snapshot {
            generation: 0,
            listeners: Vec::new(),
            router: Router::default(),
            upstreams: Vec::new(),
            #[cfg(feature = "acceleration")]
            caches: Vec::new(),
            admin: None,
            admin_token: None,
            access_log: AccessLogTarget::Off,
            log_level: None,
            workers: 0,
            shutdown_timeout: Duration::from_secs(10),
            watch: false,
        }
    }

    /// One line for logs and `frontdesk check`.
    pub fn summary(&self) -> String {
        let backends: usize = self.upstreams.iter().map(|u| u.backends.len()).sum();
        format!(
            "{} listener(s), {} route(s), {} upstream(s) with {} backend(s)",
            self.listeners.len(),
            self.router.routes.len(),
            self.upstreams.len(),
            backends
        )
    }
}
