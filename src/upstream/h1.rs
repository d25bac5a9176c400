//! The general path's own HTTP/1.1 client for HTTP/1.1 backends, plain or TLS. Bodiless GET and
//! HEAD requests (HTTP/2 clients, cache misses and revalidations, compressed routes) are written
//! from their head to a pooled connection — the fast path's pool — and the response body is read
//! from it as the client takes it: no connection task and no channel between tasks. Request
//! bodies, upgrades and HTTP/2 backends use hyper's client.

use super::stream::UpStream;
use super::{Backend, Upstream};
use crate::pipeline::body::RequestBody;
use crate::pipeline::interim::{forwardable, Interim, InterimHead};
use crate::pipeline::respond::ProxyError;
use crate::server::chunked::ChunkTracker;
use crate::server::h1::{ParsedResponse, ResponseHead};
use bytes::{Buf, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Reads from the backend go into buffers of at least this much free space.
const READ_CHUNK: usize = 16 * 1024;

/// Can this request go through the raw client?
pub(super) fn eligible(up: &Upstream, req: &Request<RequestBody>) -> bool {
    !up.http2
        && matches!(req.body(), RequestBody::Empty)
        && (req.method() == Method::GET || req.method() == Method::HEAD)
        && !req.headers().contains_key(header::UPGRADE)
}

pub(super) enum RawError {
    /// A pooled socket the backend had closed: nothing was answered, send again on a new one.
    Stale,
    Failed(ProxyError),
}

/// A backend's response as read: the parsed head, its bytes, and the body still to read.
pub struct RawResponse {
    pub head: ResponseHead,
    pub head_bytes: Bytes,
    pub body: RawBody,
}

impl RawResponse {
    /// As an `http` response (the head's fields become a `HeaderMap`).
    pub(super) fn into_response(self) -> Result<Response<RawBody>, &'static str> {
        let status = StatusCode::from_u16(self.head.status).map_err(|_| "invalid status in response")?;
        let mut headers = header_map(&self.head, &self.head_bytes)?;
        if self.head.chunked {
            // RFC 9112 §6.3: Transfer-Encoding wins; the length is the decoded body's.
            headers.remove(header::CONTENT_LENGTH);
        }
        let mut resp = Response::new(self.body);
        *resp.status_mut() = status;
        *resp.version_mut() = if self.head.http10 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        *resp.headers_mut() = headers;
        Ok(resp)
    }
}

