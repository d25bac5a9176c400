//! The scanner against httparse (the grammar it copies): the same verdict for valid heads, every
//! prefix of them, and many thousands of mutated ones.

use super::*;

#[derive(Debug, PartialEq)]
enum Verdict {
    Partial,
    Error,
    /// Refused for its version (the fast path hands these to hyper).
    Version,
    TooMany,
    /// Start line parts and fields as (start, end) pairs, and the head length.
    Complete(Vec<(usize, usize)>, bool, u16, Vec<(usize, usize, usize, usize)>, usize),
}

const MAX: usize = 8;

fn offset(buf: &[u8], part: &[u8]) -> (usize, usize) {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    (start, start + part.len())
}

fn pairs(fields: &[Field]) -> Vec<(usize, usize, usize, usize)> {
    fields.iter().map(|(n, v)| (n.start, n.end, v.start, v.end)).collect()
}

/// httparse's fields as offsets; an empty value as (0, 0), since httparse hands it out as a
/// slice that may point anywhere.
fn their_fields(buf: &[u8], headers: &[httparse::Header]) -> Vec<(usize, usize, usize, usize)> {
    headers
        .iter()
        .map(|h| {
            let (a, b) = offset(buf, h.name.as_bytes());
            let (c, d) = if h.value.is_empty() {
                (0, 0)
            } else {
                offset(buf, h.value)
            };
            (a, b, c, d)
        })
        .collect()
}

fn theirs_request(buf: &[u8]) -> Verdict {
    let mut headers = [httparse::EMPTY_HEADER; MAX];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => Verdict::Complete(
            vec![
                offset(buf, req.method.unwrap().as_bytes()),
                offset(buf, req.path.unwrap().as_bytes()),
            ],
            req.version == Some(0),
            0,
            their_fields(buf, req.headers),
            n,
        ),
        Ok(httparse::Status::Partial) => Verdict::Partial,
        Err(httparse::Error::Version) => Verdict::Version,
        Err(httparse::Error::TooManyHeaders) => Verdict::TooMany,
        Err(_) => Verdict::Error,
    }
}

fn verdict<T>(scan: Scan<T>, then: impl FnOnce(T) -> Verdict) -> Verdict {
    match scan {
        Ok(None) => Verdict::Partial,
        Ok(Some(t)) => then(t),
        Err(ScanError::Version) => Verdict::Version,
        Err(ScanError::TooManyFields) => Verdict::TooMany,
        Err(ScanError::Malformed(_)) => Verdict::Error,
    }
}

fn empty_values_at_zero(mut fields: Vec<(usize, usize, usize, usize)>) -> Vec<(usize, usize, usize, usize)> {
    for f in &mut fields {
        if f.2 == f.3 {
            (f.2, f.3) = (0, 0);
        }
    }
    fields
}

fn ours_request(buf: &[u8]) -> Verdict {
    verdict(request_line(buf), |line| {
        let mut out = Vec::new();
        verdict(fields(buf, line.end, &mut out, MAX), |n| {
            Verdict::Complete(
                vec![
                    (line.method.start, line.method.end),
                    (line.target.start, line.target.end),
                ],
                line.http10,
                0,
                empty_values_at_zero(pairs(&out)),
                n,
            )
        })
    })
}

fn theirs_response(buf: &[u8]) -> Verdict {
    let mut headers = [httparse::EMPTY_HEADER; MAX];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            let reason = resp.reason.unwrap();
            Verdict::Complete(
                vec![if reason.is_empty() {
                    (0, 0)
                } else {
                    offset(buf, reason.as_bytes())
                }],
                resp.version == Some(0),
                resp.code.unwrap(),
                their_fields(buf, resp.headers),
                n,
            )
        }
        Ok(httparse::Status::Partial) => Verdict::Partial,
        Err(httparse::Error::TooManyHeaders) => Verdict::TooMany,
        Err(_) => Verdict::Error,
    }
}

fn ours_response(buf: &[u8]) -> Verdict {
    let v = verdict(status_line(buf), |line| {
        let mut out = Vec::new();
        verdict(fields(buf, line.end, &mut out, MAX), |n| {
            let r = line.reason.clone();
            Verdict::Complete(
                vec![if r.is_empty() { (0, 0) } else { (r.start, r.end) }],
                line.http10,
                line.status,
                empty_values_at_zero(pairs(&out)),
                n,
            )
        })
    });
    // httparse reports every bad status line as an error of its own kind; the kind does not
    // matter for a response.
    if v == Verdict::Version {
        Verdict::Error
    } else {
        v
    }
}

const REQUESTS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
    b"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: a.test:8080\r\nUser-Agent: t/1.0\r\nAccept: */*\r\n\r\n",
    b"POST /p HTTP/1.0\nContent-Length: 3\n\nabc",
    b"\r\n\nOPTIONS * HTTP/1.1\r\nX:\r\nY: \t v \t \r\n\r\n",
    b"PATCH /\xc3\xa9 HTTP/1.1\r\nA: \x80\xff\r\nB: a\tb\r\n\r\n",
    b"GET http://x/ HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\n\r\n",
];

const RESPONSES: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 28 Nov 2026 09:24:00 GMT\r\nContent-Type: application/octet-stream\r\nContent-Length: 100\r\nConnection: keep-alive\r\n\r\n",
    b"HTTP/1.0 404 Not Found\nContent-Length: 0\n\n",
    b"HTTP/1.1 204\r\n\r\n",
    b"HTTP/1.1 200 \r\nX: \r\n\r\n",
    b"\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
    b"HTTP/1.1 599 Reason \xe9t\xe9 \t\r\nTransfer-Encoding: gzip, chunked\r\nA: b\tc  \r\n\r\n",
];

