//! The backend's response relayed to the client on the fast path: the head rewritten (hop-by-hop
//! fields dropped, header stages applied), the body copied, spliced or de-chunked as it comes.

use super::forward::{is_hop_by_hop, LineRun};
use super::write::{self, line};
use super::Conn;
use crate::route::Route;
use crate::server::chunked::ChunkTracker;
use crate::upstream::stream::UpStream;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Response body bytes that arrived with the head are copied behind it up to this size.
const COPY_WITH_HEAD: usize = 4 * 1024;

/// Reads into `buf` unless `deadline` passes first (None). Uses the connection's one timer, so a
/// read that completes in time costs no timer registration.
pub(super) async fn read_until<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut bytes::BytesMut,
    timer: &mut super::timer::ConnTimer,
    deadline: Instant,
) -> Option<std::io::Result<usize>> {
    let deadline = tokio::time::Instant::from_std(deadline);
    if timer.deadline() > deadline {
        timer.reset(deadline);
    }
    loop {
        tokio::select! {
            biased;
            n = r.read_buf(buf) => return Some(n),
            _ = timer.expired() => {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return None;
                }
                timer.reset(deadline.min(now + super::DRAIN_CHECK));
            }
        }
    }
}

/// Writes the response head and relays the body. Returns (bytes of body sent, whether the
/// response was complete, the upstream socket if it can be reused, whether to close the client).
#[allow(clippy::too_many_arguments)]
pub(super) async fn relay_response<T>(
    io: &mut T,
    c: &mut Conn,
    route: &Route,
    id_name: &[u8],
    request_id: &[u8],
    is_head: bool,
    sticky: Option<String>,
    mut stream: UpStream,
    read_timeout: Duration,
) -> (u64, bool, Option<UpStream>, bool)
where
    T: super::ClientStream,
{
    let resp = &c.resp;
    let ubuf = &c.ubuf[..];
    let no_body = is_head || resp.status == 204 || resp.status == 304;
    let close_delimited = !no_body && !resp.chunked && resp.content_length.is_none();
    let close_client = c.head.close || close_delimited;
    let ops: Vec<&crate::transform::HeaderOps> = route.stages.iter().filter_map(|s| s.response_header_ops()).collect();
    let out = &mut c.wbuf;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    write::decimal(out, u64::from(resp.status));
    out.push(b' ');
    out.extend_from_slice(&ubuf[resp.reason.clone()]);
    out.extend_from_slice(b"\r\n");
    let mut run = LineRun::default();
    for (n, v) in &resp.headers {
        let name = &ubuf[n.clone()];
        let value = &ubuf[v.clone()];
        let relay_te = resp.chunked && name.eq_ignore_ascii_case(b"transfer-encoding");
        if (!relay_te && is_hop_by_hop(name, value))
            || (resp.chunked && name.eq_ignore_ascii_case(b"content-length"))
            || (resp.lists_more_hop_fields && !super::head::is_protected(name) && resp.connection_lists(ubuf, name))
            || name.eq_ignore_ascii_case(id_name)
            || ops.iter().any(|o| o.replaces(name))
        {
            run.flush(out, ubuf);
            continue;
        }
        run.keep(out, ubuf, n.start, v.end);
    }
    run.flush(out, ubuf);
    line(out, id_name, request_id);
    if let Some(cookie) = &sticky {
        line(out, b"set-cookie", cookie.as_bytes());
    }
    for o in &ops {
        o.write_raw(out);
    }
    if close_client {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");

    // Body bytes that arrived with the head go out in the same write when they are few.
    let initial = &ubuf[resp.len..];
    let mut sent: u64 = 0;
    let mut upstream_done = no_body;
    let mut reusable = !resp.close;
    let mut tracker = resp.chunked.then(ChunkTracker::default);
    let mut left = resp.content_length.unwrap_or(u64::MAX);
    // A malformed chunked body from the upstream: stop relaying and close the client.
    let malformed = std::sync::atomic::AtomicBool::new(false);
    let take = |data: &[u8],
                tracker: &mut Option<ChunkTracker>,
                left: &mut u64,
                done: &mut bool,
                reusable: &mut bool|
     -> usize {
        if *done {
            return 0;
        }
        if let Some(t) = tracker {
            match t.feed(data) {
                Ok(Some(n)) => {
                    *done = true;
                    if n < data.len() {
                        *reusable = false;
                    }
                    n
                }
                Ok(None) => data.len(),
                Err(_) => {
                    *reusable = false;
                    *done = true;
                    malformed.store(true, std::sync::atomic::Ordering::Relaxed);
                    0
                }
            }
        } else if close_delimited {
            data.len()
        } else {
            let n = (*left).min(data.len() as u64) as usize;
            *left -= n as u64;
            if *left == 0 {
                *done = true;
            }
            if n < data.len() {
                *reusable = false;
            }
            n
        }
    };
    if !no_body && resp.content_length == Some(0) {
        upstream_done = true;
    }
    let n = take(initial, &mut tracker, &mut left, &mut upstream_done, &mut reusable);
    if n < initial.len() || (no_body && !stream.is_quiet()) {
        // Bytes beyond this response (or a body where none belongs, also one that came after
        // the head): the socket is out of step.
        reusable = false;
    }
    sent += n as u64;
    if close_client && upstream_done {
        io.hold_for_close();
    }
    // A large first piece of body goes out beside the head (writev), not copied after it.
    let written = if n > COPY_WITH_HEAD {
        write::head_and_body(io, out, &initial[..n]).await
    } else {
        out.extend_from_slice(&initial[..n]);
        io.write_all(out).await
    };
    if written.is_err() {
        return (sent, false, None, true);
    }
    let mut complete = true;
    if tracker.is_none() && !close_delimited && !upstream_done && left >= super::splice::SPLICE_MIN {
        // Both ends plain TCP: the kernel moves the body.
        let ends = io.plain_tcp().zip(stream.plain());
        if ends.is_some() && c.pipe.is_none() {
            c.pipe = super::splice::Pipe::new();
        }
        // Without a pipe (none to be had) the body is copied as below.
        if let (Some((client, upstream)), Some(pipe)) = (ends, c.pipe.as_ref()) {
            match super::splice::relay(upstream, client, pipe, left, read_timeout).await {
                Ok(()) => {
                    sent += left;
                    upstream_done = true;
                    // Splicing read exactly the body: bytes after it (a backend out of step)
                    // must not reach the next request on this socket.
                    if !crate::upstream::pool::is_quiet(upstream) {
                        reusable = false;
                    }
                }
                Err(delivered) => {
                    // The pipe may hold bytes of this body.
                    c.pipe = None;
                    sent += delivered;
                    complete = false;
                    reusable = false;
                    upstream_done = true;
                }
            }
        }
    }
    let mut chunk = std::mem::take(&mut c.ubuf);
    while !upstream_done {
        chunk.clear();
        if chunk.capacity() < 16 * 1024 {
            chunk.reserve(64 * 1024);
        }
        let deadline = Instant::now() + read_timeout;
        let read = read_until(&mut stream, &mut chunk, &mut c.timer, deadline).await;
        match read.unwrap_or_else(|| Err(std::io::ErrorKind::TimedOut.into())) {
            Ok(0) if close_delimited => {
                upstream_done = true;
                reusable = false;
            }
            Ok(0) | Err(_) => {
                complete = false;
                reusable = false;
                break;
            }
            Ok(_) => {
                let n = take(&chunk, &mut tracker, &mut left, &mut upstream_done, &mut reusable);
                if close_client && upstream_done {
                    io.hold_for_close();
                }
                if io.write_all(&chunk[..n]).await.is_err() {
                    complete = false;
                    reusable = false;
                    break;
                }
                sent += n as u64;
            }
        }
    }
    c.ubuf = chunk;
    if malformed.load(std::sync::atomic::Ordering::Relaxed) {
        complete = false;
        reusable = false;
    }
    // Like the general path, count body bytes without chunk framing.
    let body_bytes = tracker.map_or(sent, |t| t.payload);
    (
        body_bytes,
        complete,
        (complete && reusable).then_some(stream),
        close_client,
    )
}
