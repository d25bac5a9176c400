//! The HTTP/2 fast path. A bodiless GET or HEAD routed to a plain HTTP/1.1 backend, with only
//! header-editing stages on its route, is forwarded as an HTTP/1.1 head written straight from
//! the decoded fields, and the response head is encoded from the bytes the backend sent: no
//! `HeaderMap`, `Uri` or `Request` on the way, as on the HTTP/1.1 fast path.

use super::hpack;
use super::request::RequestBuilder;
use super::stream::{self, Event, SendQueue};
use crate::observe::access_log::{AccessLog, LogOnEnd};
use crate::pipeline::body::OnBodyEnd;
use crate::pipeline::ctx::RequestCtx;
use crate::route::{self, Action, Route};
use crate::runtime::Runtime;
use crate::server::conn::ConnInfo;
use crate::server::h1::{
    decimal, is_hop_by_hop, is_protected, line, routing_host, write_forwarding, Forwarding, RequestId, ResponseHead,
};
use crate::snapshot::Snapshot;
use crate::transform::HeaderOps;
use crate::upstream::{Affinity, Upstream};
use http::Method;
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc::UnboundedSender;

/// How long a response body may stop flowing (or `response_timeout`, when longer).
const BODY_STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// The route and upstream when `req` can take the fast path.
pub fn plan<'s>(req: &RequestBuilder, info: &ConnInfo, snap: &'s Snapshot) -> Option<(&'s Route, &'s Upstream)> {
    let method = req.method_bytes();
    if !(method == b"GET" || method == b"HEAD") || info.listener.redirect_https.is_some() {
        return None;
    }
    let route = snap.router.find(req, &routing_host(req.host()))?;
    let Action::Proxy(up) = &route.action else { return None };
    #[cfg(feature = "acceleration")]
    if route.cache.is_some() {
        return None;
    }
    let own_client = !up.http2 && !route.compresses();
    (own_client && route.stages.iter().all(|s| s.works_on_raw_heads())).then_some((route, &**up))
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    id: u32,
    req: RequestBuilder,
    route: &Route,
    up: &Upstream,
    info: &ConnInfo,
    rt: &Runtime,
    events: &UnboundedSender<Event>,
    queue: &SendQueue,
) {
    let listener = &info.listener;
    let id_name = listener.request_id_header.as_str().as_bytes();
    let own_id = RequestId::new(req.header(id_name));
    let request_id = own_id.as_bytes();
    let is_head = req.method_bytes() == b"HEAD";
    let method = if is_head { Method::HEAD } else { Method::GET };
    let mut log = DirectLog::new(rt, info, &req, route, request_id, &method);
    let peer_ip = crate::config::value::canonical(info.peer.ip());
    let trusted = listener.trusted_proxies.iter().any(|c| c.contains(peer_ip));
    let head = upstream_head(&req, info, route, trusted, id_name, request_id);
    let Affinity {
        key_hash,
        sticky_in,
        preferred,
    } = up.affinity(&req, peer_ip);
    // Nothing of the request is needed past this point; it is not kept for the response.
    drop(req);
    let forwarded = up.forward_head(&head, &method, key_hash, preferred, None).await;
    drop(head);
    match forwarded {
        Ok(mut fwd) => {
            if let Some(ctx) = log.ctx() {
                ctx.status = fwd.response.head.status;
                ctx.upstream = Some(fwd.backend.addr.clone());
                ctx.upstream_time = Some(fwd.upstream_time);
            }
            let sticky = up.sticky_set_cookie(sticky_in.as_deref(), &fwd.backend);
            let r = &fwd.response;
            let block = response_block(&r.head, &r.head_bytes, route, id_name, request_id, sticky);
            let no_body = is_head || r.head.status == 204 || r.head.status == 304;
            let end = no_body || http_body::Body::is_end_stream(&r.body);
            let sent = events.send(Event::Head { id, block, end }).is_ok();
            let (complete, bytes) = match (sent, end) {
                (false, _) => (false, 0),
                (true, true) => (true, 0),
                (true, false) => {
                    let body = &mut fwd.response.body;
                    // A body that stops flowing is cut off, as nginx's proxy_read_timeout does.
                    let stall = up.response_timeout.max(BODY_STALL);
                    stream::send_body(id, body, events, queue, Some(stall)).await
                }
            };
            // The socket went back to the pool if the body was read to its end (in RawBody).
            drop(fwd.response.body);
            fwd.release.finish(complete, bytes);
            log.ended(complete, bytes);
        }
        Err(e) => {
            tracing::warn!(request_id = %String::from_utf8_lossy(request_id), route = %route.name, reason = %e, "request failed");
            if let Some(ctx) = log.ctx() {
                ctx.status = e.status().as_u16();
                ctx.error = Some(e.to_string());
            }
            let mut resp = e.response();
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(id_name),
                http::HeaderValue::from_bytes(request_id),
            ) {
                resp.headers_mut().insert(n, v);
            }
            let (complete, bytes) = stream::respond(id, resp, is_head, events, queue).await;
            log.ended(complete, bytes);
        }
    }
}

