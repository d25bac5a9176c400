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
//! Bytes of streams whose client stopped reading them (their flow-control windows ran out) are
//! never written, and could hold the whole budget. A stream that waits with nothing of its own
//! in flight therefore watches the socket: when the connection has written nothing for
//! [`STALL`], what it holds is taken as stuck and the budget is raised above it; every byte
//! released afterwards lowers that allowance again, so a stall that clears (or a slow moment
//! taken for one) does not leave the connection unpaced. A stream waiting with bytes of its own
//! in flight needs no watch: its release wakes it, and if those bytes wait on its own window it
//! could not send more anyway. A body's first chunk, read together with the response head, is
//! in memory already and passes unpaced by the budget.

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Unwritten response bytes a connection may hold before its streams wait. Measured at 256
/// connections × 10 streams of 64 KiB bodies: 32 KiB cost a fifth of the requests per
/// CPU-second, 128 KiB a third more peak memory than 64 KiB (docs/performance.md, "Memory").
pub const CONNECTION_BUDGET: usize = 64 * 1024;

/// Chunks smaller than this pass unpaced: counting them would cost more than they hold.
const MIN_PACED: usize = 4 * 1024;

/// How long a connection may write nothing while a stream with nothing in flight waits, before
/// the bytes it holds are taken as stuck behind their streams' windows.
pub const STALL: Duration = Duration::from_millis(20);

/// One HTTP/2 connection's count of held bytes and the streams waiting for it to fall.
#[derive(Default)]
pub struct SendBudget {
    held: AtomicUsize,
    /// Held bytes judged stuck (see [`STALL`]); never more than `held`.
    stuck: AtomicUsize,
    /// Counts writes to the client socket, so a waiting stream can tell whether the connection
    /// is moving at all.
    writes: AtomicU64,
    waiting: Mutex<Vec<Arc<StreamShare>>>,
}

impl SendBudget {
    /// Bytes handed to the connection and not yet written.
    fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    fn limit(&self) -> usize {
        CONNECTION_BUDGET + self.stuck.load(Ordering::Acquire)
    }

    fn over_budget(&self) -> bool {
        self.held() >= self.limit()
    }

    fn release(&self, len: usize) {
        let before = self.held.fetch_sub(len, Ordering::AcqRel);
        let after = before - len;
        // Every written byte lowers the stuck allowance: bytes taken as stuck that turn out to
        // move give it back, and bytes that are stuck for good are declared again at the next
        // stall. What is stuck is never more than what is held.
        let _ = self.stuck.fetch_update(Ordering::AcqRel, Ordering::Acquire, |stuck| {
            Some(stuck.saturating_sub(len).min(after))
        });
        let limit = self.limit();
        if before >= limit && after < limit {
            self.wake_waiting();
        }
    }

    /// Called by the connection's I/O for every write to the client socket.
    pub fn note_write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes what is held now as stuck and lets the waiting streams re-check.
    fn declare_stuck(&self) {
        self.stuck.fetch_max(self.held(), Ordering::AcqRel);
        self.wake_waiting();
    }

