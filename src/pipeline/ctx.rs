//! The per-request context every stage reads and fills, and that the access log is written from.

use http::HeaderValue;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub struct RequestCtx {
    pub received: SystemTime,
    pub started: Instant,
    pub client: SocketAddr,
    pub method: http::Method,
    pub host: String,
    pub path: String,
    pub proto: &'static str,
    pub request_id: HeaderValue,
    pub bytes_in: u64,
    pub status: u16,
    pub route: Option<Arc<str>>,
    pub upstream: Option<Arc<str>>,
    pub upstream_time: Option<Duration>,
    /// Why the request failed, when it did (also logged as a warning).
    pub error: Option<String>,
}
