//! One HTTP/2 connection on frontdesk's own codec. The connection's task reads and checks
//! frames (`recv`), decodes header blocks, keeps both directions' flow control, and writes
//! every frame that is ready in one write (`send`); each request runs in a task of its own
//! (`stream::run`), which talks to the connection through events.

use super::frame::{self, setting, Reason, DEFAULT_MAX_FRAME};
use super::hpack::Decoder;
use super::output::Output;
use super::stream::{Chunk, Event, SendQueue};
use crate::runtime::Runtime;
use crate::server::conn::ConnInfo;
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::time::Instant;

/// The receive window each stream starts with (SETTINGS_INITIAL_WINDOW_SIZE).
pub(super) const STREAM_WINDOW: u32 = 256 * 1024;
/// The connection's receive window.
pub(super) const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Output waiting to be written above which no more DATA is queued and no more input read.
pub(super) const WRITE_HIGH: usize = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;
/// Rounds of reading, handling and writing in one poll before other tasks get a turn.
const ROUNDS_PER_POLL: usize = 32;
/// A connection with streams open and nothing read or written for this long is sent a PING;
/// without an answer in `PING_TIMEOUT` it is closed (a peer that vanished).
const KEEPALIVE: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(20);
const PING_DATA: [u8; 8] = *b"frontdsk";
/// Stream ids remembered as reset by us.
const RESET_MEMORY: usize = 64;
/// How often the connection looks at its timers.
const TICK: Duration = Duration::from_secs(1);

/// Stream ids are chosen by the client, but a connection holds at most
/// `h2_max_concurrent_streams` of them, so a cheap multiplicative hash is enough (SipHash was 3%
/// of the instructions per request).
#[derive(Default, Clone, Copy)]
pub(super) struct StreamIds;

impl std::hash::BuildHasher for StreamIds {
    type Hasher = StreamIdHasher;

    fn build_hasher(&self) -> StreamIdHasher {
        StreamIdHasher(0)
    }
}

pub(super) struct StreamIdHasher(u64);

impl std::hash::Hasher for StreamIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub(super) struct Stream {
    /// What this stream may still send (the client's window); may go negative when the client
    /// lowers SETTINGS_INITIAL_WINDOW_SIZE.
    pub send_window: i64,
    pub queue: VecDeque<Bytes>,
    /// Bytes in `queue`, counted in the connection's total until written or dropped.
    pub queued: usize,
    /// END_STREAM goes out once the queue is written.
    pub end_queued: bool,
    pub trailers: Option<Vec<u8>>,
    /// In the connection's `pending` list.
    pub in_pending: bool,
    pub send_queue: Arc<SendQueue>,
    /// The request body's channel, while the client may still send DATA.
    pub body: Option<UnboundedSender<Chunk>>,
    /// What the client may still send on this stream.
    pub recv_window: i64,
    /// Body bytes handed to the pipeline and not yet read by it.
    pub buffered: usize,
    /// Body bytes read (or dropped) and not yet given back to the stream's window.
    pub consumed: u32,
    pub content_length: Option<u64>,
    pub received: u64,
    /// The final response head went out.
    pub responded: bool,
    pub task: tokio::task::AbortHandle,
}

