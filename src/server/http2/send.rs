//! What a connection writes for its streams: response heads as they are ready, DATA as both
//! flow-control windows allow, and the end of each stream.

use super::conn::{Connection, WRITE_HIGH};
use super::frame::{self, FrameError, Reason};
use super::stream::{Chunk, Event};
use std::sync::atomic::Ordering;
use tokio::io::{AsyncRead, AsyncWrite};

impl<T: AsyncRead + AsyncWrite + Unpin> Connection<T> {
    pub(super) fn on_event(&mut self, event: Event) {
        match event {
            Event::Head { id, block, end } => {
                let Some(s) = self.streams.get_mut(&id) else { return };
                s.responded = true;
                frame::write_headers(self.out.buf(), id, &block, end, self.peer_max_frame);
                if end {
                    self.local_end(id);
                }
            }
            Event::Data { id, data, end } => {
                let Some(s) = self.streams.get_mut(&id) else { return };
                s.queued += data.len();
                self.connection_queued.fetch_add(data.len(), Ordering::AcqRel);
                if !data.is_empty() {
                    s.queue.push_back(data);
                }
                s.end_queued |= end;
                self.wants_to_send(id);
            }
            Event::Trailers { id, block } => {
                let Some(s) = self.streams.get_mut(&id) else { return };
                s.trailers = Some(block);
                s.end_queued = true;
                self.wants_to_send(id);
            }
            Event::Reset { id, reason } => {
                if self.streams.contains_key(&id) {
                    if let Err(FrameError::Connection(reason, why)) = self.reset(id, reason, "response failed") {
                        self.connection_error(reason, why);
                    }
                }
            }
            Event::Consumed { id, len } => {
                // For a stream already gone, `forget` gave its buffered bytes back.
                let Some(s) = self.streams.get_mut(&id) else { return };
                s.buffered -= len;
                self.stream_consumed(id, len);
                self.give_back(len);
            }
        }
    }

    /// Puts a stream with something to send in line (once).
    pub(super) fn wants_to_send(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            if !s.in_pending && (!s.queue.is_empty() || s.end_queued) {
                s.in_pending = true;
                self.pending.push_back(id);
            }
        }
    }

    /// Moves queued DATA into the output as the windows allow.
    pub(super) fn fill_data(&mut self) {
        let mut rounds = self.pending.len();
        while rounds > 0 && self.out.len() < WRITE_HIGH {
            rounds -= 1;
            let Some(id) = self.pending.pop_front() else { break };
            let Some(s) = self.streams.get_mut(&id) else { continue };
            s.in_pending = false;
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
                    if s.send_window > 0 {
                        // Only the connection's window is shut: this stream keeps its place,
                        // and nothing else can be sent either.
                        s.in_pending = true;
                        self.pending.push_front(id);
                        return;
                    }
                    // Waits for its WINDOW_UPDATE, which puts it back in line.
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
                s.queued -= n;
                self.connection_queued.fetch_sub(n, Ordering::AcqRel);
                s.send_queue.taken(n);
                if end {
                    finished = true;
                    break;
                }
                if self.out.len() >= WRITE_HIGH {
                    // More later; this stream goes to the back of the line.
                    s.in_pending = true;
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
    pub(super) fn local_end(&mut self, id: u32) {
        let Some(s) = self.streams.remove(&id) else { return };
        if s.body.is_some() {
            // The client is still sending a body nobody will read (§8.1).
            frame::write_rst_stream(self.out.buf(), id, Reason::NO_ERROR);
            self.note_reset_by_us(id);
        }
        self.forget(s);
    }

    /// Resets a stream of ours for an error; counted like the client's early resets, so a
    /// client provoking errors cannot churn streams without end. Err when that count is over.
    pub(super) fn reset(&mut self, id: u32, reason: Reason, why: &'static str) -> Result<(), FrameError> {
        tracing::debug!(peer = %self.info.peer, stream = id, ?reason, why, "HTTP/2 stream reset");
        frame::write_rst_stream(self.out.buf(), id, reason);
        self.note_reset_by_us(id);
        if let Some(s) = self.streams.remove(&id) {
            self.forget(s);
            if !self.count_reset() {
                return Err(FrameError::Connection(
                    Reason::ENHANCE_YOUR_CALM,
                    "too many streams reset",
                ));
            }
        }
        Ok(())
    }

    /// Lets go of a stream's task, body and queues.
    pub(super) fn forget(&mut self, s: super::conn::Stream) {
        if let Some(body) = s.body {
            let _ = body.send(Chunk::Failed("stream reset"));
        }
        s.task.abort();
        self.connection_queued.fetch_sub(s.queued, Ordering::AcqRel);
        // What the client sent and nobody read is given back to the connection window.
        self.give_back(s.buffered);
    }
}
