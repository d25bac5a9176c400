//! HTTP/2 frames (RFC 9113 §4, §6): the 9-byte header, checks of each frame type's layout,
//! and writers for the frames a server sends.

pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEAD_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE's initial value, and the least a peer may set.
pub const DEFAULT_MAX_FRAME: usize = 16_384;
pub const MAX_WINDOW: u32 = (1 << 31) - 1;

pub mod kind {
    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const PRIORITY: u8 = 2;
    pub const RST_STREAM: u8 = 3;
    pub const SETTINGS: u8 = 4;
    pub const PUSH_PROMISE: u8 = 5;
    pub const PING: u8 = 6;
    pub const GOAWAY: u8 = 7;
    pub const WINDOW_UPDATE: u8 = 8;
    pub const CONTINUATION: u8 = 9;
}

pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 1;
    pub const ENABLE_PUSH: u16 = 2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 3;
    pub const INITIAL_WINDOW_SIZE: u16 = 4;
    pub const MAX_FRAME_SIZE: u16 = 5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 6;
}

/// Error codes (§7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason(pub u32);

impl Reason {
    pub const NO_ERROR: Reason = Reason(0);
    pub const PROTOCOL_ERROR: Reason = Reason(1);
    pub const INTERNAL_ERROR: Reason = Reason(2);
    pub const FLOW_CONTROL_ERROR: Reason = Reason(3);
    pub const STREAM_CLOSED: Reason = Reason(5);
    pub const FRAME_SIZE_ERROR: Reason = Reason(6);
    pub const REFUSED_STREAM: Reason = Reason(7);
    pub const CANCEL: Reason = Reason(8);
    pub const COMPRESSION_ERROR: Reason = Reason(9);
    pub const ENHANCE_YOUR_CALM: Reason = Reason(11);
}

