//! The floor probe: an HTTP/1.1 keep-alive proxy that does almost nothing but move bytes, to
//! measure what the kernel's part of proxying a request costs on a machine, and whether
//! io_uring lowers it. Not a proxy anyone should run: GET requests that arrive whole, no
//! parsing beyond finding the response's end (Content-Length), no error handling beyond closing.
//! Like frontdesk and the harness's nginx and HAProxy it balances round robin over the origins,
//! per request, through a keep-alive pool of upstream connections (last in, first out).
//!
//! Three event loops, with the same work:
//! - epoll, edge-triggered, one receive per readiness (as tokio does);
//! - `--uring`: io_uring with a single issuer and deferred task work, every submission of a
//!   loop turn batched into the one `io_uring_enter` that also waits;
//! - `--tokio`: one tokio task per client connection on a single-threaded runtime, as
//!   frontdesk's workers run them (`on_tokio.rs`).
//!
//! Usage: floor [--uring | --tokio] --listen ADDR UPSTREAM...
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{IntoRawFd, RawFd};

mod on_tokio;

const CBUF: usize = 16 * 1024;
const UBUF: usize = 128 * 1024;

struct Client {
    fd: RawFd,
    buf: Vec<u8>,
    up: Option<usize>,
    open: bool,
}

struct Up {
    fd: RawFd,
    origin: usize,
    buf: Vec<u8>,
    len: usize,
    client: usize,
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn complete(buf: &[u8]) -> bool {
    let Some(h) = find(buf, b"\r\n\r\n") else { return false };
    let mut cl = 0usize;
    for line in buf[..h].split(|&b| b == b'\n') {
        if line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:") {
            cl = std::str::from_utf8(&line[15..]).unwrap().trim().parse().unwrap();
        }
    }
    buf.len() >= h + 4 + cl
}

#[derive(PartialEq)]
enum EventLoop {
    Epoll,
    Uring,
    Tokio,
}

/// (listen address, upstreams, event loop).
fn args() -> (SocketAddr, Vec<SocketAddr>, EventLoop) {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let event_loop = if args.iter().any(|a| a == "--uring") {
        EventLoop::Uring
    } else if args.iter().any(|a| a == "--tokio") {
        EventLoop::Tokio
    } else {
        EventLoop::Epoll
    };
    args.retain(|a| a != "--uring" && a != "--tokio");
    let usage = "usage: floor [--uring | --tokio] --listen ADDR UPSTREAM...";
    let i = args.iter().position(|a| a == "--listen").expect(usage);
    let listen = args.get(i + 1).expect(usage).parse().expect("listen address");
    let ups: Vec<SocketAddr> = args[i + 2..]
        .iter()
        .map(|a| a.parse().expect("upstream address"))
        .collect();
    assert!(!ups.is_empty(), "{usage}");
    (listen, ups, event_loop)
}

fn connect(addr: SocketAddr) -> RawFd {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_nonblocking(true).unwrap();
    s.into_raw_fd()
}

struct Proxy {
    servers: Vec<SocketAddr>,
    clients: Vec<Client>,
    ups: Vec<Up>,
    idle: Vec<Vec<usize>>,
    rr: usize,
}

impl Proxy {
    fn new(servers: Vec<SocketAddr>) -> Self {
        let n = servers.len();
        Proxy {
            servers,
            clients: vec![],
            ups: vec![],
            idle: vec![vec![]; n],
            rr: 0,
        }
    }
    fn add_client(&mut self, fd: RawFd) -> usize {
        unsafe {
            let one: libc::c_int = 1;
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                4,
            );
            libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK);
        }
        self.clients.push(Client {
            fd,
            buf: vec![0; CBUF],
            up: None,
            open: true,
        });
        self.clients.len() - 1
    }
    /// An upstream connection for client `c` from the next origin's pool, or a new one
    /// (connected blocking: that happens only while the load starts): (index, whether new).
    fn checkout(&mut self, c: usize) -> (usize, bool) {
        let origin = self.rr % self.servers.len();
        self.rr += 1;
        let (u, new) = match self.idle[origin].pop() {
            Some(u) => (u, false),
            None => {
                let fd = connect(self.servers[origin]);
                self.ups.push(Up {
                    fd,
                    origin,
                    buf: vec![0; UBUF],
                    len: 0,
                    client: 0,
                });
                (self.ups.len() - 1, true)
            }
        };
        self.ups[u].client = c;
        self.ups[u].len = 0;
        self.clients[c].up = Some(u);
        (u, new)
    }
    fn checkin(&mut self, u: usize) {
        let c = self.ups[u].client;
        self.clients[c].up = None;
        self.idle[self.ups[u].origin].push(u);
    }
    fn close_client(&mut self, c: usize) {
        let cl = &mut self.clients[c];
        if cl.open {
            cl.open = false;
            unsafe { libc::close(cl.fd) };
        }
    }
}

fn main() {
    let (listen, servers, event_loop) = args();
    let listener = TcpListener::bind(listen).unwrap();
    listener.set_nonblocking(true).unwrap();
    match event_loop {
        EventLoop::Epoll => epoll(listener, Proxy::new(servers)),
        EventLoop::Uring => uring(listener, Proxy::new(servers)),
        EventLoop::Tokio => on_tokio::run(listener, servers),
    }
}

/// Sends everything, waiting for the socket when it is full (only large bodies fill it, and
/// the benchmark's paths are small).
fn send_all(fd: RawFd, mut data: &[u8]) {
    while !data.is_empty() {
        let w = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
        if w < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                unsafe { libc::poll(&mut p, 1, 1000) };
                continue;
            }
            return;
        }
        data = &data[w as usize..];
    }
}

