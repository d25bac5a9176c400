//! Disk tier: one file per stored variant, so cached objects survive a restart and the cache can
//! hold more than memory. Each file carries its own key and a CRC-32 over everything; a file
//! that is truncated, corrupt or not ours is deleted, never served. Writes go to a temporary
//! file renamed into place, so a crash leaves either the old object or the new one. A write
//! failure (disk full, directory gone) is logged once and the cache keeps working from memory.
//!
//! Every method here does blocking file I/O: call from a blocking task.
//!
//! File layout: `FDC1` | meta length (u32 LE) | body length (u64 LE) | meta (JSON) | body | CRC-32.

use super::store::Entry;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_cache_semantics::CachePolicy;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

const MAGIC: &[u8; 4] = b"FDC1";
const PREFIX: usize = 16;
const SUFFIX: &str = "fdc";
/// Eviction brings the tier down to this share of its size, so it does not run on every write.
const EVICT_TO: f64 = 0.9;

#[derive(Serialize, Deserialize)]
struct Meta {
    key: String,
    url: String,
    vary_key: String,
    #[serde(default)]
    req_host: Option<String>,
    tags: Vec<String>,
    status: u16,
    #[serde(with = "http_serde::header_map")]
    headers: HeaderMap,
    policy: CachePolicy,
    fresh_until: SystemTime,
    stale_while_revalidate: Duration,
    stale_if_error: Duration,
    may_serve_stale: bool,
    encoded: bool,
}

struct Variant {
    vary_key: String,
    file: PathBuf,
    size: u64,
    url: String,
    tags: Vec<String>,
    last_used: u64,
}

#[derive(Default)]
struct Index {
    by_key: HashMap<String, Vec<Variant>>,
    used: u64,
    clock: u64,
    /// Bumped by every removal: a write that started before it must not bring its object back.
    epoch: u64,
}

pub struct DiskTier {
    dir: PathBuf,
    capacity: u64,
    index: Mutex<Index>,
    /// Set after a failed write (logged once), cleared by the next write that succeeds.
    failing: AtomicBool,
    write_errors: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("cannot use cache directory {dir}: {source}")]
    Directory { dir: PathBuf, source: std::io::Error },
}

impl DiskTier {
    /// Opens (creating if needed) the directory and indexes what a previous run stored.
    pub fn open(dir: &Path, capacity: u64) -> Result<DiskTier, DiskError> {
        let fail = |source| DiskError::Directory {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(fail)?;
        let tier = DiskTier {
            dir: dir.to_path_buf(),
            capacity,
            index: Mutex::new(Index::default()),
            failing: AtomicBool::new(false),
            write_errors: AtomicU64::new(0),
        };
        let mut found = 0;
        for item in std::fs::read_dir(dir).map_err(fail)?.flatten() {
            let path = item.path();
            let is_ours = path.extension().is_some_and(|e| e == SUFFIX);
            if path.to_string_lossy().contains(".tmp.") {
                // Left by a crash in the middle of a write.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if !is_ours {
                continue;
            }
            match read_meta(&path) {
                Ok((meta, size)) => {
                    tier.add(&meta.key, &meta.vary_key, path, size, meta.url, meta.tags);
                    found += 1;
                }
                Err(why) => {
                    tracing::warn!(file = %path.display(), reason = why, "dropping unreadable cache file");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        tier.evict_if_full();
        tracing::info!(dir = %dir.display(), objects = found, "disk cache tier opened");
        Ok(tier)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn contains(&self, key: &str) -> bool {
        self.lock().by_key.contains_key(key)
    }

    /// The epoch to pass to `save` for an entry stored now.
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Every stored variant of `key` that reads back intact.
    pub fn load(&self, key: &str) -> Vec<Entry> {
        let files: Vec<PathBuf> = {
            let mut index = self.lock();
            index.clock += 1;
            let now = index.clock;
            match index.by_key.get_mut(key) {
                Some(list) => list
                    .iter_mut()
                    .map(|v| {
                        v.last_used = now;
                        v.file.clone()
                    })
                    .collect(),
                None => return Vec::new(),
            }
        };
        let mut out = Vec::new();
        for file in files {
            match read_entry(&file) {
                Ok(entry) if entry.0 == key => out.push(entry.1),
                Ok(_) => self.drop_file(key, &file, "holds another key"),
                Err(why) => self.drop_file(key, &file, why),
            }
        }
        out
    }

    /// Writes `entry` for `key`, unless a removal happened since `epoch`.
    pub fn save(&self, key: &str, entry: &Entry, epoch: u64) {
        if entry.body.len() as u64 > self.capacity {
            return;
        }
        let file = self
            .dir
            .join(format!("{:016x}.{SUFFIX}", file_hash(key, &entry.vary_key)));
        let tmp = self.dir.join(format!(
            "{:016x}.tmp.{:08x}",
            file_hash(key, &entry.vary_key),
            fastrand::u32(..)
        ));
        let bytes = match encode(key, entry) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(key, error = %e, "cannot serialise cache entry for disk");
                return;
            }
        };
        if let Err(e) = std::fs::write(&tmp, &bytes) {
            let _ = std::fs::remove_file(&tmp);
            self.write_failed(&e);
            return;
        }
        let index = self.lock();
        if index.epoch != epoch {
            drop(index);
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        if let Err(e) = std::fs::rename(&tmp, &file) {
            drop(index);
            let _ = std::fs::remove_file(&tmp);
            self.write_failed(&e);
            return;
        }
        drop(index);
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!(dir = %self.dir.display(), "disk cache tier writes again");
        }
        self.add(
            key,
            &entry.vary_key,
            file,
            bytes.len() as u64,
            entry.url.clone(),
            entry.tags.clone(),
        );
        self.evict_if_full();
    }

    fn write_failed(&self, e: &std::io::Error) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "disk cache tier cannot write; serving from memory only until writes succeed again");
        }
    }

