//! The request pipeline. This is the only code that knows the order of stages:
//!
//! parse/limits → request id → route → route stages (on_request) → action (fixed response,
//! redirect, or upstream: balance, pool, retry) → route stages (on_response) → log.

pub mod body;
pub mod ctx;
pub mod interim;
#[cfg(feature = "acceleration")]
pub mod range;
pub mod respond;
pub mod stage;

#[cfg(feature = "acceleration")]
use crate::cache;
use crate::observe::access_log::LogOnEnd;
use crate::route::{self, Action, Route};
use crate::runtime::Runtime;
use crate::server::conn::ConnInfo;
use crate::server::limits;
use crate::snapshot::Snapshot;
use crate::upstream::{self, headers as fwd_headers, Upstream};
use body::{ClientBody, ClientRequest, RequestBody, ResponseBody};
use bytes::BytesMut;
use ctx::RequestCtx;
use http::request::Parts;
use http::{header, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use respond::ProxyError;
use stage::Flow;
use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Chunked request bodies up to this size are read completely before anything is sent upstream,
/// so a malformed chunk gets a 400 instead of reaching the backend half-sent.
const CHUNKED_PREREAD: usize = 64 * 1024;

/// A request body as it arrives: from hyper, or none (a bodiless request parsed on the HTTP/1
/// fast path and passed here).
pub enum Inbound {
    Hyper(Incoming),
    /// From frontdesk's own HTTP/2 server.
    Http2(crate::server::http2::stream::RequestBody),
    Empty,
}

/// Entry point for requests served by hyper (HTTP/2, and HTTP/1 connections handed over).
pub async fn handle(
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    rt: Arc<Runtime>,
) -> Result<Response<ClientBody>, Infallible> {
    let (parts, body) = req.into_parts();
    Ok(handle_parts(parts, Inbound::Hyper(body), &conn, &rt).await)
}

/// Every request's way through the pipeline; the response's body runs the access log when done.
pub async fn handle_parts(mut parts: Parts, body: Inbound, conn: &ConnInfo, rt: &Runtime) -> Response<ClientBody> {
    let snap = rt.snapshot();
    let id_header = &conn.listener.request_id_header;
    let request_id = parts
        .headers
        .get(id_header)
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .cloned()
        .unwrap_or_else(new_request_id);
    let mut ctx = RequestCtx {
        received: SystemTime::now(),
        started: Instant::now(),
        client: conn.peer,
        method: parts.method.clone(),
        host: route::request_host(&parts),
        path: parts.uri.path().to_string(),
        proto: proto_name(parts.version),
        request_id,
        bytes_in: content_length(&parts).unwrap_or(0),
        status: 0,
        route: None,
        upstream: None,
        upstream_time: None,
        error: None,
    };
    let mut resp = match process(&snap, conn, &mut parts, body, &mut ctx).await {
        Ok(r) => r,
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!(request_id = ?ctx.request_id, route = ?ctx.route, reason = %e, "request failed");
            } else {
                tracing::info!(request_id = ?ctx.request_id, client = %ctx.client, reason = %e, "request rejected");
            }
            ctx.error = Some(e.to_string());
            e.response()
        }
    };
    // Unique per response: HPACK must not add it to the connection's table, where it would
    // only push out fields that do repeat (Server, Content-Type, ...).
    let mut id = ctx.request_id.clone();
    id.set_sensitive(true);
    resp.headers_mut().insert(id_header.clone(), id);
    ctx.status = resp.status().as_u16();
    if let Some(log) = rt.access_log() {
        resp.body_mut().on_end(Box::new(LogOnEnd::new(ctx, log)));
    }
    resp
}

