//! What a connection has to write: frame headers and small frames gathered in one buffer, large
//! DATA payloads kept as the `Bytes` they arrived in, and all of it written with vectored writes
//! (the body bytes are not copied on the way).

use bytes::{Buf, Bytes};
use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

/// Payloads shorter than this are copied next to their frame header instead.
const COPY_BELOW: usize = 4096;
/// Slices passed to one vectored write.
const MAX_SLICES: usize = 32;
/// A buffer this large is not kept once everything is written.
const KEEP_BUF: usize = 16 * 1024;

#[derive(Default)]
pub struct Output {
    /// Written before `tail`, in order.
    segments: VecDeque<Bytes>,
    segment_bytes: usize,
    tail: Vec<u8>,
    tail_written: usize,
}

impl Output {
    /// Where small frames are written.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.tail
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.segment_bytes + self.tail.len() - self.tail_written
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a DATA payload (its frame header is already in `buf`).
    pub fn push_payload(&mut self, data: Bytes) {
        if data.len() < COPY_BELOW {
            self.tail.extend_from_slice(&data);
            return;
        }
        if self.tail.len() > self.tail_written {
            let mut tail = std::mem::take(&mut self.tail);
            tail.drain(..self.tail_written);
            self.tail_written = 0;
            self.segment_bytes += tail.len();
            self.segments.push_back(Bytes::from(tail));
        }
        self.segment_bytes += data.len();
        self.segments.push_back(data);
    }

    /// Writes as much as the socket takes; `Ok(true)` when anything was written.
    pub fn poll_write<T: AsyncWrite + Unpin>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<bool>> {
        let mut wrote = false;
        while !self.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut n = 0;
            for s in self.segments.iter().take(MAX_SLICES - 1) {
                slices[n] = IoSlice::new(s);
                n += 1;
            }
            if n < MAX_SLICES - 1 && self.tail.len() > self.tail_written {
                slices[n] = IoSlice::new(&self.tail[self.tail_written..]);
                n += 1;
            }
            match Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(written)) => {
                    self.advance(written);
                    wrote = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if wrote => break,
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.is_empty() {
            self.tail.clear();
            self.tail_written = 0;
            if self.tail.capacity() > KEEP_BUF {
                self.tail = Vec::new();
            }
        }
        Poll::Ready(Ok(wrote))
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            match self.segments.front_mut() {
                Some(front) if n >= front.len() => {
                    n -= front.len();
                    self.segment_bytes -= front.len();
                    self.segments.pop_front();
                }
                Some(front) => {
                    front.advance(n);
                    self.segment_bytes -= n;
                    return;
                }
                None => {
                    self.tail_written += n;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `step` bytes per call.
    struct Trickle {
        got: Vec<u8>,
        step: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.got.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn writes_everything_in_order_across_partial_writes() {
        let mut out = Output::default();
        let mut expected = Vec::new();
        for i in 0..5u8 {
            out.buf().extend_from_slice(&[i; 9]);
            expected.extend_from_slice(&[i; 9]);
            let payload = vec![i + 100; if i % 2 == 0 { 10_000 } else { 100 }];
            expected.extend_from_slice(&payload);
            out.push_payload(Bytes::from(payload));
        }
        assert_eq!(out.len(), expected.len());
        let mut w = Trickle {
            got: Vec::new(),
            step: 777,
        };
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(matches!(out.poll_write(&mut w, &mut cx), Poll::Ready(Ok(true))));
        assert_eq!(w.got, expected);
        assert!(out.is_empty());
    }
}
