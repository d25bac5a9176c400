//! Compiling `[[route]]` sections: match conditions, actions, stages, cache and compression.

use super::Compiler;
use crate::cache::Cache;
use crate::compress::{Coding, Compression, TypePattern};
use crate::config::file::*;
use crate::config::Reporter;
use crate::files::FileServer;
use crate::pipeline::stage::Stage;
use crate::route::{Action, FixedResponse, HostPattern, Matcher, PathMatch, Redirect, Route, Template, ValueMatch};
use crate::transform::{HeaderOps, PathRewrite};
use crate::upstream::Upstream;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use std::collections::BTreeMap;
use std::sync::Arc;
use toml::Spanned;

impl Compiler {
    pub(super) fn route(
        &self,
        rep: &mut Reporter,
        index: usize,
        sec: &Spanned<RouteSection>,
        upstreams: &BTreeMap<String, Arc<Upstream>>,
        caches: &BTreeMap<String, Arc<Cache>>,
        file: &FileConfig,
    ) -> Option<Route> {
        let declared = &file.upstreams;
        let r = sec.get_ref();
        let start = rep.found.len();
        let name: Arc<str> = Arc::from(
            r.name
                .clone()
                .unwrap_or_else(|| format!("route-{}", index + 1))
                .as_str(),
        );
        let matcher = r.matcher.as_ref().map_or_else(Matcher::any, |m| matcher(rep, m));
        let actions = [
            r.upstream.is_some(),
            r.redirect.is_some(),
            r.respond.is_some(),
            r.files.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if actions != 1 {
            rep.error(
                Some(sec.span()),
                format!("route `{name}` must have exactly one action, found {actions}"),
                Some("give one of upstream = \"NAME\", redirect = { to = \"...\" }, respond = { status = 200 } or files = { root = \"DIR\" }"),
            );
            return None;
        }
        let captures = r
            .matcher
            .as_ref()
            .and_then(|m| m.path_regex.as_ref())
            .and_then(|p| regex::Regex::new(p.get_ref()).ok());
        let action = if let Some(up) = &r.upstream {
            match upstreams.get(up.get_ref()) {
                Some(u) => Action::Proxy(u.clone()),
                None => {
                    if !declared.contains_key(up.get_ref()) && !file.broken_upstreams.contains(up.get_ref()) {
                        let known: Vec<&str> = declared.keys().map(String::as_str).collect();
                        let hint = if known.is_empty() {
                            "declare it with [upstream.NAME]".to_string()
                        } else {
                            format!("declared upstreams: {}", known.join(", "))
                        };
                        rep.error(
                            Some(up.span()),
                            format!("unknown upstream `{}`", up.get_ref()),
                            Some(&hint),
                        );
                    }
                    return None;
                }
            }
        } else if let Some(files) = &r.files {
            Action::Files(Arc::new(self.file_server(rep, files)?))
        } else if let Some(red) = &r.redirect {
            let status = red.get_ref().status.unwrap_or(302);
            if ![301, 302, 303, 307, 308].contains(&status) {
                rep.error(
                    Some(red.span()),
                    format!("redirect status {status} is not a redirect"),
                    Some("use 301, 302, 303, 307 or 308"),
                );
            }
            Action::Redirect(Redirect {
                status: StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND),
                location: Template::parse(&red.get_ref().to),
                captures_from: captures,
            })
        } else if let Some(resp) = &r.respond {
            let resp_sec = resp.get_ref();
            let status = resp_sec.status.unwrap_or(200);
            let status = match StatusCode::from_u16(status) {
                Ok(s) if (200..=599).contains(&status) => s,
                _ => {
                    rep.error(
                        Some(resp.span()),
                        format!("invalid status {status}"),
                        Some("use a status from 200 to 599"),
                    );
                    StatusCode::OK
                }
            };
            let mut headers = HeaderMap::new();
            for (k, v) in resp_sec.headers.iter().flatten() {
                match header_pair(k, v) {
                    Ok((n, v)) => {
                        headers.append(n, v);
                    }
                    Err(e) => rep.error(Some(resp.span()), e, None),
                }
            }
            if !headers.contains_key(http::header::CONTENT_TYPE) && resp_sec.body.is_some() {
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
            }
            Action::Respond(FixedResponse {
                status,
                headers,
                body: Bytes::from(resp_sec.body.clone().unwrap_or_default()),
            })
        } else {
            return None;
        };
        for p in [&r.strip_prefix, &r.add_prefix].into_iter().flatten() {
            if !p.get_ref().starts_with('/') {
                rep.error(
                    Some(p.span()),
                    format!("prefix `{}` must start with '/'", p.get_ref()),
                    None,
                );
            }
        }
        let mut stages = Vec::new();
        if let Some(ops) = &r.request_headers {
            stages.push(Stage::RequestHeaders(header_ops(rep, sec, ops)));
        }
        if let Some(ops) = &r.response_headers {
            stages.push(Stage::ResponseHeaders(header_ops(rep, sec, ops)));
        }
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
        if rep.found.len() > start {
            return None;
        }
        Some(Route {
            name,
            matcher,
            action,
            cache,
            compress,
            rewrite: PathRewrite {
                strip_prefix: r.strip_prefix.as_ref().map(|p| p.get_ref().clone()),
                add_prefix: r.add_prefix.as_ref().map(|p| p.get_ref().clone()),
            },
            stages,
        })
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

fn matcher(rep: &mut Reporter, m: &MatchSection) -> Matcher {
    let mut out = Matcher::any();
    if let Some(h) = &m.host {
        out.hosts = h
            .get_ref()
            .clone()
            .into_vec()
            .iter()
            .map(|h| HostPattern::parse(h))
            .collect();
    }
    let kinds: Vec<&Spanned<String>> = [&m.path, &m.path_prefix, &m.path_regex].into_iter().flatten().collect();
    if kinds.len() > 1 {
        rep.error(
            Some(kinds[1].span()),
            "use only one of path, path_prefix and path_regex",
            None,
        );
    }
    if let Some(p) = &m.path {
        out.path = PathMatch::Exact(p.get_ref().clone());
    } else if let Some(p) = &m.path_prefix {
        out.path = PathMatch::Prefix(p.get_ref().clone());
    } else if let Some(p) = &m.path_regex {
        match regex::Regex::new(p.get_ref()) {
            Ok(r) => out.path = PathMatch::Regex(r),
            Err(e) => rep.error(
                Some(p.span()),
                format!(
                    "invalid path_regex: {}",
                    e.to_string().lines().last().unwrap_or("").trim_start_matches("error: ")
                ),
                Some("regex syntax: https://docs.rs/regex"),
            ),
        }
    }
    for p in [&m.path, &m.path_prefix].into_iter().flatten() {
        if !p.get_ref().starts_with('/') {
            rep.error(
                Some(p.span()),
                format!("path `{}` must start with '/'", p.get_ref()),
                None,
            );
        }
    }
    if let Some(methods) = &m.method {
        for meth in methods.get_ref().clone().into_vec() {
            match Method::from_bytes(meth.to_ascii_uppercase().as_bytes()) {
                Ok(method) => out.methods.push(method),
                Err(_) => rep.error(Some(methods.span()), format!("invalid method `{meth}`"), None),
            }
        }
    }
    for (k, v) in m.header.iter().flatten() {
        match HeaderName::from_bytes(k.as_bytes()) {
            Ok(n) => out.headers.push((n, ValueMatch::parse(v.get_ref()))),
            Err(_) => rep.error(Some(v.span()), format!("invalid header name `{k}`"), None),
        }
    }
    out.cookies = m
        .cookie
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), ValueMatch::parse(v)))
        .collect();
    out.query = m
        .query
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), ValueMatch::parse(v)))
        .collect();
    out
}

fn header_ops(rep: &mut Reporter, sec: &Spanned<RouteSection>, ops: &HeaderOpsSection) -> HeaderOps {
    let mut out = HeaderOps::default();
    for (list, target) in [(&ops.set, &mut out.set), (&ops.add, &mut out.add)] {
        for (k, v) in list.iter().flatten() {
            match header_pair(k, v) {
                Ok(p) => target.push(p),
                Err(e) => rep.error(Some(sec.span()), e, None),
            }
        }
    }
    for k in ops.remove.iter().flatten() {
        match HeaderName::from_bytes(k.as_bytes()) {
            Ok(n) => out.remove.push(n),
            Err(_) => rep.error(Some(sec.span()), format!("invalid header name `{k}`"), None),
        }
    }
    out
}

fn header_pair(k: &str, v: &str) -> Result<(HeaderName, HeaderValue), String> {
    let n = HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("invalid header name `{k}`"))?;
    let v = HeaderValue::from_str(v).map_err(|_| format!("invalid value for header `{k}`"))?;
    Ok((n, v))
}
