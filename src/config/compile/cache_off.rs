//! Built without the `acceleration` feature: a config with `[cache.NAME]` zones is refused.

use super::Compiler;
use crate::config::file::*;
use crate::config::Reporter;
use crate::runtime::Runtime;
use std::collections::BTreeMap;

/// No zones can exist in this build.
pub(super) type Caches = BTreeMap<String, ()>;

impl Compiler {
    pub(super) fn caches(&self, rep: &mut Reporter, _rt: &Runtime, file: &FileConfig) -> Caches {
        for sec in file.caches.values() {
            rep.error(Some(sec.span()), super::NOT_BUILT_IN, Some(super::NOT_BUILT_IN_HINT));
        }
        Caches::new()
    }
}
