//! A request's header block, decoded field by field, checked against RFC 9113 §8.2–8.3 and
//! turned into the `http` request parts the pipeline takes.

use crate::route::RequestView;
use crate::server::limits::Limits;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri, Version};
use std::ops::Range;

/// Why a request cannot be served; the stream is refused, the connection stays.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Refusal {
    /// Malformed (§8.1.1): the stream is reset with PROTOCOL_ERROR.
    Malformed(&'static str),
    /// More or larger fields than the listener allows: answered 431.
    TooLarge,
    /// A longer request target than the listener allows: answered 414.
    UriTooLong,
}

/// Collects one header block's fields as byte ranges in one buffer. The HPACK decoder calls
/// `field` for every field; the first problem is remembered and later fields are only counted,
/// so the block is still decoded to its end (the dynamic table must stay in step).
pub struct RequestBuilder {
    bytes: Vec<u8>,
    /// Regular fields: name and value ranges in `bytes`, names in lower case.
    fields: Vec<(Range<usize>, Range<usize>)>,
    method: Option<Range<usize>>,
    scheme: Option<Range<usize>>,
    authority: Option<Range<usize>>,
    path: Option<Range<usize>>,
    regular_seen: bool,
    cookie_seen: bool,
    counted_fields: usize,
    list_size: usize,
    max_list_size: usize,
    max_fields: usize,
    max_target: usize,
    problem: Option<Refusal>,
    pub content_length: Option<u64>,
}

impl RequestBuilder {
    pub fn new(limits: &Limits) -> Self {
        RequestBuilder {
            bytes: Vec::with_capacity(256),
            fields: Vec::with_capacity(12),
            method: None,
            scheme: None,
            authority: None,
            path: None,
            regular_seen: false,
            cookie_seen: false,
            counted_fields: 0,
            list_size: 0,
            max_list_size: limits.max_header_bytes,
            max_fields: limits.max_headers,
            max_target: limits.max_uri_bytes,
            problem: None,
            content_length: None,
        }
    }

    pub fn field(&mut self, name: &[u8], value: &[u8]) {
        if self.problem.is_some() {
            return;
        }
        // §6.5.2: the size of a field in the list is its name and value plus 32.
        self.list_size += name.len() + value.len() + 32;
        if self.list_size > self.max_list_size {
            self.problem = Some(Refusal::TooLarge);
            return;
        }
        if let Err(why) = self.take(name, value) {
            self.problem = Some(Refusal::Malformed(why));
        }
    }

