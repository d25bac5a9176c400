//! One request/response exchange on the fast path: route, pick a backend, write the request,
//! relay the response. Failures before the response head reached the client are answered with
//! the same statuses as on the general path; after that, the connection is closed.

use super::head::{ParsedResponse, RawRequest};
use super::write::{self, line};
use super::{Conn, Next};
use crate::observe::access_log::LogOnEnd;
use crate::pipeline::body::OnBodyEnd;
use crate::pipeline::ctx::RequestCtx;
use crate::pipeline::interim::forwardable;
use crate::pipeline::respond::ProxyError;
use crate::route::{self, Action, RequestView, Route};
use crate::runtime::Runtime;
use crate::server::chunked::ChunkTracker;
use crate::server::conn::ConnInfo;
use crate::snapshot::Snapshot;
use crate::upstream::backend::InflightGuard;
use crate::upstream::{self, Backend, Upstream};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Request bodies up to this size are sent together with the head (and can be replayed).
const INLINE_BODY: usize = 64 * 1024;
/// Response body bytes that arrived with the head are copied behind it up to this size.
const COPY_WITH_HEAD: usize = 4 * 1024;

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
        let fast = matches!(&route.action, Action::Proxy(up) if (!up.http2 && up.tls.is_none()) || super::hit::cache_of(route).is_some())
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
        let ctx = RequestCtx {
            received: std::time::SystemTime::now() - started.elapsed(),
            started,
            client: info.peer,
            method: http::Method::from_bytes(view.method().as_bytes()).unwrap_or(http::Method::GET),
            host: routing_host(head.host.as_ref().map(|r| &buf[r.clone()]).unwrap_or(b"")).into_owned(),
            path: view.path().to_string(),
            proto: "HTTP/1.1",
            request_id: http::HeaderValue::from_bytes(request_id).unwrap_or(http::HeaderValue::from_static("-")),
            bytes_in: head.content_length.unwrap_or(0),
            status: outcome.status,
            route: route.map(|r| r.name.clone()),
            upstream: outcome.upstream,
            upstream_time: outcome.upstream_time,
            error: outcome.error,
        };
        LogOnEnd::new(ctx, log).finish(outcome.complete, outcome.bytes_out);
    }
    outcome.next
}

/// The client's request id when it sent a usable one, else a fresh random one; kept inline so
/// no allocation is needed per request.
struct RequestId {
    bytes: [u8; 200],
    len: usize,
}

