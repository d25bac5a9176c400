//! Long-lived state that survives reloads: the current snapshot, backends (with their health,
//! counters and connection pools), health-check tasks and the access log writer.

#[cfg(feature = "acceleration")]
use crate::cache::disk::{DiskError, DiskTier};
#[cfg(feature = "acceleration")]
use crate::cache::store::Store;
use crate::observe::access_log::AccessLog;
use crate::snapshot::Snapshot;
use crate::upstream::{health, Backend};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::task::JoinHandle;

pub struct Runtime {
    snapshot: ArcSwap<Snapshot>,
    /// Generation of the live snapshot: connections compare it (a read-only load) to know when
    /// to refresh the snapshot they hold, instead of touching the shared refcount per request.
    generation: AtomicU64,
    /// Backends by (upstream name, address): a reload that keeps a backend keeps its state.
    backends: Mutex<HashMap<(String, String), Arc<Backend>>>,
    health_tasks: Mutex<Vec<JoinHandle<()>>>,
    access_log: OnceLock<&'static AccessLog>,
    maintenance: Mutex<Option<JoinHandle<()>>>,
    /// Cache stores by zone name: a reload keeps what is cached (unless the size changed).
    #[cfg(feature = "acceleration")]
    caches: Mutex<HashMap<String, Arc<Store>>>,
    /// One budget of sealed body files for all zones, old and new: they share the process's
    /// file descriptors.
    #[cfg(feature = "acceleration")]
    sealed_files: Arc<crate::cache::sealed::FileBudget>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(log) = self.access_log.get() {
            log.close();
        }
    }
}

impl Runtime {
    pub fn new() -> Arc<Runtime> {
        let rt = Arc::new(Runtime {
            snapshot: ArcSwap::from_pointee(Snapshot::empty()),
            generation: AtomicU64::new(0),
            backends: Mutex::new(HashMap::new()),
            health_tasks: Mutex::new(Vec::new()),
            access_log: OnceLock::new(),
            maintenance: Mutex::new(None),
            #[cfg(feature = "acceleration")]
            caches: Mutex::new(HashMap::new()),
            #[cfg(feature = "acceleration")]
            sealed_files: crate::cache::sealed::FileBudget::from_process_limit(),
        });
        let weak = Arc::downgrade(&rt);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let Some(rt) = weak.upgrade() else { return };
                rt.reap_idle_connections();
            }
        });
        *rt.maintenance.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        rt
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn access_log(&self) -> Option<&'static AccessLog> {
        self.access_log.get().copied()
    }

    /// Set once at start; the destination does not change on reload.
    pub fn set_access_log(&self, log: &'static AccessLog) {
        let _ = self.access_log.set(log);
    }

    /// Backends of every upstream in the live snapshot, for the admin API.
    pub fn upstream_status(&self) -> serde_json::Value {
        let snap = self.snapshot();
        let ups: serde_json::Map<String, serde_json::Value> = snap
            .upstreams
            .iter()
            .map(|u| {
                let backends: Vec<serde_json::Value> = u
                    .backends
                    .iter()
                    .map(|b| {
                        serde_json::json!({
                            "addr": &*b.addr,
                            "healthy": b.is_healthy(),
                            "ejected": b.is_ejected(),
                            "available": b.is_available(),
                            "inflight": b.inflight.load(std::sync::atomic::Ordering::Relaxed),
                            "idle_connections": b.pool.idle_count(),
                        })
                    })
                    .collect();
                (u.name.to_string(), serde_json::Value::Array(backends))
            })
            .collect();
        serde_json::json!({ "generation": snap.generation, "upstreams": ups })
    }

    /// The backend for `addr` in upstream `upstream`, created on first use.
    pub fn backend(&self, upstream: &str, addr: &str) -> Arc<Backend> {
        let mut map = self.backends.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((upstream.to_string(), addr.to_string()))
            .or_insert_with(|| Arc::new(Backend::new(addr)))
            .clone()
    }

    #[cfg(feature = "acceleration")]
    /// The store of cache zone `name` with `capacity` bytes of memory, kept across reloads.
    /// With `disk`, the disk tier (directory, size) is opened or kept; a change of either
    /// tier's settings starts that zone afresh (what is on disk is indexed again).
    pub fn cache_store(
        &self,
        name: &str,
        capacity: u64,
        disk: Option<(&std::path::Path, u64)>,
    ) -> Result<Arc<Store>, DiskError> {
        let mut map = self.caches.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = map.get(name) {
            let same_disk = match (&store.disk, disk) {
                (None, None) => true,
                (Some(d), Some((dir, size))) => d.dir() == dir && d.capacity() == size,
                _ => false,
            };
            if store.capacity == capacity && same_disk {
                return Ok(store.clone());
            }
        }
        let tier = disk.map(|(dir, size)| DiskTier::open(dir, size)).transpose()?;
        let store = Store::new(capacity, tier, self.sealed_files.clone());
        map.insert(name.to_string(), store.clone());
        Ok(store)
    }

    /// Makes `snap` the live snapshot, restarts health checks for it and forgets backends it no
    /// longer uses (their pooled connections close when the last request using them ends).
    pub fn install(&self, snap: Arc<Snapshot>) {
        let mut tasks = self.health_tasks.lock().unwrap_or_else(|p| p.into_inner());
        for t in tasks.drain(..) {
            t.abort();
        }
        for up in &snap.upstreams {
            if let Some(t) = health::spawn(up.clone()) {
                tasks.push(t);
            }
        }
        drop(tasks);
        let mut map = self.backends.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|(up, addr), _| {
            snap.upstreams
                .iter()
                .any(|u| &*u.name == up && u.backends.iter().any(|b| &*b.addr == addr))
        });
        drop(map);
        #[cfg(feature = "acceleration")]
        self.caches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|name, _| snap.caches.iter().any(|c| &*c.name == name));
        let generation = snap.generation;
        self.snapshot.store(snap);
        self.generation.store(generation, Ordering::Release);
    }

    fn reap_idle_connections(&self) {
        let snap = self.snapshot();
        for up in &snap.upstreams {
            for b in &up.backends {
                b.pool.reap(up.pool.idle_timeout);
            }
        }
    }

    /// Stops background tasks (health checks, maintenance).
    pub fn stop(&self) {
        for t in self.health_tasks.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            t.abort();
        }
        if let Some(t) = self.maintenance.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }
}
