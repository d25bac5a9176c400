//! Follows chunked transfer coding (RFC 9112 §7.1) over a byte stream without decoding it, to
//! find where the message ends. Used to relay chunked bodies as they are and by the framing
//! scanner of the general path.

enum State {
    Size {
        digits: usize,
        ext: bool,
        cr: bool,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line; `empty` = the line so far is empty.
    Trailer {
        empty: bool,
    },
    Done,
}

pub struct ChunkTracker {
    state: State,
    size: u64,
    /// Chunk data bytes seen so far (the body without its framing).
    pub payload: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

impl Default for ChunkTracker {
    fn default() -> Self {
        ChunkTracker {
            state: State::Size {
                digits: 0,
                ext: false,
                cr: false,
            },
            size: 0,
            payload: 0,
        }
    }
}

impl ChunkTracker {
    /// Consumes `data`; returns `Some(n)` when the message ended after the first `n` bytes.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, Malformed> {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            match &mut self.state {
                State::Done => return Ok(Some(i)),
                State::Size { digits, ext, cr } => {
                    if *cr {
                        if b != b'\n' {
                            return Err(Malformed);
                        }
                        if *digits == 0 {
                            return Err(Malformed);
                        }
                        self.state = if self.size == 0 {
                            State::Trailer { empty: true }
                        } else {
                            State::Data(self.size)
                        };
                        self.size = 0;
                    } else if b == b'\r' {
                        *cr = true;
                    } else if *ext {
                        // chunk extensions are skipped
                    } else if let Some(d) = (b as char).to_digit(16) {
                        *digits += 1;
                        if *digits > 15 {
                            return Err(Malformed);
                        }
                        self.size = self.size * 16 + u64::from(d);
                    } else if b == b';' || b == b' ' || b == b'\t' {
                        *ext = true;
                    } else {
                        return Err(Malformed);
                    }
                }
                State::Data(left) => {
                    let take = (*left).min((data.len() - i) as u64);
                    *left -= take;
                    self.payload += take;
                    i += take as usize;
                    if *left == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(Malformed);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(Malformed);
                    }
                    self.state = State::Size {
                        digits: 0,
                        ext: false,
                        cr: false,
                    };
                }
                State::Trailer { empty } => match b {
                    b'\n' if *empty => {
                        self.state = State::Done;
                        return Ok(Some(i + 1));
                    }
                    b'\n' => *empty = true,
                    b'\r' => {}
                    _ => *empty = false,
                },
            }
            i += 1;
        }
        Ok(matches!(self.state, State::Done).then_some(data.len()))
    }

    /// Decoding: consumes the framing at the front of `data` up to the next run of chunk data.
    /// Returns (framing bytes consumed, data bytes that follow them); (n, 0) with the message
    /// ended or `data` used up.
    pub fn split(&mut self, data: &[u8]) -> Result<(usize, usize), Malformed> {
        let mut i = 0;
        while i < data.len() {
            match &mut self.state {
                State::Done => break,
                State::Data(left) => {
                    let take = (*left).min((data.len() - i) as u64);
                    *left -= take;
                    self.payload += take;
                    if *left == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok((i, take as usize));
                }
                _ => {
                    self.feed(&data[i..=i])?;
                    i += 1;
                }
            }
        }
        Ok((i, 0))
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_yields_the_data_across_any_split() {
        let msg = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for size in 1..msg.len() {
            let mut t = ChunkTracker::default();
            let mut out = Vec::new();
            for part in msg.chunks(size) {
                let mut rest = part;
                while !rest.is_empty() {
                    let (framing, data) = t.split(rest).unwrap();
                    out.extend_from_slice(&rest[framing..framing + data]);
                    rest = &rest[framing + data..];
                    if framing + data == 0 {
                        break;
                    }
                }
            }
            assert_eq!(out, b"hello0123456789", "split {size}");
            assert!(t.is_done(), "split {size}");
        }
        assert!(ChunkTracker::default().split(b"zz\r\n").is_err());
    }

    #[test]
    fn finds_the_end_across_splits() {
        let msg = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let end = msg.len() - 4;
        for split in 1..msg.len() {
            let mut t = ChunkTracker::default();
            let mut found = None;
            for (k, part) in msg.chunks(split).enumerate() {
                if let Some(n) = t.feed(part).unwrap() {
                    found = Some(k * split + n);
                    break;
                }
            }
            assert_eq!(found, Some(end), "split {split}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [&b"zz\r\n"[..], b"3\r\nabcdef\r\n", b"\r\n", b"3\nabc"] {
            assert_eq!(ChunkTracker::default().feed(bad), Err(Malformed), "{bad:?}");
        }
    }
}
