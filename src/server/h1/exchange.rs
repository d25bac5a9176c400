//! One request/response exchange on the fast path: route, pick a backend, write the request,
//! relay the response. Failures before the response head reached the client are answered with
//! the same statuses as on the general path; after that, the connection is closed.

use super::forward::{build_request, is_hop_by_hop};
use super::head::{ParsedResponse, RawRequest};
use super::relay::{read_until, relay_response};
use super::write::{self, line};
use super::{Conn, Next};
use crate::observe::log_line::Line;
use crate::pipeline::interim::forwardable;
use crate::pipeline::respond::ProxyError;
use crate::route::{Action, RequestView, Route};
use crate::runtime::Runtime;
use crate::server::conn::ConnInfo;
use crate::snapshot::Snapshot;
use crate::upstream::backend::InflightGuard;
use crate::upstream::stream::UpStream;
use crate::upstream::{self, Backend, Upstream};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Request bodies up to this size are sent together with the head (and can be replayed).
const INLINE_BODY: usize = 64 * 1024;

pub(super) struct Outcome {
    pub status: u16,
    pub bytes_out: u64,
    pub complete: bool,
    pub upstream: Option<Arc<str>>,
    pub upstream_time: Option<Duration>,
    pub error: Option<String>,
    pub next: Next,
}

/// What the fast path does with a parsed request, decided without awaiting.
pub(crate) enum Plan<'s> {
    /// Continue the connection on hyper.
    Handoff,
    /// Run the request through the general pipeline on this connection.
    General,
    NoRoute,
    Proxy(&'s Route, &'s Upstream),
    /// A fresh cache hit, its head already in the write buffer.
    Hit(&'s Route, super::hit::Ready),
}

pub(crate) fn plan<'s>(c: &mut Conn, info: &ConnInfo, snap: &'s Snapshot) -> Plan<'s> {
    let listener = &info.listener;
    let head = &c.head;
    if listener.redirect_https.is_some() || head.chunked || head.upgrade || head.expect || head.http10 {
        return Plan::Handoff;
    }
    let buf = &c.rbuf[..];
    let view = RawRequest { buf, head };
    let host = routing_host(head.host.as_ref().map(|r| &buf[r.clone()]).unwrap_or(b""));
    let route = snap.router.find(&view, &host);
    if let Some(route) = route {
        // Cached routes come here for their fresh hits only (see `hit`).
        let fast = matches!(&route.action, Action::Proxy(up) if !up.http2 || super::hit::cache_of(route).is_some())
            && !route.compresses()
            && route.stages.iter().all(|s| s.works_on_raw_heads());
        if !fast {
            return Plan::General;
        }
    }
    match route {
        None => Plan::NoRoute,
        Some(route) => match (&route.action, super::hit::cache_of(route)) {
            (Action::Proxy(_), Some(cache)) => {
                let request_id = RequestId::new(view.header(listener.request_id_header.as_str()));
                let (id_name, id) = (&listener.request_id_header, request_id.as_bytes());
                match super::hit::prepare(buf, head, &mut c.wbuf, info, route, cache, &host, id_name, id) {
                    Some(ready) => Plan::Hit(route, ready),
                    None => Plan::General,
                }
            }
            (Action::Proxy(up), None) => Plan::Proxy(route, up),
            _ => Plan::Handoff,
        },
    }
}

/// Serves a fresh hit `plan` found (small enough to run in the connection's own future).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send_hit<T>(
    io: &mut T,
    c: &mut Conn,
    info: &ConnInfo,
    rt: &Runtime,
    started: Option<Instant>,
    route: &Route,
    ready: super::hit::Ready,
) -> Next
where
    T: super::ClientStream,
{
    let id = ready.request_id();
    if ready.closes() {
        io.hold_for_close();
    }
    let ok = super::hit::send(io, &c.wbuf, &ready).await;
    let outcome = ready.outcome(ok);
    c.last_active = tokio::time::Instant::now();
    // The id as written into the head.
    finish(c, info, rt, started, Some(route), &c.wbuf[id], outcome)
}

