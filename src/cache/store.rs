//! Cache storage: a memory tier bounded in bytes with TinyLFU admission and eviction (moka),
//! holding per primary key the stored variants, an optional disk tier behind it (written as
//! entries are stored, read when memory misses), and the table of misses in flight used to
//! coalesce concurrent requests for one key.

use super::disk::DiskTier;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_cache_semantics::CachePolicy;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// One stored response.
pub struct Entry {
    pub policy: CachePolicy,
    /// The stored response head, hop-by-hop fields removed, as the origin sent it.
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// A large body's sealed memory file (`body` is then its mapping), for hits sent with
    /// `sendfile`; made when the entry enters the memory tier.
    pub sealed: Option<Arc<super::sealed::SealedBody>>,
    /// The primary key's URL part (for purge by URL and prefix).
    pub url: String,
    /// Which variant this is: request header values named by the response's Vary.
    pub vary_key: String,
    /// The Host header of the request that stored it (the policy matches it exactly).
    pub req_host: Option<http::HeaderValue>,
    /// Surrogate keys for purge by tag.
    pub tags: Vec<String>,
    pub fresh_until: SystemTime,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    /// False when the response forbids serving it stale (no-cache, must-revalidate, ...).
    pub may_serve_stale: bool,
    /// The body was encoded by frontdesk: its ETag is our weakened copy of the origin's.
    pub encoded: bool,
    /// Worked out on the first fast hit and reused by later ones (a stored entry never changes).
    pub memo: HitMemo,
}

/// What every fast hit of one entry would otherwise recompute from its header fields.
#[derive(Default)]
pub struct HitMemo {
    vary_star: OnceLock<bool>,
    /// A moment at or after the response arrived, and the entry's age then: from there the age
    /// grows with the clock (RFC 9111 §4.2.3), so later hits need not re-read Age.
    age_anchor: OnceLock<(SystemTime, Duration)>,
    /// The HTTP/1.1 fast path's rendering of the stored head (see `server::h1::hit`).
    pub h1_head: OnceLock<RenderedHead>,
}

/// A status line and stored fields as written on the wire, without the ones a hit writes
/// itself and without `without` (the request id field of the listener that rendered it).
pub struct RenderedHead {
    pub without: http::HeaderName,
    pub bytes: Box<[u8]>,
}

impl Entry {
    /// `Vary: *`: never reused without revalidation.
    pub fn varies_on_everything(&self) -> bool {
        *self.memo.vary_star.get_or_init(|| {
            self.headers
                .get_all(http::header::VARY)
                .iter()
                .any(|v| v.as_bytes().split(|b| *b == b',').any(|n| n.trim_ascii() == b"*"))
        })
    }

    /// The entry's current age (the policy's, without re-reading its Age field on every hit).
    pub fn age(&self, now: SystemTime) -> Duration {
        if let Some((at, age)) = self.memo.age_anchor.get() {
            if let Ok(since) = now.duration_since(*at) {
                return *age + since;
            }
        }
        let age = self.policy.age(now);
        // Before the response time the age does not grow yet; anchor only past it.
        if age > self.policy.age(SystemTime::UNIX_EPOCH) {
            let _ = self.memo.age_anchor.set((now, age));
        }
        age
    }

    /// How long it has been stale (zero while fresh).
    pub fn stale_for(&self, now: SystemTime) -> Duration {
        now.duration_since(self.fresh_until).unwrap_or(Duration::ZERO)
    }
}

pub type Variants = Arc<Vec<Arc<Entry>>>;

/// At most this many variants per key; the oldest goes first.
const MAX_VARIANTS: usize = 16;
/// Bookkeeping cost counted per entry on top of the body.
const ENTRY_OVERHEAD: usize = 1024;

pub struct Store {
    /// Keys are request URLs, so the hasher is seeded per process (foldhash's quality variant:
    /// a fraction of SipHash's cost per lookup).
    entries: moka::sync::Cache<String, Variants, foldhash::quality::RandomState>,
    inflight: Mutex<HashMap<String, watch::Receiver<()>>>,
    pub capacity: u64,
    pub disk: Option<Arc<DiskTier>>,
    files: Arc<super::sealed::FileBudget>,
}

/// Being first to miss a key makes a request the leader: it fetches, the others wait for it.
pub enum Flight {
    Leader(FlightGuard),
    Follower(watch::Receiver<()>),
}

