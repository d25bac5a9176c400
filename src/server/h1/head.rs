//! Request and response heads scanned (`scan`, httparse's grammar) and kept as byte ranges into
//! the read buffer, so nothing is copied or allocated per header. Validation here is the same as
//! on the general path: anything ambiguous is refused, never forwarded.

use super::scan;
use crate::pipeline::respond::ProxyError;
use crate::route::RequestView;
use crate::server::limits::Limits;
use std::ops::Range;

/// A backend's response with more header fields than this is refused.
const MAX_RESPONSE_FIELDS: usize = 128;

#[derive(Default)]
pub struct RequestHead {
    /// Length of the head including the blank line.
    pub len: usize,
    pub method: Range<usize>,
    pub path: Range<usize>,
    pub query: Option<Range<usize>>,
    pub http10: bool,
    pub headers: Vec<(Range<usize>, Range<usize>)>,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub upgrade: bool,
    /// One `Expect: 100-continue`: the fast path answers it itself.
    pub expect_continue: bool,
    /// Any other expectation (or more than one): the general path judges it.
    pub expect: bool,
    /// The client asked to close after this exchange (`Connection: close`).
    pub close: bool,
    pub host: Option<Range<usize>>,
    /// Values of `Connection` headers (their tokens name more hop-by-hop fields).
    pub connection: Vec<Range<usize>>,
    /// A `Connection` header names fields other than close/keep-alive/upgrade.
    pub lists_more_hop_fields: bool,
}

pub enum Parsed {
    Complete,
    Partial,
    /// Not something the fast path handles (HTTP/2 preface, absolute-form target, ...): hand the
    /// connection to the general path.
    Unsupported,
}