/// The access log line of a fast-path request, written when this is dropped: also when the
/// client resets the stream and its task is aborted mid-body (logged as aborted).
struct DirectLog {
    pending: Option<(RequestCtx, &'static AccessLog)>,
    complete: bool,
    bytes: u64,
}

impl DirectLog {
    fn new(
        rt: &Runtime,
        info: &ConnInfo,
        req: &RequestBuilder,
        route: &Route,
        request_id: &[u8],
        method: &Method,
    ) -> Self {
        let pending = rt.access_log().map(|access| {
            let ctx = RequestCtx {
                received: SystemTime::now(),
                started: Instant::now(),
                client: info.peer,
                method: method.clone(),
                host: routing_host(req.host()).into_owned(),
                path: route::RequestView::path(req).to_string(),
                proto: "HTTP/2",
                request_id: http::HeaderValue::from_bytes(request_id).unwrap_or(http::HeaderValue::from_static("-")),
                bytes_in: 0,
                status: 0,
                route: Some(route.name.clone()),
                upstream: None,
                upstream_time: None,
                error: None,
            };
            (ctx, access)
        });
        DirectLog {
            pending,
            complete: false,
            bytes: 0,
        }
    }

    fn ctx(&mut self) -> Option<&mut RequestCtx> {
        self.pending.as_mut().map(|(ctx, _)| ctx)
    }