pub(crate) async fn run<T>(
    io: &mut T,
    c: &mut Conn,
    info: &ConnInfo,
    rt: &Runtime,
    started: Option<Instant>,
    plan: Plan<'_>,
) -> Next
where
    T: super::ClientStream,
{
    let target = match plan {
        Plan::Handoff => return Next::Handoff,
        Plan::General => return super::general::serve_or_handoff(io, c, info, rt).await,
        Plan::Hit(route, ready) => return send_hit(io, c, info, rt, started, route, ready).await,
        Plan::NoRoute => None,
        Plan::Proxy(route, up) => Some((route, up)),
    };
    // Only requests this exchange answers itself take an id here (the others get theirs where
    // they are answered).
    let id_name = info.listener.request_id_header.as_str();
    let request_id = RequestId::new(
        RawRequest {
            buf: &c.rbuf,
            head: &c.head,
        }
        .header(id_name),
    );
    let (id_name, id) = (id_name.as_bytes(), request_id.as_bytes());
    let outcome = match target {
        Some((route, up)) => proxy(io, c, info, route, up, id_name, id).await,
        None => {
            let consumed = c.head.len + c.head.content_length.unwrap_or(0) as usize;
            refuse(io, c, ProxyError::NoRoute, id_name, id, consumed).await
        }
    };
    finish(c, info, rt, started, target.map(|(route, _)| route), id, outcome)
}

/// Writes the access log entry of a finished exchange; what happens to the connection next.
fn finish(
    c: &Conn,
    info: &ConnInfo,
    rt: &Runtime,
    started: Option<Instant>,
    route: Option<&Route>,
    request_id: &[u8],
    outcome: Outcome,
) -> Next {
    if let (Some(log), Some(started)) = (rt.access_log(), started) {
        let (buf, head) = (&c.rbuf[..], &c.head);
        let view = RawRequest { buf, head };
        let host = routing_host(head.host.as_ref().map(|r| &buf[r.clone()]).unwrap_or(b""));
        let now = Instant::now();
        let duration = now.saturating_duration_since(started);
        let line = Line {
            received: std::time::SystemTime::now() - duration,
            client: info.peer.ip(),
            method: view.method(),
            host: &host,
            path: view.path(),
            proto: "HTTP/1.1",
            status: outcome.status,
            bytes_in: head.content_length.unwrap_or(0),
            bytes_out: outcome.bytes_out,
            duration,
            route: route.map(|r| &*r.name),
            upstream: outcome.upstream.as_deref(),
            upstream_time: outcome.upstream_time,
            request_id: std::str::from_utf8(request_id).unwrap_or("-"),
            error: outcome.error.as_deref(),
            complete: outcome.complete,
        };
        log.log(&line, now);
    }
    outcome.next
}

/// The client's request id when it sent a usable one, else a fresh random one; kept inline so
/// no allocation is needed per request.
pub(crate) struct RequestId {
    bytes: [u8; 200],
    len: usize,
}