impl RequestHead {
    /// Parses `buf` into `self`. Errors are answered and the connection closed.
    pub fn parse(&mut self, buf: &[u8], limits: &Limits) -> Result<Parsed, ProxyError> {
        if buf.starts_with(b"PRI * HTTP/2.0") {
            return Ok(Parsed::Unsupported);
        }
        let line = match scan::request_line(buf) {
            Ok(Some(line)) => line,
            Ok(None) => return partial(buf, limits),
            Err(scan::ScanError::Version) => return Ok(Parsed::Unsupported),
            Err(_) => return Err(ProxyError::BadRequest("malformed request line")),
        };
        let len = match scan::fields(buf, line.end, &mut self.headers, limits.max_headers) {
            Ok(Some(len)) => len,
            Ok(None) => return partial(buf, limits),
            Err(scan::ScanError::TooManyFields) => return Err(ProxyError::HeadersTooLarge),
            Err(_) => return Err(ProxyError::BadRequest("malformed request head")),
        };
        if len > limits.max_header_bytes {
            return Err(ProxyError::HeadersTooLarge);
        }
        let target = &buf[line.target.clone()];
        if target.len() > limits.max_uri_bytes {
            return Err(ProxyError::UriTooLong);
        }
        let method = &buf[line.method.clone()];
        if target[0] != b'/' || !line.target_ascii || method == b"CONNECT" {
            return Ok(Parsed::Unsupported);
        }
        self.len = len;
        self.method = line.method;
        let t = line.target;
        match target.iter().position(|&b| b == b'?') {
            Some(q) => {
                self.path = t.start..t.start + q;
                self.query = Some(t.start + q + 1..t.end);
            }
            None => {
                self.path = t;
                self.query = None;
            }
        }
        self.http10 = line.http10;
        self.connection.clear();
        self.lists_more_hop_fields = false;
        self.content_length = None;
        self.chunked = false;
        self.upgrade = false;
        self.expect = false;
        self.expect_continue = false;
        self.close = line.http10;
        self.host = None;
        let mut te_count = 0;
        for (n, v) in &self.headers {
            let (name, value) = (&buf[n.clone()], &buf[v.clone()]);
            match name.len() {
                4 if scan::is_named(name, b"host") => {
                    if self.host.is_some() {
                        return Err(ProxyError::BadRequest("more than one Host header"));
                    }
                    // A host is ASCII (RFC 3986 §3.2.2; international names travel as punycode).
                    if value.is_empty() || !value.is_ascii() {
                        return Err(ProxyError::BadRequest("invalid Host header"));
                    }
                    self.host = Some(v.clone());
                }
                14 if scan::is_named(name, b"content-length") => {
                    let n = digits_value(value).ok_or(ProxyError::BadRequest("invalid Content-Length"))?;
                    if self.content_length.is_some_and(|prev| prev != n) {
                        return Err(ProxyError::BadRequest("conflicting Content-Length headers"));
                    }
                    self.content_length = Some(n);
                }
                17 if scan::is_named(name, b"transfer-encoding") => {
                    te_count += 1;
                    if !value.eq_ignore_ascii_case(b"chunked") || te_count > 1 {
                        return Err(ProxyError::BadRequest("unsupported Transfer-Encoding"));
                    }
                    self.chunked = true;
                }
                10 if scan::is_named(name, b"connection") => {
                    let tokens = ConnectionTokens::of(value);
                    if tokens.close {
                        self.close = true;
                    } else if tokens.keep_alive && line.http10 {
                        self.close = false;
                    }
                    self.upgrade |= tokens.upgrade;
                    self.lists_more_hop_fields |= tokens.other;
                    self.connection.push(v.clone());
                }
                7 if scan::is_named(name, b"upgrade") => self.upgrade = true,
                6 if scan::is_named(name, b"expect") => {
                    if value.eq_ignore_ascii_case(b"100-continue") && !self.expect_continue {
                        self.expect_continue = true;
                    } else {
                        self.expect = true;
                    }
                }
                _ => {}
            }
        }
        if self.chunked && self.content_length.is_some() {
            return Err(ProxyError::BadRequest("both Content-Length and Transfer-Encoding"));
        }
        if self.host.is_none() && !self.http10 {
            return Err(ProxyError::BadRequest("missing Host header"));
        }
        if self.content_length.is_some_and(|n| n > limits.max_body_bytes) {
            return Err(ProxyError::BodyTooLarge);
        }
        Ok(Parsed::Complete)
    }

    /// Is `name` (lower case) listed in a `Connection` header of this request?
    pub fn connection_lists(&self, buf: &[u8], name: &[u8]) -> bool {
        self.connection.iter().any(|r| has_token(&buf[r.clone()], name))
    }
}

/// An incomplete request head: wait for more unless it is already over the limit.
fn partial(buf: &[u8], limits: &Limits) -> Result<Parsed, ProxyError> {
    if buf.len() > limits.max_header_bytes {
        Err(ProxyError::HeadersTooLarge)
    } else {
        Ok(Parsed::Partial)
    }
}

/// Fields a `Connection` header may not remove: they frame or address the message, and
/// dropping them while relaying the body would desynchronise the peer (request smuggling).
pub fn is_protected(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"content-length")
        || name.eq_ignore_ascii_case(b"transfer-encoding")
        || name.eq_ignore_ascii_case(b"host")
}

/// `bytes` as text when it is ASCII. Cheaper than UTF-8 validation on the short fields of a
/// request head, which are ASCII whenever they are valid at all.
pub fn ascii_str(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        None
    }
}

