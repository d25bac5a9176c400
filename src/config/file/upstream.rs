use crate::config::value::{ConfigDuration, StatusRange};
use serde::Deserialize;
use toml::Spanned;

/// `[upstream.NAME]`: a pool of backend servers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    pub balance: Option<Spanned<BalanceKind>>,
    /// Key for `balance = "hash"`: "client_ip", "path", "header:NAME" or "cookie:NAME".
    pub hash_key: Option<Spanned<String>>,
    /// Pin each client to one backend with a cookie the proxy sets.
    pub sticky: Option<StickySection>,
    pub servers: Spanned<Vec<Spanned<ServerEntry>>>,
    pub health: Option<HealthSection>,
    pub passive: Option<PassiveSection>,
    /// Connect to backends over TLS.
    pub tls: Option<UpstreamTlsSection>,
    /// "http1" (default) or "http2" (required for gRPC).
    pub protocol: Option<UpstreamProtocol>,
    pub pool: Option<PoolSection>,
    pub connect_timeout: Option<ConfigDuration>,
    /// Time from sending a request until the response head arrives (default 60s) → 504.
    pub response_timeout: Option<ConfigDuration>,
    /// Extra attempts on another backend (default 1). See docs for when a retry is allowed.
    pub retries: Option<u32>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BalanceKind {
    RoundRobin,
    WeightedRoundRobin,
    LeastConn,
    P2cEwma,
    Random,
    Hash,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    Http2,
}

/// `"host:port"` or `{ addr = "host:port", weight = 3 }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ServerEntry {
    Addr(String),
    Detailed(ServerDetail),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerDetail {
    pub addr: String,
    pub weight: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickySection {
    /// Cookie name (default "fd_sticky").
    pub cookie: Option<String>,
}

/// Active health checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    /// HTTP path to GET; when absent the check is a TCP connect.
    pub path: Option<Spanned<String>>,
    pub interval: Option<ConfigDuration>,
    pub timeout: Option<ConfigDuration>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    /// Healthy statuses (default "200-399").
    pub expect_status: Option<StatusRange>,
}

/// Passive outlier detection from live traffic.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveSection {
    /// Consecutive connect errors or 5xx answers that eject a backend (default 5; 0 = off).
    pub consecutive_failures: Option<u32>,
    /// First ejection length, doubled on each further ejection (default 10s).
    pub base_ejection: Option<ConfigDuration>,
    /// Longest ejection (default 5m).
    pub max_ejection: Option<ConfigDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSection {
    /// Server name sent in SNI and verified; default: the host part of each server address.
    pub sni: Option<String>,
    /// PEM file of CAs to trust instead of the built-in web roots.
    pub ca: Option<Spanned<String>>,
    /// Verify the backend certificate (default true).
    pub verify: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    /// Idle keep-alive connections kept per backend (default 64).
    pub max_idle: Option<usize>,
    /// Idle connections older than this are closed (default 60s).
    pub idle_timeout: Option<ConfigDuration>,
}