pub struct Connection<T> {
    pub(super) io: T,
    pub(super) info: Arc<ConnInfo>,
    pub(super) rt: Arc<Runtime>,
    pub(super) rbuf: BytesMut,
    pub(super) out: Output,
    pub(super) preface_done: bool,
    pub(super) settings_seen: bool,
    /// Bytes in `rbuf` not yet looked at (those read before the connection came here).
    pub(super) unparsed: bool,
    pub(super) decoder: Decoder,
    pub(super) streams: HashMap<u32, Stream, StreamIds>,
    /// Streams with queued DATA, in the order they are served.
    pub(super) pending: VecDeque<u32>,
    /// The highest stream id the client opened.
    pub(super) last_stream: u32,
    /// Streams we reset (or ended while the client was still sending): frames for them may
    /// still be in flight and are ignored (§5.1), not taken as errors.
    pub(super) reset_by_us: VecDeque<u32>,
    /// A header block waiting for its CONTINUATION frames: stream, END_STREAM, bytes.
    pub(super) block: Option<(u32, bool, Vec<u8>)>,
    pub(super) peer_initial_window: i64,
    pub(super) peer_max_frame: usize,
    pub(super) send_window: i64,
    /// Request body bytes read (or dropped) and not yet given back to the connection window.
    pub(super) recv_unacked: u32,
    pub(super) recv_window: i64,
    pub(super) events_tx: UnboundedSender<Event>,
    events_rx: UnboundedReceiver<Event>,
    /// Response body bytes queued on all streams (their tasks read it to pace themselves).
    pub(super) connection_queued: Arc<AtomicUsize>,
    /// GOAWAY was sent: no new streams, close once the open ones are done.
    pub(super) going_away: bool,
    /// Close as soon as the output is written.
    pub(super) closing: bool,
    /// Streams reset early (by the client before their answer, or by us for an error), as a
    /// leaky bucket: a reset flood ends the connection (rapid reset, "MadeYouReset").
    pub(super) resets: f64,
    resets_at: Instant,
    /// Last byte read or written.
    pub(super) last_active: Instant,
    /// Last time output was pending and could not be written: for a client that stops reading.
    last_written: Instant,
    ping_sent: Option<Instant>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Connection<T> {
    /// `read` holds bytes already read from `io` (the preface, when the HTTP/1.1 side saw it).
    pub fn new(io: T, read: BytesMut, info: Arc<ConnInfo>, rt: Arc<Runtime>) -> Self {
        let (events_tx, events_rx) = unbounded_channel();
        let limits = &info.listener.limits;
        let mut out = Output::default();
        frame::write_settings(
            out.buf(),
            &[
                (setting::MAX_CONCURRENT_STREAMS, limits.h2_max_concurrent_streams),
                (setting::INITIAL_WINDOW_SIZE, STREAM_WINDOW),
                (setting::MAX_HEADER_LIST_SIZE, limits.max_header_bytes as u32),
                (setting::ENABLE_PUSH, 0),
            ],
        );
        frame::write_window_update(out.buf(), 0, CONNECTION_WINDOW - 65_535);
        let now = Instant::now();
        Connection {
            io,
            info,
            rt,
            unparsed: !read.is_empty(),
            rbuf: read,
            out,
            preface_done: false,
            settings_seen: false,
            decoder: Decoder::default(),
            streams: HashMap::default(),
            pending: VecDeque::new(),
            last_stream: 0,
            reset_by_us: VecDeque::new(),
            block: None,
            peer_initial_window: 65_535,
            peer_max_frame: DEFAULT_MAX_FRAME,
            send_window: 65_535,
            recv_unacked: 0,
            recv_window: i64::from(CONNECTION_WINDOW),
            events_tx,
            events_rx,
            connection_queued: Arc::new(AtomicUsize::new(0)),
            going_away: false,
            closing: false,
            resets: 0.0,
            resets_at: now,
            last_active: now,
            last_written: now,
            ping_sent: None,
        }
    }

    /// Stops taking new streams; the connection closes when the open ones are done.
    pub fn go_away(&mut self, reason: Reason) {
        if !self.going_away {
            self.going_away = true;
            frame::write_goaway(self.out.buf(), self.last_stream, reason);
        }
    }

    /// Ends the connection with `reason` (a GOAWAY carrying it goes out first, even after a
    /// graceful one).
    pub(super) fn connection_error(&mut self, reason: Reason, why: &str) {
        tracing::debug!(peer = %self.info.peer, ?reason, why, "HTTP/2 connection error");
        frame::write_goaway(self.out.buf(), self.last_stream, reason);
        self.going_away = true;
        self.closing = true;
    }

    /// Counts an early reset; `false` when the connection must end for too many.
    pub(super) fn count_reset(&mut self) -> bool {
        let capacity = self.info.listener.limits.h2_max_pending_resets.max(1) as f64;
        let now = Instant::now();
        // Drains at `capacity` per second: short bursts (a page navigated away from) pass,
        // a sustained flood does not.
        let drained = now.duration_since(self.resets_at).as_secs_f64() * capacity;
        self.resets = (self.resets - drained).max(0.0) + 1.0;
        self.resets_at = now;
        self.resets <= capacity
    }

    /// Timers, looked at every `TICK`: the idle timeout, a client that stopped reading, a peer
    /// that stopped answering. `false` when the connection must be dropped now.
    fn on_tick(&mut self, now: Instant) -> bool {
        let idle_timeout = self.info.listener.limits.idle_timeout;
        if !self.out.is_empty() && now.duration_since(self.last_written) >= idle_timeout {
            tracing::debug!(peer = %self.info.peer, "HTTP/2 client stopped reading; closing");
            return false;
        }
        let quiet = now.duration_since(self.last_active);
        if self.streams.is_empty() {
            if quiet >= idle_timeout {
                // An unfinished header block does not keep the connection either.
                self.go_away(Reason::NO_ERROR);
                self.closing = true;
            }
            return true;
        }
        match self.ping_sent {
            Some(sent) if now.duration_since(sent) >= PING_TIMEOUT => {
                tracing::debug!(peer = %self.info.peer, "HTTP/2 peer did not answer PING; closing");
                return false;
            }
            None if quiet >= KEEPALIVE => {
                frame::write_ping(self.out.buf(), &PING_DATA);
                self.ping_sent = Some(now);
            }
            _ => {}
        }
        true
    }

    pub(super) fn note_reset_by_us(&mut self, id: u32) {
        if self.reset_by_us.len() >= RESET_MEMORY {
            self.reset_by_us.pop_front();
        }
        self.reset_by_us.push_back(id);
    }

    pub(super) fn was_reset_by_us(&self, id: u32) -> bool {
        self.reset_by_us.contains(&id)
    }

    pub(super) fn ping_answered(&mut self, data: &[u8; 8]) {
        if data == &PING_DATA {
            self.ping_sent = None;
        }
    }

    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..ROUNDS_PER_POLL {
            let mut progress = false;
            if !self.closing && self.out.len() < WRITE_HIGH {
                let fresh = if std::mem::take(&mut self.unparsed) {
                    true
                } else {
                    match self.poll_read(cx) {
                        // The client is gone: nothing more can be sent either.
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
                        Poll::Ready(Ok(_)) => true,
                        Poll::Pending => false,
                    }
                };
                if fresh {
                    progress = true;
                    self.last_active = Instant::now();
                    self.on_input();
                }
            }
            while let Poll::Ready(Some(event)) = self.events_rx.poll_recv(cx) {
                self.on_event(event);
                progress = true;
            }
            self.fill_data();
            match self.poll_flush(cx) {
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(wrote)) => progress |= wrote,
                Poll::Pending => {}
            }
            let idle = self.streams.is_empty() && self.block.is_none();
            if self.out.is_empty() && (self.closing || (self.going_away && idle)) {
                let _ = Pin::new(&mut self.io).poll_shutdown(cx);
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
        }
        let spare = self.rbuf.spare_capacity_mut();
        let mut buf = ReadBuf::uninit(spare);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
        let n = buf.filled().len();
        // SAFETY: `poll_read` initialised the first `n` bytes of the spare capacity.
        unsafe { self.rbuf.set_len(self.rbuf.len() + n) };
        Poll::Ready(Ok(n))
    }

