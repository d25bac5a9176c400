//! Accept → TLS → HTTP. Listeners are kept across reloads when their `listen` address is
//! unchanged (new settings apply to new connections); added ones are bound before the new
//! snapshot goes live, removed ones stop accepting and drain their connections.

pub mod chunked;
pub mod conn;
pub mod h1;
pub mod http2;
pub mod limits;
pub mod strict;
pub mod tls;

use crate::config::value::Cidr;
use crate::runtime::Runtime;
use conn::ConnInfo;
use http::HeaderName;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use limits::Limits;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// A compiled `[[listener]]`.
pub struct ListenerSpec {
    /// The `listen` value as written; identifies the listener across reloads.
    pub listen: String,
    pub addr: SocketAddr,
    pub tls: Option<Arc<tls::ServerTls>>,
    pub http: auto::Builder<TokioExecutor>,
    /// HTTP/2 is served (by `http2`), as h2c prior knowledge or negotiated by ALPN.
    pub http2: bool,
    pub redirect_https: Option<u16>,
    pub trusted_proxies: Vec<Cidr>,
    pub request_id_header: HeaderName,
    /// Connections are accepted once their first bytes have arrived (`TCP_DEFER_ACCEPT`).
    pub defer_accept: bool,
    pub limits: Limits,
}

impl ListenerSpec {
    /// hyper's HTTP/1.1 server, for the connections the fast path hands over (HTTP/2 is
    /// served by `http2`).
    pub fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
        let mut b = auto::Builder::new(TokioExecutor::new());
        b.http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192) + 1024)
            .max_headers(limits.max_headers)
            .keep_alive(true);
        b.http1_only()
    }
}

/// Counts open client connections so shutdown can wait for them.
#[derive(Default)]
pub struct ConnTracker {
    open: AtomicUsize,
    closed: Notify,
}

struct ConnGuard(Arc<ConnTracker>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.closed.notify_waiters();
        }
    }
}

impl ConnTracker {
    fn guard(self: &Arc<Self>) -> ConnGuard {
        self.open.fetch_add(1, Ordering::AcqRel);
        ConnGuard(self.clone())
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Waits until every connection has closed or `timeout` passed; returns how many are left.
    pub async fn wait_closed(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.closed.notified();
            if self.open() == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.open();
            }
        }
    }
}

struct Running {
    local_addr: SocketAddr,
    spec: watch::Sender<Arc<ListenerSpec>>,
    stop: watch::Sender<bool>,
    /// The same signal as `stop`, as a flag the fast path can read without registering a waiter.
    draining: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Running {
    fn stop(&self) {
        self.draining.store(true, Ordering::Release);
        self.stop.send_replace(true);
    }
}

/// The set of open listeners.
#[derive(Default)]
pub struct Listeners {
    running: HashMap<String, Running>,
    pub tracker: Arc<ConnTracker>,
}

/// Sockets bound for a new snapshot, not yet serving.
pub struct Bound(Vec<(String, TcpListener)>);

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {listen}: {source}")]
pub struct BindError {
    pub listen: String,
    pub source: std::io::Error,
}

impl Listeners {
    /// Binds the listeners of `specs` that are not running yet. Nothing changes on error.
    pub fn bind_new(&self, specs: &[Arc<ListenerSpec>]) -> Result<Bound, BindError> {
        let mut bound = Vec::new();
        for spec in specs {
            if !self.running.contains_key(&spec.listen) {
                let l = bind(spec.addr).map_err(|source| BindError {
                    listen: spec.listen.clone(),
                    source,
                })?;
                apply_defer_accept(&l, spec);
                bound.push((spec.listen.clone(), l));
            }
        }
        Ok(Bound(bound))
    }

    /// Makes the listener set match `specs`: starts the bound ones, updates kept ones, stops others.
    pub fn apply(&mut self, specs: &[Arc<ListenerSpec>], bound: Bound, rt: &Arc<Runtime>) {
        let by_key: HashMap<&str, &Arc<ListenerSpec>> = specs.iter().map(|s| (s.listen.as_str(), s)).collect();
        self.running.retain(|key, r| match by_key.get(key.as_str()) {
            Some(spec) => {
                r.spec.send_replace((*spec).clone());
                true
            }
            None => {
                tracing::info!(listen = %key, "listener removed; draining its connections");
                r.stop();
                false
            }
        });
        for (key, tcp) in bound.0 {
            let Some(spec) = by_key.get(key.as_str()) else { continue };
            let local_addr = tcp.local_addr().unwrap_or(spec.addr);
            let (spec_tx, spec_rx) = watch::channel((*spec).clone());
            let (stop_tx, stop_rx) = watch::channel(false);
            let draining = Arc::new(AtomicBool::new(false));
            let drain = Drain {
                signal: stop_rx,
                flag: draining.clone(),
            };
            let task = tokio::spawn(accept_loop(tcp, spec_rx, drain, rt.clone(), self.tracker.clone()));
            tracing::info!(listen = %key, addr = %local_addr, tls = spec.tls.is_some(), "listening");
            self.running.insert(
                key,
                Running {
                    local_addr,
                    spec: spec_tx,
                    stop: stop_tx,
                    draining,
                    task,
                },
            );
        }
    }