/// A Content-Length value: one or more decimal digits, nothing else, no overflow.
fn digits_value(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// What a `Connection` value of a scanned field line says, from one pass over its tokens.
#[derive(Default)]
struct ConnectionTokens {
    close: bool,
    keep_alive: bool,
    upgrade: bool,
    /// It names header fields (tokens other than close, keep-alive and upgrade).
    other: bool,
}

impl ConnectionTokens {
    fn of(value: &[u8]) -> ConnectionTokens {
        let mut t = ConnectionTokens::default();
        // The usual values, whole.
        if scan::is_named(value, b"keep-alive") {
            t.keep_alive = true;
            return t;
        }
        if scan::is_named(value, b"close") {
            t.close = true;
            return t;
        }
        for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if scan::is_named(token, b"keep-alive") {
                t.keep_alive = true;
            } else if scan::is_named(token, b"close") {
                t.close = true;
            } else if scan::is_named(token, b"upgrade") {
                t.upgrade = true;
            } else if !token.is_empty() {
                t.other = true;
            }
        }
        t
    }
}

/// Case-insensitive search for `token` in a comma-separated header value.
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// A parsed request seen through the routing interface.
pub struct RawRequest<'a> {
    pub buf: &'a [u8],
    pub head: &'a RequestHead,
}

impl<'a> RawRequest<'a> {
    fn str(&self, r: &Range<usize>) -> &'a str {
        // Method and target were checked to be ASCII by `parse`.
        ascii_str(&self.buf[r.clone()]).unwrap_or("")
    }
}

impl RequestView for RawRequest<'_> {
    fn method(&self) -> &str {
        self.str(&self.head.method)
    }

    fn path(&self) -> &str {
        self.str(&self.head.path)
    }

    fn query(&self) -> Option<&str> {
        self.head.query.as_ref().map(|q| self.str(q))
    }

    fn header_values<'b>(&'b self, name: &'b str) -> impl Iterator<Item = &'b [u8]> + 'b {
        self.head
            .headers
            .iter()
            .filter(move |(n, _)| self.buf[n.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| &self.buf[v.clone()])
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.head
            .headers
            .iter()
            .find(|(n, _)| self.buf[n.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| &self.buf[v.clone()])
    }
}

/// A backend's response head.
#[derive(Default)]
pub struct ResponseHead {
    pub len: usize,
    pub status: u16,
    pub reason: Range<usize>,
    pub http10: bool,
    pub headers: Vec<(Range<usize>, Range<usize>)>,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub close: bool,
    pub connection: Vec<Range<usize>>,
    pub lists_more_hop_fields: bool,
}

pub enum ParsedResponse {
    Complete,
    Partial,
}

impl ResponseHead {
    pub fn parse(&mut self, buf: &[u8]) -> Result<ParsedResponse, String> {
        let scanned = scan::status_line(buf).and_then(|line| match line {
            Some(line) => {
                Ok(scan::fields(buf, line.end, &mut self.headers, MAX_RESPONSE_FIELDS)?.map(|len| (line, len)))
            }
            None => Ok(None),
        });
        let (line, len) = match scanned {
            Ok(Some(done)) => done,
            Ok(None) if buf.len() > 64 * 1024 => return Err("response head too large".into()),
            Ok(None) => return Ok(ParsedResponse::Partial),
            Err(e) => return Err(format!("invalid response head: {e}")),
        };
        self.len = len;
        self.status = line.status;
        self.reason = line.reason;
        self.http10 = line.http10;
        self.close = self.http10;
        self.connection.clear();
        self.lists_more_hop_fields = false;
        self.content_length = None;
        self.chunked = false;
        for (n, v) in &self.headers {
            let (name, value) = (&buf[n.clone()], &buf[v.clone()]);
            match name.len() {
                14 if scan::is_named(name, b"content-length") => {
                    // SP and HTAB around the value are trimmed; anything else around the digits
                    // (even Unicode spaces in obs-text) makes the length invalid.
                    let n = digits_value(value).ok_or_else(|| "invalid Content-Length in response".to_string())?;
                    if self.content_length.is_some_and(|p| p != n) {
                        return Err("conflicting Content-Length in response".into());
                    }
                    self.content_length = Some(n);
                }
                17 if scan::is_named(name, b"transfer-encoding") => {
                    // Framing is chunked when chunked is the last coding; the body is relayed as is.
                    let last = value.rsplit(|&b| b == b',').next().unwrap_or(b"").trim_ascii();
                    self.chunked = last.eq_ignore_ascii_case(b"chunked");
                    if !self.chunked {
                        self.close = true;
                    }
                }
                10 if scan::is_named(name, b"connection") => {
                    let tokens = ConnectionTokens::of(value);
                    if tokens.close {
                        self.close = true;
                    } else if self.http10 && tokens.keep_alive {
                        self.close = false;
                    }
                    self.lists_more_hop_fields |= tokens.other;
                    self.connection.push(v.clone());
                }
                _ => {}
            }
        }
        if self.chunked
            || self.close
                && self
                    .headers
                    .iter()
                    .any(|(n, _)| buf[n.clone()].eq_ignore_ascii_case(b"transfer-encoding"))
        {
            // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length (which is not sent on);
            // a coding list not ending in chunked makes the body close-delimited.
            self.content_length = None;
        }
        Ok(ParsedResponse::Complete)
    }

