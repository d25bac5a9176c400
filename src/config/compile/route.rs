//! Compiling `[[route]]` sections: match conditions, actions and stages (cache, compression and
//! files in `accel.rs`).

use super::Compiler;
use crate::config::file::*;
use crate::config::Reporter;
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
        caches: &super::cache::Caches,
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
            self.files_action(rep, files)?
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
        #[cfg(feature = "acceleration")]
        let (cache, compress) = self.cache_and_compress(rep, r, caches, file);
        #[cfg(not(feature = "acceleration"))]
        self.refuse_acceleration(rep, r, caches);
        if rep.found.len() > start {
            return None;
        }
        Some(Route {
            name,
            matcher,
            action,
            #[cfg(feature = "acceleration")]
            cache,
            #[cfg(feature = "acceleration")]
            compress,
            rewrite: PathRewrite {
                strip_prefix: r.strip_prefix.as_ref().map(|p| p.get_ref().clone()),
                add_prefix: r.add_prefix.as_ref().map(|p| p.get_ref().clone()),
            },
            stages,
        })
    }
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
