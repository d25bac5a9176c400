//! The cache key: scheme, host and path, the query as configured, and selected request headers
//! and cookies. Variants chosen by `Vary` are told apart inside one key (see `store`).

use crate::route::{cookie_value, RequestView};
use http::request::Parts;
use http::HeaderName;

pub enum QueryRule {
    /// As sent.
    All,
    /// Parameters sorted, so `?b=2&a=1` and `?a=1&b=2` share an entry.
    Sorted,
    /// Dropped.
    None,
    /// Only these parameters, sorted.
    Keep(Vec<String>),
}

pub struct KeyRule {
    pub query: QueryRule,
    pub headers: Vec<HeaderName>,
    pub cookies: Vec<String>,
}

impl Default for KeyRule {
    fn default() -> Self {
        KeyRule {
            query: QueryRule::All,
            headers: Vec::new(),
            cookies: Vec::new(),
        }
    }
}

/// One value, unambiguously: its length, then its bytes (hex when not UTF-8), so that no two
/// different sets of values can produce the same key.
fn push_value(key: &mut String, v: &[u8]) {
    key.push_str(&v.len().to_string());
    key.push(':');
    match std::str::from_utf8(v) {
        Ok(s) => key.push_str(s),
        Err(_) => {
            key.push('~');
            for b in v {
                key.push_str(&format!("{b:02x}"));
            }
        }
    }
    key.push(';');
}

impl KeyRule {
    /// Rewrites the request URI's query as the key sees it, so that requests sharing a key also
    /// match the stored response's URI (the cache policy compares URIs).
    pub fn normalize(&self, parts: &mut Parts) {
        if matches!(self.query, QueryRule::All) {
            return;
        }
        let path = parts.uri.path();
        let query = self.query_part(parts.uri.query().unwrap_or(""));
        let pq = if query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{query}")
        };
        let mut uri = http::uri::Parts::from(parts.uri.clone());
        if let Ok(p) = http::uri::PathAndQuery::try_from(pq) {
            uri.path_and_query = Some(p);
            if let Ok(u) = http::Uri::from_parts(uri) {
                parts.uri = u;
            }
        }
    }

    fn query_part(&self, query: &str) -> String {
        let mut params: Vec<&str> = match &self.query {
            QueryRule::All => return query.to_string(),
            QueryRule::None => return String::new(),
            QueryRule::Sorted => query.split('&').filter(|p| !p.is_empty()).collect(),
            QueryRule::Keep(names) => query
                .split('&')
                .filter(|p| names.iter().any(|n| p.split('=').next() == Some(n.as_str())))
                .collect(),
        };
        params.sort_unstable();
        params.join("&")
    }

    /// The key is the request URL as sent (no header, cookie or query rewriting).
    pub fn is_url_only(&self) -> bool {
        matches!(self.query, QueryRule::All) && self.headers.is_empty() && self.cookies.is_empty()
    }

    /// The primary key; `url` is also what purge by URL and prefix compare against.
    pub fn primary(&self, scheme: &str, host: &str, parts: &Parts) -> String {
        self.primary_for(scheme, host, parts.uri.path(), parts)
    }

    /// The primary key of `req` sent upstream with `path` (the route's rewrite applied).
    pub fn primary_for<R: RequestView>(&self, scheme: &str, host: &str, path: &str, req: &R) -> String {
        let parts = req;
        let mut key = String::with_capacity(64);
        key.push_str(scheme);
        key.push_str("://");
        key.push_str(host);
        key.push_str(path);
        let query = self.query_part(parts.query().unwrap_or(""));
        if !query.is_empty() {
            key.push('?');
            key.push_str(&query);
        }
        for h in &self.headers {
            key.push('\n');
            key.push_str(h.as_str());
            key.push(':');
            for v in parts.header_values(h.as_str()) {
                push_value(&mut key, v);
            }
        }
        for c in &self.cookies {
            key.push_str("\ncookie ");
            key.push_str(c);
            key.push('=');
            push_value(&mut key, cookie_value(parts, c).unwrap_or("").as_bytes());
        }
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::get(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn query_rules() {
        let p = parts("/a?b=2&a=1&utm=x", &[]);
        let key = |query| {
            KeyRule {
                query,
                ..Default::default()
            }
            .primary("http", "h", &p)
        };
        assert_eq!(key(QueryRule::All), "http://h/a?b=2&a=1&utm=x");
        assert_eq!(key(QueryRule::Sorted), "http://h/a?a=1&b=2&utm=x");
        assert_eq!(key(QueryRule::None), "http://h/a");
        assert_eq!(key(QueryRule::Keep(vec!["b".into(), "a".into()])), "http://h/a?a=1&b=2");
    }

    #[test]
    fn headers_and_cookies_split_entries() {
        let rule = KeyRule {
            query: QueryRule::All,
            headers: vec![HeaderName::from_static("accept-language")],
            cookies: vec!["currency".into()],
        };
        // Two header lines "a" and "b" must not collide with one line "ab".
        let two = KeyRule {
            headers: vec![HeaderName::from_static("x-t")],
            ..Default::default()
        };
        let split = two.primary("http", "h", &parts("/", &[("x-t", "a"), ("x-t", "b")]));
        let joined = two.primary("http", "h", &parts("/", &[("x-t", "ab")]));
        assert_ne!(split, joined);
        let en = rule.primary(
            "http",
            "h",
            &parts("/", &[("accept-language", "en"), ("cookie", "currency=eur")]),
        );
        let de = rule.primary(
            "http",
            "h",
            &parts("/", &[("accept-language", "de"), ("cookie", "currency=eur")]),
        );
        let usd = rule.primary(
            "http",
            "h",
            &parts("/", &[("accept-language", "en"), ("cookie", "currency=usd")]),
        );
        assert!(en != de && en != usd && de != usd);
    }
}
