//! Body types on both sides of the proxy. Bodies stream frame by frame; nothing here buffers a
//! whole body.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client sent more body bytes than the listener allows.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

/// A request body as the client connection delivers it.
pub enum ClientRequest {
    Hyper(Incoming),
    Http2(crate::server::http2::stream::RequestBody),
}

impl Body for ClientRequest {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ClientRequest::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(|e| Box::new(e) as BoxError),
            ClientRequest::Http2(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientRequest::Hyper(b) => b.is_end_stream(),
            ClientRequest::Http2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientRequest::Hyper(b) => b.size_hint(),
            ClientRequest::Http2(b) => b.size_hint(),
        }
    }
}

pin_project! {
    /// A request body on its way to a backend.
    #[project = RequestBodyProj]
    pub enum RequestBody {
        Empty,
        Full { data: Option<Bytes> },
        Streaming { prefix: Option<Bytes>, #[pin] inner: ClientRequest, limit: u64, seen: u64 },
    }
}

impl RequestBody {
    pub fn streaming(inner: ClientRequest, limit: u64) -> Self {
        RequestBody::Streaming {
            prefix: None,
            inner,
            limit,
            seen: 0,
        }
    }

    /// `prefix` was already read from `inner`; it is sent first.
    pub fn prefixed(prefix: Bytes, inner: ClientRequest, limit: u64) -> Self {
        let seen = prefix.len() as u64;
        RequestBody::Streaming {
            prefix: Some(prefix),
            inner,
            limit,
            seen,
        }
    }

    pub fn full(data: Bytes) -> Self {
        if data.is_empty() {
            RequestBody::Empty
        } else {
            RequestBody::Full { data: Some(data) }
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            RequestBodyProj::Empty => Poll::Ready(None),
            RequestBodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            RequestBodyProj::Streaming {
                prefix,
                inner,
                limit,
                seen,
            } => {
                if let Some(p) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(p))));
                }
                match ready!(inner.poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        if let Some(d) = frame.data_ref() {
                            *seen += d.len() as u64;
                            if *seen > *limit {
                                return Poll::Ready(Some(Err(Box::new(BodyTooLarge { limit: *limit }))));
                            }
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Some(Err(e)) => Poll::Ready(Some(Err(e))),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Full { data } => data.is_none(),
            RequestBody::Streaming { prefix, inner, .. } => prefix.is_none() && inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Full { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            RequestBody::Streaming {
                prefix: None, inner, ..
            } => inner.size_hint(),
            RequestBody::Streaming { .. } => SizeHint::default(),
        }
    }
}

/// Something to run when a response body has been sent completely (`complete = true`) or was
/// abandoned (`false`): returning the upstream connection to its pool, writing the access log.
pub trait OnBodyEnd: Send {
    fn finish(&mut self, complete: bool, bytes: u64);
}

/// A response body on its way to the client. Every variant is `Unpin` (hyper's `Incoming` is),
/// so it needs no pin projection.
pub enum ResponseBody {
    Empty,
    Full {
        data: Option<Bytes>,
    },
    Upstream {
        inner: crate::upstream::UpstreamBody,
    },
    /// `remaining` bytes of a file from `offset`, read on the worker thread (see `files`).
    #[cfg(feature = "acceleration")]
    File {
        file: Box<std::fs::File>,
        offset: u64,
        remaining: u64,
    },
    /// A body encoded (gzip, br, zstd) as it streams.
    #[cfg(feature = "acceleration")]
    Encoded {
        inner: Box<ResponseBody>,
        encoder: Box<crate::compress::encoder::Encoder>,
    },
    /// An upstream body copied into the cache as it streams to the client.
    #[cfg(feature = "acceleration")]
    Filling {
        inner: Box<ResponseBody>,
        fill: Option<Box<crate::cache::fill::Fill>>,
    },
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ResponseBody::Empty => Poll::Ready(None),
            ResponseBody::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ResponseBody::Upstream { inner } => Pin::new(inner).poll_frame(cx),
            #[cfg(feature = "acceleration")]
            ResponseBody::File {
                file,
                offset,
                remaining,
            } => Poll::Ready(read_file(file, offset, remaining)),
            #[cfg(feature = "acceleration")]
            ResponseBody::Encoded { inner, encoder } => poll_encoded(Pin::new(inner), encoder, cx),
            #[cfg(feature = "acceleration")]
            ResponseBody::Filling { inner, fill } => poll_filling(inner, fill, cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Empty => true,
            ResponseBody::Full { data } => data.is_none(),
            ResponseBody::Upstream { inner } => inner.is_end_stream(),
            #[cfg(feature = "acceleration")]
            ResponseBody::Encoded { encoder, .. } => encoder.is_done(),
            #[cfg(feature = "acceleration")]
            ResponseBody::File { remaining, .. } => *remaining == 0,
            // Polled to the end so the fill sees it finish.
            #[cfg(feature = "acceleration")]
            ResponseBody::Filling { inner, fill } => fill.is_none() && inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Empty => SizeHint::with_exact(0),
            ResponseBody::Full { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            ResponseBody::Upstream { inner } => inner.size_hint(),
            #[cfg(feature = "acceleration")]
            ResponseBody::Filling { inner, .. } => inner.size_hint(),
            #[cfg(feature = "acceleration")]
            ResponseBody::Encoded { .. } => SizeHint::default(),
            #[cfg(feature = "acceleration")]
            ResponseBody::File { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}

/// Passes the inner body on and copies it into the cache entry being filled.
#[cfg(feature = "acceleration")]
fn poll_filling(
    inner: &mut Box<ResponseBody>,
    fill: &mut Option<Box<crate::cache::fill::Fill>>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    let mut inner = Pin::new(&mut **inner);
    let polled = ready!(inner.as_mut().poll_frame(cx));
    match &polled {
        Some(Ok(frame)) => {
            if let (Some(data), Some(f)) = (frame.data_ref(), fill.as_mut()) {
                if !f.data(data) {
                    *fill = None;
                }
            }
            // hyper stops polling a body of known length after its last byte, so a
            // body that is complete now must be stored now.
            if inner.is_end_stream() {
                if let Some(f) = fill.take() {
                    f.finish();
                }
            }
        }
        // A failed body is never stored.
        Some(Err(_)) => *fill = None,
        None => {
            if let Some(f) = fill.take() {
                f.finish();
            }
        }
    }
    Poll::Ready(polled)
}

/// Reads the next piece of a file body. A read from the page cache takes microseconds; one that
/// goes to the disk blocks the worker, as it does nginx's without `aio`.
#[cfg(feature = "acceleration")]
fn read_file(file: &std::fs::File, offset: &mut u64, remaining: &mut u64) -> Option<Result<Frame<Bytes>, BoxError>> {
    use std::os::unix::fs::FileExt;
    const CHUNK: u64 = 64 * 1024;
    if *remaining == 0 {
        return None;
    }
    let mut buf = vec![0u8; (*remaining).min(CHUNK) as usize];
    let n = loop {
        match file.read_at(&mut buf, *offset) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Some(Err(Box::new(e))),
        }
    };
    if n == 0 {
        // The file shrank while being sent: the promised length cannot be kept.
        return Some(Err("file ended before its announced length".into()));
    }
    *offset += n as u64;
    *remaining -= n as u64;
    buf.truncate(n);
    Some(Ok(Frame::data(Bytes::from(buf))))
}

#[cfg(feature = "acceleration")]
/// Feeds the inner body through the encoder. When the inner body has nothing more for now, what
/// was encoded so far is flushed out, so a slow origin's bytes still reach the client promptly.
fn poll_encoded(
    mut inner: Pin<&mut Box<ResponseBody>>,
    encoder: &mut crate::compress::encoder::Encoder,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    loop {
        if encoder.is_done() {
            return Poll::Ready(None);
        }
        let out = match inner.as_mut().poll_frame(cx) {
            Poll::Pending => match encoder.flush() {
                Ok(out) if !out.is_empty() => out,
                Ok(_) => return Poll::Pending,
                Err(e) => return Poll::Ready(Some(Err(Box::new(e)))),
            },
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => match encoder.write(&data) {
                    Ok(out) => out,
                    Err(e) => return Poll::Ready(Some(Err(Box::new(e)))),
                },
                // Trailers are dropped; the compressible types (text, JSON, XML) do not use them.
                Err(_) => continue,
            },
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => match encoder.finish() {
                Ok(out) => out,
                Err(e) => return Poll::Ready(Some(Err(Box::new(e)))),
            },
        };
        if !out.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(out))));
        }
    }
}

