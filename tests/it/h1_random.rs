//! HTTP/1.1 robustness: seeded random request streams against the real binary (a debug build,
//! so arithmetic overflow panics too). Pipelined well-formed requests must all be answered 2xx;
//! mutated ones (smuggling shapes, bad framing, control bytes, truncation) may be refused but
//! must not panic the process or keep a connection open after the client closed. Afterwards
//! the proxy must still serve. `FRONTDESK_H1_SEED=<hex>` replays or explores other sequences.

use crate::harness::random::{self, Rng, Script};
use crate::harness::*;

/// Well-formed requests: true when the origin answers it (not the proxy's `/fixed` route).
const REQUESTS: &[(&[u8], bool)] = &[
    (b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n", true),
    (b"GET /fixed HTTP/1.1\r\nHost: x\r\n\r\n", false),
    (b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", true),
    (
        b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        true,
    ),
    (b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n", true),
    (
        b"GET /x?q=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nX-A: ok\r\n\r\n",
        true,
    ),
    (b"GET /x HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", true),
];

/// Shapes that a strict proxy refuses or must frame carefully.
const HOSTILE: &[&[u8]] = &[
    b"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET /x HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
    b"GET /x HTTP/1.1\r\nHost : x\r\n\r\n",
    b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n",
    b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: v\r\n\r\n",
    b"GET /x HTTP/1.1\nHost: x\n\n",
    b"GET /x HTTP/2.0\r\nHost: x\r\n\r\n",
    b"GET http://x/x HTTP/1.1\r\nHost: y\r\n\r\n",
    b"GET /x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"POST /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nab",
    b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close, x-a\r\nX-A: 1\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    // Quotes, a backslash and UTF-8 in the target: the proxy forwards it, the origin refuses
    // it, and the access log must still write a JSON line for it.
    "GET /x/\"q\"\\b/\u{e9}\u{1f600} HTTP/1.1\r\nHost: x\r\n\r\n".as_bytes(),
];

/// Statuses of the responses in `got` so far (one per status line; the bodies here never
/// contain one).
fn statuses(got: &[u8]) -> Vec<u16> {
    got.windows(12)
        .filter(|w| w.starts_with(b"HTTP/1.1 ") || w.starts_with(b"HTTP/1.0 "))
        .filter_map(|w| std::str::from_utf8(&w[9..12]).ok()?.parse().ok())
        .collect()
}

/// Pipelined well-formed requests, each to be answered 2xx. Also how many are for the origin.
fn well_formed(r: &mut Rng) -> (Script, usize) {
    let (mut bytes, mut to_origin) = (Vec::new(), 0);
    let mut count = 0;
    for _ in 0..1 + r.below(6) {
        let (request, origin) = r.pick(REQUESTS);
        bytes.extend_from_slice(request);
        to_origin += usize::from(origin);
        count += 1;
        if request.starts_with(b"GET /x HTTP/1.0") {
            // The origin's answer has no length, so it is close-delimited for an HTTP/1.0
            // client: nothing after it would be read.
            break;
        }
    }
    let answered = move |got: &[u8]| {
        let statuses = statuses(got);
        if let Some(bad) = statuses.iter().find(|s| !(200..300).contains(*s)) {
            return Err(format!("answered {bad}"));
        }
        Ok(statuses.len() >= count)
    };
    let script = Script {
        bytes,
        answered: Some(Box::new(answered)),
    };
    (script, to_origin)
}

/// Requests and hostile shapes, then byte edits, a cut or trailing junk.
fn hostile(r: &mut Rng) -> Script {
    let mut bytes = Vec::new();
    for _ in 0..1 + r.below(4) {
        if r.below(2) == 0 {
            bytes.extend_from_slice(r.pick(REQUESTS).0);
        } else {
            bytes.extend_from_slice(r.pick(HOSTILE));
        }
    }
    for _ in 0..r.below(4) {
        let i = r.below(bytes.len());
        match r.below(3) {
            0 => bytes[i] ^= 1 << r.below(8),
            1 => bytes.insert(i, r.pick(&[0u8, b'\r', b'\n', b' ', b'\t', b':', 0x7f, 0xff, b'"'])),
            _ => {
                bytes.remove(i);
            }
        }
    }
    match r.below(6) {
        0 => bytes.truncate(r.below(bytes.len() + 1)),
        1 => bytes.extend(r.bytes(64)),
        _ => {}
    }
    Script { bytes, answered: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_neither_panic_nor_hold_connections_nor_stop_service() {
    let run = random::run("h1-random", "FRONTDESK_H1_SEED", 0x5eed_beef, well_formed, hostile).await;
    let addr = run.addr;

    assert_eq!(get(addr, "/x").await.body, "o");
    assert_eq!(get(addr, "/fixed").await.body, "fixed");
    run.check();
}
