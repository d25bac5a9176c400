//! HTTP/1.1 fast path. For the common case — an HTTP/1.1 request routed to an HTTP/1.1
//! upstream (plain or TLS) with only header-editing stages — the connection task scans the head (`scan`,
//! httparse's grammar) into byte ranges, writes the upstream request straight from those bytes,
//! and relays the response the same way, doing the upstream I/O itself (no per-request task
//! hand-offs, no HeaderMap or Uri). Everything else (HTTP/2, upgrades, chunked or 100-continue
//! requests, redirects, fixed responses, HTTP/2 upstreams, other stages) goes to the
//! general hyper path: the connection is handed over with the bytes already read, before
//! anything of that request was acted on.

mod exchange;
mod forward;
mod general;
mod head;
#[cfg(feature = "acceleration")]
mod hit;
#[cfg(not(feature = "acceleration"))]
#[path = "hit_off.rs"]
mod hit;
mod relay;
mod scan;
mod splice;
mod timer;
mod write;

pub(crate) use exchange::{routing_host, RequestId};
pub(crate) use forward::{is_hop_by_hop, write_forwarding, Forwarding};
pub use head::{is_protected, Parsed, ParsedResponse, RawRequest, RequestHead, ResponseHead};
pub use write::{decimal, line, request_id};

use super::conn::{self, ConnInfo};
use super::Drain;
use crate::pipeline::respond::ProxyError;
use crate::runtime::Runtime;
use crate::snapshot::Snapshot;
use bytes::{Buf, BytesMut};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// How often an idle connection looks at the drain flag.
/// Read buffer kept by a connection waiting for its next request (like nginx's 1k
/// client_header_buffer_size); longer heads grow it.
const IDLE_READ_BUF: usize = 1024;

pub(crate) const DRAIN_CHECK: Duration = Duration::from_secs(1);
/// The longest a connection reads and drops what its client still sends: the rest of a body the
/// backend did not take, or anything before a close (see `Next::Linger`).
pub(crate) const DROP_TIME: Duration = Duration::from_secs(5);

/// Per-connection buffers and parse results, reused for every request on the connection.
pub(crate) struct Conn {
    /// Bytes read from the client and not yet consumed.
    rbuf: BytesMut,
    /// Bytes read from the upstream.
    ubuf: BytesMut,
    /// Head (and small body) being written.
    wbuf: Vec<u8>,
    head: RequestHead,
    resp: ResponseHead,
    client_ip: IpAddr,
    trusted: bool,
    /// One timer per connection, re-armed only when it fires (not per request): it bounds idle
    /// time, head read time, and notices draining.
    timer: timer::ConnTimer,
    last_active: Instant,
    /// Access log on: timings are measured only then (or when the balancer needs them).
    logging: bool,
    /// The snapshot this connection routes with, refreshed when the runtime's generation moves.
    snap: Arc<Snapshot>,
    /// Buffers were given back while idle (until the next request arrives).
    idle_buffers_released: bool,
    /// For splicing long response bodies (made on first use, closed when idle).
    pipe: Option<splice::Pipe>,
    forwarding: forward::ReusedForwarding,
}

impl Conn {
    fn release_buffers(&mut self) {
        self.ubuf = BytesMut::new();
        self.wbuf = Vec::new();
        self.pipe = None;
        self.forwarding = Default::default();
        if self.rbuf.capacity() > IDLE_READ_BUF {
            self.rbuf = BytesMut::new();
        }
        self.head.headers = Vec::new();
        self.resp.headers = Vec::new();
        self.idle_buffers_released = true;
    }
}

enum HeadRead {
    Ready,
    Closed,
    Handoff,
    Refused(ProxyError),
}

/// What to do with the connection after one exchange.
pub(crate) enum Next {
    KeepAlive {
        consumed: usize,
    },
    Close,
    /// Close, while the client may still be sending a request body that was not read: its
    /// data arriving at a closed socket would make the kernel reset the connection, and a reset
    /// can destroy the answer before the client reads it. So the write side is shut and what
    /// comes is read and dropped for a while first (nginx's lingering close).
    Linger,
    Handoff,
}