/// One exchange with `backend` for the request head `head` (bodiless). `fresh` skips the pool.
pub(super) async fn send_head(
    up: &Upstream,
    backend: &Arc<Backend>,
    head: &[u8],
    method: &Method,
    interim: Option<&Interim>,
    fresh: bool,
) -> Result<RawResponse, RawError> {
    let now = Instant::now();
    let pooled = if fresh {
        None
    } else {
        backend.pool.checkout_up(up.tls.is_some(), up.pool.idle_timeout, now)
    };
    let reused = pooled.is_some();
    let mut stream = match pooled {
        Some(s) => s,
        None => super::stream::connect(&backend.addr, up.connect_timeout, up.tls.as_ref())
            .await
            .map_err(|e| RawError::Failed(ProxyError::Connect(e.to_string())))?,
    };
    let failed = |reason: String| {
        RawError::Failed(ProxyError::UpstreamFailed {
            addr: backend.addr.to_string(),
            reason,
        })
    };
    // TLS may hold the last record back until flushed (a no-op on plain TCP).
    if let Err(e) = async {
        stream.write_all(head).await?;
        stream.flush().await
    }
    .await
    {
        return Err(if reused { RawError::Stale } else { failed(e.to_string()) });
    }
    let mut buf = BytesMut::new();
    let mut parsed = ResponseHead::default();
    // Anything at all from the backend (an interim response counts): then a close is its
    // failure, not a stale pooled socket.
    let mut answered = false;
    loop {
        match read_when_ready(&mut stream, &mut buf).await {
            Ok(0) | Err(_) if !answered && reused => return Err(RawError::Stale),
            Ok(0) => return Err(failed("connection closed before a complete response head".into())),
            Err(e) => return Err(failed(e.to_string())),
            Ok(_) => answered = true,
        }
        loop {
            match parsed.parse(&buf) {
                Ok(ParsedResponse::Partial) => break,
                Ok(ParsedResponse::Complete) if (100..200).contains(&parsed.status) => {
                    if parsed.status == 101 {
                        return Err(failed("unexpected 101 Switching Protocols".into()));
                    }
                    let head = buf.split_to(parsed.len).freeze();
                    if let (Some(sink), Ok(status)) = (interim, StatusCode::from_u16(parsed.status)) {
                        if forwardable(status) {
                            let headers = header_map(&parsed, &head).map_err(|e| failed(e.into()))?;
                            sink.send(InterimHead { status, headers });
                        }
                    }
                    if buf.is_empty() {
                        break;
                    }
                }
                Ok(ParsedResponse::Complete) => {
                    StatusCode::from_u16(parsed.status).map_err(|_| failed("invalid status in response".into()))?;
                    let mut stream = stream;
                    prefetch_small_body(method, &parsed, &mut buf, &mut stream).await;
                    let (head_bytes, rest) = detach(&parsed, buf);
                    let body = raw_body(method, &parsed, rest, stream, backend, up.pool.max_idle);
                    return Ok(RawResponse {
                        head: parsed,
                        head_bytes,
                        body,
                    });
                }
                Err(reason) => return Err(failed(reason)),
            }
        }
    }
}

async fn read_when_ready(stream: &mut UpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| poll_read_buf(stream, cx, buf)).await
}

