//! Request-smuggling guard for HTTP/1.1 connections. hyper resolves a request carrying both
//! Content-Length and Transfer-Encoding the RFC 9112 way (chunked wins, connection closes after),
//! but frontdesk refuses such requests outright. hyper drops the Content-Length before the
//! handler sees the request, so this scanner watches the raw bytes instead: it follows the
//! message framing (heads, Content-Length bodies, chunked bodies) and records the index of any
//! request whose head has both fields. The handler answers that request with 400.

use super::chunked::ChunkTracker;

const MAX_HEAD: usize = 64 * 1024;

enum State {
    Head,
    Body(u64),
    Chunked(ChunkTracker),
    /// Upgraded, unparseable or over-long input: hyper decides, we stop scanning.
    Passthrough,
}

pub struct HeadScanner {
    state: State,
    buf: Vec<u8>,
    /// Heads parsed so far on this connection.
    pub heads: u32,
    /// Index (0-based) of the first request that had both Content-Length and Transfer-Encoding.
    pub ambiguous_request: Option<u32>,
}

impl Default for HeadScanner {
    fn default() -> Self {
        HeadScanner {
            state: State::Head,
            buf: Vec::new(),
            heads: 0,
            ambiguous_request: None,
        }
    }
}

impl HeadScanner {
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.state {
                State::Passthrough => return,
                State::Head => {
                    if self.buf.is_empty() {
                        // Common case: the whole head is in this read; parse it in place.
                        if let Some(end) = head_end(data) {
                            let (head, rest) = data.split_at(end);
                            self.on_head(head);
                            data = rest;
                            continue;
                        }
                    }
                    let before = self.buf.len();
                    self.buf.extend_from_slice(data);
                    match head_end(&self.buf) {
                        Some(end) => {
                            let head: Vec<u8> = self.buf.drain(..end).collect();
                            let consumed = end - before;
                            self.buf.clear();
                            self.on_head(&head);
                            data = &data[consumed..];
                        }
                        None => {
                            if self.buf.len() > MAX_HEAD {
                                self.state = State::Passthrough;
                            }
                            return;
                        }
                    }
                }
                State::Body(n) => {
                    let take = (*n).min(data.len() as u64);
                    *n -= take;
                    data = &data[take as usize..];
                    if *n == 0 {
                        self.state = State::Head;
                    }
                }
                State::Chunked(tracker) => match tracker.feed(data) {
                    Ok(Some(n)) => {
                        data = &data[n..];
                        self.state = State::Head;
                    }
                    Ok(None) => return,
                    // hyper refuses the body; nothing after it will be parsed.
                    Err(_) => self.state = State::Passthrough,
                },
            }
        }
    }

    fn on_head(&mut self, head: &[u8]) {
        let index = self.heads;
        self.heads += 1;
        let mut headers = vec![httparse::EMPTY_HEADER; 512];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
            self.state = State::Passthrough;
            return;
        }
        let mut content_length: Option<u64> = None;
        let (mut te, mut upgrade) = (false, false);
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                content_length = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .or(Some(u64::MAX));
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                te = true;
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        let connect = req.method == Some("CONNECT");
        self.state = if te && content_length.is_some() {
            self.ambiguous_request.get_or_insert(index);
            State::Passthrough
        } else if upgrade || connect {
            State::Passthrough
        } else if te {
            State::Chunked(ChunkTracker::default())
        } else {
            match content_length {
                Some(0) | None => State::Head,
                Some(u64::MAX) => State::Passthrough,
                Some(n) => State::Body(n),
            }
        };
    }
}

/// Length of the head including its blank line, if `data` holds a complete one.
fn head_end(data: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = data[i..].iter().position(|&b| b == b'\n') {
        let nl = i + p;
        match data.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if data.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> HeadScanner {
        let mut s = HeadScanner::default();
        for c in chunks {
            s.feed(c);
        }
        s
    }

    #[test]
    fn flags_cl_and_te_in_any_order() {
        let s = scan(&[b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"]);
        assert_eq!(s.ambiguous_request, Some(0));
        let s = scan(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"]);
        assert_eq!(s.ambiguous_request, Some(0));
    }

    #[test]
    fn follows_framing_across_pipelined_requests_and_split_reads() {
        let input: &[u8] = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloPOST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\nGET /c HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        for split in [1, 7, 40, input.len()] {
            let chunks: Vec<&[u8]> = input.chunks(split).collect();
            let s = scan(&chunks);
            assert_eq!(s.heads, 3, "split {split}");
            assert_eq!(s.ambiguous_request, Some(2), "split {split}");
        }
    }

    #[test]
    fn body_bytes_that_look_like_headers_are_not_heads() {
        let s = scan(&[b"POST / HTTP/1.1\r\nContent-Length: 59\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n"]);
        assert_eq!(s.heads, 1);
        assert_eq!(s.ambiguous_request, None);
    }
}
