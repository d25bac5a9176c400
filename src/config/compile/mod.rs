//! Turns the parsed file into a `Snapshot`, checking cross-references on the way. Every problem
//! is collected; nothing is half-applied. Serde types end here: the snapshot holds compiled
//! routers, regexes, TLS configs and references to long-lived backends.

#[cfg(feature = "acceleration")]
mod accel;
#[cfg(not(feature = "acceleration"))]
#[path = "accel_off.rs"]
mod accel;
#[cfg(feature = "acceleration")]
mod cache;
#[cfg(not(feature = "acceleration"))]
#[path = "cache_off.rs"]
mod cache;
mod route;

use super::file::*;
use super::{Diagnostics, Reporter, Source};
use crate::route::{Route, Router};
use crate::runtime::Runtime;
use crate::server::limits::Limits;
use crate::server::{tls, ListenerSpec};
use crate::snapshot::{AccessLogTarget, Snapshot};
use crate::upstream::balance::{Balancer, HashKey, HashRing};
use crate::upstream::{HealthPolicy, PassivePolicy, PoolPolicy, Upstream, UpstreamTls};
use http::HeaderName;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use toml::Spanned;
/// Compiles a parsed config. `rt` provides the long-lived backends the snapshot points at.
pub fn compile(file: &FileConfig, source: &Source, rt: &Runtime, generation: u64) -> Result<Snapshot, Diagnostics> {
    let mut rep = Reporter::new(&source.name, &source.text);
    let base = Path::new(&source.name)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let c = Compiler { base };

    let listeners = c.listeners(&mut rep, &file.listeners);
    let upstreams: BTreeMap<String, Arc<Upstream>> = file
        .upstreams
        .iter()
        .filter_map(|(name, sec)| c.upstream(&mut rep, rt, name, sec).map(|u| (name.clone(), Arc::new(u))))
        .collect();
    let caches = c.caches(&mut rep, rt, file);
    let routes: Vec<Route> = file
        .routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| c.route(&mut rep, i, r, &upstreams, &caches, file))
        .collect();

    let admin = file
        .admin
        .as_ref()
        .and_then(|a| match a.listen.get_ref().parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                rep.error(
                    Some(a.listen.span()),
                    format!("invalid admin address `{}`", a.listen.get_ref()),
                    Some("write \"ip:port\", e.g. \"127.0.0.1:9900\""),
                );
                None
            }
        });
    if file.listener_count == 0 {
        rep.error(
            Some(0..0),
            "no [[listener]] configured: nothing would accept connections",
            Some("add [[listener]] with listen = \"127.0.0.1:8080\""),
        );
    }
    let access_log = match file.log.access.as_deref() {
        None | Some("stdout") => AccessLogTarget::Stdout,
        Some("stderr") => AccessLogTarget::Stderr,
        Some("off") => AccessLogTarget::Off,
        Some(path) => AccessLogTarget::File(c.path(path).display().to_string()),
    };
    if !rep.is_empty() {
        return Err(Diagnostics(rep.found));
    }
    Ok(Snapshot {
        generation,
        listeners,
        router: Router { routes },
        upstreams: upstreams.into_values().collect(),
        #[cfg(feature = "acceleration")]
        caches: caches.into_values().collect(),
        admin,
        admin_token: file.admin.as_ref().and_then(|a| a.token.clone()),
        access_log,
        log_level: file.log.level.clone(),
        workers: file.runtime.workers.unwrap_or(0),
        shutdown_timeout: file.runtime.shutdown_timeout.map_or(Duration::from_secs(10), |d| d.0),
        watch: file.runtime.watch.unwrap_or(true),
    })
}

/// Why a cache, compression or files setting is refused by a build without them.
#[cfg(not(feature = "acceleration"))]
const NOT_BUILT_IN: &str =
    "this frontdesk was built without the `acceleration` feature (cache, compression, static files)";