/// A small body that did not come with its head (nginx without `tcp_nopush` sends a file's head
/// and its bytes in separate segments) is waited for here, briefly, so the client gets head and
/// body together — for HTTP/2 one write instead of a HEADERS write and a DATA write. A body that
/// takes longer streams as usual.
async fn prefetch_small_body(method: &Method, head: &ResponseHead, buf: &mut BytesMut, stream: &mut UpStream) {
    const SMALL: u64 = 16 * 1024;
    let Some(len) = head.content_length.filter(|n| *n <= SMALL && !head.chunked) else {
        return;
    };
    if *method == Method::HEAD || head.status == 204 || head.status == 304 {
        return;
    }
    let want = head.len + len as usize;
    if buf.len() >= want {
        return;
    }
    if buf.capacity() > 2 * want {
        // The wait may be long, and many streams wait at once: hold only what they need.
        let mut exact = BytesMut::with_capacity(want);
        exact.extend_from_slice(buf);
        *buf = exact;
    }
    let read = async {
        while buf.len() < want {
            buf.reserve(want - buf.len());
            // A failure shows when the body is read; the response head is good either way.
            match tokio::io::AsyncReadExt::read_buf(stream, buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(PREFETCH_WAIT, read).await;
}

/// How long a small body is waited for before the head is passed on without it.
const PREFETCH_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// The head (and a small body that came whole with it) in a buffer of their own size, and
/// the rest. The head's field values share their buffer, and an HTTP/2 stream keeps the head's
/// and the body's buffers until the client has taken the response: with thousands of streams in
/// flight, a read buffer's unused 16 KiB each would be most of the proxy's memory.
fn detach(head: &ResponseHead, mut buf: BytesMut) -> (Bytes, BytesMut) {
    if buf.len() <= DETACH_WHOLE {
        let mut own = BytesMut::from(&buf[..]);
        return (own.split_to(head.len).freeze(), own);
    }
    let head_bytes = Bytes::copy_from_slice(&buf[..head.len]);
    buf.advance(head.len);
    (head_bytes, buf)
}

/// What was read up to this size (the head and what came of the body) is copied out whole.
const DETACH_WHOLE: usize = 4 * 1024;

/// `GET /path?q HTTP/1.1` and the request's fields (the pipeline has set Host and removed
/// hop-by-hop fields).
pub(super) fn request_head(req: &Request<RequestBody>) -> Vec<u8> {
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let mut out = Vec::with_capacity(256 + req.headers().len() * 32);
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The head's fields; values share `buf` (the head as read) instead of each being copied.
fn header_map(head: &ResponseHead, buf: &Bytes) -> Result<HeaderMap, &'static str> {
    // Room for what is added on the way out (request id, Date, Cache-Status) without a rehash.
    let mut map = HeaderMap::with_capacity(head.headers.len() + 4);
    for (n, v) in &head.headers {
        let name = HeaderName::from_bytes(&buf[n.clone()]).map_err(|_| "invalid header name in response")?;
        let value =
            HeaderValue::from_maybe_shared(buf.slice(v.clone())).map_err(|_| "invalid header value in response")?;
        map.append(name, value);
    }
    Ok(map)
}

fn raw_body(
    method: &Method,
    head: &ResponseHead,
    buf: BytesMut,
    mut stream: UpStream,
    backend: &Arc<Backend>,
    max_idle: usize,
) -> RawBody {
    let no_body = *method == Method::HEAD || head.status == 204 || head.status == 304;
    let framing = if no_body {
        Framing::Length(0)
    } else if head.chunked {
        Framing::Chunked(ChunkTracker::default())
    } else if let Some(n) = head.content_length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    // A body sent after a bodiless answer (a misbehaving backend) would be read as the next
    // request's response: such a socket is not reused.
    let stray = no_body && buf.is_empty() && !stream.is_quiet();
    let mut body = RawBody {
        stream: Some(stream),
        reusable: !head.close && !matches!(framing, Framing::Close) && !stray,
        buf,
        framing,
        backend: backend.clone(),
        max_idle,
    };
    if matches!(body.framing, Framing::Length(0)) {
        // Nobody polls an empty body: the socket goes back to the pool now.
        body.finish();
    }
    body
}

enum Framing {
    Length(u64),
    Chunked(ChunkTracker),
    /// Ends when the backend closes the connection.
    Close,
    Done,
}

/// A response body read from the backend's socket; the socket returns to the pool when the
/// body has been read to its end and nothing follows it.
pub struct RawBody {
    stream: Option<UpStream>,
    buf: BytesMut,
    framing: Framing,
    reusable: bool,
    backend: Arc<Backend>,
    max_idle: usize,
}

impl RawBody {
    fn finish(&mut self) {
        self.framing = Framing::Done;
        if let Some(stream) = self.stream.take() {
            if self.reusable && self.buf.is_empty() {
                self.backend.pool.put_up(stream, self.max_idle, Instant::now());
            }
        }
    }

    /// The next piece of the body from what is buffered; `None` = read more first.
    fn take_buffered(&mut self) -> Option<Result<Option<Bytes>, BoxError>> {
        match &mut self.framing {
            Framing::Done => Some(Ok(None)),
            Framing::Length(0) => {
                self.finish();
                Some(Ok(None))
            }
            Framing::Length(left) => {
                if self.buf.is_empty() {
                    return None;
                }
                let take = (*left).min(self.buf.len() as u64);
                *left -= take;
                let data = self.buf.split_to(take as usize).freeze();
                if *left == 0 {
                    self.finish();
                }
                Some(Ok(Some(data)))
            }
            Framing::Chunked(tracker) => loop {
                if tracker.is_done() {
                    self.finish();
                    return Some(Ok(None));
                }
                if self.buf.is_empty() {
                    return None;
                }
                let (framing, len) = match tracker.split(&self.buf) {
                    Ok(split) => split,
                    Err(_) => return Some(Err("malformed chunked body from the backend".into())),
                };
                self.buf.advance(framing);
                if len > 0 {
                    return Some(Ok(Some(self.buf.split_to(len).freeze())));
                }
            },
            Framing::Close => {
                if self.buf.is_empty() {
                    return None;
                }
                Some(Ok(Some(self.buf.split().freeze())))
            }
        }
    }
}

impl Body for RawBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some(next) = this.take_buffered() {
                if this.buf.is_empty() {
                    // The rest of the read buffer would otherwise stay allocated, shared with
                    // the chunk, for as long as the client takes to accept the chunk.
                    this.buf = BytesMut::new();
                }
                return Poll::Ready(next.map(|d| d.map(Frame::data)).transpose());
            }
            let Some(stream) = this.stream.as_mut() else {
                return Poll::Ready(Some(Err("backend connection gone before the body ended".into())));
            };
            let n = match ready!(poll_read_buf(stream, cx, &mut this.buf)) {
                Ok(n) => n,
                Err(e) => return Poll::Ready(Some(Err(Box::new(e)))),
            };
            if n == 0 {
                if matches!(this.framing, Framing::Close) {
                    this.reusable = false;
                    this.finish();
                    return Poll::Ready(None);
                }
                this.stream = None;
                return Poll::Ready(Some(Err("backend closed the connection before the body ended".into())));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.framing {
            Framing::Length(n) => SizeHint::with_exact(*n),
            Framing::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// Reads what the connection has into `buf`. On plain TCP the room is made only once the socket
/// is readable: thousands of HTTP/2 streams can be waiting for their backends at once, and an
/// empty read buffer for each would be most of the proxy's memory. Over TLS readable bytes may
/// already sit in the session, so the room is made first (as hyper's client holds its buffer).
fn poll_read_buf(stream: &mut UpStream, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<std::io::Result<usize>> {
    let stream = match stream {
        UpStream::Plain(s) => s,
        UpStream::Tls(s) => {
            if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            let spare = buf.spare_capacity_mut();
            let mut read = ReadBuf::uninit(spare);
            ready!(Pin::new(&mut **s).poll_read(cx, &mut read))?;
            let n = read.filled().len();
            // SAFETY: the first `n` bytes of the spare capacity were just written by the read.
            unsafe { buf.set_len(buf.len() + n) };
            return Poll::Ready(Ok(n));
        }
    };
    loop {
        ready!(stream.poll_read_ready(cx))?;
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        match stream.try_read_buf(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Readiness left over from the last response: the wait for this one must not
                // hold a buffer either.
                if buf.is_empty() {
                    *buf = BytesMut::new();
                }
                continue;
            }
            result => return Poll::Ready(result),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(buf: &[u8]) -> ResponseHead {
        let mut head = ResponseHead::default();
        assert!(matches!(head.parse(buf), Ok(ParsedResponse::Complete)));
        head
    }

    #[test]
    fn a_small_response_leaves_the_read_buffer_behind() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        buf.extend_from_slice(wire);
        let head = parsed(&buf);
        let (head_bytes, rest) = detach(&head, buf);
        assert_eq!(&head_bytes[..], &wire[..head.len]);
        assert_eq!(&rest[..], b"hello");
        // Nothing in either piece may keep the 16 KiB read buffer alive.
        assert!(rest.capacity() <= wire.len(), "rest keeps {} bytes", rest.capacity());
        let map = header_map(&head, &head_bytes).unwrap();
        assert_eq!(map[header::CONTENT_LENGTH], "5");
    }

    #[test]
    fn a_large_response_keeps_its_body_in_the_read_buffer() {
        let mut buf = BytesMut::with_capacity(2 * READ_CHUNK);
        buf.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 65536\r\n\r\n");
        let head_len = buf.len();
        buf.extend_from_slice(&[b'x'; 10_000]);
        let head = parsed(&buf);
        let (head_bytes, rest) = detach(&head, buf);
        assert_eq!(head_bytes.len(), head_len);
        assert_eq!(rest.len(), 10_000);
        assert!(rest.iter().all(|b| *b == b'x'));
    }
}
