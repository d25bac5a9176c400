//! Bodiless requests (GET, HEAD) that the fast path cannot answer itself — cache misses and
//! revalidations, compression, files, redirects, fixed responses, HTTP/2 upstreams — run
//! through the general pipeline from here, and the response is written back on the same
//! connection. The connection stays on the fast path: one cache miss does not move it to hyper
//! for good. Requests with a body, upgrades and anything unusual still hand the connection over.

use super::head::RawRequest;
use super::write::{self, line};
use super::{Conn, Next};
use crate::pipeline::interim::{Interim, InterimHead};
use crate::pipeline::{self, Inbound};
use crate::route::RequestView;
use crate::runtime::Runtime;
use crate::server::conn::ConnInfo;
use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};
use http_body::Body;
use http_body_util::BodyExt;
use std::pin::Pin;
use std::task::Poll;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Body bytes gathered before a write; a body that pauses is written out at once.
const WRITE_BATCH: usize = 64 * 1024;

/// Files from this size are sent with sendfile; smaller ones are read and go out in the same
/// write as the head.
#[cfg(feature = "acceleration")]
const SENDFILE_MIN: u64 = 16 * 1024;

/// Runs a bodiless GET or HEAD through the general pipeline on this connection (the pipeline
/// writes its access log entry); anything else is handed over to hyper.
pub(super) async fn serve_or_handoff<T>(io: &mut T, c: &mut Conn, info: &ConnInfo, rt: &Runtime) -> Next
where
    T: super::ClientStream,
{
    let view = RawRequest {
        buf: &c.rbuf[..],
        head: &c.head,
    };
    let applies = matches!(view.method(), "GET" | "HEAD") && c.head.content_length.is_none_or(|n| n == 0);
    if !applies {
        return Next::Handoff;
    }
    // Boxed, so the connection's own future (alive while it idles) stays small.
    Box::pin(serve(io, c, info, rt)).await.unwrap_or(Next::Handoff)
}