#[test]
fn valid_heads_and_every_prefix_agree_with_httparse() {
    for head in REQUESTS {
        for n in 0..=head.len() {
            assert_eq!(ours_request(&head[..n]), theirs_request(&head[..n]), "{:?}", &head[..n]);
        }
        assert!(matches!(ours_request(head), Verdict::Complete(..)), "{head:?}");
    }
    for head in RESPONSES {
        for n in 0..=head.len() {
            assert_eq!(
                ours_response(&head[..n]),
                theirs_response(&head[..n]),
                "{:?}",
                &head[..n]
            );
        }
        assert!(matches!(ours_response(head), Verdict::Complete(..)), "{head:?}");
    }
}

#[test]
fn known_bad_heads_are_refused() {
    for bad in [
        &b"GET  / HTTP/1.1\r\n\r\n"[..],
        b"GET / HTTP/1.1 \r\n\r\n",
        b"GET / HTTP/1.1\rX\r\n\r\n",
        b"GET / HTTP/1.1\r\nX : y\r\n\r\n",
        b"GET / HTTP/1.1\r\n X: y\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nX\r\n\r\n",
        b"GET / HTTP/1.1\r\n: x\r\n\r\n",
        b"G\"T / HTTP/1.1\r\n\r\n",
        b"GET /a\x7fb HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(ours_request(bad), Verdict::Error, "{bad:?}");
        assert_eq!(theirs_request(bad), Verdict::Error, "{bad:?}");
    }
    assert_eq!(ours_request(b"GET / HTTP/2.0\r\n\r\n"), Verdict::Version);
    assert_eq!(ours_request(b"GET / HTTP/1.2\r\n\r\n"), Verdict::Version);
    assert_eq!(ours_response(b"HTTP/1.1 20 OK\r\n\r\n"), Verdict::Error);
    assert_eq!(ours_response(b"HTTP/1.1 200 OK\r\nA: \x01\r\n\r\n"), Verdict::Error);
    let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "A: b\r\n".repeat(MAX + 1));
    assert_eq!(ours_response(many.as_bytes()), Verdict::TooMany);
}

#[test]
fn field_values_are_found_across_word_boundaries() {
    // Control bytes at every position of an 8-byte word, and values of every length up to 40.
    for len in 0..40 {
        for bad_at in 0..=len {
            let mut value = vec![b'v'; len];
            if bad_at < len {
                value[bad_at] = [0x00, 0x1f, 0x7f, b'\t', 0x80][bad_at % 5];
            }
            let mut head = b"HTTP/1.1 200 OK\r\nName: ".to_vec();
            head.extend_from_slice(&value);
            head.extend_from_slice(b"\r\n\r\n");
            assert_eq!(ours_response(&head), theirs_response(&head), "{head:?}");
        }
    }
}

/// Random edits of valid heads: bytes replaced, inserted or removed, drawn from the ones the
/// grammar cares about.
#[test]
fn mutated_heads_agree_with_httparse() {
    const ALPHABET: &[u8] = b"\r\n\r\n \t:/?HTP1.0 9aZ-_~\"(),;\\\x00\x01\x7f\x80\xc3\xa9\xff";
    let mut rng = fastrand::Rng::with_seed(0x5ca9);
    for round in 0..60_000 {
        let requests = round % 2 == 0;
        let seeds = if requests { REQUESTS } else { RESPONSES };
        let mut head = seeds[rng.usize(..seeds.len())].to_vec();
        for _ in 0..rng.usize(1..4) {
            let at = rng.usize(..=head.len());
            let byte = ALPHABET[rng.usize(..ALPHABET.len())];
            match rng.u8(..3) {
                0 if at < head.len() => head[at] = byte,
                1 if at < head.len() => {
                    head.remove(at);
                }
                _ => head.insert(at, byte),
            }
        }
        if requests {
            assert_eq!(ours_request(&head), theirs_request(&head), "{head:?}");
        } else {
            assert_eq!(ours_response(&head), theirs_response(&head), "{head:?}");
        }
    }
}

#[test]
fn is_named_is_case_insensitive_equality_on_field_bytes() {
    const NAMES: &[&[u8]] = &[
        b"host",
        b"close",
        b"keep-alive",
        b"connection",
        b"content-length",
        b"transfer-encoding",
        b"x-forwarded-proto",
    ];
    // Every byte a scanned field can hold (anything but CR and the other controls but HTAB).
    let bytes: Vec<u8> = (0..=255u8)
        .filter(|&b| b == b'\t' || (b >= b' ' && b != 0x7f))
        .collect();
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..200_000 {
        let name = NAMES[rng.usize(..NAMES.len())];
        let mut field: Vec<u8> = name
            .iter()
            .map(|&b| if rng.bool() { b.to_ascii_uppercase() } else { b })
            .collect();
        if rng.u8(..4) > 0 {
            let at = rng.usize(..field.len());
            field[at] = bytes[rng.usize(..bytes.len())];
        }
        assert_eq!(
            is_named(&field, name),
            field.eq_ignore_ascii_case(name),
            "{field:?} {name:?}"
        );
    }
    assert!(is_named(b"Content-LENGTH", b"content-length"));
    assert!(!is_named(b"content-lengtx", b"content-length"));
    assert!(!is_named(b"content_length", b"content-length"));
    assert!(!is_named(b"Host ", b"host"));
}
