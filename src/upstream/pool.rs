//! Keep-alive connections to one backend. HTTP/1.1 connections are checked out exclusively and
//! come back when their response body has been read to the end; one HTTP/2 connection is shared
//! by all requests. The pool lives in the backend, so it survives reloads.

use super::shard::{self, Padded};
use super::stream::{TlsStream, UpStream};
use crate::pipeline::body::RequestBody;
use hyper::client::conn::{http1, http2};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

struct Idle {
    sender: http1::SendRequest<RequestBody>,
    since: Instant,
}

/// How long a plain socket may idle before it is probed on checkout.
const PROBE_AFTER: Duration = Duration::from_secs(1);

/// Nothing to read and not closed: the socket is as it was left.
pub fn is_quiet(s: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(s.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Idle connections of one worker-thread shard, most recently used last.
type Shard<T> = Mutex<Vec<(T, Instant)>>;
type RawShard = Shard<TcpStream>;

pub struct Pool {
    idle: Mutex<Vec<Idle>>,
    shared_h2: Mutex<Option<http2::SendRequest<RequestBody>>>,
    /// Plain sockets used by the HTTP/1 fast path, which speaks HTTP/1.1 on them itself. One
    /// shard per worker thread (see `shard`), so checkout and return take an uncontended lock.
    raw_idle: Box<[Padded<RawShard>]>,
    /// TLS connections of the fast path, sharded the same way.
    tls_idle: Box<[Padded<Shard<Box<TlsStream>>>]>,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            idle: Mutex::default(),
            shared_h2: Mutex::default(),
            raw_idle: (0..shard::count()).map(|_| Padded::default()).collect(),
            tls_idle: (0..shard::count()).map(|_| Padded::default()).collect(),
        }
    }
}

impl Pool {
    /// The most recently used idle HTTP/1.1 connection that is still open and not too old.
    pub fn checkout_h1(&self, idle_timeout: Duration) -> Option<http1::SendRequest<RequestBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop() {
            if !c.sender.is_closed() && c.since.elapsed() < idle_timeout {
                return Some(c.sender);
            }
        }
        None
    }

    pub fn put_h1(&self, sender: http1::SendRequest<RequestBody>, max_idle: usize) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < max_idle {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    pub fn shared_h2(&self) -> Option<http2::SendRequest<RequestBody>> {
        let mut slot = self.shared_h2.lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref() {
            Some(s) if !s.is_closed() => Some(s.clone()),
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    }

    pub fn set_shared_h2(&self, sender: http2::SendRequest<RequestBody>) {
        *self.shared_h2.lock().unwrap_or_else(|p| p.into_inner()) = Some(sender);
    }

    /// The most recently used idle plain socket that is not too old.
    fn raw_shard(&self) -> &RawShard {
        &self.raw_idle[shard::index(self.raw_idle.len())].0
    }

    /// A socket idle for `PROBE_AFTER` or longer is probed first: the backend may have closed
    /// it or written to it (e.g. a 408 before closing), and those bytes must not be taken for
    /// the next response. Sockets reused sooner skip the probe's system call; a close found
    /// when the request goes out is retried on a fresh connection.
    pub fn checkout_raw(&self, idle_timeout: Duration, now: Instant) -> Option<TcpStream> {
        let mut idle = self.raw_shard().lock().unwrap_or_else(|p| p.into_inner());
        while let Some((s, since)) = idle.pop() {
            let age = now.saturating_duration_since(since);
            if age < idle_timeout && (age < PROBE_AFTER || is_quiet(&s)) {
                return Some(s);
            }
        }
        None
    }

    /// `max_idle` bounds the idle sockets kept per worker thread (as nginx's `keepalive` does
    /// per worker process).
    pub fn put_raw(&self, stream: TcpStream, max_idle: usize, now: Instant) {
        let mut idle = self.raw_shard().lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < max_idle {
            idle.push((stream, now));
        }
    }

    /// An idle fast-path connection of the kind the upstream speaks (TLS or not), probed as
    /// `checkout_raw` probes plain sockets.
    pub fn checkout_up(&self, tls: bool, idle_timeout: Duration, now: Instant) -> Option<UpStream> {
        if !tls {
            return self.checkout_raw(idle_timeout, now).map(UpStream::Plain);
        }
        let shard = &self.tls_idle[shard::index(self.tls_idle.len())].0;
        let mut idle = shard.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((s, since)) = idle.pop() {
            let age = now.saturating_duration_since(since);
            let mut up = UpStream::Tls(s);
            if age < idle_timeout && (age < PROBE_AFTER || up.is_quiet()) {
                return Some(up);
            }
        }
        None
    }

    pub fn put_up(&self, stream: UpStream, max_idle: usize, now: Instant) {
        match stream {
            UpStream::Plain(s) => self.put_raw(s, max_idle, now),
            UpStream::Tls(s) => {
                let shard = &self.tls_idle[shard::index(self.tls_idle.len())].0;
                let mut idle = shard.lock().unwrap_or_else(|p| p.into_inner());
                if idle.len() < max_idle {
                    idle.push((s, now));
                }
            }
        }
    }

    /// Closes idle connections older than `idle_timeout` (called by the maintenance task).
    pub fn reap(&self, idle_timeout: Duration) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|c| !c.sender.is_closed() && c.since.elapsed() < idle_timeout);
        drop(idle);
        for shard in self.raw_idle.iter() {
            shard
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|(_, since)| since.elapsed() < idle_timeout);
        }
        for shard in self.tls_idle.iter() {
            shard
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|(_, since)| since.elapsed() < idle_timeout);
        }
    }

    pub fn idle_count(&self) -> usize {
        let general = self.idle.lock().unwrap_or_else(|p| p.into_inner()).len();
        general
            + self
                .raw_idle
                .iter()
                .map(|s| s.0.lock().unwrap_or_else(|p| p.into_inner()).len())
                .sum::<usize>()
    }
}