const LISTENER: u64 = u64::MAX;
const UP_TAG: u64 = 1 << 40;

fn epoll(listener: TcpListener, mut p: Proxy) {
    use std::os::fd::AsRawFd;
    let ep = unsafe { libc::epoll_create1(0) };
    let add = |fd: RawFd, data: u64| {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: data,
        };
        assert_eq!(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) }, 0);
    };
    add(listener.as_raw_fd(), LISTENER);
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    loop {
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), 256, -1) };
        for ev in &events[..n.max(0) as usize] {
            let data = ev.u64;
            if data == LISTENER {
                while let Ok((s, _)) = listener.accept() {
                    let c = p.add_client(s.into_raw_fd());
                    add(p.clients[c].fd, c as u64);
                }
            } else if data & UP_TAG == 0 {
                let c = data as usize;
                if !p.clients[c].open || p.clients[c].up.is_some() {
                    continue;
                }
                let cl = &mut p.clients[c];
                let r = unsafe { libc::recv(cl.fd, cl.buf.as_mut_ptr().cast(), CBUF, 0) };
                if r == 0 || (r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN)) {
                    p.close_client(c);
                } else if r > 0 {
                    let (u, new) = p.checkout(c);
                    if new {
                        add(p.ups[u].fd, UP_TAG | u as u64);
                    }
                    send_all(p.ups[u].fd, &p.clients[c].buf[..r as usize]);
                }
            } else {
                let u = (data & !UP_TAG) as usize;
                let up = &mut p.ups[u];
                let r = unsafe { libc::recv(up.fd, up.buf[up.len..].as_mut_ptr().cast(), UBUF - up.len, 0) };
                if r <= 0 {
                    continue; // idle origins never close here
                }
                up.len += r as usize;
                if complete(&up.buf[..up.len]) {
                    let c = up.client;
                    send_all(p.clients[c].fd, &up.buf[..up.len]);
                    p.checkin(u);
                }
            }
        }
    }
}

const ACCEPT: u64 = 0;
const RECV_CLIENT: u64 = 1;
const SEND_UP: u64 = 2;
const RECV_UP: u64 = 3;
const SEND_CLIENT: u64 = 4;

fn uring(listener: TcpListener, mut p: Proxy) {
    use io_uring::{opcode, squeue::Entry, types, IoUring};
    use std::os::fd::AsRawFd;
    let mut ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .build(4096)
        .unwrap();
    let lfd = listener.as_raw_fd();
    let accept = || {
        opcode::Accept::new(types::Fd(lfd), std::ptr::null_mut(), std::ptr::null_mut())
            .build()
            .user_data(ACCEPT)
    };
    let recv_client = |c: usize, cl: &Client| -> Entry {
        opcode::Recv::new(types::Fd(cl.fd), cl.buf.as_ptr() as *mut u8, CBUF as u32)
            .build()
            .user_data(((c as u64) << 3) | RECV_CLIENT)
    };
    let recv_up = |u: usize, up: &Up| -> Entry {
        opcode::Recv::new(
            types::Fd(up.fd),
            unsafe { up.buf.as_ptr().add(up.len) } as *mut u8,
            (UBUF - up.len) as u32,
        )
        .build()
        .user_data(((u as u64) << 3) | RECV_UP)
    };
    let mut pending: Vec<Entry> = vec![accept()];
    let mut done: Vec<(u64, i32)> = Vec::with_capacity(4096);
    loop {
        {
            let mut sq = ring.submission();
            for e in pending.drain(..) {
                unsafe { sq.push(&e).unwrap() };
            }
        }
        ring.submit_and_wait(1).unwrap();
        done.clear();
        done.extend(ring.completion().map(|c| (c.user_data(), c.result())));
        for &(ud, res) in &done {
            let op = ud & 7;
            let idx = (ud >> 3) as usize;
            match op {
                ACCEPT => {
                    if res >= 0 {
                        let c = p.add_client(res);
                        pending.push(recv_client(c, &p.clients[c]));
                    }
                    pending.push(accept());
                }
                RECV_CLIENT => {
                    if res <= 0 {
                        p.close_client(idx);
                        continue;
                    }
                    let (u, _) = p.checkout(idx);
                    let (cl, up) = (&p.clients[idx], &p.ups[u]);
                    pending.push(
                        opcode::Send::new(types::Fd(up.fd), cl.buf.as_ptr(), res as u32)
                            .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
                            .build()
                            .user_data(((u as u64) << 3) | SEND_UP),
                    );
                    pending.push(recv_up(u, up));
                }
                RECV_UP => {
                    if res <= 0 {
                        continue;
                    }
                    let up = &mut p.ups[idx];
                    up.len += res as usize;
                    if complete(&up.buf[..up.len]) {
                        let c = up.client;
                        let cl = &p.clients[c];
                        pending.push(
                            opcode::Send::new(types::Fd(cl.fd), up.buf.as_ptr(), up.len as u32)
                                .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
                                .build()
                                .user_data(((idx as u64) << 3) | SEND_CLIENT),
                        );
                        pending.push(recv_client(c, cl));
                        // The buffer stays in use until SEND_CLIENT completes; the
                        // connection goes back to the pool then.
                    } else {
                        pending.push(recv_up(idx, up));
                    }
                }
                SEND_CLIENT => p.checkin(idx),
                SEND_UP => {}
                _ => unreachable!(),
            }
        }
    }
}