/// Held by the leader until its response is stored or abandoned; dropping it wakes followers.
pub struct FlightGuard {
    store: Arc<Store>,
    key: String,
    _done: watch::Sender<()>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.store
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

impl Store {
    pub fn new(capacity: u64, disk: Option<DiskTier>, files: Arc<super::sealed::FileBudget>) -> Arc<Store> {
        let entries = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|key: &String, variants: &Variants| {
                let bytes: usize = variants
                    .iter()
                    .map(|e| e.body.len() + e.headers.len() * 64 + ENTRY_OVERHEAD)
                    .sum::<usize>()
                    + key.len();
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .build_with_hasher(foldhash::quality::RandomState::default());
        Arc::new(Store {
            entries,
            inflight: Mutex::new(HashMap::new()),
            capacity,
            files,
            disk: disk.map(Arc::new),
        })
    }

    /// The stored variants of `key` held in memory.
    pub fn peek(&self, key: &str) -> Option<Variants> {
        self.entries.get(key)
    }

    /// The stored variants of `key`: from memory, or read back from disk (and kept in memory).
    pub async fn lookup(&self, key: &str) -> Option<Variants> {
        if let Some(v) = self.entries.get(key) {
            return Some(v);
        }
        let disk = self.disk.as_ref().filter(|d| d.contains(key))?.clone();
        let owned = key.to_string();
        let loaded = tokio::task::spawn_blocking(move || disk.load(&owned)).await.ok()?;
        if loaded.is_empty() {
            return None;
        }
        // Answer from what was read even if the memory tier declines to admit it.
        let variants: Vec<Arc<Entry>> = loaded.into_iter().map(|e| self.insert_memory(key, e)).collect();
        Some(Arc::new(variants))
    }

    /// Stores `entry`, replacing the variant with the same Vary values, in memory and on disk.
    pub fn insert(&self, key: &str, entry: Entry) {
        let entry = self.insert_memory(key, entry);
        self.persist(key, entry);
    }

    fn persist(&self, key: &str, entry: Arc<Entry>) {
        let Some(disk) = &self.disk else { return };
        let (disk, key, epoch) = (disk.clone(), key.to_string(), disk.epoch());
        let write = move || disk.save(&key, &entry, epoch);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(write)),
            Err(_) => write(),
        }
    }

    fn insert_memory(&self, key: &str, mut entry: Entry) -> Arc<Entry> {
        if entry.sealed.is_none() {
            if let Some((body, sealed)) = super::sealed::seal(&entry.body, &self.files) {
                entry.body = body;
                entry.sealed = Some(sealed);
            }
        }
        let mut list: Vec<Arc<Entry>> = self
            .entries
            .get(key)
            .map(|v| v.iter().filter(|e| e.vary_key != entry.vary_key).cloned().collect())
            .unwrap_or_default();
        if list.len() >= MAX_VARIANTS {
            list.remove(0);
        }
        let entry = Arc::new(entry);
        list.push(entry.clone());
        self.entries.insert(key.to_string(), Arc::new(list));
        entry
    }

    /// Replaces one stored variant (after a 304 refreshed its headers).
    pub fn replace(&self, key: &str, old: &Arc<Entry>, new: Entry) {
        let Some(list) = self.entries.get(key) else { return };
        let new = Arc::new(new);
        let mut replaced = false;
        let list: Vec<Arc<Entry>> = list
            .iter()
            .map(|e| {
                if Arc::ptr_eq(e, old) {
                    replaced = true;
                    new.clone()
                } else {
                    e.clone()
                }
            })
            .collect();
        self.entries.insert(key.to_string(), Arc::new(list));
        if replaced {
            self.persist(key, new);
        }
    }

    pub fn remove(&self, key: &str) -> bool {
        let on_disk = self.disk.as_ref().is_some_and(|d| d.remove(key));
        self.entries.remove(key).is_some() || on_disk
    }

    /// Removes every key with a variant whose URL and tags match `pred`, in memory and on
    /// disk; returns how many keys went.
    pub fn remove_where(&self, pred: impl Fn(&str, &[String]) -> bool) -> usize {
        let mut doomed: std::collections::HashSet<String> = self
            .entries
            .iter()
            .filter(|(_, v)| v.iter().any(|e| pred(&e.url, &e.tags)))
            .map(|(k, _)| k.as_str().to_string())
            .collect();
        if let Some(disk) = &self.disk {
            doomed.extend(disk.remove_where(&pred));
        }
        for k in &doomed {
            self.entries.invalidate(k.as_str());
        }
        doomed.len()
    }

    pub fn join(self: &Arc<Self>, key: &str) -> Flight {
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = inflight.get(key) {
            return Flight::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        inflight.insert(key.to_string(), rx);
        Flight::Leader(FlightGuard {
            store: self.clone(),
            key: key.to_string(),
            _done: tx,
        })
    }

    pub fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    pub fn weighted_size(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }
}
