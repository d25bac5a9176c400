//! Paces HTTP/2 response bodies by what the connection has actually written.
//!
//! hyper hands each stream's body chunks to the h2 crate, which keeps them until the socket
//! takes them. With thousands of streams reading their backends as fast as the backends answer,
//! those chunks were most of the proxy's memory under load (docs/performance.md, "Memory"). So a
//! paced body reads its next chunk only while its connection holds fewer than
//! [`CONNECTION_BUDGET`] bytes not yet written; the backend's socket holds the rest. A chunk
//! counts as held until the h2 crate drops it, which it does once the bytes are in the socket
//! (or the stream is reset), so the count needs nothing from the h2 crate's API.
//!
//! A stream with nothing held may always read one chunk. Without that rule, streams stalled by
//! their own flow-control window (a client not reading them) could hold the whole budget and
//! starve the connection's other streams; with it, a stream waits only on its own bytes.

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};

/// Unwritten response bytes a connection may hold before its streams wait (beyond each
/// stream's one chunk). 32 KiB measured as low as 64 KiB in requests per CPU-second and lower in
/// peak memory (docs/performance.md, "Memory").
pub const CONNECTION_BUDGET: usize = 32 * 1024;

/// Chunks smaller than this pass unpaced: counting them would cost more than they hold.
const MIN_PACED: usize = 4 * 1024;

/// One HTTP/2 connection's count of held bytes and the streams waiting for it to fall.
#[derive(Default)]
pub struct SendBudget {
    held: AtomicUsize,
    waiting: Mutex<Vec<Arc<StreamShare>>>,
}

impl SendBudget {
    /// Bytes handed to the connection and not yet written.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    fn release(&self, len: usize) {
        let before = self.held.fetch_sub(len, Ordering::AcqRel);
        if before >= CONNECTION_BUDGET && before - len < CONNECTION_BUDGET {
            let waiting = std::mem::take(&mut *lock(&self.waiting));
            for stream in waiting {
                stream.queued.store(false, Ordering::Release);
                stream.wake();
            }
        }
    }
}

#[derive(Default)]
struct StreamShare {
    held: AtomicUsize,
    waker: Mutex<Option<Waker>>,
    queued: AtomicBool,
}

impl StreamShare {
    fn wake(&self) {
        if let Some(w) = lock(&self.waker).take() {
            w.wake();
        }
    }
}

/// A poisoned lock only means another stream panicked mid-update of a waker list; the list
/// itself is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A chunk on its way through the h2 crate; dropping it releases its bytes.
struct HeldChunk {
    data: Bytes,
    conn: Arc<SendBudget>,
    stream: Arc<StreamShare>,
}

impl AsRef<[u8]> for HeldChunk {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for HeldChunk {
    fn drop(&mut self) {
        let len = self.data.len();
        if self.stream.held.fetch_sub(len, Ordering::AcqRel) == len {
            self.stream.wake();
        }
        self.conn.release(len);
    }
}

struct Pacing {
    conn: Arc<SendBudget>,
    /// Made with the stream's first paced chunk.
    stream: Option<Arc<StreamShare>>,
}

impl Pacing {
    /// Whether the stream must wait before reading on; if so, it is woken when that changes.
    fn must_wait(&self, cx: &mut Context<'_>) -> bool {
        let Some(stream) = &self.stream else {
            return false;
        };
        let blocked = || stream.held.load(Ordering::Acquire) > 0 && self.conn.held() >= CONNECTION_BUDGET;
        if !blocked() {
            return false;
        }
        *lock(&stream.waker) = Some(cx.waker().clone());
        if !stream.queued.swap(true, Ordering::AcqRel) {
            lock(&self.conn.waiting).push(stream.clone());
        }
        // A release between the first check and the registration would have found no waker.
        blocked()
    }

    fn hold(&mut self, data: Bytes) -> Bytes {
        let len = data.len();
        let stream = self.stream.get_or_insert_with(Default::default).clone();
        stream.held.fetch_add(len, Ordering::AcqRel);
        self.conn.held.fetch_add(len, Ordering::AcqRel);
        Bytes::from_owner(HeldChunk {
            data,
            conn: self.conn.clone(),
            stream,
        })
    }
}

pin_project! {
    /// The service's answer with its body made [`Paced`].
    pub struct PacedResponse<F> {
        #[pin]
        inner: F,
        budget: Option<Arc<SendBudget>>,
    }
}

impl<F> PacedResponse<F> {
    /// `budget` is the connection's for an HTTP/2 request, `None` for HTTP/1.1.
    pub fn new(inner: F, budget: Option<Arc<SendBudget>>) -> Self {
        PacedResponse { inner, budget }
    }
}

impl<F, B, E> Future for PacedResponse<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<Paced<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = ready!(this.inner.poll(cx));
        let budget = this.budget.take();
        Poll::Ready(answer.map(|resp| resp.map(|body| Paced::new(body, budget))))
    }
}

