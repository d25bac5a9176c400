//! What a matched route does: proxy to an upstream, redirect, answer with a fixed response, or
//! serve files.

use crate::upstream::Upstream;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use regex::Regex;
use std::sync::Arc;

pub enum Action {
    Proxy(Arc<Upstream>),
    Redirect(Redirect),
    Respond(FixedResponse),
    #[cfg(feature = "acceleration")]
    Files(Arc<crate::files::FileServer>),
}

pub struct Redirect {
    pub status: StatusCode,
    pub location: Template,
    /// The route's `path_regex`, whose captures `$1`/`${name}` refer to.
    pub captures_from: Option<Regex>,
}

pub struct FixedResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

enum Piece {
    Literal(String),
    Index(usize),
    Named(String),
    Host,
    Path,
    Query,
}

/// A redirect location with placeholders, parsed once at compile time.
pub struct Template(Vec<Piece>);

impl Template {
    /// `$1`..`$99`, `${name}`, `{host}`, `{path}`, `{query}`; `$$` is a literal `$`.
    pub fn parse(s: &str) -> Template {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = s;
        while let Some(c) = rest.chars().next() {
            let mut matched = None;
            if c == '$' {
                let after = &rest[1..];
                if let Some(r) = after.strip_prefix('$') {
                    lit.push('$');
                    rest = r;
                    continue;
                } else if let Some(r) = after.strip_prefix('{') {
                    if let Some(end) = r.find('}') {
                        matched = Some((Piece::Named(r[..end].to_string()), 2 + end + 1));
                    }
                } else {
                    let digits = after.bytes().take_while(u8::is_ascii_digit).count().min(2);
                    if digits > 0 {
                        if let Ok(n) = after[..digits].parse() {
                            matched = Some((Piece::Index(n), 1 + digits));
                        }
                    }
                }
            } else if c == '{' {
                for (name, piece) in [
                    ("{host}", Piece::Host),
                    ("{path}", Piece::Path),
                    ("{query}", Piece::Query),
                ] {
                    if rest.starts_with(name) {
                        matched = Some((piece, name.len()));
                        break;
                    }
                }
            }
            match matched {
                Some((piece, len)) => {
                    if !lit.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut lit)));
                    }
                    pieces.push(piece);
                    rest = &rest[len..];
                }
                None => {
                    lit.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Literal(lit));
        }
        Template(pieces)
    }

    pub fn render(&self, parts: &Parts, host: &str, captures: Option<&Regex>) -> String {
        let path = parts.uri.path();
        let caps = captures.and_then(|r| r.captures(path));
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Literal(s) => out.push_str(s),
                Piece::Index(i) => {
                    if let Some(m) = caps.as_ref().and_then(|c| c.get(*i)) {
                        out.push_str(m.as_str());
                    }
                }
                Piece::Named(n) => {
                    if let Some(m) = caps.as_ref().and_then(|c| c.name(n)) {
                        out.push_str(m.as_str());
                    }
                }
                Piece::Host => out.push_str(host),
                Piece::Path => out.push_str(path),
                Piece::Query => out.push_str(parts.uri.query().unwrap_or("")),
            }
        }
        out
    }
}
