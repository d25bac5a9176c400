//! Predicates of a route's `match`. All present predicates must hold.

use super::{cookie_value, query_value, RequestView};
use http::{HeaderName, Method};
use regex::Regex;

pub enum HostPattern {
    Exact(String),
    /// `*.example.com` stored as ".example.com": matches any name ending in it (not the bare domain).
    Suffix(String),
}

impl HostPattern {
    pub fn parse(s: &str) -> HostPattern {
        let s = s.to_ascii_lowercase();
        match s.strip_prefix('*') {
            Some(rest) => HostPattern::Suffix(rest.to_string()),
            None => HostPattern::Exact(s),
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }
}

pub enum PathMatch {
    Any,
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

pub enum ValueMatch {
    Present,
    Equals(String),
}

impl ValueMatch {
    pub fn parse(s: &str) -> ValueMatch {
        if s == "*" {
            ValueMatch::Present
        } else {
            ValueMatch::Equals(s.to_string())
        }
    }

    fn matches(&self, v: Option<&str>) -> bool {
        match (self, v) {
            (ValueMatch::Present, Some(_)) => true,
            (ValueMatch::Equals(want), Some(v)) => want == v,
            (_, None) => false,
        }
    }
}

pub struct Matcher {
    pub hosts: Vec<HostPattern>,
    pub path: PathMatch,
    pub methods: Vec<Method>,
    pub headers: Vec<(HeaderName, ValueMatch)>,
    pub cookies: Vec<(String, ValueMatch)>,
    pub query: Vec<(String, ValueMatch)>,
}

impl Matcher {
    pub fn any() -> Matcher {
        Matcher {
            hosts: Vec::new(),
            path: PathMatch::Any,
            methods: Vec::new(),
            headers: Vec::new(),
            cookies: Vec::new(),
            query: Vec::new(),
        }
    }

    pub fn matches<R: RequestView>(&self, req: &R, host: &str) -> bool {
        if !self.hosts.is_empty() && !self.hosts.iter().any(|h| h.matches(host)) {
            return false;
        }
        let path = req.path();
        let path_ok = match &self.path {
            PathMatch::Any => true,
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Regex(r) => r.is_match(path),
        };
        if !path_ok {
            return false;
        }
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m.as_str() == req.method()) {
            return false;
        }
        for (name, want) in &self.headers {
            if !req
                .header_values(name.as_str())
                .any(|v| want.matches(std::str::from_utf8(v).ok()))
            {
                return false;
            }
        }
        for (name, want) in &self.cookies {
            if !want.matches(cookie_value(req, name)) {
                return false;
            }
        }
        let query = req.query().unwrap_or("");
        for (name, want) in &self.query {
            if !want.matches(query_value(query, name).as_deref()) {
                return false;
            }
        }
        true
    }
}
