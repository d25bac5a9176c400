//! Serde mirror of the TOML file. These types describe the file format only; they never reach the
//! request path (see `config::compile`). Every struct denies unknown keys so typos are reported.

mod cache;
mod listener;
mod route;
mod upstream;

pub use cache::*;
pub use listener::*;
pub use route::*;
pub use upstream::*;

use super::value::ConfigDuration;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// The whole file, assembled section by section by `config::load` so that every section's errors
/// are reported, not only the first.
#[derive(Debug, Default)]
pub struct FileConfig {
    pub runtime: RuntimeSection,
    pub admin: Option<AdminSection>,
    pub log: LogSection,
    pub listeners: Vec<Spanned<ListenerSection>>,
    pub upstreams: BTreeMap<String, Spanned<UpstreamSection>>,
    pub routes: Vec<Spanned<RouteSection>>,
    pub caches: BTreeMap<String, Spanned<CacheSection>>,
    /// `[[listener]]` entries written, including ones that failed to parse.
    pub listener_count: usize,
    /// Upstreams declared but not parsed (their errors are already reported).
    pub broken_upstreams: std::collections::BTreeSet<String>,
}

/// `[runtime]`: process-wide settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// Worker threads; 0 or absent = one per CPU core. Read at start only.
    pub workers: Option<usize>,
    /// How long shutdown waits for in-flight requests (default 10s).
    pub shutdown_timeout: Option<ConfigDuration>,
    /// Reload when the config file changes on disk (default true).
    pub watch: Option<bool>,
}

/// `[admin]`: the operations listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    pub listen: Spanned<String>,
    /// Bearer token required by the admin API's write operations (cache purge).
    pub token: Option<String>,
}

/// `[log]`: access log destination and diagnostic log level.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// "stdout", "stderr", "off" or a file path (appended to).
    pub access: Option<String>,
    /// Diagnostic log filter, e.g. "info" or "frontdesk=debug" (overridden by RUST_LOG).
    pub level: Option<String>,
}
