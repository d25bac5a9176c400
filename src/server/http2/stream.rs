//! One request stream: its task runs the pipeline and hands the response to the connection
//! as events; its request body arrives from the connection through a channel.

use super::direct;
use super::frame::Reason;
use super::hpack;
use super::request::RequestBuilder;
use crate::pipeline::body::{BoxError, ClientBody};
use crate::pipeline::respond::ProxyError;
use crate::pipeline::{self, Inbound};
use crate::runtime::Runtime;
use crate::server::conn::ConnInfo;
use bytes::Bytes;
use http::{header, HeaderMap, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// A stream may hand the connection more body while less than this of its own is queued.
const STREAM_QUEUE: usize = 16 * 1024;
/// Above this much queued on the whole connection, a stream hands over more only when none of
/// its own is still queued: memory per connection stays bounded, and a stream whose client
/// stopped reading it (its window closed) cannot hold back the others.
const CONNECTION_QUEUE: usize = 32 * 1024;

/// What stream tasks (and request bodies) tell the connection.
pub enum Event {
    /// The response head as an encoded header block; `end` when no body follows.
    Head {
        id: u32,
        block: Vec<u8>,
        end: bool,
    },
    Data {
        id: u32,
        data: Bytes,
        end: bool,
    },
    Trailers {
        id: u32,
        block: Vec<u8>,
    },
    Reset {
        id: u32,
        reason: Reason,
    },
    /// The pipeline took `len` bytes of the request body: the client may send more.
    Consumed {
        id: u32,
        len: usize,
    },
}

/// How much of a stream's response body waits in the connection's queues, shared between the
/// stream's task and the connection.
pub struct SendQueue {
    queued: AtomicUsize,
    connection: Arc<AtomicUsize>,
    waker: Mutex<Option<Waker>>,
}

impl SendQueue {
    pub fn new(connection: Arc<AtomicUsize>) -> Self {
        SendQueue {
            queued: AtomicUsize::new(0),
            connection,
            waker: Mutex::new(None),
        }
    }

    fn may_send(&self) -> bool {
        let own = self.queued.load(Ordering::Acquire);
        own == 0 || (own < STREAM_QUEUE && self.connection.load(Ordering::Acquire) < CONNECTION_QUEUE)
    }

    fn added(&self, len: usize) {
        self.queued.fetch_add(len, Ordering::AcqRel);
    }

    /// The connection took `len` bytes for writing (it keeps the connection's total itself).
    pub fn taken(&self, len: usize) {
        self.queued.fetch_sub(len, Ordering::AcqRel);
        let waker = self.waker.lock().map(|mut w| w.take()).unwrap_or(None);
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.may_send() {
            return Poll::Ready(());
        }
        if let Ok(mut w) = self.waker.lock() {
            *w = Some(cx.waker().clone());
        }
        if self.may_send() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Serves one request — on the fast path (`direct`) when it can, else through the pipeline —
/// and passes the response to the connection.
pub async fn run(
    id: u32,
    request: RequestBuilder,
    body: Inbound,
    info: Arc<ConnInfo>,
    rt: Arc<Runtime>,
    events: UnboundedSender<Event>,
    queue: Arc<SendQueue>,
) {
    let mut guard = Unfinished {
        id,
        events: &events,
        done: false,
    };
    let is_head = request.method_bytes() == b"HEAD";
    if matches!(body, Inbound::Empty) {
        let snap = rt.snapshot();
        if let Some((route, up)) = direct::plan(&request, &info, &snap) {
            // Boxed: the exchange's state is large, and the task's future is copied when spawned.
            Box::pin(direct::run(id, request, route, up, &info, &rt, &events, &queue)).await;
            guard.done = true;
            return;
        }
    }
    let resp = match request.finish() {
        Ok(parts) => Box::pin(pipeline::handle_parts(parts, body, &info, &rt)).await,
        Err(_) => ProxyError::BadRequest("invalid request target").response(),
    };
    Box::pin(respond(id, resp, is_head, &events, &queue)).await;
    guard.done = true;
}

/// Resets the stream if its task ends without finishing it (a panic): the stream must not
/// stay open, holding its slot, for the rest of the connection.
struct Unfinished<'a> {
    id: u32,
    events: &'a UnboundedSender<Event>,
    done: bool,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if !self.done && std::thread::panicking() {
            let _ = self.events.send(Event::Reset {
                id: self.id,
                reason: Reason::INTERNAL_ERROR,
            });
        }
    }
}

/// Sends a response from the pipeline: its head, then its body. Returns whether the body was
/// sent whole, and its length.
pub async fn respond(
    id: u32,
    resp: Response<ClientBody>,
    is_head: bool,
    events: &UnboundedSender<Event>,
    queue: &SendQueue,
) -> (bool, u64) {
    let (head, mut body) = resp.into_parts();
    let mut block = Vec::with_capacity(128 + head.headers.len() * 32);
    hpack::encode_status(&mut block, head.status.as_u16());
    encode_fields(&mut block, &head.headers);
    let bodiless =
        is_head || head.status == http::StatusCode::NO_CONTENT || head.status == http::StatusCode::NOT_MODIFIED;
    if !bodiless && !head.headers.contains_key(header::CONTENT_LENGTH) {
        // A body of known length (a cache hit, a fixed response) says so, as over HTTP/1.1.
        if let Some(len) = body.size_hint().exact() {
            hpack::encode_field(&mut block, b"content-length", len.to_string().as_bytes(), false);
        }
    }
    let end = bodiless || body.is_end_stream();
    if events.send(Event::Head { id, block, end }).is_err() {
        return (false, 0);
    }
    if end {
        // Read to its end anyway (a HEAD answer has no body to send, but its hooks — the
        // backend connection's return to the pool, the access log — must see it complete).
        while let Some(Ok(_)) = body.frame().await {}
        return (true, 0);
    }
    send_body(id, &mut body, events, queue, None).await
}

/// Passes a body to the connection as it is read, no faster than the connection writes it.
/// `read_timeout` bounds each wait for the body's next piece (a backend that stalls
/// mid-body). Returns whether it was sent whole, and how many bytes were.
pub async fn send_body<B>(
    id: u32,
    body: &mut B,
    events: &UnboundedSender<Event>,
    queue: &SendQueue,
    read_timeout: Option<std::time::Duration>,
) -> (bool, u64)
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    let mut bytes = 0u64;
    loop {
        poll_fn(|cx| queue.poll_ready(cx)).await;
        let next = match read_timeout {
            None => body.frame().await,
            Some(limit) => match tokio::time::timeout(limit, body.frame()).await {
                Ok(next) => next,
                Err(_) => Some(Err("backend stopped sending the body".into())),
            },
        };
        let event = match next {
            None => Event::Data {
                id,
                data: Bytes::new(),
                end: true,
            },
            Some(Err(e)) => {
                tracing::debug!(stream = id, error = %e, "response body failed");
                let _ = events.send(Event::Reset {
                    id,
                    reason: Reason::INTERNAL_ERROR,
                });
                return (false, bytes);
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let end = body.is_end_stream();
                    if data.is_empty() && !end {
                        continue;
                    }
                    bytes += data.len() as u64;
                    queue.added(data.len());
                    Event::Data { id, data, end }
                }
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => {
                        let mut block = Vec::new();
                        encode_fields(&mut block, &trailers);
                        Event::Trailers { id, block }
                    }
                    Err(_) => continue,
                },
            },
        };
        let last = !matches!(event, Event::Data { end: false, .. });
        if events.send(event).is_err() {
            return (false, bytes);
        }
        if last {
            return (true, bytes);
        }
    }
}