pub async fn serve<T>(mut io: T, info: Arc<ConnInfo>, rt: Arc<Runtime>, drain: Drain)
where
    T: ClientStream,
{
    let ip = crate::config::value::canonical(info.peer.ip());
    let mut c = Conn {
        rbuf: BytesMut::new(),
        ubuf: BytesMut::new(),
        wbuf: Vec::new(),
        head: RequestHead::default(),
        resp: ResponseHead::default(),
        client_ip: ip,
        trusted: info.listener.trusted_proxies.iter().any(|c| c.contains(ip)),
        timer: timer::ConnTimer::new(DRAIN_CHECK),
        last_active: Instant::now(),
        logging: rt.access_log().is_some(),
        snap: rt.snapshot(),
        idle_buffers_released: false,
        pipe: None,
        forwarding: Default::default(),
    };
    loop {
        match read_head(&mut io, &mut c, &info, &drain).await {
            HeadRead::Ready => c.idle_buffers_released = false,
            HeadRead::Closed => return,
            HeadRead::Handoff => return Box::pin(handoff(io, c.rbuf, info, rt, drain)).await,
            HeadRead::Refused(e) => {
                tracing::info!(client = %info.peer, reason = %e, "request rejected");
                write::error_response(&mut c.wbuf, &e, None, true);
                io.hold_for_close();
                let _ = io.write_all(&c.wbuf).await;
                let _ = io.shutdown().await;
                return;
            }
        }
        if c.snap.generation != rt.generation() {
            c.snap = rt.snapshot();
        }
        let snap = c.snap.clone();
        let started = rt.access_log().is_some().then(std::time::Instant::now);
        let next = match exchange::plan(&mut c, &info, &snap) {
            exchange::Plan::Hit(route, ready) => {
                exchange::send_hit(&mut io, &mut c, &info, &rt, started, route, ready).await
            }
            // Boxed: the exchange's state is large and only needed while a request is in
            // flight, not while the connection idles.
            plan => Box::pin(exchange::run(&mut io, &mut c, &info, &rt, started, plan)).await,
        };
        match next {
            Next::KeepAlive { consumed } => c.rbuf.advance(consumed),
            Next::Close => {
                let _ = io.shutdown().await;
                return;
            }
            Next::Linger => {
                let _ = io.shutdown().await;
                // Until the client closes, a second passes without data, or DROP_TIME.
                read_and_drop(&mut io, usize::MAX, Duration::from_secs(1)).await;
                return;
            }
            Next::Handoff => return Box::pin(handoff(io, c.rbuf, info, rt, drain)).await,
        }
        if drain.is_draining() {
            let _ = io.shutdown().await;
            return;
        }
    }
}

/// Reads and drops `left` bytes the client sends (never more, so a next request stays in the
/// socket). False when it closes first, sends nothing for `idle`, or `DROP_TIME` passes.
pub(crate) async fn read_and_drop<T: ClientStream>(io: &mut T, mut left: usize, idle: Duration) -> bool {
    let deadline = Instant::now() + DROP_TIME;
    let mut sink = vec![0u8; left.min(16 * 1024)];
    while left > 0 {
        let wait = deadline.saturating_duration_since(Instant::now()).min(idle);
        let want = left.min(sink.len());
        match tokio::time::timeout(wait, io.read(&mut sink[..want])).await {
            Ok(Ok(n)) if n > 0 => left -= n,
            _ => return false,
        }
    }
    true
}