    /// Writes what is queued; `true` when anything was written.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<bool>> {
        let result = self.out.poll_write(&mut self.io, cx);
        if matches!(result, Poll::Ready(Ok(true))) || self.out.is_empty() {
            let now = Instant::now();
            self.last_written = now;
            if matches!(result, Poll::Ready(Ok(true))) {
                self.last_active = now;
                ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            }
        }
        result
    }
}

impl<T> Drop for Connection<T> {
    fn drop(&mut self) {
        for (_, s) in self.streams.drain() {
            s.task.abort();
        }
    }
}

/// Serves one HTTP/2 connection until it closes, goes idle, or `drain` fires.
pub async fn serve<T>(io: T, read: BytesMut, info: Arc<ConnInfo>, rt: Arc<Runtime>, mut drain: watch::Receiver<bool>)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let tick = TICK
        .min(info.listener.limits.idle_timeout / 2)
        .max(Duration::from_millis(10));
    let mut conn = Connection::new(io, read, info, rt);
    let mut draining = *drain.borrow();
    if draining {
        conn.go_away(Reason::NO_ERROR);
    }
    let mut timer = tokio::time::interval(tick);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = poll_fn(|cx| conn.poll(cx)) => return,
            _ = drain.changed(), if !draining => {
                draining = true;
                conn.go_away(Reason::NO_ERROR);
            }
            now = timer.tick() => {
                if !conn.on_tick(now) {
                    return;
                }
            }
        }
    }
}
