//! `[cache.NAME]` zones: key rules, tag header, memory and disk tiers.

use super::Compiler;
use crate::cache::key::{KeyRule, QueryRule};
use crate::cache::Cache;
use crate::config::file::*;
use crate::config::Reporter;
use crate::runtime::Runtime;
use http::HeaderName;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

/// Disk tier size when `disk` gives none.
const DEFAULT_DISK_SIZE: u64 = 1 << 30;

/// The zones routes refer to by name.
pub(super) type Caches = BTreeMap<String, Arc<Cache>>;

impl Compiler {
    pub(super) fn caches(&self, rep: &mut Reporter, rt: &Runtime, file: &FileConfig) -> Caches {
        let mut disk_dirs: BTreeMap<PathBuf, &str> = BTreeMap::new();
        for (name, sec) in &file.caches {
            if let Some(d) = &sec.get_ref().disk {
                if let Some(other) = disk_dirs.insert(self.path(&d.get_ref().path), name) {
                    rep.error(
                        Some(d.span()),
                        format!("cache `{name}` uses the same disk directory as cache `{other}`"),
                        Some("give each cache zone its own directory"),
                    );
                }
            }
        }
        file.caches
            .iter()
            .filter_map(|(name, sec)| self.cache(rep, rt, name, sec).map(|z| (name.clone(), Arc::new(z))))
            .collect()
    }

    fn cache(&self, rep: &mut Reporter, rt: &Runtime, name: &str, sec: &Spanned<CacheSection>) -> Option<Cache> {
        let z = sec.get_ref();
        let start = rep.found.len();
        let disk = z.disk.as_ref().map(|d| {
            let size = d.get_ref().size.map_or(DEFAULT_DISK_SIZE, |s| s.0);
            (self.path(&d.get_ref().path), size, d.span())
        });
        let mut key = KeyRule::default();
        if let Some(k) = &z.key {
            if let Some(q) = &k.query {
                key.query = match q.get_ref() {
                    QueryKey::Mode(m) if m == "all" => QueryRule::All,
                    QueryKey::Mode(m) if m == "sorted" => QueryRule::Sorted,
                    QueryKey::Mode(m) if m == "none" => QueryRule::None,
                    QueryKey::Params(p) => QueryRule::Keep(p.clone()),
                    QueryKey::Mode(m) => {
                        rep.error(
                            Some(q.span()),
                            format!("unknown query key mode `{m}`"),
                            Some("use \"all\", \"sorted\", \"none\" or a list of parameter names"),
                        );
                        QueryRule::All
                    }
                };
            }
            for h in k.headers.iter().flatten() {
                match HeaderName::from_bytes(h.get_ref().as_bytes()) {
                    Ok(n) => key.headers.push(n),
                    Err(_) => rep.error(Some(h.span()), format!("invalid header name `{}`", h.get_ref()), None),
                }
            }
            key.cookies = k.cookies.clone().unwrap_or_default();
        }
        let tag_header = match &z.tag_header {
            None => HeaderName::from_static("surrogate-key"),
            Some(h) => match HeaderName::from_bytes(h.get_ref().as_bytes()) {
                Ok(n) => n,
                Err(_) => {
                    rep.error(Some(h.span()), format!("invalid header name `{}`", h.get_ref()), None);
                    HeaderName::from_static("surrogate-key")
                }
            },
        };
        if rep.found.len() > start {
            return None;
        }
        let memory = z.memory.map_or(256 * 1024 * 1024, |b| b.0);
        let store = match rt.cache_store(name, memory, disk.as_ref().map(|(p, s, _)| (p.as_path(), *s))) {
            Ok(s) => s,
            Err(e) => {
                let span = disk.map(|(_, _, span)| span);
                rep.error(
                    span,
                    e.to_string(),
                    Some("the directory must be creatable and writable by frontdesk"),
                );
                return None;
            }
        };
        Some(Cache {
            name: Arc::from(name),
            store,
            key,
            max_object: z.max_object.map_or(8 * 1024 * 1024, |b| b.0),
            store_set_cookie: z.store_set_cookie.unwrap_or(false),
            stale_if_down: z.stale_if_down.unwrap_or(true),
            lock_timeout: z.lock_timeout.map_or(Duration::from_secs(5), |d| d.0),
            tag_header,
        })
    }
}