pin_project! {
    /// A response body, paced by its HTTP/2 connection's budget or (for HTTP/1.1) passed as is.
    pub struct Paced<B> {
        #[pin]
        inner: B,
        pacing: Option<Pacing>,
    }
}

impl<B> Paced<B> {
    pub fn new(inner: B, budget: Option<Arc<SendBudget>>) -> Self {
        Paced {
            inner,
            pacing: budget.map(|conn| Pacing { conn, stream: None }),
        }
    }
}

impl<B: Body<Data = Bytes>> Body for Paced<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let Some(pacing) = this.pacing else {
            return this.inner.poll_frame(cx);
        };
        if pacing.must_wait(cx) {
            return Poll::Pending;
        }
        let polled = ready!(this.inner.poll_frame(cx));
        Poll::Ready(polled.map(|r| {
            r.map(|frame| match frame.into_data() {
                Ok(data) if data.len() >= MIN_PACED => Frame::data(pacing.hold(data)),
                Ok(data) => Frame::data(data),
                Err(other) => other,
            })
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    /// A body that yields the given chunk sizes, then ends.
    struct Chunks(VecDeque<usize>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|n| Ok(Frame::data(Bytes::from(vec![b'x'; n])))))
        }
    }

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll(body: &mut Paced<Chunks>, waker: &Arc<CountingWaker>) -> Poll<Option<Bytes>> {
        let waker = Waker::from(waker.clone());
        let mut cx = Context::from_waker(&waker);
        Pin::new(body)
            .poll_frame(&mut cx)
            .map(|f| f.map(|r| r.unwrap().into_data().unwrap()))
    }

    fn ready(p: Poll<Option<Bytes>>) -> Bytes {
        match p {
            Poll::Ready(Some(b)) => b,
            other => panic!("expected a chunk, got {other:?}"),
        }
    }

    #[test]
    fn a_stream_waits_while_the_connection_is_over_budget_and_wakes_when_it_drains() {
        let budget = Arc::new(SendBudget::default());
        let chunk = 16 * 1024;
        let mut a = Paced::new(Chunks(VecDeque::from(vec![chunk; 16])), Some(budget.clone()));
        let waker = Arc::new(CountingWaker::default());
        let held: Vec<Bytes> = (0..CONNECTION_BUDGET / chunk)
            .map(|_| ready(poll(&mut a, &waker)))
            .collect();
        assert_eq!(budget.held(), CONNECTION_BUDGET);
        assert!(
            poll(&mut a, &waker).is_pending(),
            "over budget with bytes of its own held"
        );
        drop(held);
        assert_eq!(budget.held(), 0);
        assert_eq!(
            waker.0.load(Ordering::SeqCst),
            1,
            "woken once when the bytes were written"
        );
        let next = ready(poll(&mut a, &waker));
        assert_eq!(next.len(), chunk);
        assert_eq!(budget.held(), chunk);
        drop(next);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_stream_with_nothing_held_is_never_held_back_by_others() {
        let budget = Arc::new(SendBudget::default());
        let waker = Arc::new(CountingWaker::default());
        // Streams stalled by their clients' windows hold more than the whole budget.
        let mut stalled: Vec<Paced<Chunks>> = (0..6)
            .map(|_| Paced::new(Chunks(VecDeque::from(vec![16 * 1024; 4])), Some(budget.clone())))
            .collect();
        let stuck: Vec<Bytes> = stalled.iter_mut().map(|s| ready(poll(s, &waker))).collect();
        assert!(budget.held() > CONNECTION_BUDGET);
        let mut other = Paced::new(Chunks(VecDeque::from(vec![8 * 1024; 3])), Some(budget.clone()));
        for _ in 0..3 {
            let c = ready(poll(&mut other, &waker));
            assert!(
                poll(&mut other, &waker).is_pending(),
                "waits on its own unwritten chunk"
            );
            drop(c);
        }
        assert!(matches!(poll(&mut other, &waker), Poll::Ready(None)));
        drop(stuck);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn small_chunks_and_http1_bodies_pass_unpaced() {
        let budget = Arc::new(SendBudget::default());
        let waker = Arc::new(CountingWaker::default());
        let mut small = Paced::new(Chunks(VecDeque::from(vec![100, 1000])), Some(budget.clone()));
        let a = ready(poll(&mut small, &waker));
        let b = ready(poll(&mut small, &waker));
        assert_eq!((a.len(), b.len(), budget.held()), (100, 1000, 0));
        let mut h1 = Paced::new(Chunks(VecDeque::from(vec![64 * 1024; 3])), None);
        let held: Vec<Bytes> = (0..3).map(|_| ready(poll(&mut h1, &waker))).collect();
        assert_eq!(held.len(), 3);
    }
}