#[cfg(not(feature = "acceleration"))]
const NOT_BUILT_IN_HINT: &str = "rebuild with default features, or remove this setting";

struct Compiler {
    /// Relative file paths in the config are relative to the config file's directory.
    base: PathBuf,
}

impl Compiler {
    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn listeners(&self, rep: &mut Reporter, sections: &[Spanned<ListenerSection>]) -> Vec<Arc<ListenerSpec>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for sec in sections {
            let l = sec.get_ref();
            let Ok(addr) = l.listen.get_ref().parse::<SocketAddr>() else {
                rep.error(
                    Some(l.listen.span()),
                    format!("invalid listen address `{}`", l.listen.get_ref()),
                    Some("write \"ip:port\", e.g. \"127.0.0.1:8080\" or \"[::]:443\""),
                );
                continue;
            };
            if !seen.insert(l.listen.get_ref().clone()) {
                rep.error(
                    Some(l.listen.span()),
                    format!("listen address `{}` is used twice", l.listen.get_ref()),
                    Some("each [[listener]] needs its own address"),
                );
                continue;
            }
            let limits = limits(l.limits.as_ref());
            let http2 = l.http2.unwrap_or(true);
            let tls = match &l.tls {
                None => {
                    if let Some(ca) = &l.client_ca {
                        rep.error(
                            Some(ca.span()),
                            "client_ca needs TLS on this listener",
                            Some("add tls = [{ cert = \"...\", key = \"...\" }]"),
                        );
                    }
                    None
                }
                Some(certs) if certs.is_empty() => {
                    rep.error(
                        Some(sec.span()),
                        "tls is an empty list",
                        Some("give at least one { cert, key } pair"),
                    );
                    None
                }
                Some(certs) => {
                    let paths: Vec<(String, String)> = certs
                        .iter()
                        .map(|c| {
                            (
                                self.path(c.get_ref().cert.get_ref()).display().to_string(),
                                self.path(c.get_ref().key.get_ref()).display().to_string(),
                            )
                        })
                        .collect();
                    let files: Vec<tls::CertFiles> =
                        paths.iter().map(|(c, k)| tls::CertFiles { cert: c, key: k }).collect();
                    let ca_path = l
                        .client_ca
                        .as_ref()
                        .map(|ca| self.path(ca.get_ref()).display().to_string());
                    let required = l.client_auth != Some(ClientAuthMode::Optional);
                    match tls::server_config(&files, ca_path.as_deref().map(|p| (p, required)), http2) {
                        Ok(cfg) => Some(cfg),
                        Err(e) => {
                            let span = match &e {
                                tls::TlsError::ClientCa { .. } => l.client_ca.as_ref().map(|c| c.span()),
                                tls::TlsError::Key { path, .. } => certs
                                    .iter()
                                    .find(|c| self.path(c.get_ref().key.get_ref()).display().to_string() == *path)
                                    .map(|c| c.get_ref().key.span()),
                                tls::TlsError::Cert { path, .. } | tls::TlsError::Mismatch { path, .. } => certs
                                    .iter()
                                    .find(|c| self.path(c.get_ref().cert.get_ref()).display().to_string() == *path)
                                    .map(|c| c.get_ref().cert.span()),
                            };
                            rep.error(span.or(Some(sec.span())), e.to_string(), Some("certificates and keys are PEM files; relative paths start at the config file's directory"));
                            None
                        }
                    }
                }
            };
            if l.tls.is_some() && tls.is_none() {
                continue;
            }
            let request_id_header = match &l.request_id_header {
                None => HeaderName::from_static("x-request-id"),
                Some(h) => match HeaderName::from_bytes(h.get_ref().as_bytes()) {
                    Ok(n) => n,
                    Err(_) => {
                        rep.error(Some(h.span()), format!("invalid header name `{}`", h.get_ref()), None);
                        continue;
                    }
                },
            };
            out.push(Arc::new(ListenerSpec {
                listen: l.listen.get_ref().clone(),
                addr,
                http: ListenerSpec::http_builder(&limits),
                http2,
                tls,
                redirect_https: l.redirect_https.unwrap_or(false).then_some(l.https_port.unwrap_or(443)),
                trusted_proxies: l.trusted_proxies.iter().flatten().map(|c| *c.get_ref()).collect(),
                request_id_header,
                defer_accept: l.defer_accept.unwrap_or(false),
                limits,
            }));
        }
        out
    }

    fn upstream(
        &self,
        rep: &mut Reporter,
        rt: &Runtime,
        name: &str,
        sec: &Spanned<UpstreamSection>,
    ) -> Option<Upstream> {
        let u = sec.get_ref();
        let start = rep.found.len();
        let mut addrs = Vec::new();
        let mut weights = Vec::new();
        if u.servers.get_ref().is_empty() {
            rep.error(
                Some(u.servers.span()),
                format!("upstream `{name}` has no servers"),
                Some("servers = [\"127.0.0.1:9001\"]"),
            );
        }
        for s in u.servers.get_ref() {
            let (addr, weight) = match s.get_ref() {
                ServerEntry::Addr(a) => (a.clone(), 1),
                ServerEntry::Detailed(d) => (d.addr.clone(), d.weight.unwrap_or(1)),
            };
            if !valid_host_port(&addr) {
                rep.error(
                    Some(s.span()),
                    format!("invalid server address `{addr}`"),
                    Some("write \"host:port\", e.g. \"127.0.0.1:9001\""),
                );
            }
            if weight == 0 || weight > 1000 {
                rep.error(
                    Some(s.span()),
                    format!("weight {weight} is out of range"),
                    Some("weights are 1 to 1000"),
                );
            }
            if addrs.contains(&addr) {
                rep.error(
                    Some(s.span()),
                    format!("server `{addr}` is listed twice"),
                    Some("raise its weight instead"),
                );
            }
            addrs.push(addr);
            weights.push(weight);
        }
        let kind = u.balance.as_ref().map_or(BalanceKind::RoundRobin, |b| *b.get_ref());
        let hash_key = match (&u.hash_key, kind) {
            (Some(k), BalanceKind::Hash) => match HashKey::parse(k.get_ref()) {
                Ok(k) => Some(k),
                Err(e) => {
                    rep.error(
                        Some(k.span()),
                        e,
                        Some("use client_ip, path, header:NAME or cookie:NAME"),
                    );
                    None
                }
            },
            (None, BalanceKind::Hash) => {
                rep.error(
                    u.balance.as_ref().map(|b| b.span()),
                    "balance = \"hash\" needs hash_key",
                    Some("e.g. hash_key = \"client_ip\""),
                );
                None
            }
            (Some(k), _) => {
                rep.error(
                    Some(k.span()),
                    "hash_key is only used with balance = \"hash\"",
                    Some("remove it or set balance = \"hash\""),
                );
                None
            }
            (None, _) => None,
        };
        let http2 = u.protocol.unwrap_or_default() == UpstreamProtocol::Http2;
        let tls = u.tls.as_ref().and_then(|t| {
            let ca = t.ca.as_ref().map(|c| self.path(c.get_ref()).display().to_string());
            match tls::client_config(ca.as_deref(), t.verify.unwrap_or(true), http2) {
                Ok(config) => Some(UpstreamTls {
                    config,
                    sni: t.sni.clone(),
                }),
                Err(e) => {
                    rep.error(
                        t.ca.as_ref().map(|c| c.span()).or(Some(sec.span())),
                        e.to_string(),
                        Some("ca is a PEM file of trusted certificates"),
                    );
                    None
                }
            }
        });
        let health = u.health.as_ref().map(|h| HealthPolicy {
            path: h.path.as_ref().map(|p| p.get_ref().clone()),
            interval: h.interval.map_or(Duration::from_secs(5), |d| d.0),
            timeout: h.timeout.map_or(Duration::from_secs(2), |d| d.0),
            rise: h.rise.unwrap_or(2).max(1),
            fall: h.fall.unwrap_or(2).max(1),
            expect: h
                .expect_status
                .unwrap_or(super::value::StatusRange { low: 200, high: 399 }),
        });
        if let Some(p) = u.health.as_ref().and_then(|h| h.path.as_ref()) {
            if !p.get_ref().starts_with('/') {
                rep.error(Some(p.span()), "health check path must start with '/'", None);
            }
        }
        if rep.found.len() > start {
            return None;
        }
        let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let balancer = match kind {
            BalanceKind::RoundRobin => Balancer::round_robin(fastrand::usize(..addrs.len().max(1))),
            BalanceKind::WeightedRoundRobin => Balancer::Weighted(Mutex::new(Vec::new())),
            BalanceKind::LeastConn => Balancer::LeastConn,
            BalanceKind::P2cEwma => Balancer::P2cEwma,
            BalanceKind::Random => Balancer::Random,
            BalanceKind::Hash => Balancer::Hash(
                HashRing::new(&refs, &weights),
                hash_key.clone().unwrap_or(HashKey::ClientIp),
            ),
        };
        let passive = u.passive.as_ref();
        let defaults = PassivePolicy::default();
        Some(Upstream {
            name: Arc::from(name),
            backends: addrs.iter().map(|a| rt.backend(name, a)).collect(),
            weights,
            balancer,
            hash_key,
            sticky_cookie: u
                .sticky
                .as_ref()
                .map(|s| s.cookie.clone().unwrap_or_else(|| "fd_sticky".into())),
            http2,
            tls,
            connect_timeout: u.connect_timeout.map_or(Duration::from_secs(3), |d| d.0),
            response_timeout: u.response_timeout.map_or(Duration::from_secs(60), |d| d.0),
            retries: u.retries.unwrap_or(1),
            passive: PassivePolicy {
                consecutive_failures: passive
                    .and_then(|p| p.consecutive_failures)
                    .unwrap_or(defaults.consecutive_failures),
                base_ejection: passive
                    .and_then(|p| p.base_ejection)
                    .map_or(defaults.base_ejection, |d| d.0),
                max_ejection: passive
                    .and_then(|p| p.max_ejection)
                    .map_or(defaults.max_ejection, |d| d.0),
            },
            pool: PoolPolicy {
                max_idle: u.pool.as_ref().and_then(|p| p.max_idle).unwrap_or(64),
                idle_timeout: u
                    .pool
                    .as_ref()
                    .and_then(|p| p.idle_timeout)
                    .map_or(Duration::from_secs(60), |d| d.0),
            },
            health,
        })
    }
}

fn limits(sec: Option<&LimitsSection>) -> Limits {
    let d = Limits::default();
    let Some(s) = sec else { return d };
    Limits {
        max_header_bytes: s.max_header_bytes.map_or(d.max_header_bytes, |b| b.0 as usize),
        max_headers: s.max_headers.unwrap_or(d.max_headers),
        max_uri_bytes: s.max_uri_bytes.map_or(d.max_uri_bytes, |b| b.0 as usize),
        max_body_bytes: s.max_body_bytes.map_or(d.max_body_bytes, |b| b.0),
        header_read_timeout: s.header_read_timeout.map_or(d.header_read_timeout, |t| t.0),
        idle_timeout: s.idle_timeout.map_or(d.idle_timeout, |t| t.0),
        h2_max_concurrent_streams: s.h2_max_concurrent_streams.unwrap_or(d.h2_max_concurrent_streams),
        h2_max_pending_resets: s.h2_max_pending_resets.unwrap_or(d.h2_max_pending_resets),
    }
}

fn valid_host_port(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && !host.contains(['/', ' ']) && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}