impl RequestId {
    fn new(from_client: Option<&[u8]>) -> RequestId {
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

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Host for routing: lower case, without port (borrowed when already lower case). Works on
/// bytes: it runs for every request.
pub(super) fn routing_host(raw: &[u8]) -> Cow<'_, str> {
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

async fn refuse<T: AsyncWrite + Unpin>(
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

    let (key_hash, preferred, sticky_in) = {
        let view = RawRequest {
            buf: &c.rbuf[..],
            head: &c.head,
        };
        let key_hash = up.hash_key.as_ref().and_then(|k| k.hash(&view, c.client_ip));
        let sticky_in = up
            .sticky_cookie
            .as_deref()
            .and_then(|n| route::cookie_value(&view, n))
            .map(str::to_string);
        let preferred = sticky_in.as_deref().and_then(|v| up.sticky_backend(v));
        (key_hash, preferred, sticky_in)
    };
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
            Ok(stream) => {
                let upstream_time = (tracks_load || c.logging).then(|| sent_at.elapsed());
                let status = c.resp.status;
                if status >= 500 {
                    report_failure(up, &backend, &ProxyError::UpstreamStatus(status));
                } else {
                    backend.report_success(upstream_time.filter(|_| tracks_load));
                }
                let sticky = up.sticky_cookie.as_deref().and_then(|name| {
                    let value = upstream::sticky_value(&backend.addr);
                    (sticky_in.as_deref() != Some(value.as_str())).then(|| format!("{name}={value}; Path=/; HttpOnly"))
                });
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
                if let Some(stream) = reusable {
                    backend.pool.put_raw(stream, up.pool.max_idle, done);
                }
                drop(inflight);
                return Outcome {
                    status,
                    bytes_out,
                    complete,
                    upstream: Some(backend.addr.clone()),
                    upstream_time,
                    error: None,
                    next: if close || !complete {
                        Next::Close
                    } else {
                        Next::KeepAlive { consumed }
                    },
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
async fn failed<T: AsyncWrite + Unpin>(
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
        o.next = Next::Close;
    }
    o.upstream = upstream;
    o
}

fn report_failure(up: &Upstream, backend: &Backend, why: &ProxyError) {
    if let Some(ejected_for) = backend.report_failure(&up.passive) {
        tracing::warn!(upstream = %up.name, backend = %backend.addr, reason = %why, ?ejected_for, "backend ejected by passive health");
    }
}

/// The upstream request head (and the buffered part of the body) into `c.wbuf`.
fn build_request(
    c: &mut Conn,
    info: &ConnInfo,
    route: &Route,
    id_name: &[u8],
    request_id: &[u8],
    buffered_body: usize,
) {
    let (buf, head, out) = (&c.rbuf[..], &c.head, &mut c.wbuf);
    let ops: Vec<&crate::transform::HeaderOps> = route.stages.iter().filter_map(|s| s.request_header_ops()).collect();
    let replaced = |name: &[u8]| ops.iter().any(|o| o.replaces(name));
    out.clear();
    out.extend_from_slice(&buf[head.method.clone()]);
    out.push(b' ');
    let path = super::head::ascii_str(&buf[head.path.clone()]).unwrap_or("/");
    out.extend_from_slice(route.rewrite.apply(path).as_bytes());
    if let Some(q) = &head.query {
        out.push(b'?');
        out.extend_from_slice(&buf[q.clone()]);
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut prior_xff: Vec<&[u8]> = Vec::new();
    let mut prior_forwarded: Vec<&[u8]> = Vec::new();
    let (mut has_proto, mut has_fhost) = (false, false);
    // Kept header lines are copied in runs of adjacent lines (one copy instead of four per line).
    let mut run = LineRun::default();
    for (n, v) in &head.headers {
        let name = &buf[n.clone()];
        let value = &buf[v.clone()];
        let lower = |s: &[u8]| name.eq_ignore_ascii_case(s);
        if is_hop_by_hop(name, value)
            || (head.lists_more_hop_fields && !super::head::is_protected(name) && head.connection_lists(buf, name))
            || lower(id_name)
            || replaced(name)
        {
            run.flush(out, buf);
            continue;
        }
        if lower(b"x-forwarded-for") {
            prior_xff.push(value);
            run.flush(out, buf);
            continue;
        }
        if lower(b"forwarded") {
            prior_forwarded.push(value);
            run.flush(out, buf);
            continue;
        }
        if lower(b"x-forwarded-proto") {
            if !c.trusted {
                run.flush(out, buf);
                continue;
            }
            has_proto = true;
        }
        if lower(b"x-forwarded-host") {
            if !c.trusted {
                run.flush(out, buf);
                continue;
            }
            has_fhost = true;
        }
        run.keep(out, buf, n.start, v.end);
    }
    run.flush(out, buf);
    let proto: &[u8] = if info.listener.tls.is_some() { b"https" } else { b"http" };
    let client = info.client_ip();
    let ip = client.text.as_bytes();
    let host = head.host.as_ref().map(|r| &buf[r.clone()]).unwrap_or(b"");
    if !replaced(b"x-forwarded-for") {
        out.extend_from_slice(b"x-forwarded-for: ");
        if c.trusted {
            for p in &prior_xff {
                out.extend_from_slice(p);
                out.extend_from_slice(b", ");
            }
        }
        out.extend_from_slice(ip);
        out.extend_from_slice(b"\r\n");
    }
    if !has_proto && !replaced(b"x-forwarded-proto") {
        line(out, b"x-forwarded-proto", proto);
    }
    if !has_fhost && !host.is_empty() && !replaced(b"x-forwarded-host") {
        line(out, b"x-forwarded-host", host);
    }
    if !replaced(b"forwarded") {
        out.extend_from_slice(b"forwarded: ");
        if c.trusted {
            for p in &prior_forwarded {
                out.extend_from_slice(p);
                out.extend_from_slice(b", ");
            }
        }
        out.extend_from_slice(client.forwarded_for.as_bytes());
        out.extend_from_slice(b";proto=");
        out.extend_from_slice(proto);
        if !host.is_empty() {
            out.extend_from_slice(b";host=");
            if host.iter().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(b)) {
                out.extend_from_slice(host);
            } else {
                out.push(b'"');
                for &b in host {
                    if b == b'"' || b == b'\\' {
                        out.push(b'\\');
                    }
                    out.push(b);
                }
                out.push(b'"');
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    line(out, id_name, request_id);
    for o in &ops {
        o.write_raw(out);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&buf[head.len..head.len + buffered_body]);
}

/// Adjacent header lines to copy as one slice. A line joins the run only when it ends in CRLF
/// right after its value; other lines (bare LF, trailing spaces) are rewritten normalised.
#[derive(Default)]
struct LineRun {
    start: usize,
    end: usize,
}

impl LineRun {
    fn keep(&mut self, out: &mut Vec<u8>, buf: &[u8], line_start: usize, value_end: usize) {
        if buf.get(value_end..value_end + 2) != Some(b"\r\n") {
            self.flush(out, buf);
            let colon = buf[line_start..value_end].iter().position(|&b| b == b':').unwrap_or(0);
            let value = buf[line_start + colon + 1..value_end].trim_ascii_start();
            line(out, &buf[line_start..line_start + colon], value);
            return;
        }
        if self.end != line_start || self.start == self.end {
            self.flush(out, buf);
            self.start = line_start;
        }
        self.end = value_end + 2;
    }

    fn flush(&mut self, out: &mut Vec<u8>, buf: &[u8]) {
        out.extend_from_slice(&buf[self.start..self.end]);
        self.start = 0;
        self.end = 0;
    }
}

fn is_hop_by_hop(name: &[u8], value: &[u8]) -> bool {
    match name.len() {
        2 => name.eq_ignore_ascii_case(b"te") && !value.eq_ignore_ascii_case(b"trailers"),
        7 => name.eq_ignore_ascii_case(b"upgrade") || name.eq_ignore_ascii_case(b"trailer"),
        10 => name.eq_ignore_ascii_case(b"connection") || name.eq_ignore_ascii_case(b"keep-alive"),
        16 => name.eq_ignore_ascii_case(b"proxy-connection"),
        17 => name.eq_ignore_ascii_case(b"transfer-encoding"),
        _ => false,
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
) -> Result<TcpStream, AttemptError>
where
    T: super::ClientStream,
{
    let (mut stream, reused) = match backend.pool.checkout_raw(up.pool.idle_timeout, now) {
        Some(s) if idempotent || upstream::pool::is_quiet(&s) => (s, true),
        _ => (
            upstream::h1::connect(backend, up.connect_timeout)
                .await
                .map_err(AttemptError::Connect)?,
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
    if streamed_body > 0 {
        // The rest of the body comes straight from the client socket.
        let mut left = streamed_body;
        let mut chunk = vec![0u8; 64 * 1024];
        while left > 0 {
            let want = left.min(chunk.len());
            let n = io.read(&mut chunk[..want]).await.map_err(|_| AttemptError::Client)?;
            if n == 0 {
                return Err(AttemptError::Client);
            }
            stream
                .write_all(&chunk[..n])
                .await
                .map_err(|e| on_send_error(false, e))?;
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
            Ok(0) | Err(_) if c.ubuf.is_empty() && reused => return Err(AttemptError::Stale),
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
                Ok(ParsedResponse::Complete) => return Ok(stream),
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

/// Reads into `buf` unless `deadline` passes first (None). Uses the connection's one timer, so a
/// read that completes in time costs no timer registration.
async fn read_until<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut bytes::BytesMut,
    timer: &mut std::pin::Pin<Box<tokio::time::Sleep>>,
    deadline: Instant,
) -> Option<std::io::Result<usize>> {
    let deadline = tokio::time::Instant::from_std(deadline);
    if timer.deadline() > deadline {
        timer.as_mut().reset(deadline);
    }
    loop {
        tokio::select! {
            biased;
            n = r.read_buf(buf) => return Some(n),
            _ = timer.as_mut() => {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return None;
                }
                timer.as_mut().reset(deadline.min(now + super::DRAIN_CHECK));
            }
        }
    }
}

/// Writes the response head and relays the body. Returns (bytes of body sent, whether the
/// response was complete, the upstream socket if it can be reused, whether to close the client).
#[allow(clippy::too_many_arguments)]
async fn relay_response<T>(
    io: &mut T,
    c: &mut Conn,
    route: &Route,
    id_name: &[u8],
    request_id: &[u8],
    is_head: bool,
    sticky: Option<String>,
    mut stream: TcpStream,
    read_timeout: Duration,
) -> (u64, bool, Option<TcpStream>, bool)
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
    if n < initial.len() {
        // Bytes beyond this response (or a body where none belongs): the socket is out of step.
        reusable = false;
    }
    sent += n as u64;
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
        let client = io.plain_tcp();
        if client.is_some() && c.pipe.is_none() {
            c.pipe = super::splice::Pipe::new();
        }
        // Without a pipe (none to be had) the body is copied as below.
        if let (Some(client), Some(pipe)) = (client, c.pipe.as_ref()) {
            match super::splice::relay(&stream, client, pipe, left, read_timeout).await {
                Ok(()) => {
                    sent += left;
                    upstream_done = true;
                    // Splicing read exactly the body: bytes after it (a backend out of step)
                    // must not reach the next request on this socket.
                    if !crate::upstream::pool::is_quiet(&stream) {
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