    /// The address each listener is bound to (useful with port 0), by configured `listen` value.
    pub fn local_addrs(&self) -> HashMap<String, SocketAddr> {
        self.running.iter().map(|(k, r)| (k.clone(), r.local_addr)).collect()
    }

    /// Stops accepting everywhere and asks every connection to finish.
    pub fn stop_all(&mut self) {
        for (_, r) in self.running.drain() {
            r.stop();
            r.task.abort();
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    // Accepted sockets inherit it on Linux, which saves a system call per connection.
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Sets `TCP_DEFER_ACCEPT` as the listener's spec says: the kernel then hands over a connection
/// once its first bytes are there, so the first read finds them instead of failing and waiting
/// for readiness (one wake-up and two system calls fewer per connection). A connection that
/// sends nothing stays in the kernel, which retransmits its SYN-ACK for about the header
/// timeout and then hands it over (where the header timeout applies again).
#[cfg(target_os = "linux")]
fn apply_defer_accept(tcp: &TcpListener, spec: &ListenerSpec) {
    use std::os::fd::AsRawFd;
    let seconds: libc::c_int = if spec.defer_accept {
        spec.limits.header_read_timeout.as_secs().clamp(1, i32::MAX as u64) as libc::c_int
    } else {
        0
    };
    // SAFETY: a valid socket descriptor and an int option of the size given.
    let rc = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&seconds as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::warn!(listen = %spec.listen, error = %std::io::Error::last_os_error(), "cannot set defer_accept");
    }
}

#[cfg(not(target_os = "linux"))]
fn apply_defer_accept(_tcp: &TcpListener, _spec: &ListenerSpec) {}

/// How a connection learns that its listener is draining: a watch channel for the general path
/// (which awaits it), a flag for the fast path (which checks it between requests).
#[derive(Clone)]
pub struct Drain {
    pub signal: watch::Receiver<bool>,
    pub flag: Arc<AtomicBool>,
}

impl Drain {
    pub fn is_draining(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }
}

async fn accept_loop(
    tcp: TcpListener,
    mut spec: watch::Receiver<Arc<ListenerSpec>>,
    mut drain: Drain,
    rt: Arc<Runtime>,
    tracker: Arc<ConnTracker>,
) {
    loop {
        tokio::select! {
            _ = drain.signal.changed() => return,
            Ok(()) = spec.changed() => apply_defer_accept(&tcp, &spec.borrow_and_update()),
            accepted = tcp.accept() => match accepted {
                Ok((stream, peer)) => {
                    let spec = spec.borrow().clone();
                    let guard = tracker.guard();
                    tokio::spawn(serve_stream(stream, peer, spec, rt.clone(), drain.clone(), guard));
                }
                Err(e) => {
                    // Usually EMFILE/ENFILE: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

async fn serve_stream(
    stream: TcpStream,
    peer: SocketAddr,
    spec: Arc<ListenerSpec>,
    rt: Arc<Runtime>,
    drain: Drain,
    _guard: ConnGuard,
) {
    // Elsewhere accepted sockets may not inherit it from the listener.
    #[cfg(not(target_os = "linux"))]
    let _ = stream.set_nodelay(true);
    let info = Arc::new(ConnInfo::new(peer, spec.clone()));
    match &spec.tls {
        // Each way is boxed so a connection's task holds only the state of the one it takes.
        None => Box::pin(h1::serve(stream, info, rt, drain)).await,
        Some(tls) => Box::pin(serve_tls(stream, peer, tls.clone(), spec.clone(), info, rt, drain)).await,
    }
}

async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Arc<tls::ServerTls>,
    spec: Arc<ListenerSpec>,
    info: Arc<ConnInfo>,
    rt: Arc<Runtime>,
    drain: Drain,
) {
    // The configuration depends on the ClientHello (the cipher suite order); the whole
    // handshake shares one deadline.
    let handshake = async {
        let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
        let config = tls.config_for(&start.client_hello());
        start.into_stream(config).await
    };
    match tokio::time::timeout(spec.limits.header_read_timeout, handshake).await {
        Ok(Ok(tls)) => {
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                http2::conn::serve(tls, bytes::BytesMut::new(), info, rt, drain.signal).await
            } else {
                h1::serve(tls, info, rt, drain).await
            }
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[tokio::test]
    async fn accepted_connections_have_nodelay() {
        let listener = super::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        // Small response writes must not wait for the client's ACK (Nagle).
        assert!(accepted.nodelay().unwrap());
        drop(client);
    }
}
