//! One HTTP/2 connection on frontdesk's own codec. The connection's task reads and checks
//! frames, decodes header blocks, keeps both directions' flow control, and writes every frame
//! that is ready in one write; each request runs in a task of its own (`stream::run`), which
//! talks to the connection through events.

use super::frame::{self, setting, Frame, FrameError, Head, Reason, DEFAULT_MAX_FRAME, HEAD_LEN, MAX_WINDOW};
use super::hpack::Decoder;
use super::output::Output;
use super::request::{Refusal, RequestBuilder};
use super::stream::{self, Chunk, Event, RequestBody, SendQueue};
use crate::pipeline::Inbound;
use crate::runtime::Runtime;
use crate::server::conn::ConnInfo;
use bytes::{Buf, Bytes, BytesMut};
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
const STREAM_WINDOW: u32 = 256 * 1024;
/// The connection's receive window.
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Output waiting to be written above which no more DATA is queued and no more input read.
const WRITE_HIGH: usize = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;
/// Rounds of reading, handling and writing in one poll before other tasks get a turn.
const ROUNDS_PER_POLL: usize = 32;

struct Stream {
    /// What this stream may still send (the client's window); may go negative when the client
    /// lowers SETTINGS_INITIAL_WINDOW_SIZE.
    send_window: i64,
    queue: VecDeque<Bytes>,
    /// END_STREAM goes out once the queue is written.
    end_queued: bool,
    trailers: Option<Vec<u8>>,
    send_queue: Arc<SendQueue>,
    /// The request body's channel, while the client may still send DATA.
    body: Option<UnboundedSender<Chunk>>,
    /// What the client may still send on this stream.
    recv_window: i64,
    /// Body bytes handed to the pipeline and not yet read by it.
    buffered: usize,
    /// Body bytes read by the pipeline and not yet given back to the client's window.
    consumed: u32,
    content_length: Option<u64>,
    received: u64,
    /// The final response head went out.
    responded: bool,
    task: tokio::task::AbortHandle,
}