/// A frame that breaks the protocol: either the whole connection goes (GOAWAY) or one stream
/// (RST_STREAM).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("connection error {0:?}: {1}")]
    Connection(Reason, &'static str),
    #[error("stream {0} error {1:?}: {2}")]
    Stream(u32, Reason, &'static str),
}

fn conn<T>(reason: Reason, why: &'static str) -> Result<T, FrameError> {
    Err(FrameError::Connection(reason, why))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Head {
    pub fn parse(b: &[u8; HEAD_LEN]) -> Head {
        Head {
            len: (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            // The reserved bit is ignored on receipt (§4.1).
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & MAX_WINDOW,
        }
    }

    pub fn write(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
        debug_assert!(len < 1 << 24);
        let s = stream.to_be_bytes();
        out.extend_from_slice(&[
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            s[0],
            s[1],
            s[2],
            s[3],
        ]);
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// `flow_len` is the whole payload, padding included: what flow control counts.
    Data {
        stream: u32,
        end_stream: bool,
        data: &'a [u8],
        flow_len: usize,
    },
    Headers {
        stream: u32,
        end_stream: bool,
        end_headers: bool,
        depends_on: Option<u32>,
        block: &'a [u8],
    },
    Priority {
        stream: u32,
        depends_on: u32,
    },
    RstStream {
        stream: u32,
        reason: Reason,
    },
    Settings {
        ack: bool,
        params: &'a [u8],
    },
    Ping {
        ack: bool,
        data: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        reason: Reason,
    },
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    Continuation {
        stream: u32,
        end_headers: bool,
        block: &'a [u8],
    },
    /// Unknown types are ignored (§4.1, §5.5).
    Unknown,
}

/// Checks a frame's layout and borrows its parts from `payload` (exactly `head.len` bytes).
/// PUSH_PROMISE from a client is a connection error (§8.4).
pub fn parse<'a>(head: &Head, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    debug_assert_eq!(payload.len(), head.len);
    let stream = head.stream;
    let needs_stream = |f: Frame<'a>| {
        if stream == 0 {
            conn(Reason::PROTOCOL_ERROR, "frame needs a stream")
        } else {
            Ok(f)
        }
    };
    let no_stream = |f: Frame<'a>| {
        if stream != 0 {
            conn(Reason::PROTOCOL_ERROR, "connection frame on a stream")
        } else {
            Ok(f)
        }
    };
    match head.kind {
        kind::DATA => {
            let data = unpad(head, payload)?;
            needs_stream(Frame::Data {
                stream,
                end_stream: head.flags & flag::END_STREAM != 0,
                data,
                flow_len: payload.len(),
            })
        }
        kind::HEADERS => {
            let mut block = unpad(head, payload)?;
            let mut depends_on = None;
            if head.flags & flag::PRIORITY != 0 {
                if block.len() < 5 {
                    return conn(Reason::FRAME_SIZE_ERROR, "HEADERS too short for its priority");
                }
                depends_on = Some(u32::from_be_bytes([block[0], block[1], block[2], block[3]]) & MAX_WINDOW);
                block = &block[5..];
            }
            needs_stream(Frame::Headers {
                stream,
                end_stream: head.flags & flag::END_STREAM != 0,
                end_headers: head.flags & flag::END_HEADERS != 0,
                depends_on,
                block,
            })
        }
        kind::PRIORITY => {
            if stream == 0 {
                return conn(Reason::PROTOCOL_ERROR, "PRIORITY needs a stream");
            }
            if payload.len() != 5 {
                return Err(FrameError::Stream(
                    stream,
                    Reason::FRAME_SIZE_ERROR,
                    "PRIORITY is not 5 bytes",
                ));
            }
            let depends_on = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & MAX_WINDOW;
            Ok(Frame::Priority { stream, depends_on })
        }
        kind::RST_STREAM => {
            if payload.len() != 4 {
                return conn(Reason::FRAME_SIZE_ERROR, "RST_STREAM is not 4 bytes");
            }
            needs_stream(Frame::RstStream {
                stream,
                reason: Reason(be32(payload)),
            })
        }
        kind::SETTINGS => {
            let ack = head.flags & flag::ACK != 0;
            if (ack && !payload.is_empty()) || payload.len() % 6 != 0 {
                return conn(Reason::FRAME_SIZE_ERROR, "SETTINGS of a wrong length");
            }
            no_stream(Frame::Settings { ack, params: payload })
        }
        kind::PUSH_PROMISE => conn(Reason::PROTOCOL_ERROR, "PUSH_PROMISE from a client"),
        kind::PING => {
            if payload.len() != 8 {
                return conn(Reason::FRAME_SIZE_ERROR, "PING is not 8 bytes");
            }
            let mut data = [0; 8];
            data.copy_from_slice(payload);
            no_stream(Frame::Ping {
                ack: head.flags & flag::ACK != 0,
                data,
            })
        }
        kind::GOAWAY => {
            if payload.len() < 8 {
                return conn(Reason::FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes");
            }
            no_stream(Frame::GoAway {
                last_stream: be32(payload) & MAX_WINDOW,
                reason: Reason(be32(&payload[4..])),
            })
        }
        kind::WINDOW_UPDATE => {
            if payload.len() != 4 {
                return conn(Reason::FRAME_SIZE_ERROR, "WINDOW_UPDATE is not 4 bytes");
            }
            let increment = be32(payload) & MAX_WINDOW;
            if increment == 0 {
                return if stream == 0 {
                    conn(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
                } else {
                    Err(FrameError::Stream(stream, Reason::PROTOCOL_ERROR, "WINDOW_UPDATE of 0"))
                };
            }
            Ok(Frame::WindowUpdate { stream, increment })
        }
        kind::CONTINUATION => needs_stream(Frame::Continuation {
            stream,
            end_headers: head.flags & flag::END_HEADERS != 0,
            block: payload,
        }),
        _ => Ok(Frame::Unknown),
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The payload without its padding (§6.1, §6.2).
fn unpad<'a>(head: &Head, payload: &'a [u8]) -> Result<&'a [u8], FrameError> {
    if head.flags & flag::PADDED == 0 {
        return Ok(payload);
    }
    let Some((&pad, rest)) = payload.split_first() else {
        return conn(Reason::FRAME_SIZE_ERROR, "padded frame without a pad length");
    };
    if usize::from(pad) > rest.len() {
        return conn(Reason::PROTOCOL_ERROR, "padding longer than the frame");
    }
    Ok(&rest[..rest.len() - usize::from(pad)])
}

/// One SETTINGS parameter, checked (§6.5.2).
pub fn settings(params: &[u8]) -> impl Iterator<Item = Result<(u16, u32), FrameError>> + '_ {
    params.chunks_exact(6).map(|p| {
        let id = u16::from_be_bytes([p[0], p[1]]);
        let value = be32(&p[2..]);
        match id {
            setting::ENABLE_PUSH if value > 1 => conn(Reason::PROTOCOL_ERROR, "ENABLE_PUSH above 1"),
            setting::INITIAL_WINDOW_SIZE if value > MAX_WINDOW => {
                conn(Reason::FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE above 2^31-1")
            }
            setting::MAX_FRAME_SIZE if !(DEFAULT_MAX_FRAME as u32..1 << 24).contains(&value) => {
                conn(Reason::PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range")
            }
            _ => Ok((id, value)),
        }
    })
}

pub fn write_settings(out: &mut Vec<u8>, params: &[(u16, u32)]) {
    Head::write(out, params.len() * 6, kind::SETTINGS, 0, 0);
    for (id, value) in params {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

pub fn write_settings_ack(out: &mut Vec<u8>) {
    Head::write(out, 0, kind::SETTINGS, flag::ACK, 0);
}

pub fn write_ping(out: &mut Vec<u8>, data: &[u8; 8]) {
    Head::write(out, 8, kind::PING, 0, 0);
    out.extend_from_slice(data);
}

pub fn write_ping_ack(out: &mut Vec<u8>, data: &[u8; 8]) {
    Head::write(out, 8, kind::PING, flag::ACK, 0);
    out.extend_from_slice(data);
}

pub fn write_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    Head::write(out, 4, kind::WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&increment.to_be_bytes());
}

pub fn write_rst_stream(out: &mut Vec<u8>, stream: u32, reason: Reason) {
    Head::write(out, 4, kind::RST_STREAM, 0, stream);
    out.extend_from_slice(&reason.0.to_be_bytes());
}

pub fn write_goaway(out: &mut Vec<u8>, last_stream: u32, reason: Reason) {
    Head::write(out, 8, kind::GOAWAY, 0, 0);
    out.extend_from_slice(&last_stream.to_be_bytes());
    out.extend_from_slice(&reason.0.to_be_bytes());
}

/// A DATA frame's header; its `len` bytes of payload follow separately.
pub fn write_data_head(out: &mut Vec<u8>, stream: u32, len: usize, end_stream: bool) {
    Head::write(
        out,
        len,
        kind::DATA,
        if end_stream { flag::END_STREAM } else { 0 },
        stream,
    );
}

/// A header block as HEADERS plus as many CONTINUATION frames as `max_frame` requires.
pub fn write_headers(out: &mut Vec<u8>, stream: u32, block: &[u8], end_stream: bool, max_frame: usize) {
    let mut chunks = block.chunks(max_frame);
    let first = chunks.next().unwrap_or(&[]);
    let last = block.len() <= max_frame;
    let mut flags = if end_stream { flag::END_STREAM } else { 0 };
    if last {
        flags |= flag::END_HEADERS;
    }
    Head::write(out, first.len(), kind::HEADERS, flags, stream);
    out.extend_from_slice(first);
    let mut rest = chunks.peekable();
    while let Some(chunk) = rest.next() {
        let flags = if rest.peek().is_none() { flag::END_HEADERS } else { 0 };
        Head::write(out, chunk.len(), kind::CONTINUATION, flags, stream);
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(mut bytes: &[u8]) -> Vec<(Head, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let head = Head::parse(bytes[..HEAD_LEN].try_into().unwrap());
            out.push((head, bytes[HEAD_LEN..HEAD_LEN + head.len].to_vec()));
            bytes = &bytes[HEAD_LEN + head.len..];
        }
        out
    }

    #[test]
    fn writers_and_parser_agree() {
        let mut out = Vec::new();
        write_settings(
            &mut out,
            &[
                (setting::MAX_CONCURRENT_STREAMS, 128),
                (setting::INITIAL_WINDOW_SIZE, 1 << 20),
            ],
        );
        write_window_update(&mut out, 0, 1000);
        write_rst_stream(&mut out, 3, Reason::CANCEL);
        write_goaway(&mut out, 7, Reason::NO_ERROR);
        write_ping_ack(&mut out, b"12345678");
        write_settings_ack(&mut out);
        let parsed: Vec<_> = frames(&out);
        let got: Vec<Frame> = parsed.iter().map(|(h, p)| parse(h, p).unwrap()).collect();
        let Frame::Settings { ack: false, params } = got[0] else {
            panic!("{:?}", got[0])
        };
        let params: Vec<_> = settings(params).map(Result::unwrap).collect();
        assert_eq!(
            params,
            [
                (setting::MAX_CONCURRENT_STREAMS, 128),
                (setting::INITIAL_WINDOW_SIZE, 1 << 20)
            ]
        );
        assert_eq!(
            got[1],
            Frame::WindowUpdate {
                stream: 0,
                increment: 1000
            }
        );
        assert_eq!(
            got[2],
            Frame::RstStream {
                stream: 3,
                reason: Reason::CANCEL
            }
        );
        assert_eq!(
            got[3],
            Frame::GoAway {
                last_stream: 7,
                reason: Reason::NO_ERROR
            }
        );
        assert_eq!(
            got[4],
            Frame::Ping {
                ack: true,
                data: *b"12345678"
            }
        );
        assert_eq!(got[5], Frame::Settings { ack: true, params: &[] });
    }

    #[test]
    fn a_long_header_block_is_split_into_continuations() {
        let block: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        write_headers(&mut out, 5, &block, true, DEFAULT_MAX_FRAME);
        let parsed = frames(&out);
        assert_eq!(parsed.len(), 3);
        assert_eq!((parsed[0].0.kind, parsed[0].0.flags), (kind::HEADERS, flag::END_STREAM));
        assert_eq!((parsed[1].0.kind, parsed[1].0.flags), (kind::CONTINUATION, 0));
        assert_eq!(
            (parsed[2].0.kind, parsed[2].0.flags),
            (kind::CONTINUATION, flag::END_HEADERS)
        );
        let joined: Vec<u8> = parsed.iter().flat_map(|(_, p)| p.clone()).collect();
        assert_eq!(joined, block);
        let mut small = Vec::new();
        write_headers(&mut small, 1, b"abc", false, DEFAULT_MAX_FRAME);
        assert_eq!(
            frames(&small)[0].0,
            Head {
                len: 3,
                kind: kind::HEADERS,
                flags: flag::END_HEADERS,
                stream: 1
            }
        );
    }

    #[test]
    fn padding_and_priority_are_taken_off() {
        let head = Head {
            len: 10,
            kind: kind::HEADERS,
            flags: flag::PADDED | flag::PRIORITY | flag::END_HEADERS,
            stream: 1,
        };
        let payload = [2, 0, 0, 0, 3, 16, 0x82, 0x84, 0, 0];
        let Frame::Headers {
            depends_on,
            block,
            end_headers: true,
            ..
        } = parse(&head, &payload).unwrap()
        else {
            panic!()
        };
        assert_eq!((depends_on, block), (Some(3), &[0x82, 0x84][..]));
        let data = Head {
            len: 4,
            kind: kind::DATA,
            flags: flag::PADDED,
            stream: 1,
        };
        assert_eq!(
            parse(&data, &[1, b'h', b'i', 0]).unwrap(),
            Frame::Data {
                stream: 1,
                end_stream: false,
                data: b"hi",
                flow_len: 4
            }
        );
    }

    #[test]
    fn refuses_malformed_frames() {
        let h = |kind, flags, stream, len| Head {
            len,
            kind,
            flags,
            stream,
        };
        let connection = |r: Result<Frame, FrameError>| matches!(r, Err(FrameError::Connection(..)));
        assert!(connection(parse(&h(kind::DATA, 0, 0, 1), b"x")), "DATA on stream 0");
        assert!(
            connection(parse(&h(kind::DATA, flag::PADDED, 1, 2), &[5, 0])),
            "padding too long"
        );
        assert!(
            connection(parse(&h(kind::SETTINGS, 0, 1, 0), b"")),
            "SETTINGS on a stream"
        );
        assert!(
            connection(parse(&h(kind::SETTINGS, 0, 0, 5), b"12345")),
            "SETTINGS not a multiple of 6"
        );
        assert!(
            connection(parse(&h(kind::SETTINGS, flag::ACK, 0, 6), b"123456")),
            "ACK with payload"
        );
        assert!(connection(parse(&h(kind::PING, 0, 0, 7), b"1234567")));
        assert!(connection(parse(&h(kind::PUSH_PROMISE, 0, 1, 0), b"")));
        assert!(connection(parse(&h(kind::WINDOW_UPDATE, 0, 0, 4), &[0, 0, 0, 0])));
        assert_eq!(
            parse(&h(kind::WINDOW_UPDATE, 0, 3, 4), &[0, 0, 0, 0]),
            Err(FrameError::Stream(3, Reason::PROTOCOL_ERROR, "WINDOW_UPDATE of 0"))
        );
        assert!(matches!(
            parse(&h(kind::PRIORITY, 0, 3, 4), b"1234"),
            Err(FrameError::Stream(3, ..))
        ));
        assert_eq!(parse(&h(0x42, 0, 0, 3), b"abc").unwrap(), Frame::Unknown);
        let bad: Vec<_> = settings(&[0, 2, 0, 0, 0, 2, 0, 5, 0, 0, 0x10, 0]).collect();
        assert!(
            bad.iter().all(Result::is_err),
            "ENABLE_PUSH 2 and MAX_FRAME_SIZE 4096: {bad:?}"
        );
    }
}
