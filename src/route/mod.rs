//! Route stage: finds the first route (in file order) whose match fits the request.
//! Reads the request head only; must not change it (rewrites belong to the route's action).

mod action;
mod matcher;
mod view;

pub use action::{Action, FixedResponse, Redirect, Template};
pub use matcher::{HostPattern, Matcher, PathMatch, ValueMatch};
pub use view::RequestView;

use crate::pipeline::stage::Stage;
use crate::transform::PathRewrite;
use http::request::Parts;
use std::sync::Arc;

pub struct Route {
    pub name: Arc<str>,
    pub matcher: Matcher,
    pub action: Action,
    pub rewrite: PathRewrite,
    /// Run in order around the action (see `pipeline::stage`).
    pub stages: Vec<Stage>,
    /// Cache zone in front of the upstream (proxy routes only).
    #[cfg(feature = "acceleration")]
    pub cache: Option<Arc<crate::cache::Cache>>,
    /// Response compression (proxy routes only).
    #[cfg(feature = "acceleration")]
    pub compress: Option<Arc<crate::compress::Compression>>,
}

impl Route {
    /// Compression is configured (never in a build without the `acceleration` feature).
    pub fn compresses(&self) -> bool {
        #[cfg(feature = "acceleration")]
        return self.compress.is_some();
        #[cfg(not(feature = "acceleration"))]
        false
    }
}

#[derive(Default)]
pub struct Router {
    pub routes: Vec<Route>,
}

impl Router {
    /// `host` is the request's host, lower-cased and without port.
    pub fn find<R: RequestView>(&self, req: &R, host: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.matcher.matches(req, host))
    }
}

/// The request's host: the Host header (HTTP/1.1) or the URI authority (HTTP/2), lower-cased,
/// without port. Empty when the request names none.
pub fn request_host(parts: &Parts) -> String {
    let raw = parts
        .uri
        .authority()
        .map(|a| a.host())
        .or_else(|| parts.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or("");
    let host = strip_port(raw);
    host.to_ascii_lowercase()
}

fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h.find(']').map(|i| &h[..=i]).unwrap_or(h);
    }
    match h.rfind(':') {
        Some(i) if h[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &h[..i],
        _ => h,
    }
}

/// The value of cookie `name` in the request's Cookie headers.
pub fn cookie_value<'a, R: RequestView>(req: &'a R, name: &str) -> Option<&'a str> {
    req.header_values("cookie")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
}

/// The (percent-decoded) value of query parameter `name`.
pub fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
