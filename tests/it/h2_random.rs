//! HTTP/2 robustness: seeded random frame sequences against the real binary (a debug build, so
//! arithmetic overflow panics too). Whatever a client sends, the process must not panic, must
//! answer every request of a well-formed conversation, must close a connection once the client
//! has closed its side, and must go on serving.
//! `FRONTDESK_H2_SEED=<hex>` replays or explores other sequences.

use crate::h2::{frame, preface};
use crate::harness::random::{self, Rng, Script};
use crate::harness::*;
use http::Request;
use http_body_util::Full;

/// An HPACK block: pieces of valid requests, table operations and malformed integers, strings
/// and Huffman codes, then (sometimes) a few bytes flipped.
fn header_block(r: &mut Rng) -> Vec<u8> {
    let mut b = Vec::new();
    for _ in 0..1 + r.below(6) {
        match r.below(10) {
            0 => b.extend_from_slice(&[0x82, 0x86, 0x84, 0x41, 0x01, b'x']), // GET http / authority x
            1 => b.push(0x80 | r.below(128) as u8),                          // indexed, maybe out of range
            2 => {
                // Literal with incremental indexing, new name.
                let (name, value) = (r.bytes(12), r.bytes(40));
                b.extend_from_slice(&[0x40, name.len() as u8]);
                b.extend_from_slice(&name);
                b.push(value.len() as u8);
                b.extend_from_slice(&value);
            }
            3 => b.extend_from_slice(&[0x20 | r.below(32) as u8]), // table size update
            4 => b.extend_from_slice(&[0x3f, 0xff, 0xff, 0xff, 0xff, 0x7f]), // oversized integer
            5 => {
                // Huffman-flagged string of random bits.
                let value = r.bytes(20);
                b.extend_from_slice(&[0x04, 0x80 | value.len() as u8]);
                b.extend_from_slice(&value);
            }
            6 => b.extend_from_slice(&[0x04, 0x7f, 0xff, 0x7f]), // string longer than the block
            7 => b.extend_from_slice(&[0x0f, 0x2f, 0x03, b'a', b'b', b'c']), // name index 62+, maybe absent
            8 => b.extend_from_slice(&[
                0x00, 0x0a, b'c', b'o', b'n', b'n', b'e', b'c', b't', b'i', b'o', b'n', 0x01, b'x',
            ]),
            _ => b.extend(r.bytes(8)),
        }
    }
    if !b.is_empty() && r.below(3) == 0 {
        for _ in 0..1 + r.below(3) {
            let i = r.below(b.len());
            b[i] ^= 1 << r.below(8);
        }
    }
    b
}

/// The streams a connection has opened so far, so that well-formed frames can follow.
#[derive(Default)]
struct Conversation {
    /// The last stream id opened (0: none yet).
    last_stream: u32,
}

/// A request's header block: GET or POST of `/fixed` (answered by the proxy) or `/x` (the
/// origin), sometimes with extra fields. True when it is for the origin.
fn request_block(r: &mut Rng) -> (Vec<u8>, bool) {
    let method = if r.below(3) == 0 { 0x83 } else { 0x82 }; // POST or GET
    let path: &[u8] = r.pick(&[b"/fixed".as_slice(), b"/x", b"/x?q=1"]);
    let mut b = vec![method, 0x86, 0x04, path.len() as u8];
    b.extend_from_slice(path);
    b.extend_from_slice(&[0x41, 0x01, b'x']);
    if r.below(3) == 0 {
        b.extend_from_slice(&[0x40, 0x03, b'x', b'-', b'a', 0x02, b'o', b'k']);
    }
    (b, path != b"/fixed")
}

/// A frame that is well-formed on its own; it may still be wrong for its stream's state (DATA
/// after the stream ended, RST_STREAM of a stream never opened).
fn valid_frame(r: &mut Rng, c: &mut Conversation) -> Vec<u8> {
    let open = c.last_stream.max(1);
    match r.below(9) {
        0..=2 => {
            // A new stream, on the next odd id.
            c.last_stream = if c.last_stream == 0 { 1 } else { c.last_stream + 2 };
            let end_stream = if r.below(2) == 0 { 1 } else { 0 };
            let (block, _) = request_block(r);
            if r.below(4) == 0 {
                // Split over a CONTINUATION.
                let cut = r.below(block.len());
                let mut f = frame(1, end_stream, c.last_stream, &block[..cut]);
                f.extend(frame(9, 4, c.last_stream, &block[cut..]));
                return f;
            }
            frame(1, 4 | end_stream, c.last_stream, &block)
        }
        3 => frame(0, r.pick(&[0, 1]), open, &r.bytes(200)),
        4 => frame(8, 0, r.pick(&[0, open]), &(1 + r.below(100_000) as u32).to_be_bytes()),
        5 => frame(6, 0, 0, &r.next().to_be_bytes()),
        6 => frame(3, 0, open, &r.pick(&[0u32, 8]).to_be_bytes()),
        7 => frame(2, 0, open, &[0, 0, 0, 0, 15]),
        _ => frame(4, 0, 0, &[0, 4, 0, 1, 0, 0]), // INITIAL_WINDOW_SIZE 65536
    }
}

