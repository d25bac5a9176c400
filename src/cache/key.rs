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

impl KeyRule {
    /// The primary key; `url` is also what purge by URL and prefix compare against.
    pub fn primary(&self, scheme: &str, host: &str, parts: &Parts) -> String {
        let mut key = String::with_capacity(64);
        key.push_str(scheme);
        key.push_str("://");
        key.push_str(host);
        key.push_str(parts.uri.path());
        let query = parts.uri.query().unwrap_or("");
        let kept: Option<Vec<&str>> = match &self.query {
            QueryRule::All => {
                if !query.is_empty() {
                    key.push('?');
                    key.push_str(query);
                }
                None
            }
            QueryRule::None => None,
            QueryRule::Sorted => Some(query.split('&').filter(|p| !p.is_empty()).collect()),
            QueryRule::Keep(names) => Some(
                query
                    .split('&')
                    .filter(|p| names.iter().any(|n| p.split('=').next() == Some(n.as_str())))
                    .collect(),
            ),
        };
        if let Some(mut params) = kept {
            params.sort_unstable();
            if !params.is_empty() {
                key.push('?');
                key.push_str(&params.join("&"));
            }
        }
        for h in &self.headers {
            key.push('\n');
            key.push_str(h.as_str());
            key.push(':');
            for v in parts.header_values(h.as_str()) {
                key.push_str(&String::from_utf8_lossy(v));
            }
        }
        for c in &self.cookies {
            key.push_str("\ncookie ");
            key.push_str(c);
            key.push('=');
            key.push_str(cookie_value(parts, c).unwrap_or(""));
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