    fn store(&mut self, b: &[u8]) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(b);
        start..self.bytes.len()
    }

    fn take(&mut self, name: &[u8], value: &[u8]) -> Result<(), &'static str> {
        if !valid_value(value) {
            return Err("invalid field value");
        }
        if matches!(value.first(), Some(b' ' | b'\t')) || matches!(value.last(), Some(b' ' | b'\t')) {
            return Err("field value with surrounding whitespace");
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            if self.regular_seen {
                return Err("pseudo-header after a regular field");
            }
            // What goes into an HTTP/1.1 request line or Host field must mean the same there
            // as it did for routing: visible ASCII only, no fragment, no userinfo.
            let slot = match pseudo {
                b"method" if !value.is_empty() && value.iter().all(|&b| is_tchar(b)) => &mut self.method,
                b"method" => return Err("invalid :method"),
                b"scheme" => &mut self.scheme,
                b"authority" if valid_authority(value) => &mut self.authority,
                b"authority" => return Err("invalid :authority"),
                b"path" if value.iter().all(|&b| b.is_ascii_graphic() && b != b'#') => &mut self.path,
                b"path" => return Err("invalid :path"),
                _ => return Err("unknown pseudo-header"),
            };
            if slot.is_some() {
                return Err(if pseudo == b"method" {
                    "duplicate :method"
                } else {
                    "duplicate pseudo-header"
                });
            }
            let range = self.store(value);
            match pseudo {
                b"method" => self.method = Some(range),
                b"scheme" => self.scheme = Some(range),
                b"authority" => self.authority = Some(range),
                _ => self.path = Some(range),
            }
            return Ok(());
        }
        self.regular_seen = true;
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err("invalid field name");
        }
        if name.iter().any(u8::is_ascii_uppercase) {
            return Err("upper-case field name");
        }
        match name {
            // Connection-specific fields have no place in HTTP/2 (§8.2.2).
            b"connection" | b"transfer-encoding" | b"upgrade" | b"keep-alive" | b"proxy-connection" => {
                return Err("connection-specific field");
            }
            b"te" if !value.eq_ignore_ascii_case(b"trailers") => return Err("TE other than trailers"),
            b"host" if !valid_authority(value) => return Err("invalid host"),
            b"content-length" => {
                let len = std::str::from_utf8(value)
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or("invalid content-length")?;
                if self.content_length.is_some_and(|l| l != len) {
                    return Err("conflicting content-length");
                }
                self.content_length = Some(len);
            }
            _ => {}
        }
        // Cookie crumbs (§8.2.3) count as the one field they are joined into.
        let crumb = name == b"cookie" && self.cookie_seen;
        self.cookie_seen |= name == b"cookie";
        if !crumb {
            self.counted_fields += 1;
            if self.counted_fields > self.max_fields {
                self.problem = Some(Refusal::TooLarge);
                return Ok(());
            }
        }
        let name = self.store(name);
        let value = self.store(value);
        self.fields.push((name, value));
        Ok(())
    }

    /// Why the stream must be refused, if it must: checked once the block is decoded.
    pub fn check(&self) -> Result<(), Refusal> {
        if let Some(p) = self.problem {
            return Err(p);
        }
        let method = self.method.as_ref().ok_or(Refusal::Malformed("missing :method"))?;
        if &self.bytes[method.clone()] == b"CONNECT" {
            if self.scheme.is_some() || self.path.is_some() {
                return Err(Refusal::Malformed("CONNECT with :scheme or :path"));
            }
            if self.authority.is_none() {
                return Err(Refusal::Malformed("CONNECT without :authority"));
            }
            return Ok(());
        }
        self.scheme.as_ref().ok_or(Refusal::Malformed("missing :scheme"))?;
        let path = &self.bytes[self.path.clone().ok_or(Refusal::Malformed("missing :path"))?];
        if path.is_empty() || !(path[0] == b'/' || (path == b"*" && &self.bytes[method.clone()] == b"OPTIONS")) {
            return Err(Refusal::Malformed("invalid :path"));
        }
        if path.len() > self.max_target {
            return Err(Refusal::UriTooLong);
        }
        // The host routing sees must be the host the backend sees (§8.3.1).
        let authority = self
            .authority
            .as_ref()
            .map(|r| &self.bytes[r.clone()])
            .filter(|a| !a.is_empty());
        let mut hosts = self.fields().filter(|(n, _)| *n == b"host").map(|(_, v)| v);
        match (authority, hosts.next(), hosts.next()) {
            (_, Some(_), Some(_)) => return Err(Refusal::Malformed("more than one host field")),
            (Some(a), Some(h), None) if !a.eq_ignore_ascii_case(h) => {
                return Err(Refusal::Malformed("host differs from :authority"))
            }
            // http and https have a mandatory authority (§8.3.1).
            (None, None, _) => return Err(Refusal::Malformed("no :authority or host")),
            _ => {}
        }
        Ok(())
    }

    pub fn method_bytes(&self) -> &[u8] {
        self.method.as_ref().map_or(b"", |r| &self.bytes[r.clone()])
    }

    /// `:path` as sent (path and query).
    pub fn target(&self) -> &[u8] {
        self.path.as_ref().map_or(b"/", |r| &self.bytes[r.clone()])
    }

    /// `:authority`, or the Host field when there is none.
    pub fn host(&self) -> &[u8] {
        match &self.authority {
            Some(r) if !r.is_empty() => &self.bytes[r.clone()],
            _ => self.header(b"host").unwrap_or(b""),
        }
    }

    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.fields().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Regular fields in order: names in lower case.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.fields
            .iter()
            .map(|(n, v)| (&self.bytes[n.clone()], &self.bytes[v.clone()]))
    }

    /// The request parts for the pipeline (after `check`).
    pub fn finish(self) -> Result<http::request::Parts, Refusal> {
        self.check()?;
        let bad = |why| Refusal::Malformed(why);
        let method = Method::from_bytes(self.method_bytes()).map_err(|_| bad("invalid :method"))?;
        let mut headers = HeaderMap::with_capacity(self.fields.len() + 6);
        let mut cookies: Option<Vec<u8>> = None;
        for (name, value) in self.fields() {
            if name == b"cookie" {
                // Split crumbs are joined for HTTP/1.1 backends (§8.2.3).
                match &mut cookies {
                    Some(c) => {
                        c.extend_from_slice(b"; ");
                        c.extend_from_slice(value);
                    }
                    None => cookies = Some(value.to_vec()),
                }
                continue;
            }
            let name = HeaderName::from_bytes(name).map_err(|_| bad("invalid field name"))?;
            headers.append(
                name,
                HeaderValue::from_bytes(value).map_err(|_| bad("invalid field value"))?,
            );
        }
        if let Some(c) = cookies {
            headers.insert(
                header::COOKIE,
                HeaderValue::from_bytes(&c).map_err(|_| bad("invalid cookie"))?,
            );
        }
        let field = |r: &Option<Range<usize>>| r.as_ref().map(|r| self.bytes[r.clone()].to_vec());
        let uri = if method == Method::CONNECT {
            Uri::try_from(field(&self.authority).unwrap_or_default()).map_err(|_| bad("invalid :authority"))?
        } else {
            let mut b = Uri::builder().path_and_query(field(&self.path).unwrap_or_default());
            if let Some(authority) = field(&self.authority).filter(|a| !a.is_empty()) {
                b = b
                    .scheme(field(&self.scheme).unwrap_or_default().as_slice())
                    .authority(authority);
            }
            b.build().map_err(|_| bad("invalid request target"))?
        };
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.method = method;
        parts.uri = uri;
        parts.version = Version::HTTP_2;
        parts.headers = headers;
        Ok(parts)
    }

    /// The fields of a trailer block (which may have no pseudo-headers).
    pub fn finish_trailers(self) -> Result<HeaderMap, Refusal> {
        if let Some(p) = self.problem {
            return Err(p);
        }
        if self.method.is_some() || self.scheme.is_some() || self.authority.is_some() || self.path.is_some() {
            return Err(Refusal::Malformed("pseudo-header in trailers"));
        }
        let mut headers = HeaderMap::with_capacity(self.fields.len());
        for (name, value) in self.fields() {
            let name = HeaderName::from_bytes(name).map_err(|_| Refusal::Malformed("invalid field name"))?;
            let value = HeaderValue::from_bytes(value).map_err(|_| Refusal::Malformed("invalid field value"))?;
            headers.append(name, value);
        }
        Ok(headers)
    }
}