fn random_frame(r: &mut Rng) -> Vec<u8> {
    let stream = r.pick(&[0, 1, 1, 3, 3, 5, 2, 0x7fff_ffff, 0x8000_0001]);
    let flags = if r.below(4) == 0 {
        r.next() as u8
    } else {
        r.pick(&[0, 1, 4, 5, 8, 0x20, 0x25])
    };
    let kind = r.pick(&[0u8, 0, 1, 1, 1, 2, 3, 4, 4, 5, 6, 7, 8, 8, 9, 9, 0x0a, 0xff]);
    let mut payload = match kind {
        1 | 9 => header_block(r),
        4 => {
            // SETTINGS: known and unknown ids with edge values.
            let mut p = Vec::new();
            for _ in 0..r.below(4) {
                let id = r.pick(&[1u16, 2, 3, 4, 5, 6, 8, 0x99]);
                let value = r.pick(&[
                    0u32,
                    1,
                    2,
                    16_383,
                    16_384,
                    65_535,
                    0x7fff_ffff,
                    0x8000_0000,
                    0xffff_ffff,
                ]);
                p.extend_from_slice(&id.to_be_bytes());
                p.extend_from_slice(&value.to_be_bytes());
            }
            p
        }
        8 => r
            .pick(&[0u32, 1, 65_535, 0x7fff_ffff, 0xffff_ffff])
            .to_be_bytes()
            .to_vec(),
        0 => r.bytes(300),
        _ => r.bytes(16),
    };
    if flags & 0x8 != 0 && r.below(2) == 0 {
        // A pad length, honest or larger than the payload.
        payload.insert(0, r.below(payload.len() + 8) as u8);
    }
    let mut f = frame(kind, flags, stream, &payload);
    if r.below(12) == 0 {
        // A length that promises more than follows.
        f[2] = f[2].wrapping_add(1 + r.below(30) as u8);
    }
    f
}

/// A well-formed conversation: requests (each ending its stream) among connection-level frames.
/// Also how many of its requests are for the origin.
fn well_formed(r: &mut Rng) -> (Script, usize) {
    let mut bytes = preface();
    let mut c = Conversation::default();
    let (mut streams, mut to_origin) = (0, 0);
    for _ in 0..1 + r.below(8) {
        match r.below(6) {
            0..=2 => {
                c.last_stream = if c.last_stream == 0 { 1 } else { c.last_stream + 2 };
                streams += 1;
                let (block, origin) = request_block(r);
                to_origin += usize::from(origin);
                bytes.extend(frame(1, 5, c.last_stream, &block));
            }
            3 => bytes.extend(frame(8, 0, 0, &(1 + r.below(100_000) as u32).to_be_bytes())),
            4 => bytes.extend(frame(6, 0, 0, &r.next().to_be_bytes())),
            _ => bytes.extend(frame(2, 0, c.last_stream.max(1), &[0, 0, 0, 0, 15])),
        }
    }
    let answered = move |got: &[u8]| {
        let (ended, goaway) = ended_streams(got);
        if goaway {
            return Err(format!("GOAWAY after {} of {streams} streams", ended.len()));
        }
        Ok(ended.len() >= streams)
    };
    let script = Script {
        bytes,
        answered: Some(Box::new(answered)),
    };
    (script, to_origin)
}

/// A conversation that goes wrong: valid frames mixed with random and malformed ones.
fn hostile(r: &mut Rng) -> Script {
    let mut bytes = preface();
    if r.below(20) == 0 {
        let i = r.below(bytes.len());
        bytes[i] ^= 0x20;
    }
    let mut c = Conversation::default();
    for _ in 0..1 + r.below(12) {
        if r.below(5) < 3 {
            bytes.extend(valid_frame(r, &mut c));
        } else {
            bytes.extend(random_frame(r));
        }
    }
    Script { bytes, answered: None }
}

/// Streams the server ended (END_STREAM on HEADERS or DATA, or RST_STREAM) in `buf`, and
/// whether it sent GOAWAY.
fn ended_streams(buf: &[u8]) -> (std::collections::HashSet<u32>, bool) {
    let (mut ended, mut goaway, mut i) = (std::collections::HashSet::new(), false, 0);
    while i + 9 <= buf.len() {
        let len = (usize::from(buf[i]) << 16) | (usize::from(buf[i + 1]) << 8) | usize::from(buf[i + 2]);
        let (kind, flags) = (buf[i + 3], buf[i + 4]);
        let stream = u32::from_be_bytes([buf[i + 5], buf[i + 6], buf[i + 7], buf[i + 8]]) & 0x7fff_ffff;
        if i + 9 + len > buf.len() {
            break;
        }
        if ((kind == 0 || kind == 1) && flags & 1 != 0) || kind == 3 {
            ended.insert(stream);
        }
        goaway |= kind == 7;
        i += 9 + len;
    }
    (ended, goaway)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_frames_neither_panic_nor_hold_connections_nor_stop_service() {
    let run = random::run("h2-random", "FRONTDESK_H2_SEED", 0x5eed_f00d, well_formed, hostile).await;
    let addr = run.addr;

    // Still serving, over both protocols.
    let answer = h2c(
        addr,
        Request::get(format!("http://{addr}/x")).body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "o");
    assert_eq!(get(addr, "/fixed").await.body, "fixed");
    run.check();
}