pin_project! {
    /// The body hyper sends to the client: counts bytes and runs the end-of-body hooks exactly once.
    pub struct ClientBody {
        #[pin]
        inner: ResponseBody,
        bytes: u64,
        hooks: Vec<Box<dyn OnBodyEnd>>,
    }

    impl PinnedDrop for ClientBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Bodies hyper never polls (empty ones, HEAD answers) are complete when dropped.
            let complete = this.inner.is_end_stream();
            let bytes = *this.bytes;
            for mut h in this.hooks.drain(..) {
                h.finish(complete, bytes);
            }
        }
    }
}

impl ClientBody {
    pub fn new(inner: ResponseBody) -> Self {
        ClientBody {
            inner,
            bytes: 0,
            hooks: Vec::new(),
        }
    }

    pub fn empty() -> Self {
        Self::new(ResponseBody::Empty)
    }

    pub fn full(data: impl Into<Bytes>) -> Self {
        Self::new(ResponseBody::Full {
            data: Some(data.into()),
        })
    }

    pub fn on_end(&mut self, hook: Box<dyn OnBodyEnd>) {
        self.hooks.push(hook);
    }

    /// The file this body sends, when it is a plain file: (descriptor, offset, length).
    #[cfg(feature = "acceleration")]
    pub fn file(&self) -> Option<(std::os::fd::RawFd, u64, u64)> {
        match &self.inner {
            ResponseBody::File {
                file,
                offset,
                remaining,
            } => Some((std::os::fd::AsRawFd::as_raw_fd(&**file), *offset, *remaining)),
            _ => None,
        }
    }

    /// The file went out by other means (sendfile), `sent` bytes of it: the body ends here.
    #[cfg(feature = "acceleration")]
    pub fn file_sent(mut self: Pin<&mut Self>, complete: bool, sent: u64) {
        *self.as_mut().project().bytes = sent;
        self.finish(complete);
    }

    fn finish(self: Pin<&mut Self>, complete: bool) {
        let this = self.project();
        let bytes = *this.bytes;
        for mut h in this.hooks.drain(..) {
            h.finish(complete, bytes);
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.as_mut().project();
        let polled = ready!(this.inner.poll_frame(cx));
        match &polled {
            Some(Ok(frame)) => {
                if let Some(d) = frame.data_ref() {
                    *this.bytes += d.len() as u64;
                }
                // hyper may stop polling once is_end_stream is true, so finish as soon as we know.
                if self.inner.is_end_stream() {
                    self.as_mut().finish(true);
                }
            }
            Some(Err(_)) => self.as_mut().finish(false),
            None => self.as_mut().finish(true),
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
