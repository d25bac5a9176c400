//! What a connection reads: frames checked and acted on, header blocks decoded into requests
//! (each started in a task of its own), request bodies passed on within flow control.

use super::conn::{Connection, Stream, CONNECTION_WINDOW, STREAM_WINDOW};
use super::frame::{self, kind, setting, Frame, FrameError, Head, Reason, DEFAULT_MAX_FRAME, HEAD_LEN, MAX_WINDOW};
use super::request::{Refusal, RequestBuilder};
use super::stream::{self, Chunk, RequestBody, SendQueue};
use crate::pipeline::Inbound;
use bytes::{Buf, Bytes};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc::unbounded_channel;

/// Request body pieces shorter than this are copied out of the read buffer, so a client
/// sending tiny DATA frames cannot pin a whole read buffer with each.
const COPY_BODY_BELOW: usize = 8 * 1024;

impl<T: AsyncRead + AsyncWrite + Unpin> Connection<T> {
    /// Handles every complete frame in the read buffer.
    pub(super) fn on_input(&mut self) {
        if let Err(FrameError::Connection(reason, why)) = self.frames() {
            self.connection_error(reason, why);
        }
    }

    fn frames(&mut self) -> Result<(), FrameError> {
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
                Err(FrameError::Stream(id, reason, why)) => self.reset(id, reason, why)?,
                other => other?,
            }
        }
        Ok(())
    }

    fn on_frame(&mut self, head: &Head, payload: &Bytes) -> Result<(), FrameError> {
        // §3.4: the client's preface ends with a SETTINGS frame.
        if !self.settings_seen {
            if head.kind != kind::SETTINGS {
                return Err(FrameError::Connection(
                    Reason::PROTOCOL_ERROR,
                    "first frame is not SETTINGS",
                ));
            }
            self.settings_seen = true;
        }
        // Nothing may come between a header block's frames (§6.10), checked before the frame's
        // own layout so that errors there are connection errors too.
        if let Some((id, _, _)) = &self.block {
            if head.kind != kind::CONTINUATION || head.stream != *id {
                return Err(FrameError::Connection(Reason::PROTOCOL_ERROR, "expected CONTINUATION"));
            }
        }
        match frame::parse(head, payload)? {
            Frame::Settings { ack: true, .. } | Frame::Unknown => Ok(()),
            Frame::Priority { stream, depends_on } => {
                if stream == depends_on {
                    return Err(FrameError::Stream(
                        stream,
                        Reason::PROTOCOL_ERROR,
                        "stream depends on itself",
                    ));
                }
                Ok(())
            }
            Frame::Settings { ack: false, params } => self.on_settings(params),
            Frame::Ping { ack: false, data } => {
                frame::write_ping_ack(self.out.buf(), &data);
                Ok(())
            }
            Frame::Ping { ack: true, data } => {
                self.ping_answered(&data);
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
                let Some(s) = self.streams.get_mut(&id) else {
                    return Ok(());
                };
                s.send_window += i64::from(increment);
                if s.send_window > i64::from(MAX_WINDOW) {
                    return Err(FrameError::Stream(
                        id,
                        Reason::FLOW_CONTROL_ERROR,
                        "stream window above 2^31-1",
                    ));
                }
                self.wants_to_send(id);
                Ok(())
            }
            Frame::RstStream { stream: id, .. } => {
                self.check_not_idle(id)?;
                if let Some(s) = self.streams.remove(&id) {
                    let early = !s.responded;
                    self.forget(s);
                    if early && !self.count_reset() {
                        return Err(FrameError::Connection(
                            Reason::ENHANCE_YOUR_CALM,
                            "too many streams reset",
                        ));
                    }
                }
                Ok(())
            }
            Frame::Headers {
                stream: id,
                end_stream,
                end_headers,
                depends_on,
                block,
            } => {
                if id % 2 == 0 {
                    return Err(FrameError::Connection(
                        Reason::PROTOCOL_ERROR,
                        "even stream id from a client",
                    ));
                }
                if depends_on == Some(id) {
                    if !end_headers {
                        // Its CONTINUATIONs would follow a refused stream.
                        return Err(FrameError::Connection(
                            Reason::PROTOCOL_ERROR,
                            "stream depends on itself",
                        ));
                    }
                    // Decoded all the same, for the dynamic table.
                    self.decode_only(block)?;
                    return Err(FrameError::Stream(
                        id,
                        Reason::PROTOCOL_ERROR,
                        "stream depends on itself",
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
                let data = if data.len() < COPY_BODY_BELOW {
                    Bytes::copy_from_slice(data)
                } else {
                    payload.slice_ref(data)
                };
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
                    let mut opened = Vec::new();
                    for (id, s) in self.streams.iter_mut() {
                        s.send_window += delta;
                        if s.send_window > i64::from(MAX_WINDOW) {
                            return Err(FrameError::Connection(
                                Reason::FLOW_CONTROL_ERROR,
                                "stream window above 2^31-1",
                            ));
                        }
                        if delta > 0 {
                            opened.push(*id);
                        }
                    }
                    for id in opened {
                        self.wants_to_send(id);
                    }
                }
                (setting::MAX_FRAME_SIZE, value) => self.peer_max_frame = value as usize,
                _ => {}
            }
        }
        frame::write_settings_ack(self.out.buf());
        Ok(())
    }

    /// Keeps the HPACK table in step for a block whose request is refused anyway.
    fn decode_only(&mut self, block: &[u8]) -> Result<(), FrameError> {
        self.decoder
            .decode(block, |_, _| {})
            .map_err(|_| FrameError::Connection(Reason::COMPRESSION_ERROR, "undecodable header block"))
    }

    fn on_header_block(&mut self, id: u32, end_stream: bool, block: &[u8]) -> Result<(), FrameError> {
        let limits = &self.info.listener.limits;
        let max_streams = limits.h2_max_concurrent_streams as usize;
        let mut request = RequestBuilder::new(limits);
        // Decoded even when the stream is refused: the dynamic table must stay in step.
        self.decoder
            .decode(block, |name, value| request.field(name, value))
            .map_err(|_| FrameError::Connection(Reason::COMPRESSION_ERROR, "undecodable header block"))?;
        if let Some(s) = self.streams.get_mut(&id) {
            // A second block on an open stream: trailers, which must end it (§8.1).
            if s.body.is_none() {
                return Err(FrameError::Stream(
                    id,
                    Reason::STREAM_CLOSED,
                    "HEADERS after END_STREAM",
                ));
            }
            if !end_stream {
                return Err(FrameError::Stream(
                    id,
                    Reason::PROTOCOL_ERROR,
                    "trailers without END_STREAM",
                ));
            }
            let trailers = request
                .finish_trailers()
                .map_err(|_| FrameError::Stream(id, Reason::PROTOCOL_ERROR, "malformed trailers"))?;
            if let Some(body) = s.body.take() {
                let _ = body.send(Chunk::Trailers(trailers));
            }
            return self.check_length(id);
        }
        if id <= self.last_stream {
            if self.was_reset_by_us(id) {
                // Trailers that were on their way when we reset the stream.
                return Ok(());
            }
            // Stream ids only grow (§5.1.1): this one is closed, or was never opened.
            return Err(FrameError::Connection(
                Reason::PROTOCOL_ERROR,
                "HEADERS on a closed stream",
            ));
        }
        self.last_stream = id;
        if self.going_away || self.streams.len() >= max_streams {
            frame::write_rst_stream(self.out.buf(), id, Reason::REFUSED_STREAM);
            return Ok(());
        }
        let content_length = request.content_length;
        match request.check() {
            Ok(()) => {}
            Err(Refusal::Malformed(why)) => return Err(FrameError::Stream(id, Reason::PROTOCOL_ERROR, why)),
            Err(Refusal::TooLarge) => {
                self.answer_directly(id, 431, end_stream);
                return Ok(());
            }
            Err(Refusal::UriTooLong) => {
                self.answer_directly(id, 414, end_stream);
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
                queued: 0,
                end_queued: false,
                trailers: None,
                in_pending: false,
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
    fn answer_directly(&mut self, id: u32, status: u16, client_done: bool) {
        let mut block = Vec::new();
        super::hpack::encode_status(&mut block, status);
        frame::write_headers(self.out.buf(), id, &block, true, self.peer_max_frame);
        if !client_done {
            // Whatever body the client still sends is not wanted (§8.1).
            frame::write_rst_stream(self.out.buf(), id, Reason::NO_ERROR);
        }
    }

    fn on_data(&mut self, id: u32, end_stream: bool, data: Bytes, flow_len: usize) -> Result<(), FrameError> {
        let Some(s) = self.streams.get_mut(&id) else {
            // Closed: the bytes still count for the connection window, and are given back.
            self.give_back(flow_len);
            if self.was_reset_by_us(id) {
                return Ok(());
            }
            return Err(FrameError::Stream(id, Reason::STREAM_CLOSED, "DATA on a closed stream"));
        };
        if s.body.is_none() {
            self.give_back(flow_len);
            return Err(FrameError::Stream(id, Reason::STREAM_CLOSED, "DATA after END_STREAM"));
        }
        s.recv_window -= flow_len as i64;
        if s.recv_window < 0 {
            self.give_back(flow_len);
            return Err(FrameError::Stream(
                id,
                Reason::FLOW_CONTROL_ERROR,
                "DATA beyond the stream window",
            ));
        }
        s.received += data.len() as u64;
        if s.content_length.is_some_and(|n| s.received > n) {
            self.give_back(flow_len);
            return self.check_length(id);
        }
        // Padding is never handed on, so it is given back at once; so is a body the pipeline
        // no longer reads (it answered already).
        let mut unread = flow_len - data.len();
        let len = data.len();
        if len > 0 {
            match &s.body {
                Some(body) if body.send(Chunk::Data(data)).is_ok() => s.buffered += len,
                _ => unread += len,
            }
        }
        if end_stream {
            s.body = None;
        }
        self.stream_consumed(id, unread);
        self.give_back(unread);
        self.check_length(id)
    }

    /// Content-Length must match the DATA received (§8.1.1).
    pub(super) fn check_length(&mut self, id: u32) -> Result<(), FrameError> {
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

    /// Request body bytes of stream `id` that were read or dropped: its window opens again.
    pub(super) fn stream_consumed(&mut self, id: u32, len: usize) {
        let Some(s) = self.streams.get_mut(&id) else { return };
        if s.body.is_none() || len == 0 {
            return;
        }
        s.consumed += len as u32;
        if s.consumed >= STREAM_WINDOW / 2 {
            frame::write_window_update(self.out.buf(), id, s.consumed);
            s.recv_window += i64::from(s.consumed);
            s.consumed = 0;
        }
    }

    /// Request body bytes the client may send again on the connection.
    pub(super) fn give_back(&mut self, len: usize) {
        self.recv_unacked += len as u32;
        if self.recv_unacked >= CONNECTION_WINDOW / 2 {
            frame::write_window_update(self.out.buf(), 0, self.recv_unacked);
            self.recv_window += i64::from(self.recv_unacked);
            self.recv_unacked = 0;
        }
    }
}
