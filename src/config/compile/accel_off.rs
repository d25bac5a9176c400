//! Built without the `acceleration` feature: routes asking for a cache, compression or static
//! files are refused.

use super::Compiler;
use crate::config::file::*;
use crate::config::Reporter;
use crate::route::Action;
use toml::Spanned;

impl Compiler {
    pub(super) fn refuse_acceleration(&self, rep: &mut Reporter, r: &RouteSection, _caches: &super::cache::Caches) {
        if let Some(zone) = &r.cache {
            rep.error(Some(zone.span()), super::NOT_BUILT_IN, Some(super::NOT_BUILT_IN_HINT));
        }
        if let Some(setting) = &r.compress {
            rep.error(
                Some(setting.span()),
                super::NOT_BUILT_IN,
                Some(super::NOT_BUILT_IN_HINT),
            );
        }
    }

    pub(super) fn files_action(&self, rep: &mut Reporter, sec: &Spanned<FilesSection>) -> Option<Action> {
        rep.error(Some(sec.span()), super::NOT_BUILT_IN, Some(super::NOT_BUILT_IN_HINT));
        None
    }
}