    /// Failed writes since start.
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }

    /// Removes every variant of `key`.
    pub fn remove(&self, key: &str) -> bool {
        let gone = {
            let mut index = self.lock();
            index.epoch += 1;
            let gone = index.by_key.remove(key).unwrap_or_default();
            index.used -= gone.iter().map(|v| v.size).sum::<u64>();
            gone
        };
        for v in &gone {
            let _ = std::fs::remove_file(&v.file);
        }
        !gone.is_empty()
    }

    /// Removes the keys with a variant whose URL and tags match; returns those keys.
    pub fn remove_where(&self, pred: impl Fn(&str, &[String]) -> bool) -> Vec<String> {
        let gone: Vec<(String, Vec<Variant>)> = {
            let mut index = self.lock();
            index.epoch += 1;
            let keys: Vec<String> = index
                .by_key
                .iter()
                .filter(|(_, list)| list.iter().any(|v| pred(&v.url, &v.tags)))
                .map(|(k, _)| k.clone())
                .collect();
            let gone: Vec<(String, Vec<Variant>)> = keys
                .into_iter()
                .filter_map(|k| index.by_key.remove(&k).map(|v| (k, v)))
                .collect();
            index.used -= gone.iter().flat_map(|(_, l)| l).map(|v| v.size).sum::<u64>();
            gone
        };
        for (_, list) in &gone {
            for v in list {
                let _ = std::fs::remove_file(&v.file);
            }
        }
        gone.into_iter().map(|(k, _)| k).collect()
    }

    /// (objects, bytes) on disk.
    pub fn usage(&self) -> (usize, u64) {
        let index = self.lock();
        (index.by_key.values().map(Vec::len).sum(), index.used)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, key: &str, vary_key: &str, file: PathBuf, size: u64, url: String, tags: Vec<String>) {
        let mut index = self.lock();
        index.clock += 1;
        let last_used = index.clock;
        let list = index.by_key.entry(key.to_string()).or_default();
        let mut freed = 0;
        if let Some(pos) = list.iter().position(|v| v.vary_key == vary_key) {
            freed = list.remove(pos).size;
        }
        list.push(Variant {
            vary_key: vary_key.to_string(),
            file,
            size,
            url,
            tags,
            last_used,
        });
        index.used = index.used - freed + size;
    }

    fn drop_file(&self, key: &str, file: &Path, why: &str) {
        tracing::warn!(file = %file.display(), reason = why, "dropping corrupt cache file");
        let _ = std::fs::remove_file(file);
        let mut index = self.lock();
        let mut freed = 0;
        if let Some(list) = index.by_key.get_mut(key) {
            if let Some(pos) = list.iter().position(|v| v.file == file) {
                freed = list.remove(pos).size;
            }
            if list.is_empty() {
                index.by_key.remove(key);
            }
        }
        index.used -= freed;
    }

    /// Least recently used variants go until the tier is back under its target size.
    fn evict_if_full(&self) {
        let doomed: Vec<PathBuf> = {
            let mut index = self.lock();
            if index.used <= self.capacity {
                return;
            }
            let target = (self.capacity as f64 * EVICT_TO) as u64;
            let mut all: Vec<(u64, String, PathBuf, u64)> = index
                .by_key
                .iter()
                .flat_map(|(k, list)| {
                    list.iter()
                        .map(move |v| (v.last_used, k.clone(), v.file.clone(), v.size))
                })
                .collect();
            all.sort_unstable_by_key(|(used, ..)| *used);
            let mut doomed = Vec::new();
            for (_, key, file, size) in all {
                if index.used <= target {
                    break;
                }
                if let Some(list) = index.by_key.get_mut(&key) {
                    list.retain(|v| v.file != file);
                    if list.is_empty() {
                        index.by_key.remove(&key);
                    }
                }
                index.used -= size;
                doomed.push(file);
            }
            doomed
        };
        for f in doomed {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// FNV-1a over key and variant: stable across builds (the key inside the file is checked).
fn file_hash(key: &str, vary_key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain([0]).chain(vary_key.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn encode(key: &str, e: &Entry) -> Result<Vec<u8>, serde_json::Error> {
    let meta = Meta {
        key: key.to_string(),
        url: e.url.clone(),
        vary_key: e.vary_key.clone(),
        req_host: e.req_host.as_ref().and_then(|h| h.to_str().ok()).map(str::to_string),
        tags: e.tags.clone(),
        status: e.status.as_u16(),
        headers: e.headers.clone(),
        policy: e.policy.clone(),
        fresh_until: e.fresh_until,
        stale_while_revalidate: e.stale_while_revalidate,
        stale_if_error: e.stale_if_error,
        may_serve_stale: e.may_serve_stale,
        encoded: e.encoded,
    };
    let meta = serde_json::to_vec(&meta)?;
    let mut out = Vec::with_capacity(PREFIX + meta.len() + e.body.len() + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&(e.body.len() as u64).to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(&e.body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Lengths from the prefix, checked against the file's size.
fn lengths(prefix: &[u8], file_len: u64) -> Result<(usize, u64), &'static str> {
    if prefix.len() < PREFIX || &prefix[..4] != MAGIC {
        return Err("not a frontdesk cache file");
    }
    let meta_len = u32::from_le_bytes(prefix[4..8].try_into().unwrap_or_default()) as usize;
    let body_len = u64::from_le_bytes(prefix[8..16].try_into().unwrap_or_default());
    let expected = (PREFIX as u64)
        .checked_add(meta_len as u64)
        .and_then(|n| n.checked_add(body_len))
        .and_then(|n| n.checked_add(4));
    if expected != Some(file_len) {
        return Err("truncated or overlong");
    }
    Ok((meta_len, body_len))
}

/// The metadata of a file (for indexing at start), without reading the body.
fn read_meta(path: &Path) -> Result<(Meta, u64), &'static str> {
    let mut f = std::fs::File::open(path).map_err(|_| "cannot open")?;
    let file_len = f.metadata().map_err(|_| "cannot stat")?.len();
    let mut prefix = [0u8; PREFIX];
    f.read_exact(&mut prefix).map_err(|_| "truncated")?;
    let (meta_len, _) = lengths(&prefix, file_len)?;
    let mut meta = vec![0; meta_len];
    f.read_exact(&mut meta).map_err(|_| "truncated")?;
    let meta: Meta = serde_json::from_slice(&meta).map_err(|_| "unreadable metadata")?;
    Ok((meta, file_len))
}

/// A whole entry, checksum verified: (key, entry).
fn read_entry(path: &Path) -> Result<(String, Entry), &'static str> {
    let data = std::fs::read(path).map_err(|_| "cannot read")?;
    let (meta_len, body_len) = lengths(&data, data.len() as u64)?;
    let (content, crc) = data.split_at(data.len() - 4);
    if crc32fast::hash(content).to_le_bytes() != crc {
        return Err("checksum mismatch");
    }
    let meta: Meta = serde_json::from_slice(&data[PREFIX..PREFIX + meta_len]).map_err(|_| "unreadable metadata")?;
    let data = Bytes::from(data);
    let body = data.slice(PREFIX + meta_len..PREFIX + meta_len + body_len as usize);
    let entry = Entry {
        policy: meta.policy,
        status: StatusCode::from_u16(meta.status).map_err(|_| "bad status")?,
        headers: meta.headers,
        body,
        sealed: None,
        url: meta.url,
        vary_key: meta.vary_key,
        req_host: meta.req_host.and_then(|h| http::HeaderValue::from_str(&h).ok()),
        tags: meta.tags,
        fresh_until: meta.fresh_until,
        stale_while_revalidate: meta.stale_while_revalidate,
        stale_if_error: meta.stale_if_error,
        may_serve_stale: meta.may_serve_stale,
        encoded: meta.encoded,
        memo: Default::default(),
    };
    Ok((meta.key, entry))
}

#[cfg(test)]
mod tests;