    pub fn connection_lists(&self, buf: &[u8], name: &[u8]) -> bool {
        self.connection.iter().any(|r| has_token(&buf[r.clone()], name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<RequestHead, ProxyError> {
        let mut h = RequestHead::default();
        match h.parse(s.as_bytes(), &Limits::default())? {
            Parsed::Complete => Ok(h),
            _ => Err(ProxyError::BadRequest("incomplete or unsupported")),
        }
    }

    #[test]
    fn parses_a_simple_request() {
        let raw = "GET /a/b?x=1 HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, x-hop\r\n\r\n";
        let h = parse(raw).unwrap();
        let view = RawRequest {
            buf: raw.as_bytes(),
            head: &h,
        };
        assert_eq!(view.method(), "GET");
        assert_eq!(view.path(), "/a/b");
        assert_eq!(view.query(), Some("x=1"));
        assert_eq!(view.header("host"), Some(&b"a.test"[..]));
        assert!(h.connection_lists(raw.as_bytes(), b"x-hop"));
        assert!(!h.close);
        assert_eq!(h.len, raw.len());
    }

    #[test]
    fn refuses_ambiguous_framing() {
        for bad in [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn response_framing() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n";
        let mut r = ResponseHead::default();
        assert!(matches!(r.parse(raw), Ok(ParsedResponse::Complete)));
        assert!(r.chunked && r.content_length.is_none() && !r.close);
        let raw = b"HTTP/1.0 200 OK\r\n\r\n";
        assert!(matches!(r.parse(raw), Ok(ParsedResponse::Complete)));
        assert!(r.close && r.content_length.is_none());
    }

    #[test]
    fn response_content_length_around_whitespace() {
        let mut r = ResponseHead::default();
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: \t 5 \t\r\n\r\n";
        assert!(matches!(r.parse(raw), Ok(ParsedResponse::Complete)));
        assert_eq!(r.content_length, Some(5));
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\xc2\xa0\r\n\r\n";
        assert!(r.parse(raw).is_err());
    }

    #[test]
    fn a_host_must_be_ascii() {
        assert!(parse("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").is_ok());
        let raw = b"GET / HTTP/1.1\r\nHost: \xc3\xa9.test\r\n\r\n";
        let mut h = RequestHead::default();
        assert!(h.parse(raw, &Limits::default()).is_err());
    }

    #[test]
    fn content_length_values() {
        assert_eq!(digits_value(b"0"), Some(0));
        assert_eq!(digits_value(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"18446744073709551616",
            b"+1",
            b"1 ",
            b" 1",
            b"1,1",
            b"0x1",
            b"\xd9\xa1",
        ] {
            assert_eq!(digits_value(bad), None, "{bad:?}");
        }
        assert_eq!(ascii_str(b"a.test"), Some("a.test"));
        assert_eq!(ascii_str(b"\xc3\xa9.test"), None);
    }
}