async fn process(
    snap: &Snapshot,
    conn: &ConnInfo,
    parts: &mut Parts,
    body: Inbound,
    ctx: &mut RequestCtx,
) -> Result<Response<ClientBody>, ProxyError> {
    limits::check_request(parts, &conn.listener.limits, conn)?;
    if let Some(port) = conn.listener.redirect_https {
        return Ok(redirect_to_https(parts, &ctx.host, port));
    }
    let route = snap.router.find(parts, &ctx.host).ok_or(ProxyError::NoRoute)?;
    ctx.route = Some(route.name.clone());
    let mut resp = match &route.action {
        Action::Respond(fixed) => {
            if let Flow::Respond(r) = run_request_stages(route, parts, ctx) {
                return Ok(r);
            }
            let mut r = Response::new(ClientBody::full(fixed.body.clone()));
            *r.status_mut() = fixed.status;
            *r.headers_mut() = fixed.headers.clone();
            r
        }
        Action::Redirect(redirect) => {
            if let Flow::Respond(r) = run_request_stages(route, parts, ctx) {
                return Ok(r);
            }
            let location = redirect
                .location
                .render(parts, &ctx.host, redirect.captures_from.as_ref());
            let mut r = Response::new(ClientBody::empty());
            *r.status_mut() = redirect.status;
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Action::Proxy(up) => proxy(up, route, conn, parts, body, ctx).await?,
        #[cfg(feature = "acceleration")]
        Action::Files(files) => {
            if let Flow::Respond(r) = run_request_stages(route, parts, ctx) {
                return Ok(r);
            }
            let path = route.rewrite.apply(parts.uri.path());
            let (mut rparts, mut body) = files.serve(parts, &path)?.into_parts();
            if let Some(c) = &route.compress {
                body = c.apply(c.choose(parts), &parts.method, &mut rparts, body);
            }
            Response::from_parts(rparts, ClientBody::new(body))
        }
    };
    for stage in &route.stages {
        stage.on_response(&mut resp, ctx);
    }
    Ok(resp)
}

fn run_request_stages(route: &Route, parts: &mut Parts, ctx: &mut RequestCtx) -> Flow {
    for stage in &route.stages {
        if let Flow::Respond(r) = stage.on_request(parts, ctx) {
            return Flow::Respond(r);
        }
    }
    Flow::Continue
}

async fn proxy(
    up: &Arc<Upstream>,
    route: &Route,
    conn: &ConnInfo,
    parts: &mut Parts,
    body: Inbound,
    ctx: &mut RequestCtx,
) -> Result<Response<ClientBody>, ProxyError> {
    let limits = &conn.listener.limits;
    let chunked = parts.headers.contains_key(header::TRANSFER_ENCODING);
    let body = match body {
        Inbound::Empty => RequestBody::Empty,
        Inbound::Hyper(body) if hyper::body::Body::is_end_stream(&body) => RequestBody::Empty,
        Inbound::Hyper(body) if chunked => preread(body, limits.max_body_bytes).await?,
        Inbound::Hyper(body) => RequestBody::streaming(ClientRequest::Hyper(body), limits.max_body_bytes),
        Inbound::Http2(body) if body.is_end_stream() => RequestBody::Empty,
        Inbound::Http2(body) => RequestBody::streaming(ClientRequest::Http2(body), limits.max_body_bytes),
    };

    let wants_upgrade = parts.version == Version::HTTP_11 && parts.headers.contains_key(header::UPGRADE);
    let client_upgrade = if wants_upgrade {
        parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
    } else {
        None
    };
    let original_host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });

    fwd_headers::strip_hop_by_hop(&mut parts.headers, wants_upgrade);
    let peer_ip = crate::config::value::canonical(conn.peer.ip());
    let facts = fwd_headers::ClientFacts {
        ip: conn.client_ip(),
        trusted: conn.listener.trusted_proxies.iter().any(|c| c.contains(peer_ip)),
        proto: if conn.listener.tls.is_some() { "https" } else { "http" },
        host: original_host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or(""),
    };
    fwd_headers::add_forwarded(&mut parts.headers, &facts);
    parts
        .headers
        .insert(conn.listener.request_id_header.clone(), ctx.request_id.clone());

    let path = route.rewrite.apply(parts.uri.path());
    let path_and_query = match (&path, parts.uri.path_and_query()) {
        // Unchanged: the request's own bytes, without formatting or parsing them again.
        (Cow::Borrowed(_), Some(pq)) => PathAndQuery::Shared(pq.clone()),
        (_, _) => PathAndQuery::Built(match parts.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.into_owned(),
        }),
    };
    if up.http2 {
        let scheme = if up.tls.is_some() { "https" } else { "http" };
        let authority = original_host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        parts.uri = Uri::try_from(format!("{scheme}://{authority}{path_and_query}"))
            .map_err(|_| ProxyError::BadRequest("invalid host"))?;
        parts.headers.remove(header::HOST);
        parts.version = Version::HTTP_2;
    } else {
        parts.uri = match path_and_query {
            PathAndQuery::Shared(pq) => Uri::from(pq),
            PathAndQuery::Built(s) => Uri::try_from(s).map_err(|_| ProxyError::BadRequest("invalid request target"))?,
        };
        if let Some(h) = &original_host {
            parts.headers.insert(header::HOST, h.clone());
        }
        parts.version = Version::HTTP_11;
    }

    if let Flow::Respond(r) = run_request_stages(route, parts, ctx) {
        return Ok(r);
    }
    #[cfg(feature = "acceleration")]
    let compress = route.compress.as_ref().map(|c| (c.clone(), c.prepare_request(parts)));
    #[cfg(feature = "acceleration")]
    let method = parts.method.clone();

    let upstream::Affinity {
        key_hash,
        sticky_in,
        preferred,
    } = up.affinity(&*parts, peer_ip);

    let client_version = ctx_version(ctx);
    let request = Request::from_parts(std::mem::replace(parts, Request::new(()).into_parts().0), body);
    #[cfg(feature = "acceleration")]
    if let Some(cache) = &route.cache {
        let scheme = if conn.listener.tls.is_some() { "https" } else { "http" };
        let origin = cache::Origin {
            upstream: up.clone(),
            key_hash,
            preferred,
            compress,
            interim: request.extensions().get::<interim::Interim>().cloned(),
        };
        // Boxed: the cache's future is large, and would otherwise make every request's larger.
        let answer = Box::pin(cache::fetch(cache, origin, request, scheme, &ctx.host)).await?;
        let (mut rparts, rbody) = answer.response.into_parts();
        fwd_headers::strip_hop_by_hop(&mut rparts.headers, false);
        rparts.version = client_version;
        if let Some((backend, upstream_time)) = &answer.upstream {
            ctx.upstream = Some(backend.addr.clone());
            ctx.upstream_time = Some(*upstream_time);
            if let Some(cookie) = sticky_cookie(up, sticky_in.as_deref(), backend) {
                rparts.headers.append(header::SET_COOKIE, cookie);
            }
        }
        rparts.headers.insert(cache::status::NAME, answer.status.header());
        let mut body = ClientBody::new(rbody);
        if let Some(release) = answer.release {
            body.on_end(release);
        }
        return Ok(Response::from_parts(rparts, body));
    }
    let mut fwd = up.forward(request, key_hash, preferred).await?;
    ctx.upstream = Some(fwd.backend.addr.clone());
    ctx.upstream_time = Some(fwd.upstream_time);

    let switching = fwd.response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        match client_upgrade {
            Some(client) => {
                let backend = hyper::upgrade::on(&mut fwd.response);
                tokio::spawn(tunnel(client, backend));
            }
            None => {
                return Err(ProxyError::UpstreamFailed {
                    addr: fwd.backend.addr.to_string(),
                    reason: "unexpected 101 Switching Protocols".into(),
                })
            }
        }
    }
    let (mut rparts, rbody) = fwd.response.into_parts();
    fwd_headers::strip_hop_by_hop(&mut rparts.headers, switching);
    rparts.version = client_version;
    if let Some(cookie) = sticky_cookie(up, sticky_in.as_deref(), &fwd.backend) {
        rparts.headers.append(header::SET_COOKIE, cookie);
    }
    #[allow(unused_mut)] // compression may replace it
    let mut rbody = ResponseBody::Upstream { inner: rbody };
    #[cfg(feature = "acceleration")]
    if let Some((compression, negotiated)) = &compress {
        rbody = compression.apply(*negotiated, &method, &mut rparts, rbody);
    }
    let mut body = ClientBody::new(rbody);
    body.on_end(fwd.release);
    Ok(Response::from_parts(rparts, body))
}