    fn ended(&mut self, complete: bool, bytes: u64) {
        self.complete = complete;
        self.bytes = bytes;
    }
}

impl Drop for DirectLog {
    fn drop(&mut self) {
        if let Some((ctx, access)) = self.pending.take() {
            LogOnEnd::new(ctx, access).finish(self.complete, self.bytes);
        }
    }
}

/// The HTTP/1.1 request head for the backend, from the decoded fields: hop-by-hop and
/// spoofable forwarding fields dropped, cookies joined (RFC 9113 §8.2.3), forwarding fields and
/// the request id added, the route's header stages applied.
fn upstream_head(
    req: &RequestBuilder,
    info: &ConnInfo,
    route: &Route,
    trusted: bool,
    id_name: &[u8],
    request_id: &[u8],
) -> Vec<u8> {
    let ops: Vec<&HeaderOps> = route.stages.iter().filter_map(|s| s.request_header_ops()).collect();
    let replaced = |name: &[u8]| ops.iter().any(|o| o.replaces(name));
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(req.method_bytes());
    out.push(b' ');
    let path = route::RequestView::path(req);
    out.extend_from_slice(route.rewrite.apply(path).as_bytes());
    if let Some(q) = route::RequestView::query(req) {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let host = req.host();
    if !host.is_empty() && !replaced(b"host") {
        line(&mut out, b"host", host);
    }
    let mut prior_xff: Vec<&[u8]> = Vec::new();
    let mut prior_forwarded: Vec<&[u8]> = Vec::new();
    let (mut has_proto, mut has_fhost) = (false, false);
    let mut cookies = 0;
    for (name, value) in req.fields() {
        match name {
            b"host" => continue,
            b"cookie" => {
                cookies += 1;
                continue;
            }
            b"x-forwarded-for" => {
                prior_xff.push(value);
                continue;
            }
            b"forwarded" => {
                prior_forwarded.push(value);
                continue;
            }
            b"x-forwarded-proto" if !trusted => continue,
            b"x-forwarded-proto" => has_proto = true,
            b"x-forwarded-host" if !trusted => continue,
            b"x-forwarded-host" => has_fhost = true,
            _ => {}
        }
        if is_hop_by_hop(name, value) || name == id_name || replaced(name) {
            continue;
        }
        line(&mut out, name, value);
    }
    if cookies > 0 && !replaced(b"cookie") {
        out.extend_from_slice(b"cookie: ");
        for (i, (_, value)) in req.fields().filter(|(n, _)| *n == b"cookie").enumerate() {
            if i > 0 {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(value);
        }
        out.extend_from_slice(b"\r\n");
    }
    let forwarding = Forwarding {
        trusted,
        prior_xff: &prior_xff,
        prior_forwarded: &prior_forwarded,
        has_proto,
        has_fhost,
        host,
    };
    write_forwarding(&mut out, info, &forwarding, replaced);
    line(&mut out, id_name, request_id);
    for o in &ops {
        o.write_raw(&mut out);
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The response head as an HPACK block, from the backend's head bytes.
fn response_block(
    resp: &ResponseHead,
    buf: &[u8],
    route: &Route,
    id_name: &[u8],
    request_id: &[u8],
    sticky: Option<String>,
) -> Vec<u8> {
    let ops: Vec<&HeaderOps> = route.stages.iter().filter_map(|s| s.response_header_ops()).collect();
    let mut block = Vec::with_capacity(resp.len + 64);
    hpack::encode_status(&mut block, resp.status);
    for (n, v) in &resp.headers {
        let (name, value) = (&buf[n.clone()], &buf[v.clone()]);
        // Content-Length is written once below, from the framing the head was parsed for.
        if is_hop_by_hop(name, value)
            || name.eq_ignore_ascii_case(b"te")
            || name.eq_ignore_ascii_case(b"content-length")
            || (resp.lists_more_hop_fields && !is_protected(name) && resp.connection_lists(buf, name))
            || name.eq_ignore_ascii_case(id_name)
            || ops.iter().any(|o| o.replaces(name))
        {
            continue;
        }
        hpack::encode_field_any_case(&mut block, name, value);
    }
    if let (false, Some(len)) = (resp.chunked, resp.content_length) {
        let mut digits = Vec::with_capacity(20);
        decimal(&mut digits, len);
        hpack::encode_field(&mut block, b"content-length", &digits, false);
    }
    // Unique per response: never indexed, so no HPACK table along the way keeps it. As in the
    // pipeline, it wins over a stage setting the same field, and a stage that removes or sets
    // set-cookie also drops the sticky cookie.
    hpack::encode_field(&mut block, id_name, request_id, true);
    if let Some(cookie) = sticky.filter(|_| !ops.iter().any(|o| o.replaces(b"set-cookie"))) {
        hpack::encode_field(&mut block, b"set-cookie", cookie.as_bytes(), false);
    }
    for o in &ops {
        for (name, value) in o.set.iter().chain(&o.add) {
            if name.as_str().as_bytes() != id_name {
                hpack::encode_field(&mut block, name.as_str().as_bytes(), value.as_bytes(), false);
            }
        }
    }
    block
}