/// Reads until `c.rbuf` holds a complete request head. Waiting for the first byte is bounded by
/// the idle timeout (and the header timeout, as on the general path), the rest of the head by
/// the header timeout.
async fn read_head<T: ClientStream>(io: &mut T, c: &mut Conn, info: &ConnInfo, drain: &Drain) -> HeadRead {
    let limits = &info.listener.limits;
    let mut head_started: Option<Instant> = None;
    loop {
        if !c.rbuf.is_empty() {
            match c.head.parse(&c.rbuf, limits) {
                Ok(Parsed::Complete) => return HeadRead::Ready,
                Ok(Parsed::Unsupported) => return HeadRead::Handoff,
                Ok(Parsed::Partial) => {}
                Err(e) => return HeadRead::Refused(e),
            }
            head_started.get_or_insert_with(Instant::now);
        }
        let lazy = c.idle_buffers_released;
        let read = tokio::select! {
            biased;
            r = read_some(io, &mut c.rbuf, lazy) => r,
            _ = c.timer.expired() => {
                let now = Instant::now();
                if c.rbuf.is_empty() && drain.is_draining() {
                    return HeadRead::Closed;
                }
                if c.rbuf.is_empty() && !c.idle_buffers_released {
                    // Idle for a while: give the buffers back so an idle keep-alive connection
                    // costs little memory; busy connections keep theirs and never pay for this.
                    c.release_buffers();
                }
                let deadline = match head_started {
                    Some(t) => t + limits.header_read_timeout,
                    None => c.last_active + limits.idle_timeout.min(limits.header_read_timeout),
                };
                if now >= deadline {
                    return HeadRead::Closed;
                }
                c.timer.reset(deadline.min(now + DRAIN_CHECK));
                continue;
            }
        };
        match read {
            Ok(0) | Err(_) => return HeadRead::Closed,
            Ok(_) => {}
        }
    }
}

/// Reads more of a request head. A connection that gave its buffers back while idle first
/// waits until the socket is readable, so it holds no read buffer until a request arrives.
async fn read_some<T: ClientStream>(io: &mut T, rbuf: &mut BytesMut, lazy: bool) -> std::io::Result<usize> {
    if lazy && rbuf.is_empty() {
        io.readable().await?;
    }
    // A busy connection reads into at least 4 KiB of room: with less (what the last request
    // left of the buffer), a request of a few KiB would arrive in two reads, and its body would
    // go to the backend in two writes. Once the buffer is empty, making room moves nothing.
    let room = if lazy { IDLE_READ_BUF } else { 4 * 1024 };
    if rbuf.capacity() - rbuf.len() < room {
        rbuf.reserve(room);
    }
    io.read_buf(rbuf).await
}

/// A client connection the fast path reads from.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Resolves when a read would find data (or cannot tell, as with TLS, which buffers itself).
    fn readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        std::future::ready(Ok(()))
    }

    /// The socket itself when nothing sits between it and the response bytes (no TLS), for
    /// sending files with `sendfile`.
    fn plain_tcp(&self) -> Option<&tokio::net::TcpStream> {
        None
    }

    /// The TCP connection underneath.
    fn tcp(&self) -> &tokio::net::TcpStream;

    /// The next write is the connection's last: the kernel holds it (TCP_CORK) until the
    /// shutdown that follows, so the response, a TLS close_notify and the FIN leave in one
    /// segment instead of up to three (measured +10% connections per CPU-second when every
    /// request opens a connection). Only for a write that completes the response: a held
    /// partial segment would otherwise wait up to 200 ms.
    fn hold_for_close(&self) {
        #[cfg(target_os = "linux")]
        let _ = socket2::SockRef::from(self.tcp()).set_tcp_cork(true);
    }
}

impl ClientStream for tokio::net::TcpStream {
    fn readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        tokio::net::TcpStream::readable(self)
    }

    fn plain_tcp(&self) -> Option<&tokio::net::TcpStream> {
        Some(self)
    }

    fn tcp(&self) -> &tokio::net::TcpStream {
        self
    }
}

impl ClientStream for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn tcp(&self) -> &tokio::net::TcpStream {
        self.get_ref().0
    }
}

/// Continues the connection on the general (hyper) path, replaying the bytes already read.
async fn handoff<T>(io: T, rbuf: BytesMut, info: Arc<ConnInfo>, rt: Arc<Runtime>, drain: Drain)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if info.listener.http2 && rbuf.starts_with(b"PRI * HTTP/2.0") {
        // h2c with prior knowledge: the preface is in `rbuf`.
        return super::http2::conn::serve(io, rbuf, info, rt, drain.signal).await;
    }
    conn::serve(conn::Rewind::new(rbuf.freeze(), io), info, rt, true, drain.signal).await
}