/// The upstream request target: the client's, or rewritten.
enum PathAndQuery {
    Shared(http::uri::PathAndQuery),
    Built(String),
}

impl std::fmt::Display for PathAndQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathAndQuery::Shared(pq) => f.write_str(pq.as_str()),
            PathAndQuery::Built(s) => f.write_str(s),
        }
    }
}

/// The sticky cookie to set when the client is not (yet) pinned to `backend`.
fn sticky_cookie(up: &Upstream, sent: Option<&str>, backend: &upstream::Backend) -> Option<HeaderValue> {
    HeaderValue::from_str(&up.sticky_set_cookie(sent, backend)?).ok()
}

fn ctx_version(ctx: &RequestCtx) -> Version {
    match ctx.proto {
        "HTTP/2" => Version::HTTP_2,
        "HTTP/1.0" => Version::HTTP_10,
        _ => Version::HTTP_11,
    }
}

/// Reads a chunked body up to `CHUNKED_PREREAD` bytes; a short body is forwarded whole (with a
/// Content-Length), a longer one streams on after the bytes already read.
async fn preread(mut body: Incoming, limit: u64) -> Result<RequestBody, ProxyError> {
    let mut buf = BytesMut::new();
    loop {
        match body.frame().await {
            None => return Ok(RequestBody::full(buf.freeze())),
            Some(Err(e)) => return Err(ProxyError::ClientBody(e.to_string())),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                    if buf.len() as u64 > limit {
                        return Err(ProxyError::BodyTooLarge);
                    }
                    if buf.len() > CHUNKED_PREREAD {
                        return Ok(RequestBody::prefixed(buf.freeze(), ClientRequest::Hyper(body), limit));
                    }
                }
            }
        }
    }
}

async fn tunnel(client: hyper::upgrade::OnUpgrade, backend: hyper::upgrade::OnUpgrade) {
    match tokio::try_join!(client, backend) {
        Ok((c, b)) => {
            let mut c = hyper_util::rt::TokioIo::new(c);
            let mut b = hyper_util::rt::TokioIo::new(b);
            if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut b).await {
                tracing::debug!(error = %e, "upgraded connection ended");
            }
        }
        Err(e) => tracing::debug!(error = %e, "upgrade failed"),
    }
}

fn redirect_to_https(parts: &Parts, host: &str, port: u16) -> Response<ClientBody> {
    let authority = if port == 443 {
        host.to_string()
    } else {
        format!("{host}:{port}")
    };
    let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut r = Response::new(ClientBody::empty());
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(v) = HeaderValue::from_str(&format!("https://{authority}{pq}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn content_length(parts: &Parts) -> Option<u64> {
    parts.headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn proto_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

fn new_request_id() -> HeaderValue {
    let mut id = [0u8; 32];
    crate::server::h1::request_id(&mut id);
    HeaderValue::from_bytes(&id).unwrap_or(HeaderValue::from_static("0"))
}
