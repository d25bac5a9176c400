//! Upstream stage: picks a backend, sends the request over a pooled connection, retries where
//! that is safe, and reports the outcome to passive health.

pub mod backend;
pub mod balance;
pub mod connect;
pub mod h1;
pub mod headers;
pub mod health;
pub mod pool;
pub mod shard;
pub mod stream;

pub use backend::{Backend, PassivePolicy};
pub use connect::UpstreamTls;

use crate::pipeline::body::{OnBodyEnd, RequestBody};
use crate::pipeline::interim::Interim;
use crate::pipeline::respond::ProxyError;
use backend::InflightGuard;
use balance::{Balancer, HashKey, PickInput};
use connect::Connected;
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct PoolPolicy {
    pub max_idle: usize,
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct HealthPolicy {
    /// None = TCP connect check.
    pub path: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub expect: crate::config::value::StatusRange,
}

/// A compiled `[upstream.NAME]`: part of one snapshot, pointing at long-lived backends.
pub struct Upstream {
    pub name: Arc<str>,
    pub backends: Vec<Arc<Backend>>,
    pub weights: Vec<u32>,
    pub balancer: Balancer,
    pub hash_key: Option<HashKey>,
    pub sticky_cookie: Option<String>,
    pub http2: bool,
    pub tls: Option<UpstreamTls>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub retries: u32,
    pub passive: PassivePolicy,
    pub pool: PoolPolicy,
    pub health: Option<HealthPolicy>,
}

/// A backend's response body: read by hyper's client, or by frontdesk's own (`h1`).
pub enum UpstreamBody {
    Hyper(Incoming),
    /// Boxed: the socket, buffer and framing state would make every response body large.
    Raw(Box<h1::RawBody>),
}

impl http_body::Body for UpstreamBody {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        match self.get_mut() {
            UpstreamBody::Hyper(b) => std::pin::Pin::new(b).poll_frame(cx).map_err(Into::into),
            UpstreamBody::Raw(b) => std::pin::Pin::new(&mut **b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Hyper(b) => b.is_end_stream(),
            UpstreamBody::Raw(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            UpstreamBody::Hyper(b) => b.size_hint(),
            UpstreamBody::Raw(b) => b.size_hint(),
        }
    }
}

/// A response from a backend, with what the caller must keep until its body ends.
pub struct Forwarded {
    pub response: Response<UpstreamBody>,
    pub backend: Arc<Backend>,
    pub upstream_time: Duration,
    /// Returns the connection to the pool and ends the in-flight count once the body is done.
    pub release: Box<dyn OnBodyEnd>,
}

/// `Forwarded` for a response read by the own HTTP/1.1 client, before any `HeaderMap`.
pub struct RawForwarded {
    pub response: h1::RawResponse,
    pub backend: Arc<Backend>,
    pub upstream_time: Duration,
    pub release: Box<dyn OnBodyEnd>,
}

/// Value of the sticky cookie naming a backend: a stable hash of its address.
pub fn sticky_value(addr: &str) -> String {
    format!("{:016x}", balance::hash::hash_bytes(addr.as_bytes()))
}

struct Release {
    h1: Option<http1::SendRequest<RequestBody>>,
    backend: Arc<Backend>,
    pool: PoolPolicy,
    _inflight: Option<InflightGuard>,
}

impl OnBodyEnd for Release {
    fn finish(&mut self, complete: bool, _bytes: u64) {
        if let (true, Some(sender)) = (complete, self.h1.take()) {
            self.backend.pool.put_h1(sender, self.pool.max_idle);
        }
    }
}

/// Enough of a request to send it again: kept only for idempotent requests without a body.
struct Replay {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    interim: Option<Interim>,
}

impl Replay {
    fn build(&self) -> Request<RequestBody> {
        let mut r = Request::new(RequestBody::Empty);
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.version_mut() = self.version;
        *r.headers_mut() = self.headers.clone();
        if let Some(i) = &self.interim {
            i.register(&mut r);
        }
        r
    }
}

enum Conn {
    H1(http1::SendRequest<RequestBody>),
    H2(hyper::client::conn::http2::SendRequest<RequestBody>),
}

/// How a request is tied to a backend (see `Upstream::affinity`).
pub struct Affinity {
    /// The hash of the upstream's `hash_key` for consistent hashing.
    pub key_hash: Option<u64>,
    /// The sticky cookie's value as the client sent it.
    pub sticky_in: Option<String>,
    /// The available backend that cookie names, tried first.
    pub preferred: Option<usize>,
}

impl Upstream {
    /// The sticky cookie to set when the client (which sent `sent`) is not yet pinned to
    /// `backend`.
    pub fn sticky_set_cookie(&self, sent: Option<&str>, backend: &Backend) -> Option<String> {
        let name = self.sticky_cookie.as_ref()?;
        let value = sticky_value(&backend.addr);
        (sent != Some(value.as_str())).then(|| format!("{name}={value}; Path=/; HttpOnly"))
    }

    /// What ties `req` (from `client`) to a backend: the hash of the upstream's key, and the
    /// sticky cookie it sent with the available backend that cookie names.
    pub fn affinity<R: crate::route::RequestView>(&self, req: &R, client: std::net::IpAddr) -> Affinity {
        let key_hash = self.hash_key.as_ref().and_then(|k| k.hash(req, client));
        let sticky_in = self
            .sticky_cookie
            .as_deref()
            .and_then(|name| crate::route::cookie_value(req, name))
            .map(str::to_string);
        let preferred = sticky_in.as_deref().and_then(|v| self.sticky_backend(v));
        Affinity {
            key_hash,
            sticky_in,
            preferred,
        }
    }

    /// The backend named by a sticky cookie, if it is available.
    pub fn sticky_backend(&self, cookie: &str) -> Option<usize> {
        self.backends
            .iter()
            .position(|b| sticky_value(&b.addr) == cookie)
            .filter(|&i| self.backends[i].is_available())
    }

    /// The backend for the next attempt: `preferred` (e.g. from a sticky cookie) first, then the
    /// balancer's choice among those not `tried` yet.
    pub fn pick(&self, tried: &[usize], preferred: Option<usize>, key_hash: Option<u64>) -> Option<usize> {
        match (tried.is_empty(), preferred) {
            (true, Some(i)) => Some(i),
            _ => self.balancer.pick(
                &self.backends,
                &self.weights,
                &PickInput {
                    key_hash,
                    exclude: tried,
                },
            ),
        }
    }

    /// A connection to `backend`, and whether it was reused from the pool (never when `fresh`).
    async fn conn(&self, backend: &Backend, fresh: bool) -> Result<(Conn, bool), ProxyError> {
        let pooled = match (fresh, self.http2) {
            (true, _) => None,
            (false, true) => backend.pool.shared_h2().map(Conn::H2),
            (false, false) => backend.pool.checkout_h1(self.pool.idle_timeout).map(Conn::H1),
        };
        if let Some(c) = pooled {
            return Ok((c, true));
        }
        // Boxed: connecting (TLS, handshakes) is rare next to reuse, and its future is large.
        match Box::pin(connect::connect(
            &backend.addr,
            self.connect_timeout,
            self.tls.as_ref(),
            self.http2,
        ))
        .await
        {
            Ok(Connected::H1(s)) => Ok((Conn::H1(s), false)),
            Ok(Connected::H2(s)) => {
                backend.pool.set_shared_h2(s.clone());
                Ok((Conn::H2(s), false))
            }
            Err(e) => Err(ProxyError::Connect(e.to_string())),
        }
    }

    /// Sends `req` to a backend chosen by the balancer (or `preferred`, e.g. from a sticky cookie).
    pub async fn forward(
        &self,
        mut req: Request<RequestBody>,
        key_hash: Option<u64>,
        preferred: Option<usize>,
    ) -> Result<Forwarded, ProxyError> {
        let interim = req.extensions_mut().remove::<Interim>();
        if h1::eligible(self, &req) {
            return self.forward_raw(&req, key_hash, preferred, interim.as_ref()).await;
        }
        if let Some(i) = &interim {
            i.register(&mut req);
        }
        // Kept even with `retries = 0`: a pooled connection the backend closed as the request went
        // out is not the backend failing, and the request is sent again on a fresh one.
        let replay = (is_idempotent(req.method()) && matches!(req.body(), RequestBody::Empty)).then(|| Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
            interim,
        });
        let mut req = Some(req);
        let mut tried: Vec<usize> = Vec::new();
        let mut last_error: Option<ProxyError> = None;
        let mut stale_retries = 0;
        loop {
            let Some(idx) = self.pick(&tried, preferred, key_hash) else {
                return Err(last_error.unwrap_or_else(|| ProxyError::NoHealthyBackend(self.name.clone())));
            };
            let backend = &self.backends[idx];
            let Some(request) = req.take().or_else(|| replay.as_ref().map(Replay::build)) else {
                return Err(last_error.unwrap_or_else(|| ProxyError::NoHealthyBackend(self.name.clone())));
            };
            let attempt = tried.len() as u32;
            // After a dead pooled connection, the other idle ones are likely as old: open one.
            let (conn, reused) = match self.conn(backend, stale_retries > 0).await {
                Ok(c) => c,
                Err(e) => {
                    self.report_failure(backend, &e);
                    tried.push(idx);
                    req = Some(request); // nothing was sent: the body is intact
                    last_error = Some(e);
                    if attempt < self.retries {
                        continue;
                    }
                    return Err(last_error.unwrap_or_else(|| ProxyError::NoHealthyBackend(self.name.clone())));
                }
            };
            let inflight = InflightGuard::when(self.balancer.reads_load(), backend);
            let started = Instant::now();
            let sent = tokio::time::timeout(self.response_timeout, send(conn, request)).await;
            match sent {
                Ok(Ok((response, h1))) => {
                    let response = response.map(UpstreamBody::Hyper);
                    return Ok(self.answered(backend, started, inflight, response, h1));
                }
                Ok(Err(SendError::NotSent(request))) => {
                    // A pooled connection closed under us before the request went out: try a fresh one.
                    req = Some(request);
                    stale_retries += 1;
                    if stale_retries > 3 {
                        return Err(ProxyError::UpstreamFailed {
                            addr: backend.addr.to_string(),
                            reason: "connection closed repeatedly".into(),
                        });
                    }
                    continue;
                }
                Ok(Err(SendError::Failed(e))) if reused && e.is_incomplete_message() && replay.is_some() => {
                    // The backend closed an idle pooled connection as the request went out.
                    stale_retries += 1;
                    if stale_retries > 3 {
                        return Err(classify_send_error(&backend.addr, e));
                    }
                    continue;
                }
                Ok(Err(SendError::Failed(e))) => {
                    let err = classify_send_error(&backend.addr, e);
                    if matches!(err, ProxyError::BodyTooLarge | ProxyError::ClientBody(_)) {
                        return Err(err);
                    }
                    self.report_failure(backend, &err);
                    last_error = Some(err);
                }
                Err(_) => {
                    let err = ProxyError::UpstreamTimeout {
                        addr: backend.addr.to_string(),
                        after: self.response_timeout,
                    };
                    self.report_failure(backend, &err);
                    last_error = Some(err);
                }
            }
            tried.push(idx);
            if attempt >= self.retries || replay.is_none() {
                return Err(last_error.unwrap_or_else(|| ProxyError::NoHealthyBackend(self.name.clone())));
            }
        }
    }

    /// `forward` for requests the own HTTP/1.1 client takes (see `h1`).
    async fn forward_raw(
        &self,
        req: &Request<RequestBody>,
        key_hash: Option<u64>,
        preferred: Option<usize>,
        interim: Option<&Interim>,
    ) -> Result<Forwarded, ProxyError> {
        let head = h1::request_head(req);
        let raw = self
            .forward_head(&head, req.method(), key_hash, preferred, interim)
            .await?;
        let response = raw
            .response
            .into_response()
            .map_err(|reason| ProxyError::UpstreamFailed {
                addr: raw.backend.addr.to_string(),
                reason: reason.into(),
            })?;
        Ok(Forwarded {
            response: response.map(|b| UpstreamBody::Raw(Box::new(b))),
            backend: raw.backend,
            upstream_time: raw.upstream_time,
            release: raw.release,
        })
    }

    /// Sends a bodiless request, given as its HTTP/1.1 head, to a plain-TCP HTTP/1.1 backend
    /// chosen by the balancer (or `preferred`), with the same retries as `forward`; the
    /// response comes back as read, without a `HeaderMap`. Every attempt sends the same bytes.
    pub async fn forward_head(
        &self,
        head: &[u8],
        method: &Method,
        key_hash: Option<u64>,
        preferred: Option<usize>,
        interim: Option<&Interim>,
    ) -> Result<RawForwarded, ProxyError> {
        let mut tried: Vec<usize> = Vec::new();
        let mut last_error: Option<ProxyError> = None;
        let mut stale_retries = 0;
        loop {
            let Some(idx) = self.pick(&tried, preferred, key_hash) else {
                return Err(last_error.unwrap_or_else(|| ProxyError::NoHealthyBackend(self.name.clone())));
            };
            let backend = &self.backends[idx];
            let inflight = InflightGuard::when(self.balancer.reads_load(), backend);
            let started = Instant::now();
            let sent = tokio::time::timeout(
                self.response_timeout,
                h1::send_head(self, backend, head, method, interim, stale_retries > 0),
            )
            .await;
            let err = match sent {
                Ok(Ok(response)) => {
                    let upstream_time = self.record_answer(backend, started, response.head.status);
                    return Ok(RawForwarded {
                        response,
                        backend: backend.clone(),
                        upstream_time,
                        release: self.release(backend, inflight, None),
                    });
                }
                Ok(Err(h1::RawError::Stale)) => {
                    stale_retries += 1;
                    if stale_retries <= 3 {
                        continue;
                    }
                    ProxyError::UpstreamFailed {
                        addr: backend.addr.to_string(),
                        reason: "connection closed repeatedly".into(),
                    }
                }
                Ok(Err(h1::RawError::Failed(e))) => e,
                Err(_) => ProxyError::UpstreamTimeout {
                    addr: backend.addr.to_string(),
                    after: self.response_timeout,
                },
            };
            self.report_failure(backend, &err);
            last_error = Some(err);
            tried.push(idx);
            if tried.len() as u32 > self.retries {
                return Err(last_error.unwrap_or_else(|| ProxyError::NoHealthyBackend(self.name.clone())));
            }
        }
    }

    /// Passive health hears of a response head; the time it took.
    fn record_answer(&self, backend: &Backend, started: Instant, status: u16) -> Duration {
        let upstream_time = started.elapsed();
        if status >= 500 {
            self.report_failure(backend, &ProxyError::UpstreamStatus(status));
        } else {
            backend.report_success(self.balancer.reads_load().then_some(upstream_time));
        }
        upstream_time
    }

    /// What must be kept until the response body ends.
    fn release(
        &self,
        backend: &Arc<Backend>,
        inflight: Option<InflightGuard>,
        h1: Option<http1::SendRequest<RequestBody>>,
    ) -> Box<dyn OnBodyEnd> {
        Box::new(Release {
            h1,
            backend: backend.clone(),
            pool: self.pool,
            _inflight: inflight,
        })
    }

    /// A response head arrived: passive health hears of it, and the caller gets what it must
    /// keep until the body ends.
    fn answered(
        &self,
        backend: &Arc<Backend>,
        started: Instant,
        inflight: Option<InflightGuard>,
        response: Response<UpstreamBody>,
        h1: Option<http1::SendRequest<RequestBody>>,
    ) -> Forwarded {
        let upstream_time = self.record_answer(backend, started, response.status().as_u16());
        Forwarded {
            response,
            backend: backend.clone(),
            upstream_time,
            release: self.release(backend, inflight, h1),
        }
    }

    fn report_failure(&self, backend: &Backend, why: &ProxyError) {
        if let Some(ejected_for) = backend.report_failure(&self.passive) {
            tracing::warn!(upstream = %self.name, backend = %backend.addr, reason = %why, ?ejected_for, "backend ejected by passive health");
        }
    }
}

// The request is handed back whole on the (rare) not-sent path; boxing it buys nothing.
#[allow(clippy::large_enum_variant)]
enum SendError {
    NotSent(Request<RequestBody>),
    Failed(hyper::Error),
}

async fn send(
    conn: Conn,
    req: Request<RequestBody>,
) -> Result<(Response<Incoming>, Option<http1::SendRequest<RequestBody>>), SendError> {
    match conn {
        Conn::H1(mut s) => {
            if s.ready().await.is_err() {
                return Err(SendError::NotSent(req));
            }
            match s.try_send_request(req).await {
                Ok(resp) => Ok((resp, Some(s))),
                Err(mut e) => match e.take_message() {
                    Some(req) => Err(SendError::NotSent(req)),
                    None => Err(SendError::Failed(e.into_error())),
                },
            }
        }
        Conn::H2(mut s) => {
            if s.ready().await.is_err() {
                return Err(SendError::NotSent(req));
            }
            match s.try_send_request(req).await {
                Ok(resp) => Ok((resp, None)),
                Err(mut e) => match e.take_message() {
                    Some(req) => Err(SendError::NotSent(req)),
                    None => Err(SendError::Failed(e.into_error())),
                },
            }
        }
    }
}

/// Tells a failing client body (too large, malformed chunks) apart from a failing backend.
fn classify_send_error(addr: &str, e: hyper::Error) -> ProxyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if s.is::<crate::pipeline::body::BodyTooLarge>() {
            return ProxyError::BodyTooLarge;
        }
        // hyper::Error inside the chain (not the outer one) came from reading the client's body.
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if !std::ptr::eq(h, &e) {
                return ProxyError::ClientBody(h.to_string());
            }
        }
        source = s.source();
    }
    ProxyError::UpstreamFailed {
        addr: addr.to_string(),
        reason: e.to_string(),
    }
}

pub fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}
