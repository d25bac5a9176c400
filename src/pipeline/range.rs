//! Range requests (RFC 9110 §14) answered from a complete object (cached or a file): one range → 206 with
//! Content-Range, several → multipart/byteranges, none satisfiable → 416. `If-Range` that does
//! not match the stored validator gets the whole object.

use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, StatusCode};

/// More ranges than this in one request are ignored (the whole object is sent): a defence
/// against requests that ask for thousands of tiny overlapping pieces.
const MAX_RANGES: usize = 16;

pub enum RangeAnswer {
    /// Send the whole object (no Range, unsupported unit, If-Range mismatch, too many ranges).
    Whole,
    Partial {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    },
}

/// What a Range header asks of a representation of `len` bytes.
pub enum RangePlan {
    Whole,
    /// 416 with these headers (Content-Range: bytes */len).
    Unsatisfiable(HeaderMap),
    /// Satisfiable ranges as inclusive (start, end), in request order.
    Parts(Vec<(u64, u64)>),
}

/// `req` are the request headers, `repr` the representation's headers (validators for
/// If-Range), `len` its length.
pub fn plan(req: &HeaderMap, repr: &HeaderMap, len: u64) -> RangePlan {
    let Some(spec) = req.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangePlan::Whole;
    };
    if let Some(if_range) = req.get(header::IF_RANGE) {
        if !if_range_matches(if_range, repr) {
            return RangePlan::Whole;
        }
    }
    match parse(spec, len) {
        None => RangePlan::Whole,
        Some(ranges) if ranges.is_empty() => {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_RANGE, value(&format!("bytes */{len}")));
            RangePlan::Unsatisfiable(headers)
        }
        Some(ranges) => RangePlan::Parts(ranges),
    }
}

/// The Content-Range of one part.
pub fn content_range(start: u64, end: u64, len: u64) -> HeaderValue {
    value(&format!("bytes {start}-{end}/{len}"))
}

/// A multipart/byteranges body of `ranges`, each read by `part`; returns its Content-Type.
pub fn multipart(
    ranges: &[(u64, u64)],
    len: u64,
    ctype: &str,
    mut part: impl FnMut(u64, u64) -> std::io::Result<Bytes>,
) -> std::io::Result<(HeaderValue, Bytes)> {
    let boundary = format!("{:016x}", fastrand::u64(..));
    let mut out = BytesMut::new();
    for (start, end) in ranges {
        out.put_slice(
            format!("\r\n--{boundary}\r\nContent-Type: {ctype}\r\nContent-Range: bytes {start}-{end}/{len}\r\n\r\n")
                .as_bytes(),
        );
        out.put_slice(&part(*start, *end)?);
    }
    out.put_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Ok((
        value(&format!("multipart/byteranges; boundary={boundary}")),
        out.freeze(),
    ))
}

/// Range answer for a complete object held in memory.
pub fn answer(req: &HeaderMap, stored: &HeaderMap, body: &Bytes) -> RangeAnswer {
    let len = body.len() as u64;
    let ranges = match plan(req, stored, len) {
        RangePlan::Whole => return RangeAnswer::Whole,
        RangePlan::Unsatisfiable(headers) => {
            return RangeAnswer::Partial {
                status: StatusCode::RANGE_NOT_SATISFIABLE,
                headers,
                body: Bytes::new(),
            }
        }
        RangePlan::Parts(r) => r,
    };
    let mut headers = HeaderMap::new();
    if let [(start, end)] = ranges[..] {
        headers.insert(header::CONTENT_RANGE, content_range(start, end, len));
        return RangeAnswer::Partial {
            status: StatusCode::PARTIAL_CONTENT,
            headers,
            body: body.slice(start as usize..=end as usize),
        };
    }
    let ctype = stored
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream");
    let Ok((content_type, data)) = multipart(&ranges, len, ctype, |s, e| Ok(body.slice(s as usize..=e as usize)))
    else {
        return RangeAnswer::Whole;
    };
    headers.insert(header::CONTENT_TYPE, content_type);
    RangeAnswer::Partial {
        status: StatusCode::PARTIAL_CONTENT,
        headers,
        body: data,
    }
}

fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""))
}

/// If-Range holds a strong ETag or an HTTP date; it must equal the stored validator exactly.
fn if_range_matches(if_range: &HeaderValue, stored: &HeaderMap) -> bool {
    let v = if_range.as_bytes();
    if v.starts_with(b"\"") {
        return stored.get(header::ETAG).is_some_and(|e| e.as_bytes() == v);
    }
    if v.starts_with(b"W/") {
        return false; // weak validators never match for ranges
    }
    stored.get(header::LAST_MODIFIED).is_some_and(|lm| lm.as_bytes() == v)
}

