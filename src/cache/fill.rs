//! Filling the cache from a response while it streams to the client: the body is copied as it
//! passes (never waited for), and stored only when it ended complete, within the size limit and
//! as long as announced.

use super::store::{Entry, FlightGuard, Store};
use crate::pipeline::body::ResponseBody;
use bytes::{Bytes, BytesMut};
use http_body::Body as _;
use std::sync::Arc;

pub struct Fill {
    store: Arc<Store>,
    key: String,
    entry: Entry,
    buf: BytesMut,
    limit: u64,
    expected: Option<u64>,
    /// Followers waiting for this fill wake when it is dropped (stored or abandoned).
    _flight: Option<FlightGuard>,
}

impl Fill {
    pub fn new(
        store: Arc<Store>,
        key: String,
        entry: Entry,
        limit: u64,
        expected: Option<u64>,
        flight: Option<FlightGuard>,
    ) -> Fill {
        let cap = expected.unwrap_or(16 * 1024).min(limit) as usize;
        Fill {
            store,
            key,
            entry,
            buf: BytesMut::with_capacity(cap),
            limit,
            expected,
            _flight: flight,
        }
    }

    /// The body to send while this fill copies it. A body with nothing to stream (a 204, an
    /// empty body) is stored at once: nobody polls it, so no end would ever be seen.
    pub fn wrap(self, body: ResponseBody) -> ResponseBody {
        if body.is_end_stream() {
            self.finish();
            return body;
        }
        ResponseBody::Filling {
            inner: Box::new(body),
            fill: Some(Box::new(self)),
        }
    }

    /// Copies a chunk; false when the object grew past the limit (the fill is then abandoned).
    pub fn data(&mut self, chunk: &Bytes) -> bool {
        if self.buf.len() as u64 + chunk.len() as u64 > self.limit {
            return false;
        }
        self.buf.extend_from_slice(chunk);
        true
    }

    /// The body ended normally: store it unless it is shorter than announced.
    pub fn finish(self) {
        let len = self.buf.len() as u64;
        if self.expected.is_some_and(|n| n != len) {
            tracing::warn!(key = %self.key, got = len, expected = ?self.expected, "response body length differs from Content-Length; not cached");
            return;
        }
        let Fill {
            store,
            key,
            mut entry,
            buf,
            _flight: flight,
            ..
        } = self;
        entry.body = buf.freeze();
        store.insert(&key, entry);
        // Waiting requests wake only now, when the entry is there for them.
        drop(flight);
    }
}