/// Routing and balancing read the request through this, before any `HeaderMap` exists.
impl RequestView for RequestBuilder {
    fn method(&self) -> &str {
        std::str::from_utf8(self.method_bytes()).unwrap_or("")
    }

    fn path(&self) -> &str {
        let t = self.target();
        let path = t.iter().position(|&b| b == b'?').map_or(t, |i| &t[..i]);
        std::str::from_utf8(path).unwrap_or("")
    }

    fn query(&self) -> Option<&str> {
        let t = self.target();
        let i = t.iter().position(|&b| b == b'?')?;
        std::str::from_utf8(&t[i + 1..]).ok()
    }

    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields()
            .filter(move |(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        RequestBuilder::header(self, name.as_bytes())
    }
}

/// A byte table: `true` for every byte of `alnum` ranges and of `extra`.
const fn byte_set(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

/// RFC 9110 §5.6.2 token characters.
static TCHAR: [bool; 256] = byte_set(b"!#$%&'*+-.^_`|~");
/// RFC 3986 §3.2.2 host (reg-name, IP literal) and port characters.
static AUTHORITY: [bool; 256] = byte_set(b"-._~%!$&'()*+,;=:[]");

fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// A field value as HTTP/1.1 allows it (RFC 9110 §5.5): HTAB, visible ASCII, space, obs-text.
/// Stricter than RFC 9113 §8.2.1 (no NUL, CR or LF), so that no control byte reaches an
/// HTTP/1.1 backend that the HTTP/1.1 side would have refused.
fn valid_value(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// `host [ ":" port ]` (RFC 3986 §3.2.2) in ASCII: reg-name, IPv4 or an IP literal; no userinfo.
fn valid_authority(v: &[u8]) -> bool {
    v.iter().all(|&b| AUTHORITY[usize::from(b)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(fields: &[(&str, &str)]) -> Result<http::request::Parts, Refusal> {
        let limits = Limits {
            max_header_bytes: 16 * 1024,
            max_headers: 20,
            max_uri_bytes: 100,
            ..Limits::default()
        };
        let mut b = RequestBuilder::new(&limits);
        for (n, v) in fields {
            b.field(n.as_bytes(), v.as_bytes());
        }
        b.finish()
    }

    const BASE: [(&str, &str); 4] = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "a.test"),
        (":path", "/x?y=1"),
    ];

    #[test]
    fn builds_an_absolute_uri_and_joins_cookies() {
        let mut f = BASE.to_vec();
        f.extend([("cookie", "a=1"), ("accept", "*/*"), ("cookie", "b=2")]);
        let p = build(&f).unwrap();
        assert_eq!(p.uri, "https://a.test/x?y=1");
        assert_eq!(p.version, Version::HTTP_2);
        assert_eq!(p.headers[header::COOKIE], "a=1; b=2");
        assert_eq!(p.headers[header::ACCEPT], "*/*");
        let with_host = build(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            ("host", "h.test"),
        ])
        .unwrap();
        assert_eq!(with_host.uri, "/");
        assert_eq!(with_host.headers[header::HOST], "h.test");
    }

    #[test]
    fn refuses_malformed_requests() {
        let bad: &[(&[(&str, &str)], &str)] = &[
            (&[(":method", "GET"), (":scheme", "http")], "missing :path"),
            (
                &[(":method", "GET"), (":scheme", "http"), (":path", "")],
                "invalid :path",
            ),
            (&[(":method", "GET"), (":method", "GET")], "duplicate :method"),
            (&[(":scheme", "http"), (":path", "/")], "missing :method"),
            (
                &[("accept", "x"), (":method", "GET")],
                "pseudo-header after a regular field",
            ),
            (&[(":method", "GET"), (":status", "200")], "unknown pseudo-header"),
            (&[(":method", "GET"), ("Accept", "x")], "upper-case field name"),
            (
                &[(":method", "GET"), ("connection", "close")],
                "connection-specific field",
            ),
            (
                &[(":method", "GET"), ("transfer-encoding", "chunked")],
                "connection-specific field",
            ),
            (&[(":method", "GET"), ("te", "gzip")], "TE other than trailers"),
            (
                &[(":method", "GET"), ("x", " padded")],
                "field value with surrounding whitespace",
            ),
            (&[(":method", "GET"), ("x", "a\r\nb")], "invalid field value"),
            (&[(":method", "GET"), ("a b", "1")], "invalid field name"),
            (&[(":method", "G T")], "invalid :method"),
            (
                &[(":method", "GET"), ("content-length", "1"), ("content-length", "2")],
                "conflicting content-length",
            ),
            (
                &[(":method", "GET"), ("content-length", "+1")],
                "invalid content-length",
            ),
        ];
        for (fields, why) in bad {
            assert_eq!(build(fields).unwrap_err(), Refusal::Malformed(why), "{fields:?}");
        }
        let mut big = BASE.to_vec();
        let long = "v".repeat(20_000);
        big.push(("x-big", &long));
        assert_eq!(build(&big).unwrap_err(), Refusal::TooLarge);
        let mut many = BASE.to_vec();
        many.extend(std::iter::repeat_n(("x-n", "1"), 21));
        assert_eq!(
            build(&many).unwrap_err(),
            Refusal::TooLarge,
            "more fields than max_headers"
        );
        let long = format!("/{}", "p".repeat(100));
        let long_path = [
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "a"),
            (":path", long.as_str()),
        ];
        assert_eq!(build(&long_path).unwrap_err(), Refusal::UriTooLong);
        let host_pairs: &[&[(&str, &str)]] = &[
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "a.test"),
                ("host", "b.test"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("host", "a"),
                ("host", "a"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "u@a.test"),
            ],
            &[(":method", "GET"), (":scheme", "http"), (":path", "/")],
        ];
        for fields in host_pairs {
            assert!(matches!(build(fields), Err(Refusal::Malformed(_))), "{fields:?}");
        }
        let mut same = BASE.to_vec();
        same.push(("host", "A.test"));
        assert!(build(&same).is_ok(), "host equal to :authority");
        let mut te = BASE.to_vec();
        te.push(("te", "Trailers"));
        assert!(build(&te).is_ok());
        // What would mean something else in an HTTP/1.1 request line or Host field.
        for (name, value) in [
            (":path", "/admin x"),
            (":path", "/a#frag"),
            (":path", "/caf\u{e9}"),
            (":authority", "a.test "),
            (":authority", "a.test/x"),
            (":authority", "u@a.test"),
        ] {
            let fields: Vec<(&str, &str)> = BASE
                .iter()
                .map(|&(n, v)| if n == name { (n, value) } else { (n, v) })
                .collect();
            assert!(
                matches!(build(&fields), Err(Refusal::Malformed(_))),
                "{name}: {value:?}"
            );
        }
        let mut control = BASE.to_vec();
        control.push(("x", "a\u{0c}b"));
        assert_eq!(build(&control).unwrap_err(), Refusal::Malformed("invalid field value"));
        // Cookie crumbs count as one field against max_headers (20 here).
        let mut crumbs = BASE.to_vec();
        crumbs.extend(std::iter::repeat_n(("cookie", "c=1"), 30));
        assert!(build(&crumbs).is_ok(), "30 cookie crumbs are one field");
    }
}