/// Satisfiable ranges as inclusive (start, end), in request order; `None` when the header is
/// not a byte-range set we serve (then the whole object goes out).
fn parse(spec: &str, len: u64) -> Option<Vec<(u64, u64)>> {
    let set = spec.trim().strip_prefix("bytes=")?;
    let mut out = Vec::new();
    let mut count = 0;
    for part in set.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        count += 1;
        if count > MAX_RANGES {
            return None;
        }
        let (a, b) = part.split_once('-')?;
        let (a, b) = (a.trim(), b.trim());
        let range = if a.is_empty() {
            // Suffix: the last N bytes.
            let n: u64 = b.parse().ok()?;
            if n == 0 || len == 0 {
                continue;
            }
            (len.saturating_sub(n), len - 1)
        } else {
            let start: u64 = a.parse().ok()?;
            let end: u64 = if b.is_empty() { u64::MAX } else { b.parse().ok()? };
            if end < start {
                return None;
            }
            if start >= len {
                continue;
            }
            (start, end.min(len - 1))
        };
        out.push(range);
    }
    if count == 0 {
        return None;
    }
    // Overlapping ranges that add up to more than the object would amplify it: send it whole.
    if out.iter().map(|(a, b)| b - a + 1).sum::<u64>() > len {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(range: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(range).unwrap());
        h
    }

    fn body() -> Bytes {
        Bytes::from_static(b"0123456789")
    }

    #[test]
    fn single_ranges() {
        for (spec, want, cr) in [
            ("bytes=0-3", "0123", "bytes 0-3/10"),
            ("bytes=7-", "789", "bytes 7-9/10"),
            ("bytes=-2", "89", "bytes 8-9/10"),
            ("bytes=5-100", "56789", "bytes 5-9/10"),
        ] {
            match answer(&req(spec), &HeaderMap::new(), &body()) {
                RangeAnswer::Partial { status, headers, body } => {
                    assert_eq!(status, 206, "{spec}");
                    assert_eq!(body, want, "{spec}");
                    assert_eq!(headers[header::CONTENT_RANGE], cr, "{spec}");
                }
                RangeAnswer::Whole => panic!("{spec} answered whole"),
            }
        }
    }

    #[test]
    fn unsatisfiable_and_ignored() {
        match answer(&req("bytes=20-30"), &HeaderMap::new(), &body()) {
            RangeAnswer::Partial { status, headers, .. } => {
                assert_eq!(status, 416);
                assert_eq!(headers[header::CONTENT_RANGE], "bytes */10");
            }
            RangeAnswer::Whole => panic!("416 expected"),
        }
        assert!(matches!(
            answer(&req("items=0-1"), &HeaderMap::new(), &body()),
            RangeAnswer::Whole
        ));
        assert!(matches!(
            answer(&req("bytes=5-2"), &HeaderMap::new(), &body()),
            RangeAnswer::Whole
        ));
        let many = format!(
            "bytes={}",
            (0..20).map(|i| format!("{i}-{i}")).collect::<Vec<_>>().join(",")
        );
        assert!(matches!(
            answer(&req(&many), &HeaderMap::new(), &body()),
            RangeAnswer::Whole
        ));
    }

    #[test]
    fn multipart_and_if_range() {
        let mut stored = HeaderMap::new();
        stored.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        stored.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        match answer(&req("bytes=0-1, 8-9"), &stored, &body()) {
            RangeAnswer::Partial { status, headers, body } => {
                assert_eq!(status, 206);
                let ct = headers[header::CONTENT_TYPE].to_str().unwrap();
                assert!(ct.starts_with("multipart/byteranges; boundary="));
                let text = String::from_utf8(body.to_vec()).unwrap();
                assert!(text.contains("Content-Range: bytes 0-1/10\r\n\r\n01"), "{text}");
                assert!(text.contains("Content-Range: bytes 8-9/10\r\n\r\n89"), "{text}");
            }
            RangeAnswer::Whole => panic!("multipart expected"),
        }
        let mut r = req("bytes=0-1");
        r.insert(header::IF_RANGE, HeaderValue::from_static("\"v0\""));
        assert!(
            matches!(answer(&r, &stored, &body()), RangeAnswer::Whole),
            "stale If-Range gets the whole object"
        );
        r.insert(header::IF_RANGE, HeaderValue::from_static("\"v1\""));
        assert!(matches!(answer(&r, &stored, &body()), RangeAnswer::Partial { .. }));
    }
}
