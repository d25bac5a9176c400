//! A request's header block, decoded field by field, checked against RFC 9113 §8.2–8.3 and
//! turned into the `http` request parts the pipeline takes.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri, Version};

/// Why a request cannot be served; the stream is refused, the connection stays.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed (§8.1.1): the stream is reset with PROTOCOL_ERROR.
    Malformed(&'static str),
    /// Larger than the listener's header limit: answered 431.
    TooLarge,
}

/// Collects one header block's fields. The HPACK decoder calls `field` for every field; the
/// first problem is remembered and later fields are only counted, so the block is still
/// decoded to its end (the dynamic table must stay in step).
pub struct RequestBuilder {
    method: Option<Method>,
    scheme: Option<Vec<u8>>,
    authority: Option<Vec<u8>>,
    path: Option<Vec<u8>>,
    headers: HeaderMap,
    cookies: Option<Vec<u8>>,
    regular_seen: bool,
    list_size: usize,
    max_list_size: usize,
    problem: Option<Refusal>,
    pub content_length: Option<u64>,
}

impl RequestBuilder {
    pub fn new(max_list_size: usize) -> Self {
        RequestBuilder {
            method: None,
            scheme: None,
            authority: None,
            path: None,
            headers: HeaderMap::with_capacity(12),
            cookies: None,
            regular_seen: false,
            list_size: 0,
            max_list_size,
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

    fn take(&mut self, name: &[u8], value: &[u8]) -> Result<(), &'static str> {
        if let Some(pseudo) = name.strip_prefix(b":") {
            if self.regular_seen {
                return Err("pseudo-header after a regular field");
            }
            let slot = match pseudo {
                b"method" => {
                    if self.method.is_some() {
                        return Err("duplicate :method");
                    }
                    self.method = Some(Method::from_bytes(value).map_err(|_| "invalid :method")?);
                    return Ok(());
                }
                b"scheme" => &mut self.scheme,
                b"authority" => &mut self.authority,
                b"path" => &mut self.path,
                _ => return Err("unknown pseudo-header"),
            };
            if slot.is_some() {
                return Err("duplicate pseudo-header");
            }
            *slot = Some(value.to_vec());
            return Ok(());
        }
        self.regular_seen = true;
        if name.iter().any(u8::is_ascii_uppercase) {
            return Err("upper-case field name");
        }
        if matches!(value.first(), Some(b' ' | b'\t')) || matches!(value.last(), Some(b' ' | b'\t')) {
            return Err("field value with surrounding whitespace");
        }
        let name = HeaderName::from_bytes(name).map_err(|_| "invalid field name")?;
        let value_ok = HeaderValue::from_bytes(value).map_err(|_| "invalid field value")?;
        match name {
            // Connection-specific fields have no place in HTTP/2 (§8.2.2).
            ref n
                if n == header::CONNECTION
                    || n == header::TRANSFER_ENCODING
                    || n == header::UPGRADE
                    || n.as_str() == "keep-alive"
                    || n.as_str() == "proxy-connection" =>
            {
                return Err("connection-specific field");
            }
            ref n if n == header::TE && value != b"trailers" => return Err("TE other than trailers"),
            ref n if n == header::CONTENT_LENGTH => {
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
            ref n if n == header::COOKIE => {
                // Split crumbs are joined for HTTP/1.1 backends (§8.2.3).
                match &mut self.cookies {
                    Some(c) => {
                        c.extend_from_slice(b"; ");
                        c.extend_from_slice(value);
                    }
                    None => self.cookies = Some(value.to_vec()),
                }
                return Ok(());
            }
            _ => {}
        }
        self.headers.append(name, value_ok);
        Ok(())
    }

    /// The fields of a trailer block (which may have no pseudo-headers).
    pub fn finish_trailers(self) -> Result<HeaderMap, Refusal> {
        if let Some(p) = self.problem {
            return Err(p);
        }
        if self.method.is_some() || self.scheme.is_some() || self.authority.is_some() || self.path.is_some() {
            return Err(Refusal::Malformed("pseudo-header in trailers"));
        }
        Ok(self.headers)
    }

    /// The request parts, or why the stream is refused.
    pub fn finish(mut self) -> Result<http::request::Parts, Refusal> {
        if let Some(p) = self.problem {
            return Err(p);
        }
        let method = self.method.ok_or(Refusal::Malformed("missing :method"))?;
        if let Some(c) = self.cookies.take() {
            let v = HeaderValue::from_bytes(&c).map_err(|_| Refusal::Malformed("invalid cookie"))?;
            self.headers.insert(header::COOKIE, v);
        }
        let uri = if method == Method::CONNECT {
            if self.scheme.is_some() || self.path.is_some() {
                return Err(Refusal::Malformed("CONNECT with :scheme or :path"));
            }
            let authority = self.authority.ok_or(Refusal::Malformed("CONNECT without :authority"))?;
            Uri::try_from(authority).map_err(|_| Refusal::Malformed("invalid :authority"))?
        } else {
            let scheme = self.scheme.ok_or(Refusal::Malformed("missing :scheme"))?;
            let path = self.path.ok_or(Refusal::Malformed("missing :path"))?;
            if path.is_empty() || !(path[0] == b'/' || (path == b"*" && method == Method::OPTIONS)) {
                return Err(Refusal::Malformed("invalid :path"));
            }
            let mut b = Uri::builder().path_and_query(path);
            if let Some(authority) = self.authority.filter(|a| !a.is_empty()) {
                b = b.scheme(scheme.as_slice()).authority(authority);
            }
            b.build().map_err(|_| Refusal::Malformed("invalid request target"))?
        };
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.method = method;
        parts.uri = uri;
        parts.version = Version::HTTP_2;
        parts.headers = self.headers;
        Ok(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(fields: &[(&str, &str)]) -> Result<http::request::Parts, Refusal> {
        let mut b = RequestBuilder::new(16 * 1024);
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
        let no_authority = build(&[(":method", "GET"), (":scheme", "http"), (":path", "/")]).unwrap();
        assert_eq!(no_authority.uri, "/");
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
        let mut te = BASE.to_vec();
        te.push(("te", "trailers"));
        assert!(build(&te).is_ok());
    }
}
