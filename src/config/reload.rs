//! The one way a configuration goes live, whatever asked for it (start, SIGHUP, file change):
//! parse → compile → bind new listeners → swap the snapshot → update listeners.
//! Any failure before the swap leaves the running configuration untouched.

use super::{Diagnostic, Diagnostics, Source};
use crate::runtime::Runtime;
use crate::server::Listeners;
use crate::snapshot::Snapshot;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct Reloader {
    generation: AtomicU64,
}

impl Default for Reloader {
    fn default() -> Self {
        Reloader {
            generation: AtomicU64::new(1),
        }
    }
}

impl Reloader {
    /// Parses and compiles `source` without touching what runs.
    pub fn prepare(&self, source: &Source, rt: &Runtime) -> Result<Arc<Snapshot>, Diagnostics> {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(super::load(source, rt, generation)?))
    }

    /// Binds the snapshot's new listeners, then makes it live.
    pub fn commit(
        &self,
        snap: &Arc<Snapshot>,
        source: &Source,
        rt: &Arc<Runtime>,
        listeners: &mut Listeners,
    ) -> Result<(), Diagnostics> {
        let bound = listeners.bind_new(&snap.listeners).map_err(|e| {
            Diagnostics(vec![Diagnostic {
                file: source.name.clone(),
                line: 0,
                column: 0,
                message: e.to_string(),
                hint: Some("is another process using this address?".into()),
            }])
        })?;
        rt.install(snap.clone());
        listeners.apply(&snap.listeners, bound, rt);
        Ok(())
    }

    pub fn apply(
        &self,
        source: &Source,
        rt: &Arc<Runtime>,
        listeners: &mut Listeners,
    ) -> Result<Arc<Snapshot>, Diagnostics> {
        let snap = self.prepare(source, rt)?;
        self.commit(&snap, source, rt, listeners)?;
        Ok(snap)
    }
}