    fn wake_waiting(&self) {
        for stream in lock(&self.waiting).drain(..) {
            stream.queued.store(false, Ordering::Release);
            stream.wake();
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
    /// Armed while the stream waits with nothing in flight; made the first time it does.
    stall: Option<StallWatch>,
}

struct StallWatch {
    sleep: Pin<Box<Sleep>>,
    /// The connection's write count when the watch was armed; `None` while disarmed.
    writes: Option<u64>,
}

/// Whether `conn` has written nothing for [`STALL`] while the stream waited; if not yet, the
/// stream is woken when that time is up.
fn stalled(conn: &SendBudget, watch: &mut Option<StallWatch>, cx: &mut Context<'_>) -> bool {
    let writes = conn.writes.load(Ordering::Acquire);
    let watch = watch.get_or_insert_with(|| StallWatch {
        sleep: Box::pin(tokio::time::sleep(STALL)),
        writes: Some(writes),
    });
    if watch.writes != Some(writes) {
        watch.sleep.as_mut().reset(Instant::now() + STALL);
        watch.writes = Some(writes);
    }
    watch.sleep.as_mut().poll(cx).is_ready()
}

impl Pacing {
    /// Whether the stream must wait before reading on; if so, it is woken when that changes.
    fn must_wait(&mut self, cx: &mut Context<'_>) -> bool {
        let wait = self.check(cx);
        if !wait {
            // The next wait watches for a fresh STALL, not one that began before this.
            if let Some(watch) = &mut self.stall {
                watch.writes = None;
            }
        }
        wait
    }

    fn check(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(stream) = &self.stream else {
            return false;
        };
        if !self.conn.over_budget() {
            return false;
        }
        *lock(&stream.waker) = Some(cx.waker().clone());
        if !stream.queued.swap(true, Ordering::AcqRel) {
            lock(&self.conn.waiting).push(stream.clone());
        }
        if stream.held.load(Ordering::Acquire) == 0 && stalled(&self.conn, &mut self.stall, cx) {
            self.conn.declare_stuck();
            return false;
        }
        // A release between the first check and the registration would have found no waker.
        self.conn.over_budget()
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

impl Drop for Pacing {
    /// The stream may still sit in its connection's waiting list until the next wake-up; its
    /// waker would keep the finished stream's task allocated until then.
    fn drop(&mut self) {
        if let Some(stream) = &self.stream {
            lock(&stream.waker).take();
        }
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
            pacing: budget.map(|conn| Pacing {
                conn,
                stream: None,
                stall: None,
            }),
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

    #[tokio::test]
    async fn a_stream_with_nothing_in_flight_gets_past_stuck_bytes() {
        use http_body_util::BodyExt;
        let budget = Arc::new(SendBudget::default());
        let waker = Arc::new(CountingWaker::default());
        // Streams stalled by their clients' windows hold more than the whole budget.
        let mut stalled: Vec<Paced<Chunks>> = (0..6)
            .map(|_| Paced::new(Chunks(VecDeque::from(vec![16 * 1024; 4])), Some(budget.clone())))
            .collect();
        let stuck: Vec<Bytes> = stalled.iter_mut().map(|s| ready(poll(s, &waker))).collect();
        let stuck_bytes = budget.held();
        assert!(stuck_bytes > CONNECTION_BUDGET);
        let mut other = Paced::new(Chunks(VecDeque::from(vec![8 * 1024; 3])), Some(budget.clone()));
        // The first chunk came with the response head; the second waits.
        drop(ready(poll(&mut other, &waker)));
        assert!(
            poll(&mut other, &waker).is_pending(),
            "over budget with nothing written"
        );
        let started = std::time::Instant::now();
        let second = tokio::time::timeout(Duration::from_secs(5), other.frame())
            .await
            .expect("let through once nothing was written for STALL")
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap();
        assert!(started.elapsed() >= STALL);
        assert_eq!(budget.stuck.load(Ordering::SeqCst), stuck_bytes);
        drop(second);
        assert_eq!(
            budget.stuck.load(Ordering::SeqCst),
            stuck_bytes - 8 * 1024,
            "written bytes give the allowance back"
        );
        // The budget now sits above the stuck bytes: no second wait.
        let third = ready(poll(&mut other, &waker));
        drop(third);
        assert!(matches!(poll(&mut other, &waker), Poll::Ready(None)));
        drop(stuck);
        assert_eq!(budget.held(), 0);
        assert_eq!(
            budget.stuck.load(Ordering::SeqCst),
            0,
            "stuck bytes that went are no longer counted"
        );
    }

    #[test]
    fn a_body_dropped_while_waiting_lets_go_of_its_waker() {
        let budget = Arc::new(SendBudget::default());
        let waker = Arc::new(CountingWaker::default());
        let mut body = Paced::new(Chunks(VecDeque::from(vec![16 * 1024; 8])), Some(budget.clone()));
        let held: Vec<Bytes> = (0..4).map(|_| ready(poll(&mut body, &waker))).collect();
        assert!(poll(&mut body, &waker).is_pending());
        assert_eq!(lock(&budget.waiting).len(), 1);
        assert_eq!(Arc::strong_count(&waker), 2, "registered while waiting");
        drop(body);
        assert_eq!(Arc::strong_count(&waker), 1, "the dropped stream keeps no waker");
        drop(held);
        assert_eq!(budget.held(), 0);
        assert_eq!(waker.0.load(Ordering::SeqCst), 0);
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
