//! Cache hits on the fast path: a plain GET whose fresh response is in memory is answered here,
//! from the raw request head, without building a request or a header map. Everything else on a
//! cached route (misses, stale entries, conditionals, ranges, request directives) is handed to
//! the general path, which owns the cache's full logic.
//!
//! A hit is decided and its head written without awaiting (`prepare`), so the connection serves
//! it in its own future; only the proxying exchange, whose state is large, is boxed.

use super::exchange::Outcome;
use super::head::{RawRequest, RequestHead};
use super::write::{self, line};
use super::{ClientStream, Next};
use crate::cache::store::{Entry, RenderedHead};
use crate::cache::{status, Cache};
use crate::route::{RequestView, Route};
use crate::server::conn::ConnInfo;
use http::header;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::io::AsyncWriteExt;

/// Bodies up to this size go out in the same write as the head.
const COALESCE_BODY: usize = 16 * 1024;

/// Request fields that make the cache's answer depend on more than a fresh lookup.
fn needs_general_path(name: &[u8]) -> bool {
    const FIELDS: [&[u8]; 9] = [
        b"cache-control",
        b"pragma",
        b"range",
        b"if-range",
        b"if-none-match",
        b"if-modified-since",
        b"if-match",
        b"if-unmodified-since",
        b"authorization",
    ];
    FIELDS.iter().any(|f| f.eq_ignore_ascii_case(name))
}

/// The cache zone in front of the route's upstream, if any.
pub(super) fn cache_of(route: &Route) -> Option<&Cache> {
    route.cache.as_deref()
}

/// A hit whose head is in the connection's write buffer.
pub(super) struct Ready {
    entry: Arc<Entry>,
    close: bool,
    consumed: usize,
    /// Where the request id is in the head (for the access log).
    id_at: (u32, u32),
}

impl Ready {
    pub(super) fn request_id(&self) -> std::ops::Range<usize> {
        self.id_at.0 as usize..self.id_at.1 as usize
    }

    /// The connection closes after this answer.
    pub(super) fn closes(&self) -> bool {
        self.close
    }
}

/// Stored fields a hit never copies: it writes its own.
fn written_by_hit(name: &header::HeaderName) -> bool {
    name == header::CONTENT_LENGTH
        || name == header::AGE
        || name == header::ACCEPT_RANGES
        || name.as_str() == status::NAME
}

/// Looks the request up and, on a fresh hit, writes the response head into `out`; `None`
/// means hand the request to the general path.
#[allow(clippy::too_many_arguments)]
pub(super) fn prepare(
    buf: &[u8],
    head: &RequestHead,
    out: &mut Vec<u8>,
    info: &ConnInfo,
    route: &Route,
    cache: &Cache,
    host: &str,
    id_name: &header::HeaderName,
    request_id: &[u8],
) -> Option<Ready> {
    let view = RawRequest { buf, head };
    if view.method() != "GET"
        || head.content_length.is_some_and(|n| n > 0)
        || route.stages.iter().any(|s| s.request_header_ops().is_some())
        || head.headers.iter().any(|(n, _)| needs_general_path(&buf[n.clone()]))
    {
        return None;
    }
    let scheme = if info.listener.tls.is_some() { "https" } else { "http" };
    let path = route.rewrite.apply(view.path());
    let raw_host = head.host.as_ref().map(|r| &buf[r.clone()]);
    let hit = cache.fresh_hit(&view, &path, scheme, host, raw_host, SystemTime::now())?;
    let entry = hit.entry;
    let ops: Vec<&crate::transform::HeaderOps> = route.stages.iter().filter_map(|s| s.response_header_ops()).collect();

    out.clear();
    if ops.is_empty() {
        let rendered = entry.memo.h1_head.get_or_init(|| render(&entry, id_name));
        if rendered.without == *id_name {
            out.extend_from_slice(&rendered.bytes);
        } else {
            write_head(out, &entry, id_name.as_str().as_bytes(), &[]);
        }
    } else {
        write_head(out, &entry, id_name.as_str().as_bytes(), &ops);
    }
    out.extend_from_slice(b"age: ");
    write::decimal(out, hit.age);
    out.extend_from_slice(b"\r\naccept-ranges: bytes\r\ncache-status: frontdesk; hit; ttl=");
    write::decimal(out, hit.ttl.max(0) as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(id_name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    let id_at = (out.len() as u32, (out.len() + request_id.len()) as u32);
    out.extend_from_slice(request_id);
    out.extend_from_slice(b"\r\n");
    for o in &ops {
        o.write_raw(out);
    }
    if entry.status != http::StatusCode::NO_CONTENT {
        out.extend_from_slice(b"content-length: ");
        write::decimal(out, entry.body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    if head.close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if entry.body.len() <= COALESCE_BODY {
        out.extend_from_slice(&entry.body);
    }
    Some(Ready {
        entry,
        close: head.close,
        consumed: head.len,
        id_at,
    })
}

/// The status line and the stored fields a hit copies (all but its own, `id_name` and those
/// the route's response header operations replace).
fn write_head(out: &mut Vec<u8>, entry: &Entry, id_name: &[u8], ops: &[&crate::transform::HeaderOps]) {
    write::status_line(out, entry.status);
    for (name, value) in &entry.headers {
        let n = name.as_str().as_bytes();
        if written_by_hit(name) || n.eq_ignore_ascii_case(id_name) || ops.iter().any(|o| o.replaces(n)) {
            continue;
        }
        line(out, n, value.as_bytes());
    }
}

fn render(entry: &Entry, id_name: &header::HeaderName) -> RenderedHead {
    let mut bytes = Vec::with_capacity(256);
    write_head(&mut bytes, entry, id_name.as_str().as_bytes(), &[]);
    RenderedHead {
        without: id_name.clone(),
        bytes: bytes.into_boxed_slice(),
    }
}

/// Writes the prepared head and the body (a small one is already behind the head).
pub(super) async fn send<T: ClientStream>(io: &mut T, out: &[u8], hit: &Ready) -> bool {
    let body = &hit.entry.body;
    if body.len() <= COALESCE_BODY {
        return io.write_all(out).await.is_ok();
    }
    // Boxed: rare, and it keeps the connection's own future (alive while idle) small.
    match (&hit.entry.sealed, io.plain_tcp()) {
        (Some(sealed), Some(socket)) => {
            let (file, len) = (sealed.file().as_raw_fd(), sealed.len());
            Box::pin(write::head_and_file(socket, out, file, 0, len)).await.is_ok()
        }
        _ => Box::pin(write::head_and_body(io, out, body)).await.is_ok(),
    }
}

impl Ready {
    pub(super) fn outcome(self, ok: bool) -> Outcome {
        Outcome {
            status: self.entry.status.as_u16(),
            bytes_out: if ok { self.entry.body.len() as u64 } else { 0 },
            complete: ok,
            upstream: None,
            upstream_time: None,
            error: None,
            next: if self.close || !ok {
                Next::Close
            } else {
                Next::KeepAlive {
                    consumed: self.consumed,
                }
            },
        }
    }
}