impl RequestId {
    pub(crate) fn new(from_client: Option<&[u8]>) -> RequestId {
        let mut id = RequestId {
            bytes: [0; 200],
            len: 32,
        };
        match from_client {
            Some(v) if !v.is_empty() && v.len() <= id.bytes.len() => {
                id.bytes[..v.len()].copy_from_slice(v);
                id.len = v.len();
            }
            _ => {
                let mut generated = [0u8; 32];
                write::request_id(&mut generated);
                id.bytes[..32].copy_from_slice(&generated);
            }
        }
        id
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Host for routing: lower case, without port (borrowed when already lower case). Works on
/// bytes: it runs for every request.
pub(crate) fn routing_host(raw: &[u8]) -> Cow<'_, str> {
    let host = if raw.first() == Some(&b'[') {
        raw.iter().position(|&b| b == b']').map_or(raw, |i| &raw[..=i])
    } else {
        match raw.iter().rposition(|&b| b == b':') {
            Some(i) if raw[i + 1..].iter().all(u8::is_ascii_digit) => &raw[..i],
            _ => raw,
        }
    };
    let Some(s) = super::head::ascii_str(host) else {
        return Cow::Borrowed("");
    };
    if host.iter().any(u8::is_ascii_uppercase) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

async fn refuse<T: super::ClientStream>(
    io: &mut T,
    c: &mut Conn,
    e: ProxyError,
    id_name: &[u8],
    id: &[u8],
    consumed: usize,
) -> Outcome {
    // Keep the connection only when the whole request (head and body) is already buffered.
    let close = c.head.close || consumed > c.rbuf.len();
    write::error_response(&mut c.wbuf, &e, Some((id_name, id)), close);
    if close {
        io.hold_for_close();
    }
    let ok = io.write_all(&c.wbuf).await.is_ok();
    c.last_active = tokio::time::Instant::now();
    Outcome {
        status: e.status().as_u16(),
        bytes_out: 0,
        complete: ok,
        upstream: None,
        upstream_time: None,
        error: Some(e.to_string()),
        next: if close || !ok {
            Next::Close
        } else {
            Next::KeepAlive { consumed }
        },
    }
}

/// Why an attempt failed, and whether the request may be sent again.
enum AttemptError {
    /// Nothing was sent (connect failed): always retryable.
    Connect(ProxyError),
    /// Sent on a reused connection that turned out closed, before any answer byte.
    Stale,
    /// Sent, then failed or timed out.
    Failed(ProxyError),
    /// The client side failed (body read); give up without blaming the backend.
    Client,
}

/// A backend's answer whose head has been read into `c.resp`.
struct Answered {
    stream: UpStream,
    /// The backend answered before taking the whole request body: this many bytes of it are
    /// still on the client connection, and the backend connection cannot be reused.
    body_unread: Option<usize>,
}

/// The most of a body the backend did not take that is read and dropped to keep the client
/// connection; a longer rest closes it instead (nginx discards a body the same way).
const DISCARD_MAX: usize = 1024 * 1024;

#[allow(clippy::too_many_arguments)]
async fn proxy<T>(
    io: &mut T,
    c: &mut Conn,
    info: &ConnInfo,
    route: &Route,
    up: &Upstream,
    id_name: &[u8],
    request_id: &[u8],
) -> Outcome
where
    T: super::ClientStream,
{
    let body_len = c.head.content_length.unwrap_or(0) as usize;
    let buffered_body = body_len.min(c.rbuf.len() - c.head.len);
    let streamed_body = body_len - buffered_body;
    let replayable = streamed_body == 0 && body_len <= INLINE_BODY;
    build_request(c, info, route, id_name, request_id, buffered_body);

    let view = RawRequest {
        buf: &c.rbuf[..],
        head: &c.head,
    };
    let upstream::Affinity {
        key_hash,
        sticky_in,
        preferred,
    } = up.affinity(&view, c.client_ip);
    let method = &c.rbuf[c.head.method.clone()];
    let idempotent = matches!(method, b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE");
    let is_head = method == b"HEAD";

    let mut tried: Vec<usize> = Vec::new();
    let mut stale_retries = 0;
    let mut last_error: Option<ProxyError> = None;
    // What leaves the read buffer: the head and the part of the body that was in it (a longer
    // body was read from the socket directly).
    let consumed = c.head.len + buffered_body;
    loop {
        let Some(idx) = up.pick(&tried, preferred, key_hash) else {
            let e = last_error.unwrap_or_else(|| ProxyError::NoHealthyBackend(up.name.clone()));
            return failed(io, c, e, None, id_name, request_id, consumed, streamed_body > 0).await;
        };
        let backend = up.backends[idx].clone();
        let attempt = tried.len() as u32;
        let tracks_load = up.balancer.reads_load();
        let inflight = InflightGuard::when(tracks_load, &backend);
        let sent_at = Instant::now();
        match attempt_exchange(io, c, up, &backend, streamed_body, idempotent, sent_at).await {
            Ok(Answered { stream, body_unread }) => {
                let upstream_time = (tracks_load || c.logging).then(|| sent_at.elapsed());
                let status = c.resp.status;
                if status >= 500 {
                    report_failure(up, &backend, &ProxyError::UpstreamStatus(status));
                } else {
                    backend.report_success(upstream_time.filter(|_| tracks_load));
                }
                let sticky = up.sticky_set_cookie(sticky_in.as_deref(), &backend);
                let (bytes_out, complete, reusable, close) = relay_response(
                    io,
                    c,
                    route,
                    id_name,
                    request_id,
                    is_head,
                    sticky,
                    stream,
                    up.response_timeout,
                )
                .await;
                let done = Instant::now();
                c.last_active = done.into();
                if let Some(stream) = reusable.filter(|_| body_unread.is_none()) {
                    backend.pool.put_up(stream, up.pool.max_idle, done);
                }
                drop(inflight);
                let next = match body_unread {
                    Some(left) if close || !complete || left > DISCARD_MAX => Next::Linger,
                    Some(left) if !super::read_and_drop(io, left, super::DROP_TIME).await => Next::Linger,
                    _ if close || !complete => Next::Close,
                    _ => Next::KeepAlive { consumed },
                };
                return Outcome {
                    status,
                    bytes_out,
                    complete,
                    upstream: Some(backend.addr.clone()),
                    upstream_time,
                    error: None,
                    next,
                };
            }
            Err(AttemptError::Stale) if replayable && idempotent && stale_retries < 3 => {
                stale_retries += 1;
                continue;
            }
            Err(AttemptError::Client) => {
                return Outcome {
                    status: 400,
                    bytes_out: 0,
                    complete: false,
                    upstream: Some(backend.addr.clone()),
                    upstream_time: None,
                    error: Some("client body read failed".into()),
                    next: Next::Close,
                };
            }
            Err(failure) => {
                // Connect failures may always go to another backend (nothing was sent); others
                // only when the request can be replayed and is idempotent without a body.
                let replay_ok = replayable && idempotent && body_len == 0;
                let (e, may_retry) = match failure {
                    AttemptError::Connect(e) => (e, streamed_body == 0),
                    AttemptError::Failed(e) => (e, replay_ok),
                    _ => (
                        ProxyError::UpstreamFailed {
                            addr: backend.addr.to_string(),
                            reason: "connection closed before the response".into(),
                        },
                        replay_ok,
                    ),
                };
                report_failure(up, &backend, &e);
                tried.push(idx);
                if attempt < up.retries && may_retry {
                    last_error = Some(e);
                    continue;
                }
                let upstream = Some(backend.addr.clone());
                return failed(io, c, e, upstream, id_name, request_id, consumed, streamed_body > 0).await;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn failed<T: super::ClientStream>(
    io: &mut T,
    c: &mut Conn,
    e: ProxyError,
    upstream: Option<Arc<str>>,
    id_name: &[u8],
    id: &[u8],
    consumed: usize,
    body_unread: bool,
) -> Outcome {
    tracing::warn!(reason = %e, "request failed");
    let mut o = refuse(io, c, e, id_name, id, if body_unread { usize::MAX } else { consumed }).await;
    if body_unread {
        o.next = Next::Linger;
    }
    o.upstream = upstream;
    o
}

fn report_failure(up: &Upstream, backend: &Backend, why: &ProxyError) {
    if let Some(ejected_for) = backend.report_failure(&up.passive) {
        tracing::warn!(upstream = %up.name, backend = %backend.addr, reason = %why, ?ejected_for, "backend ejected by passive health");
    }
}

/// Sends the request on a pooled or new connection and reads the response head into `c.resp`.
async fn attempt_exchange<T>(
    io: &mut T,
    c: &mut Conn,
    up: &Upstream,
    backend: &Backend,
    streamed_body: usize,
    idempotent: bool,
    now: Instant,
) -> Result<Answered, AttemptError>
where
    T: super::ClientStream,
{
    let pooled = backend.pool.checkout_up(up.tls.is_some(), up.pool.idle_timeout, now);
    let (mut stream, reused) = match pooled.and_then(|mut s| (idempotent || s.is_quiet()).then_some(s)) {
        Some(s) => (s, true),
        None => (
            upstream::stream::connect(&backend.addr, up.connect_timeout, up.tls.as_ref())
                .await
                .map_err(|e| AttemptError::Connect(ProxyError::Connect(e.to_string())))?,
            false,
        ),
    };
    let on_send_error = |reused: bool, e: std::io::Error| {
        if reused {
            AttemptError::Stale
        } else {
            AttemptError::Failed(ProxyError::UpstreamFailed {
                addr: backend.addr.to_string(),
                reason: e.to_string(),
            })
        }
    };
    stream.write_all(&c.wbuf).await.map_err(|e| on_send_error(reused, e))?;
    // TLS may hold the last record back until flushed (a no-op on plain TCP).
    stream.flush().await.map_err(|e| on_send_error(reused, e))?;
    // A backend may answer before it has read the whole body and then close (RFC 9112 §9.6
    // lets it): the send fails, but its answer may be waiting. It is relayed if it is there;
    // `body_cut` is how much of the body is then still on the client connection.
    let mut body_cut = None;
    if streamed_body > 0 {
        if c.head.expect_continue && c.head.content_length == Some(streamed_body as u64) {
            // Nothing of the body has come: the client may be waiting for this before it sends
            // any (RFC 9110 §10.1.1). One that did not wait has sent some, and gets no 100.
            io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .map_err(|_| AttemptError::Client)?;
            c.head.expect_continue = false;
        }
        // The rest of the body comes straight from the client socket.
        let mut left = streamed_body;
        let mut chunk = vec![0u8; 64 * 1024];
        while left > 0 {
            let want = left.min(chunk.len());
            let n = io.read(&mut chunk[..want]).await.map_err(|_| AttemptError::Client)?;
            if n == 0 {
                return Err(AttemptError::Client);
            }
            if stream.write_all(&chunk[..n]).await.is_err() || stream.flush().await.is_err() {
                body_cut = Some(left - n);
                break;
            }
            left -= n;
        }
    }
    c.ubuf.clear();
    let deadline = now + up.response_timeout;
    let timed_out = || {
        AttemptError::Failed(ProxyError::UpstreamTimeout {
            addr: backend.addr.to_string(),
            after: up.response_timeout,
        })
    };
    loop {
        if c.ubuf.capacity() - c.ubuf.len() < 4096 {
            c.ubuf
                .reserve(if c.ubuf.capacity() == 0 { 4 * 1024 } else { 16 * 1024 });
        }
        let n = read_until(&mut stream, &mut c.ubuf, &mut c.timer, deadline)
            .await
            .ok_or_else(timed_out)?;
        match n {
            Ok(0) | Err(_) if c.ubuf.is_empty() && reused && body_cut.is_none() => return Err(AttemptError::Stale),
            Ok(0) => {
                return Err(AttemptError::Failed(ProxyError::UpstreamFailed {
                    addr: backend.addr.to_string(),
                    reason: "connection closed before a complete response head".into(),
                }))
            }
            Err(e) => {
                return Err(AttemptError::Failed(ProxyError::UpstreamFailed {
                    addr: backend.addr.to_string(),
                    reason: e.to_string(),
                }))
            }
            Ok(_) => {}
        }
        loop {
            match c.resp.parse(&c.ubuf) {
                Ok(ParsedResponse::Partial) => break,
                Ok(ParsedResponse::Complete) if (100..200).contains(&c.resp.status) => {
                    let status = http::StatusCode::from_u16(c.resp.status).unwrap_or(http::StatusCode::CONTINUE);
                    // HTTP/1.0 clients, which take no 1xx, never reach the fast path's relay.
                    if forwardable(status) {
                        let head = interim_head(&c.resp, &c.ubuf, status);
                        io.write_all(&head).await.map_err(|_| AttemptError::Client)?;
                    }
                    bytes::Buf::advance(&mut c.ubuf, c.resp.len);
                    if c.ubuf.is_empty() {
                        break;
                    }
                }
                Ok(ParsedResponse::Complete) => {
                    return Ok(Answered {
                        stream,
                        body_unread: body_cut,
                    })
                }
                Err(reason) => {
                    return Err(AttemptError::Failed(ProxyError::UpstreamFailed {
                        addr: backend.addr.to_string(),
                        reason,
                    }))
                }
            }
        }
    }
}

/// A backend's 1xx head as the client gets it (its hop-by-hop fields dropped).
fn interim_head(resp: &super::head::ResponseHead, buf: &[u8], status: http::StatusCode) -> Vec<u8> {
    let mut out = Vec::with_capacity(resp.len);
    write::status_line(&mut out, status);
    for (n, v) in &resp.headers {
        if !is_hop_by_hop(&buf[n.clone()], &buf[v.clone()]) {
            line(&mut out, &buf[n.clone()], &buf[v.clone()]);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::routing_host;
    use std::borrow::Cow;

    #[test]
    fn routing_host_drops_the_port_and_lowers_case() {
        assert_eq!(routing_host(b"Example.COM:8080"), "example.com");
        assert!(matches!(routing_host(b"a.test:80"), Cow::Borrowed("a.test")));
        assert_eq!(routing_host(b"[::1]:8443"), "[::1]");
        assert_eq!(routing_host(b"[::1]"), "[::1]");
        assert_eq!(routing_host(b"a.test:http"), "a.test:http");
        assert_eq!(routing_host(b"\xff.test"), "");
    }
}
