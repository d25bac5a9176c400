//! One client connection handed over by the HTTP/1.1 fast path: hyper's HTTP/1.1 server over
//! the (TLS) stream, wrapped so that idle time is tracked, HTTP/1.1 framing is checked (see
//! `strict`), and a drain signal closes it gracefully.

use super::strict::HeadScanner;
use super::ListenerSpec;
use crate::runtime::Runtime;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

const NO_REQUEST: u32 = u32::MAX;

/// What the pipeline knows about the connection a request came on.
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub listener: Arc<ListenerSpec>,
    epoch: Instant,
    last_active_ms: AtomicU64,
    requests: AtomicU32,
    ambiguous_request: AtomicU32,
    /// Formatted on the connection's first forwarded request, reused by the rest.
    client_ip: std::sync::OnceLock<Box<crate::upstream::headers::ClientIp>>,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, listener: Arc<ListenerSpec>) -> Self {
        ConnInfo {
            peer,
            listener,
            epoch: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            requests: AtomicU32::new(0),
            ambiguous_request: AtomicU32::new(NO_REQUEST),
            client_ip: std::sync::OnceLock::new(),
        }
    }

    /// The peer's address as forwarding headers spell it (IPv4-mapped IPv6 as IPv4).
    pub fn client_ip(&self) -> &crate::upstream::headers::ClientIp {
        self.client_ip.get_or_init(|| {
            Box::new(crate::upstream::headers::ClientIp::new(
                crate::config::value::canonical(self.peer.ip()),
            ))
        })
    }

    /// Called once per request: is this the request the framing scanner flagged?
    pub fn is_ambiguous_request(&self) -> bool {
        let index = self.requests.fetch_add(1, Ordering::Relaxed);
        self.ambiguous_request.load(Ordering::Relaxed) == index
    }

    pub fn touch(&self) {
        self.last_active_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

pin_project! {
    /// The client stream with activity tracking and the HTTP/1.1 framing scanner.
    pub struct ConnIo<T> {
        #[pin]
        inner: T,
        info: Arc<ConnInfo>,
        scanner: Option<HeadScanner>,
    }
}

impl<T: AsyncRead> AsyncRead for ConnIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = this.inner.poll_read(cx, buf);
        let fresh = &buf.filled()[before..];
        if !fresh.is_empty() {
            this.info.touch();
            if let Some(s) = this.scanner.as_mut() {
                s.feed(fresh);
                if let Some(i) = s.ambiguous_request.take() {
                    this.info.ambiguous_request.store(i, Ordering::Relaxed);
                }
            }
        }
        res
    }
}

impl<T: AsyncWrite> AsyncWrite for ConnIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        this.info.touch();
        this.inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        this.info.touch();
        this.inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// Serves one connection until it closes, goes idle, or `drain` fires.
pub async fn serve<T>(io: T, info: Arc<ConnInfo>, rt: Arc<Runtime>, scan_h1: bool, mut drain: watch::Receiver<bool>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    info.touch();
    let listener = info.listener.clone();
    let io = ConnIo {
        inner: io,
        info: info.clone(),
        scanner: scan_h1.then(HeadScanner::default),
    };
    let svc_info = info.clone();
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        // Boxed: the pipeline's future is large, and hyper moves it. Not wrapped in an async
        // block, which would hold it twice.
        Box::pin(crate::pipeline::handle(req, svc_info.clone(), rt.clone()))
    });
    let conn = listener.http.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let idle_timeout = listener.limits.idle_timeout;
    let mut draining = *drain.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        let check_in = idle_timeout
            .saturating_sub(info.idle_for())
            .max(Duration::from_millis(10));
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(peer = %info.peer, error = %e, "connection ended with error");
                }
                return;
            }
            _ = drain.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(check_in), if !draining => {
                if info.idle_for() >= idle_timeout {
                    tracing::debug!(peer = %info.peer, "closing idle connection");
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

pin_project! {
    /// A stream that first yields bytes already read from it (by the fast path) and then the
    /// stream itself.
    pub struct Rewind<T> {
        prefix: bytes::Bytes,
        #[pin]
        inner: T,
    }
}

impl<T> Rewind<T> {
    pub fn new(prefix: bytes::Bytes, inner: T) -> Self {
        Rewind { prefix, inner }
    }
}

impl<T: AsyncRead> AsyncRead for Rewind<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            bytes::Buf::advance(this.prefix, n);
            return Poll::Ready(Ok(()));
        }
        this.inner.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for Rewind<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
