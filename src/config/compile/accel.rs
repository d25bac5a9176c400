//! Route settings of the `acceleration` feature: cache zone, compression, static files.

use super::cache::Caches;
use super::Compiler;
use crate::cache::Cache;
use crate::compress::{Coding, Compression, TypePattern};
use crate::config::file::*;
use crate::config::Reporter;
use crate::files::FileServer;
use crate::route::Action;
use std::sync::Arc;
use toml::Spanned;

impl Compiler {
    pub(super) fn cache_and_compress(
        &self,
        rep: &mut Reporter,
        r: &RouteSection,
        caches: &Caches,
        file: &FileConfig,
    ) -> (Option<Arc<Cache>>, Option<Arc<Compression>>) {
        let cache = match &r.cache {
            None => None,
            Some(zone) if r.upstream.is_none() => {
                rep.error(
                    Some(zone.span()),
                    "cache needs a route that proxies to an upstream",
                    None,
                );
                None
            }
            Some(zone) => match caches.get(zone.get_ref()) {
                Some(c) => Some(c.clone()),
                None => {
                    if !file.caches.contains_key(zone.get_ref()) {
                        let known: Vec<&str> = file.caches.keys().map(String::as_str).collect();
                        let hint = if known.is_empty() {
                            "declare it with [cache.NAME]".to_string()
                        } else {
                            format!("declared caches: {}", known.join(", "))
                        };
                        rep.error(
                            Some(zone.span()),
                            format!("unknown cache `{}`", zone.get_ref()),
                            Some(&hint),
                        );
                    }
                    None
                }
            },
        };
        let compress = r.compress.as_ref().and_then(|setting| {
            if r.upstream.is_none() && r.files.is_none() {
                rep.error(
                    Some(setting.span()),
                    "compress needs a route that proxies to an upstream or serves files",
                    Some("fixed responses and redirects are sent as they are"),
                );
                return None;
            }
            compression(rep, setting).map(Arc::new)
        });
        (cache, compress)
    }

    pub(super) fn files_action(&self, rep: &mut Reporter, sec: &Spanned<FilesSection>) -> Option<Action> {
        Some(Action::Files(Arc::new(self.file_server(rep, sec)?)))
    }

    fn file_server(&self, rep: &mut Reporter, sec: &Spanned<FilesSection>) -> Option<FileServer> {
        let f = sec.get_ref();
        let root = self.path(f.root.get_ref());
        let root = match std::fs::canonicalize(&root) {
            Ok(r) if r.is_dir() => r,
            Ok(_) => {
                rep.error(
                    Some(f.root.span()),
                    format!("files root `{}` is not a directory", root.display()),
                    None,
                );
                return None;
            }
            Err(e) => {
                rep.error(
                    Some(f.root.span()),
                    format!("files root `{}`: {e}", root.display()),
                    Some("relative paths are taken from the config file's directory"),
                );
                return None;
            }
        };
        let mut precompressed = vec![Coding::Brotli, Coding::Zstd, Coding::Gzip];
        if let Some(list) = &f.precompressed {
            precompressed.clear();
            for name in list.get_ref() {
                match Coding::parse(name) {
                    Some(c) if !precompressed.contains(&c) => precompressed.push(c),
                    Some(_) => {}
                    None => rep.error(
                        Some(list.span()),
                        format!("unknown encoding `{name}`"),
                        Some("use \"br\", \"zstd\" or \"gzip\" (files name.br, name.zst, name.gz)"),
                    ),
                }
            }
        }
        let index = f.index.clone().unwrap_or_else(|| vec!["index.html".to_string()]);
        if let Some(bad) = index
            .iter()
            .find(|i| i.is_empty() || i.contains('/') || i.as_str() == "..")
        {
            rep.error(
                Some(sec.span()),
                format!("index file `{bad}` must be a plain file name"),
                None,
            );
        }
        Some(FileServer {
            root,
            index,
            precompressed,
        })
    }
}

fn compression(rep: &mut Reporter, setting: &Spanned<CompressSetting>) -> Option<Compression> {
    let sec = match setting.get_ref() {
        CompressSetting::Switch(false) => return None,
        CompressSetting::Switch(true) => return Some(Compression::default()),
        CompressSetting::Table(t) => t,
    };
    let mut out = Compression::default();
    if let Some(list) = &sec.encodings {
        out.codings.clear();
        for name in list.get_ref() {
            match Coding::parse(name) {
                Some(c) if !out.codings.contains(&c) => out.codings.push(c),
                Some(_) => {}
                None => rep.error(
                    Some(list.span()),
                    format!("unknown encoding `{name}`"),
                    Some("use \"zstd\", \"br\" or \"gzip\""),
                ),
            }
        }
        if list.get_ref().is_empty() {
            rep.error(
                Some(list.span()),
                "encodings is empty",
                Some("use compress = false to turn compression off"),
            );
        }
    }
    if let Some(min) = sec.min_size {
        out.min_size = min.0;
    }
    if let Some(types) = &sec.types {
        out.types = types.iter().map(|t| TypePattern::new(t)).collect();
    }
    let mut level = |v: &Option<Spanned<i64>>, range: std::ops::RangeInclusive<i64>, name: &str| -> Option<i64> {
        let v = v.as_ref()?;
        if range.contains(v.get_ref()) {
            Some(*v.get_ref())
        } else {
            rep.error(
                Some(v.span()),
                format!("{name} must be between {} and {}", range.start(), range.end()),
                None,
            );
            None
        }
    };
    let widen = |v: &Option<Spanned<u32>>| v.as_ref().map(|s| Spanned::new(s.span(), i64::from(*s.get_ref())));
    if let Some(l) = level(&widen(&sec.gzip_level), 1..=9, "gzip_level") {
        out.levels.gzip = l as u32;
    }
    if let Some(l) = level(&widen(&sec.brotli_level), 0..=11, "brotli_level") {
        out.levels.brotli = l as u32;
    }
    let zstd = sec
        .zstd_level
        .as_ref()
        .map(|s| Spanned::new(s.span(), i64::from(*s.get_ref())));
    if let Some(l) = level(&zstd, 1..=19, "zstd_level") {
        out.levels.zstd = l as i32;
    }
    Some(out)
}