/// Appends response fields, leaving out those HTTP/2 forbids (§8.2.2).
fn encode_fields(block: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        if name == header::CONNECTION
            || name == header::TE
            || name == header::TRANSFER_ENCODING
            || name == header::UPGRADE
            || name.as_str() == "keep-alive"
            || name.as_str() == "proxy-connection"
        {
            continue;
        }
        hpack::encode_field(block, name.as_str().as_bytes(), value.as_bytes(), value.is_sensitive());
    }
}

/// What the connection passes to a request body.
pub enum Chunk {
    Data(Bytes),
    Trailers(HeaderMap),
    /// The stream was reset or broke a rule; the body fails.
    Failed(&'static str),
}

#[derive(Debug, thiserror::Error)]
#[error("HTTP/2 request body: {0}")]
pub struct BodyError(&'static str);

/// A request body arriving in DATA frames. Taking a chunk tells the connection, which opens
/// the client's flow-control window again.
pub struct RequestBody {
    id: u32,
    chunks: UnboundedReceiver<Chunk>,
    events: UnboundedSender<Event>,
    /// What Content-Length says is still to come.
    remaining: Option<u64>,
    done: bool,
}

impl RequestBody {
    pub fn new(
        id: u32,
        chunks: UnboundedReceiver<Chunk>,
        events: UnboundedSender<Event>,
        content_length: Option<u64>,
    ) -> Self {
        RequestBody {
            id,
            chunks,
            events,
            remaining: content_length,
            done: false,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.chunks.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            // The sender is dropped at END_STREAM.
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Chunk::Data(data))) => {
                if let Some(r) = &mut self.remaining {
                    *r = r.saturating_sub(data.len() as u64);
                }
                let _ = self.events.send(Event::Consumed {
                    id: self.id,
                    len: data.len(),
                });
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Some(Chunk::Trailers(t))) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Poll::Ready(Some(Chunk::Failed(why))) => {
                self.done = true;
                Poll::Ready(Some(Err(Box::new(BodyError(why)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