/// `None`: the head did not convert (hyper will judge it after a hand-over).
async fn serve<T>(io: &mut T, c: &mut Conn, info: &ConnInfo, rt: &Runtime) -> Option<Next>
where
    T: super::ClientStream,
{
    let (buf, head) = (&c.rbuf[..], &c.head);
    let view = RawRequest { buf, head };
    let method = Method::from_bytes(view.method().as_bytes()).ok()?;
    let target_end = head.query.as_ref().map_or(head.path.end, |q| q.end);
    let uri = Uri::try_from(&buf[head.path.start..target_end]).ok()?;
    let mut req = Request::new(());
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    headers.reserve(head.headers.len());
    for (n, v) in &head.headers {
        let name = HeaderName::from_bytes(&buf[n.clone()]).ok()?;
        let value = HeaderValue::from_bytes(&buf[v.clone()]).ok()?;
        headers.append(name, value);
    }
    let consumed = head.len;
    let client_close = head.close;
    let (mut parts, ()) = req.into_parts();
    // The backend's 1xx responses reach this HTTP/1.1 client (HTTP/1.0 ones never come here) as
    // they arrive, also those read together with the final head.
    let (interim, mut heads) = Interim::channel();
    parts.extensions.insert(interim);
    let mut pipeline = std::pin::pin!(pipeline::handle_parts(parts, Inbound::Empty, info, rt));
    let resp = loop {
        tokio::select! {
            resp = &mut pipeline => break resp,
            Some(head) = heads.recv() => {
                if !send_interim(io, &mut c.wbuf, head).await {
                    return Some(Next::Close);
                }
            }
        }
    };
    while let Ok(head) = heads.try_recv() {
        if !send_interim(io, &mut c.wbuf, head).await {
            return Some(Next::Close);
        }
    }

    let (rparts, mut body) = resp.into_parts();
    let status = rparts.status;
    let no_body = method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let declared: Option<u64> = rparts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let exact = body.size_hint().exact();
    let close = client_close
        || rparts
            .headers
            .get(header::CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let chunked = !no_body && declared.is_none() && exact.is_none();

    let out = &mut c.wbuf;
    out.clear();
    write::status_line(out, status);
    for (name, value) in &rparts.headers {
        if name == header::CONNECTION || name == header::TRANSFER_ENCODING {
            continue;
        }
        line(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !rparts.headers.contains_key(header::DATE) {
        line(
            out,
            b"date",
            httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes(),
        );
    }
    if declared.is_none() && status != StatusCode::NO_CONTENT && status != StatusCode::NOT_MODIFIED {
        if let Some(n) = exact.filter(|n| !(method == Method::HEAD && *n == 0)) {
            out.extend_from_slice(b"content-length: ");
            write::decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
    }
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");

    let mut sent: u64 = 0;
    let mut complete = true;
    // A file goes out behind its head with sendfile when nothing sits between the socket and
    // the response bytes, as nginx's `sendfile on`: the body is never copied.
    #[cfg(feature = "acceleration")]
    let sent_as_file = match (no_body, body.file(), io.plain_tcp()) {
        (false, Some((fd, offset, len)), Some(socket)) if len >= SENDFILE_MIN => {
            complete = write::head_and_file(socket, &c.wbuf, fd, offset, len).await.is_ok();
            sent = if complete { len } else { 0 };
            Pin::new(&mut body).file_sent(complete, sent);
            c.wbuf.clear();
            true
        }
        _ => false,
    };
    #[cfg(not(feature = "acceleration"))]
    let sent_as_file = false;
    if !no_body && !sent_as_file {
        loop {
            // Write what is gathered before waiting on a body that has nothing ready.
            let ready = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await;
            let frame = match ready {
                Poll::Ready(f) => f,
                Poll::Pending => {
                    if !c.wbuf.is_empty() {
                        if io.write_all(&c.wbuf).await.is_err() {
                            complete = false;
                            break;
                        }
                        c.wbuf.clear();
                    }
                    body.frame().await
                }
            };
            match frame {
                None => {
                    if chunked {
                        c.wbuf.extend_from_slice(b"0\r\n\r\n");
                    }
                    break;
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "response body failed on the fast path");
                    complete = false;
                    break;
                }
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    if data.is_empty() {
                        continue;
                    }
                    sent += data.len() as u64;
                    if !gather(io, &mut c.wbuf, data, chunked).await {
                        complete = false;
                        break;
                    }
                }
            }
        }
    }
    if complete && !c.wbuf.is_empty() {
        if close {
            io.hold_for_close();
        }
        if io.write_all(&c.wbuf).await.is_err() {
            complete = false;
        }
    }
    if declared.is_some_and(|n| !no_body && n != sent) {
        // The body did not match what the head promised: the client must not reuse this.
        complete = false;
    }
    drop(body);
    c.last_active = tokio::time::Instant::now();
    Some(if close || !complete {
        Next::Close
    } else {
        Next::KeepAlive { consumed }
    })
}

/// Writes a backend's 1xx response as the client gets it: its own hop-by-hop fields removed.
async fn send_interim<T: AsyncWrite + Unpin>(io: &mut T, out: &mut Vec<u8>, mut head: InterimHead) -> bool {
    crate::upstream::headers::strip_hop_by_hop(&mut head.headers, false);
    out.clear();
    write::status_line(out, head.status);
    for (name, value) in &head.headers {
        line(out, name.as_str().as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    io.write_all(out).await.is_ok()
}

/// Appends one body piece (chunk-framed when `chunked`), writing out when the batch is full.
async fn gather<T: AsyncWrite + Unpin>(io: &mut T, out: &mut Vec<u8>, data: Bytes, chunked: bool) -> bool {
    if chunked {
        out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    }
    if out.len() + data.len() <= WRITE_BATCH {
        out.extend_from_slice(&data);
    } else {
        if io.write_all(out).await.is_err() || io.write_all(&data).await.is_err() {
            return false;
        }
        out.clear();
    }
    if chunked {
        out.extend_from_slice(b"\r\n");
    }
    true
}