pub struct Connection<T> {
    io: T,
    info: Arc<ConnInfo>,
    rt: Arc<Runtime>,
    rbuf: BytesMut,
    out: Output,
    preface_done: bool,
    /// Bytes in `rbuf` not yet looked at (those read before the connection came here).
    unparsed: bool,
    decoder: Decoder,
    streams: HashMap<u32, Stream>,
    /// Streams with queued DATA, in the order they are served.
    pending: VecDeque<u32>,
    /// The highest stream id the client opened.
    last_stream: u32,
    /// A header block waiting for its CONTINUATION frames: stream, END_STREAM, bytes.
    block: Option<(u32, bool, Vec<u8>)>,
    peer_initial_window: i64,
    peer_max_frame: usize,
    send_window: i64,
    /// Request body bytes taken by the pipeline (or dropped) and not yet given back to the
    /// client's connection window.
    recv_unacked: u32,
    recv_window: i64,
    events_tx: UnboundedSender<Event>,
    events_rx: UnboundedReceiver<Event>,
    connection_queued: Arc<AtomicUsize>,
    /// GOAWAY was sent: no new streams, close once the open ones are done.
    going_away: bool,
    /// Close as soon as the output is written.
    closing: bool,
    /// Streams the client reset before their response: a rapid-reset flood ends the connection.
    early_resets: u32,
    last_active: Instant,
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
        Connection {
            io,
            info,
            rt,
            unparsed: !read.is_empty(),
            rbuf: read,
            out,
            preface_done: false,
            decoder: Decoder::default(),
            streams: HashMap::new(),
            pending: VecDeque::new(),
            last_stream: 0,
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
            early_resets: 0,
            last_active: Instant::now(),
        }
    }

    /// Stops taking new streams; the connection closes when the open ones are done.
    pub fn go_away(&mut self, reason: Reason) {
        if !self.going_away {
            self.going_away = true;
            frame::write_goaway(self.out.buf(), self.last_stream, reason);
        }
    }

    fn connection_error(&mut self, reason: Reason, why: &str) {
        tracing::debug!(peer = %self.info.peer, ?reason, why, "HTTP/2 connection error");
        self.go_away(reason);
        self.closing = true;
    }

    pub fn idle_for(&self) -> Option<Duration> {
        self.streams.is_empty().then(|| self.last_active.elapsed())
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
                    if let Err(e) = self.on_input() {
                        match e {
                            FrameError::Connection(reason, why) => self.connection_error(reason, why),
                            FrameError::Stream(id, reason, why) => self.reset(id, reason, why),
                        }
                    }
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
        let wrote = ready!(self.out.poll_write(&mut self.io, cx))?;
        if wrote {
            self.last_active = Instant::now();
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        }
        Poll::Ready(Ok(wrote))
    }

    fn on_input(&mut self) -> Result<(), FrameError> {
        if !self.preface_done {
            let n = self.rbuf.len().min(frame::PREFACE.len());
            if self.rbuf[..n] != frame::PREFACE[..n] {
                return Err(FrameError::Connection(Reason::PROTOCOL_ERROR, "no HTTP/2 preface"));
            }
            if n < frame::PREFACE.len() {
                return Ok(());
            }
            self.rbuf.advance(n);
            self.preface_done = true;
        }
        while self.rbuf.len() >= HEAD_LEN && !self.closing {
            let head = Head::parse(self.rbuf[..HEAD_LEN].try_into().expect("nine bytes"));
            if head.len > DEFAULT_MAX_FRAME {
                return Err(FrameError::Connection(
                    Reason::FRAME_SIZE_ERROR,
                    "frame larger than SETTINGS_MAX_FRAME_SIZE",
                ));
            }
            if self.rbuf.len() < HEAD_LEN + head.len {
                self.rbuf.reserve(HEAD_LEN + head.len - self.rbuf.len());
                break;
            }
            let mut bytes = self.rbuf.split_to(HEAD_LEN + head.len).freeze();
            bytes.advance(HEAD_LEN);
            match self.on_frame(&head, &bytes) {
                Err(FrameError::Stream(id, reason, why)) => self.reset(id, reason, why),
                other => other?,
            }
        }
        Ok(())
    }

    fn on_frame(&mut self, head: &Head, payload: &Bytes) -> Result<(), FrameError> {
        let frame = frame::parse(head, payload)?;
        if let Some((id, _, _)) = &self.block {
            // Nothing may come between a header block's frames (§6.10).
            if !matches!(frame, Frame::Continuation { stream, .. } if stream == *id) {
                return Err(FrameError::Connection(Reason::PROTOCOL_ERROR, "expected CONTINUATION"));
            }
        }
        match frame {
            Frame::Settings { ack: true, .. } | Frame::Priority { .. } | Frame::Unknown => Ok(()),
            Frame::Settings { ack: false, params } => self.on_settings(params),
            Frame::Ping { ack, data } => {
                if !ack {
                    frame::write_ping_ack(self.out.buf(), &data);
                }
                Ok(())
            }
            Frame::GoAway { .. } => {
                self.go_away(Reason::NO_ERROR);
                Ok(())
            }
            Frame::WindowUpdate { stream: 0, increment } => {
                self.send_window += i64::from(increment);
                if self.send_window > i64::from(MAX_WINDOW) {
                    return Err(FrameError::Connection(
                        Reason::FLOW_CONTROL_ERROR,
                        "connection window above 2^31-1",
                    ));
                }
                Ok(())
            }
            Frame::WindowUpdate { stream: id, increment } => {
                self.check_not_idle(id)?;
                if let Some(s) = self.streams.get_mut(&id) {
                    s.send_window += i64::from(increment);
                    if s.send_window > i64::from(MAX_WINDOW) {
                        return Err(FrameError::Stream(
                            id,
                            Reason::FLOW_CONTROL_ERROR,
                            "stream window above 2^31-1",
                        ));
                    }
                    if !s.queue.is_empty() || s.end_queued {
                        self.pending.push_back(id);
                    }
                }
                Ok(())
            }
            Frame::RstStream { stream: id, .. } => {
                self.check_not_idle(id)?;
                if let Some(s) = self.streams.remove(&id) {
                    let early = !s.responded;
                    self.forget(s);
                    if early {
                        self.early_resets += 1;
                        if self.early_resets > self.info.listener.limits.h2_max_pending_resets as u32 {
                            return Err(FrameError::Connection(
                                Reason::ENHANCE_YOUR_CALM,
                                "too many streams reset",
                            ));
                        }
                    }
                }
                Ok(())
            }
            Frame::Headers {
                stream: id,
                end_stream,
                end_headers,
                block,
                ..
            } => {
                if id % 2 == 0 {
                    return Err(FrameError::Connection(
                        Reason::PROTOCOL_ERROR,
                        "even stream id from a client",
                    ));
                }
                if end_headers {
                    self.on_header_block(id, end_stream, block)
                } else {
                    self.block = Some((id, end_stream, block.to_vec()));
                    Ok(())
                }
            }
            Frame::Continuation {
                stream: id,
                end_headers,
                block,
            } => {
                let Some((_, end_stream, mut buf)) = self.block.take() else {
                    return Err(FrameError::Connection(
                        Reason::PROTOCOL_ERROR,
                        "CONTINUATION without HEADERS",
                    ));
                };
                buf.extend_from_slice(block);
                // A block may not grow without end (CONTINUATION flood).
                if buf.len() > self.info.listener.limits.max_header_bytes.max(16 * 1024) * 2 {
                    return Err(FrameError::Connection(
                        Reason::ENHANCE_YOUR_CALM,
                        "header block too large",
                    ));
                }
                if end_headers {
                    self.on_header_block(id, end_stream, &buf)
                } else {
                    self.block = Some((id, end_stream, buf));
                    Ok(())
                }
            }
            Frame::Data {
                stream: id,
                end_stream,
                data,
                flow_len,
            } => {
                self.recv_window -= flow_len as i64;
                if self.recv_window < 0 {
                    return Err(FrameError::Connection(
                        Reason::FLOW_CONTROL_ERROR,
                        "DATA beyond the connection window",
                    ));
                }
                self.check_not_idle(id)?;
                let data = payload.slice_ref(data);
                self.on_data(id, end_stream, data, flow_len)
            }
        }
    }

    /// Frames other than HEADERS and PRIORITY on a stream the client never opened (§5.1).
    fn check_not_idle(&self, id: u32) -> Result<(), FrameError> {
        if id > self.last_stream {
            return Err(FrameError::Connection(
                Reason::PROTOCOL_ERROR,
                "frame on an idle stream",
            ));
        }
        Ok(())
    }

    fn on_settings(&mut self, params: &[u8]) -> Result<(), FrameError> {
        for p in frame::settings(params) {
            match p? {
                (setting::INITIAL_WINDOW_SIZE, value) => {
                    let delta = i64::from(value) - self.peer_initial_window;
                    self.peer_initial_window = i64::from(value);
                    for (id, s) in self.streams.iter_mut() {
                        s.send_window += delta;
                        if s.send_window > i64::from(MAX_WINDOW) {
                            return Err(FrameError::Connection(
                                Reason::FLOW_CONTROL_ERROR,
                                "stream window above 2^31-1",
                            ));
                        }
                        if delta > 0 && (!s.queue.is_empty() || s.end_queued) {
                            self.pending.push_back(*id);
                        }
                    }
                }
                (setting::MAX_FRAME_SIZE, value) => self.peer_max_frame = value as usize,
                _ => {}
            }
        }
        frame::write_settings_ack(self.out.buf());
        Ok(())
    }

    fn on_header_block(&mut self, id: u32, end_stream: bool, block: &[u8]) -> Result<(), FrameError> {
        let limits = &self.info.listener.limits;
        let max_streams = limits.h2_max_concurrent_streams as usize;
        let mut request = RequestBuilder::new(limits.max_header_bytes);
        // Decoded even when the stream is refused: the dynamic table must stay in step.
        self.decoder
            .decode(block, |name, value| request.field(name, value))
            .map_err(|_| FrameError::Connection(Reason::COMPRESSION_ERROR, "undecodable header block"))?;
        if id <= self.last_stream && !self.streams.contains_key(&id) {
            // Trailers in flight when the stream ended, or a reused id.
            return Err(FrameError::Stream(
                id,
                Reason::STREAM_CLOSED,
                "HEADERS on a closed stream",
            ));
        }
        if let Some(s) = self.streams.get_mut(&id) {
            // A second block on an open stream: trailers, which must end it.
            if !end_stream || s.body.is_none() {
                return Err(FrameError::Stream(
                    id,
                    Reason::PROTOCOL_ERROR,
                    "HEADERS in the middle of a stream",
                ));
            }
            let trailers = request.finish_trailers();
            if let Some(body) = s.body.take() {
                let _ = body.send(match trailers {
                    Ok(t) => Chunk::Trailers(t),
                    Err(_) => Chunk::Failed("malformed trailers"),
                });
            }
            return self.check_length(id);
        }
        self.last_stream = id;
        if self.going_away {
            frame::write_rst_stream(self.out.buf(), id, Reason::REFUSED_STREAM);
            return Ok(());
        }
        if self.streams.len() >= max_streams {
            frame::write_rst_stream(self.out.buf(), id, Reason::REFUSED_STREAM);
            return Ok(());
        }
        let content_length = request.content_length;
        match request.check() {
            Ok(()) => {}
            Err(Refusal::Malformed(why)) => return Err(FrameError::Stream(id, Reason::PROTOCOL_ERROR, why)),
            Err(Refusal::TooLarge) => {
                self.answer_directly(id, 431);
                return Ok(());
            }
        }
        if end_stream && content_length.is_some_and(|n| n > 0) {
            return Err(FrameError::Stream(
                id,
                Reason::PROTOCOL_ERROR,
                "content-length without a body",
            ));
        }
        let (body_tx, inbound) = if end_stream {
            (None, Inbound::Empty)
        } else {
            let (tx, rx) = unbounded_channel();
            let body = RequestBody::new(id, rx, self.events_tx.clone(), content_length);
            (Some(tx), Inbound::Http2(body))
        };
        let send_queue = Arc::new(SendQueue::new(self.connection_queued.clone()));
        let task = tokio::spawn(stream::run(
            id,
            request,
            inbound,
            self.info.clone(),
            self.rt.clone(),
            self.events_tx.clone(),
            send_queue.clone(),
        ));
        self.streams.insert(
            id,
            Stream {
                send_window: self.peer_initial_window,
                queue: VecDeque::new(),
                end_queued: false,
                trailers: None,
                send_queue,
                body: body_tx,
                recv_window: i64::from(STREAM_WINDOW),
                buffered: 0,
                consumed: 0,
                content_length,
                received: 0,
                responded: false,
                task: task.abort_handle(),
            },
        );
        Ok(())
    }

    /// A response written here, without the pipeline (a request refused before it started).
    fn answer_directly(&mut self, id: u32, status: u16) {
        let mut block = Vec::new();
        super::hpack::encode_status(&mut block, status);
        frame::write_headers(self.out.buf(), id, &block, true, self.peer_max_frame);
        // Whatever body the client still sends is not wanted.
        frame::write_rst_stream(self.out.buf(), id, Reason::NO_ERROR);
    }

    fn on_data(&mut self, id: u32, end_stream: bool, data: Bytes, flow_len: usize) -> Result<(), FrameError> {
        let Some(s) = self.streams.get_mut(&id) else {
            // Closed: the bytes still count for the connection window, and are given back.
            self.give_back(flow_len);
            return Err(FrameError::Stream(id, Reason::STREAM_CLOSED, "DATA on a closed stream"));
        };
        let Some(body) = &s.body else {
            self.give_back(flow_len);
            return Err(FrameError::Stream(id, Reason::STREAM_CLOSED, "DATA after END_STREAM"));
        };
        s.recv_window -= flow_len as i64;
        if s.recv_window < 0 {
            return Err(FrameError::Stream(
                id,
                Reason::FLOW_CONTROL_ERROR,
                "DATA beyond the stream window",
            ));
        }
        s.received += data.len() as u64;
        // Padding is never handed on, so it is given back at once; so is a body the pipeline
        // no longer reads (it answered already).
        let mut unread = flow_len - data.len();
        let len = data.len();
        if len > 0 {
            if body.send(Chunk::Data(data)).is_ok() {
                s.buffered += len;
            } else {
                unread += len;
            }
        }
        if end_stream {
            s.body = None;
        }
        self.give_back(unread);
        self.check_length(id)
    }

    /// Content-Length must match the DATA received (§8.1.1).
    fn check_length(&mut self, id: u32) -> Result<(), FrameError> {
        let Some(s) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        let ended = s.body.is_none();
        let wrong = s
            .content_length
            .is_some_and(|n| s.received > n || (ended && s.received != n));
        if wrong {
            if let Some(body) = s.body.take() {
                let _ = body.send(Chunk::Failed("body length differs from content-length"));
            }
            return Err(FrameError::Stream(
                id,
                Reason::PROTOCOL_ERROR,
                "body length differs from content-length",
            ));
        }
        Ok(())
    }

    /// Request body bytes the client may send again.
    fn give_back(&mut self, len: usize) {
        self.recv_unacked += len as u32;
        if self.recv_unacked >= CONNECTION_WINDOW / 2 {
            frame::write_window_update(self.out.buf(), 0, self.recv_unacked);
            self.recv_window += i64::from(self.recv_unacked);
            self.recv_unacked = 0;
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Head { id, block, end } => {
                let Some(s) = self.streams.get_mut(&id) else { return };
                s.responded = true;
                frame::write_headers(self.out.buf(), id, &block, end, self.peer_max_frame);
                if end {
                    s.end_queued = false;
                    self.local_end(id);
                }
            }
            Event::Data { id, data, end } => {
                let Some(s) = self.streams.get_mut(&id) else { return };
                if s.queue.is_empty() && !s.end_queued {
                    self.pending.push_back(id);
                }
                if !data.is_empty() {
                    s.queue.push_back(data);
                }
                s.end_queued |= end;
            }
            Event::Trailers { id, block } => {
                let Some(s) = self.streams.get_mut(&id) else { return };
                if s.queue.is_empty() && !s.end_queued {
                    self.pending.push_back(id);
                }
                s.trailers = Some(block);
                s.end_queued = true;
            }
            Event::Reset { id, reason } => self.reset(id, reason, "response failed"),
            Event::Consumed { id, len } => {
                // For a stream already gone, `forget` gave its buffered bytes back.
                let Some(s) = self.streams.get_mut(&id) else { return };
                s.buffered -= len;
                if s.body.is_some() {
                    s.consumed += len as u32;
                    if s.consumed >= STREAM_WINDOW / 2 {
                        frame::write_window_update(self.out.buf(), id, s.consumed);
                        s.recv_window += i64::from(s.consumed);
                        s.consumed = 0;
                    }
                }
                self.give_back(len);
            }
        }
    }

    /// Moves queued DATA into the output as the windows allow.
    fn fill_data(&mut self) {
        let mut rounds = self.pending.len();
        while rounds > 0 && self.out.len() < WRITE_HIGH {
            rounds -= 1;
            let Some(id) = self.pending.pop_front() else { break };
            let Some(s) = self.streams.get_mut(&id) else { continue };
            let mut finished = false;
            loop {
                let Some(front) = s.queue.front_mut() else {
                    if s.end_queued {
                        match s.trailers.take() {
                            Some(block) => frame::write_headers(self.out.buf(), id, &block, true, self.peer_max_frame),
                            None => frame::write_data_head(self.out.buf(), id, 0, true),
                        }
                        finished = true;
                    }
                    break;
                };
                let allowed = s.send_window.min(self.send_window).min(self.peer_max_frame as i64);
                if allowed <= 0 {
                    // Waits for a WINDOW_UPDATE (which puts it back on the list); when only the
                    // connection's window is shut, it stays in line.
                    if s.send_window > 0 {
                        self.pending.push_front(id);
                        return;
                    }
                    break;
                }
                let n = front.len().min(allowed as usize);
                let chunk = front.split_to(n);
                if front.is_empty() {
                    s.queue.pop_front();
                }
                let end = s.queue.is_empty() && s.end_queued && s.trailers.is_none();
                frame::write_data_head(self.out.buf(), id, n, end);
                self.out.push_payload(chunk);
                s.send_window -= n as i64;
                self.send_window -= n as i64;
                s.send_queue.taken(n);
                if end {
                    finished = true;
                    break;
                }
                if self.out.len() >= WRITE_HIGH {
                    // More later; this stream goes to the back of the line.
                    self.pending.push_back(id);
                    break;
                }
            }
            if finished {
                if let Some(s) = self.streams.get_mut(&id) {
                    s.end_queued = false;
                }
                self.local_end(id);
            }
        }
    }

    /// The response is complete.
    fn local_end(&mut self, id: u32) {
        let Some(s) = self.streams.get_mut(&id) else { return };
        if s.body.is_some() {
            // The client is still sending a body nobody will read (§8.1).
            frame::write_rst_stream(self.out.buf(), id, Reason::NO_ERROR);
            if let Some(s) = self.streams.remove(&id) {
                self.forget(s);
            }
            return;
        }
        self.early_resets = self.early_resets.saturating_sub(1);
        if let Some(s) = self.streams.remove(&id) {
            self.forget(s);
        }
    }

    fn reset(&mut self, id: u32, reason: Reason, why: &str) {
        tracing::debug!(peer = %self.info.peer, stream = id, ?reason, why, "HTTP/2 stream reset");
        frame::write_rst_stream(self.out.buf(), id, reason);
        if let Some(s) = self.streams.remove(&id) {
            self.forget(s);
        }
    }

    fn forget(&mut self, s: Stream) {
        if let Some(body) = s.body {
            let _ = body.send(Chunk::Failed("stream reset"));
        }
        s.task.abort();
        s.send_queue.dropped();
        // What the client sent and nobody read is given back to the connection window.
        self.give_back(s.buffered);
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
    let idle_timeout = info.listener.limits.idle_timeout;
    let mut conn = Connection::new(io, read, info, rt);
    let mut draining = *drain.borrow();
    if draining {
        conn.go_away(Reason::NO_ERROR);
    }
    loop {
        let check_in = conn
            .idle_for()
            .map_or(idle_timeout, |idle| idle_timeout.saturating_sub(idle))
            .max(Duration::from_millis(10));
        tokio::select! {
            () = poll_fn(|cx| conn.poll(cx)) => return,
            _ = drain.changed(), if !draining => {
                draining = true;
                conn.go_away(Reason::NO_ERROR);
            }
            () = tokio::time::sleep(check_in) => {
                if conn.idle_for().is_some_and(|idle| idle >= idle_timeout) {
                    conn.go_away(Reason::NO_ERROR);
                }
            }
        }
    }
}
