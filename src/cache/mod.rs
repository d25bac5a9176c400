//! Cache stage: a shared HTTP cache (RFC 9111) in front of an upstream. Freshness, storability,
//! Vary and revalidation come from `http-cache-semantics`; stale-while-revalidate and
//! stale-if-error (RFC 5861), request coalescing, client conditionals, `Cache-Status` (RFC 9211)
//! and purge are here. Reads the request after the route's request stages; must not change the
//! response it stores (response stages run after it, on every answer).

pub mod disk;
pub mod fill;
pub mod key;
mod policy;
mod revalidate;
pub mod sealed;
pub mod status;
pub mod store;

use crate::compress::{Compression, Negotiated};
use crate::pipeline::body::{OnBodyEnd, RequestBody, ResponseBody};
use crate::pipeline::interim::Interim;
use crate::pipeline::range;
use crate::pipeline::respond::ProxyError;
use crate::route::RequestView;
use crate::upstream::{Backend, Upstream};
use bytes::Bytes;
use fill::Fill;
use http::request::Parts;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_cache_semantics::{AfterResponse, BeforeRequest, CacheOptions, CachePolicy};
use key::KeyRule;
use policy::*;
use revalidate::*;
use status::{secs, CacheStatus};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use store::{Entry, Flight, FlightGuard, Store};

/// A compiled `[cache.NAME]` used by a route: settings from the snapshot, store from the runtime.
pub struct Cache {
    pub name: Arc<str>,
    pub store: Arc<Store>,
    pub key: KeyRule,
    pub max_object: u64,
    pub store_set_cookie: bool,
    pub stale_if_down: bool,
    pub lock_timeout: Duration,
    pub tag_header: HeaderName,
}

/// What the cache stage produced: an answer from the cache, or the upstream's (possibly being
/// copied into the cache as it streams).
pub struct Answer {
    pub response: Response<ResponseBody>,
    pub upstream: Option<(Arc<Backend>, Duration)>,
    pub release: Option<Box<dyn OnBodyEnd>>,
    pub status: CacheStatus,
}

/// Where the request goes when the cache cannot answer it.
#[derive(Clone)]
pub struct Origin {
    pub upstream: Arc<Upstream>,
    pub key_hash: Option<u64>,
    pub preferred: Option<usize>,
    /// The route's compression, applied to what the origin sends before it is stored, so hits
    /// are not encoded again.
    pub compress: Option<(Arc<Compression>, Negotiated)>,
    /// Where the backend's 1xx responses go (the waiting client's connection), if anywhere.
    pub interim: Option<Interim>,
}

/// An origin response (encoded when the route compresses).
struct Fetched {
    parts: http::response::Parts,
    body: ResponseBody,
    backend: Arc<Backend>,
    upstream_time: Duration,
    release: Box<dyn OnBodyEnd>,
    /// The body was encoded here (not by the origin): its ETag was weakened by us.
    encoded: bool,
}

impl Origin {
    async fn fetch(&self, mut req: Request<RequestBody>) -> Result<Fetched, ProxyError> {
        if let Some(i) = &self.interim {
            req.extensions_mut().insert(i.clone());
        }
        let method = req.method().clone();
        let fwd = self.upstream.forward(req, self.key_hash, self.preferred).await?;
        let (mut parts, incoming) = fwd.response.into_parts();
        let mut body = ResponseBody::Upstream { inner: incoming };
        let mut encoded = false;
        if let Some((compression, negotiated)) = &self.compress {
            let before = parts.headers.get(header::CONTENT_ENCODING).cloned();
            body = compression.apply(*negotiated, &method, &mut parts, body);
            encoded = parts.headers.get(header::CONTENT_ENCODING) != before.as_ref();
        }
        Ok(Fetched {
            parts,
            body,
            backend: fwd.backend,
            upstream_time: fwd.upstream_time,
            release: fwd.release,
            encoded,
        })
    }
}

pub async fn fetch(
    cache: &Arc<Cache>,
    origin: Origin,
    req: Request<RequestBody>,
    scheme: &str,
    host: &str,
) -> Result<Answer, ProxyError> {
    let now = SystemTime::now();
    let (parts, body) = req.into_parts();
    let key = cache.key.primary(scheme, host, &parts);
    // The request as the cache policy sees it: with the query as the key normalises it.
    let mut view = request_copy(&parts);
    cache.key.normalize(&mut view);
    if parts.method != Method::GET && parts.method != Method::HEAD {
        // RFC 9111 §4.4: a successful unsafe request invalidates what is stored for its URI.
        let answer = forward(&origin, Request::from_parts(parts, body), "request").await?;
        let s = answer.response.status();
        if s.is_success() || s.is_redirection() {
            cache.store.remove(&key);
            // Location and Content-Location on the same host name changed resources too (when
            // the key is the URL alone, so it can be rebuilt from them).
            if cache.key.is_url_only() {
                for name in [header::LOCATION, header::CONTENT_LOCATION] {
                    if let Some(target) = answer.response.headers().get(&name).and_then(|v| v.to_str().ok()) {
                        if let Some(other) = same_host_key(scheme, host, target) {
                            cache.store.remove(&other);
                        }
                    }
                }
            }
        }
        return Ok(answer);
    }
    let only_if_cached = view.headers.get_all(header::CACHE_CONTROL).iter().any(|v| {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .any(|d| d.trim() == "only-if-cached")
    });
    let mut body = Some(body);
    let mut reason = "uri-miss";
    let mut collapsed = false;
    for round in 0..2 {
        if let Some(variants) = cache.store.lookup(&key).await {
            reason = "vary-miss";
            for entry in variants.iter() {
                match entry.policy.before_request(&view, now) {
                    BeforeRequest::Fresh(_) => return Ok(hit(entry, &parts, now, None)),
                    BeforeRequest::Stale { request, matches: true } => {
                        return revalidate(cache, &origin, &key, entry.clone(), request, &view, now).await;
                    }
                    BeforeRequest::Stale { matches: false, .. } => {}
                }
            }
        }
        if round == 1 {
            break;
        }
        if only_if_cached {
            // RFC 9111 §5.2.1.7: nothing usable is stored, and the origin must not be asked.
            return Err(ProxyError::NotCached);
        }
        match cache.store.join(&key) {
            Flight::Leader(guard) => {
                let body = body.take().unwrap_or(RequestBody::Empty);
                return miss(cache, &origin, key, parts, body, Some(guard), reason, collapsed).await;
            }
            Flight::Follower(mut rx) => {
                // Wait for the request already fetching this key, then look again.
                let _ = tokio::time::timeout(cache.lock_timeout, rx.changed()).await;
                collapsed = true;
            }
        }
    }
    let body = body.take().unwrap_or(RequestBody::Empty);
    miss(cache, &origin, key, parts, body, None, reason, collapsed).await
}

async fn forward(origin: &Origin, req: Request<RequestBody>, reason: &'static str) -> Result<Answer, ProxyError> {
    let f = origin.fetch(req).await?;
    let status = CacheStatus::Forward {
        fwd: reason,
        fwd_status: Some(f.parts.status.as_u16()),
        stored: false,
        ttl: None,
        collapsed: false,
    };
    Ok(Answer {
        response: Response::from_parts(f.parts, f.body),
        upstream: Some((f.backend, f.upstream_time)),
        release: Some(f.release),
        status,
    })
}

#[allow(clippy::too_many_arguments)]
async fn miss(
    cache: &Arc<Cache>,
    origin: &Origin,
    key: String,
    parts: Parts,
    body: RequestBody,
    flight: Option<FlightGuard>,
    reason: &'static str,
    collapsed: bool,
) -> Result<Answer, ProxyError> {
    let now = SystemTime::now();
    let mut parts = parts;
    if parts.method == Method::GET {
        // Fetch the whole object so it can be stored; ranges are then served from the cache
        // (this answer goes out whole, which RFC 9110 §14.2 allows).
        parts.headers.remove(header::RANGE);
        parts.headers.remove(header::IF_RANGE);
    }
    let mut request_view = request_copy(&parts);
    cache.key.normalize(&mut request_view);
    let f = origin.fetch(Request::from_parts(parts, body)).await?;
    let resp_parts = f.parts;
    let entry = storable_entry(cache, &key, &request_view, &resp_parts, now, f.encoded);
    let stored = entry.is_some();
    let ttl = entry
        .as_ref()
        .map(|e| secs(e.fresh_until.duration_since(now).unwrap_or_default()));
    let body = match entry {
        Some(entry) => {
            let expected = content_length(&resp_parts.headers);
            Fill::new(cache.store.clone(), key, entry, cache.max_object, expected, flight).wrap(f.body)
        }
        None => f.body,
    };
    let status = CacheStatus::Forward {
        fwd: reason,
        fwd_status: Some(resp_parts.status.as_u16()),
        stored,
        ttl,
        collapsed,
    };
    Ok(Answer {
        response: Response::from_parts(resp_parts, body),
        upstream: Some((f.backend, f.upstream_time)),
        release: Some(f.release),
        status,
    })
}

/// A stored entry for this response if it may be stored (body filled in later).
fn storable_entry(
    cache: &Cache,
    key: &str,
    req: &Parts,
    resp: &http::response::Parts,
    now: SystemTime,
    encoded: bool,
) -> Option<Entry> {
    if req.method != Method::GET {
        return None;
    }
    let judged = policy_response(resp, cache.store_set_cookie);
    let policy = CachePolicy::new_options(req, &judged, now, CacheOptions::default());
    if !policy.is_storable() {
        return None;
    }
    if !cache.store_set_cookie && resp.headers.contains_key(header::SET_COOKIE) {
        return None;
    }
    if content_length(&resp.headers).is_some_and(|n| n > cache.max_object) {
        return None;
    }
    let cc = directives(&judged.headers);
    Some(Entry {
        url: key.split('\n').next().unwrap_or(key).to_string(),
        vary_key: vary_key(&resp.headers, req),
        req_host: req.headers.get(header::HOST).cloned(),
        tags: resp
            .headers
            .get_all(&cache.tag_header)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split([' ', ',']))
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        status: resp.status,
        headers: stored_headers(&resp.headers),
        fresh_until: now + policy.time_to_live(now),
        // Both windows apply only while `may_serve_stale` holds.
        stale_while_revalidate: cc.stale_while_revalidate,
        stale_if_error: cc.stale_if_error,
        may_serve_stale: !cc.forbids_stale,
        encoded,
        policy,
        body: Bytes::new(),
        sealed: None,
        memo: Default::default(),
    })
}

fn hit(entry: &Entry, req: &Parts, now: SystemTime, detail: Option<&'static str>) -> Answer {
    let mut headers = entry.headers.clone();
    if let Ok(age) = HeaderValue::from_str(&entry.age(now).as_secs().to_string()) {
        headers.insert(header::AGE, age);
    }
    let stale_for = entry.stale_for(now);
    let ttl = if stale_for > Duration::ZERO {
        -secs(stale_for)
    } else {
        secs(entry.fresh_until.duration_since(now).unwrap_or_default())
    };
    let status = CacheStatus::Hit { ttl, detail };
    if (entry.status == StatusCode::OK) && not_modified(req, &headers) {
        let mut r = Response::new(ResponseBody::Empty);
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        for name in [
            header::ETAG,
            header::CACHE_CONTROL,
            header::DATE,
            header::EXPIRES,
            header::VARY,
            header::CONTENT_LOCATION,
            header::LAST_MODIFIED,
            header::AGE,
        ] {
            for v in headers.get_all(&name) {
                r.headers_mut().append(name.clone(), v.clone());
            }
        }
        return Answer {
            response: r,
            upstream: None,
            release: None,
            status,
        };
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let mut code = entry.status;
    let mut body = entry.body.clone();
    if req.method == Method::GET && entry.status == StatusCode::OK {
        if let range::RangeAnswer::Partial {
            status: s,
            headers: extra,
            body: part,
        } = range::answer(&req.headers, &headers, &entry.body)
        {
            code = s;
            body = part;
            headers.remove(header::CONTENT_LENGTH);
            for (name, value) in &extra {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
    let body = if req.method == Method::HEAD {
        ResponseBody::Empty
    } else {
        ResponseBody::Full { data: Some(body) }
    };
    let mut r = Response::new(body);
    *r.status_mut() = code;
    *r.headers_mut() = headers;
    Answer {
        response: r,
        upstream: None,
        release: None,
        status,
    }
}

/// The key of an absolute or path-absolute `target` on this scheme and host, if it is one.
fn same_host_key(scheme: &str, host: &str, target: &str) -> Option<String> {
    if target.starts_with('/') && !target.starts_with("//") {
        return Some(format!("{scheme}://{host}{target}"));
    }
    let rest = target.strip_prefix(scheme)?.strip_prefix("://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let name = authority.rsplit_once(':').map_or(authority, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            authority
        }
    });
    (name.eq_ignore_ascii_case(host)).then(|| format!("{scheme}://{host}{}", if path.is_empty() { "/" } else { path }))
}

/// What purge removes.
pub enum Purge<'a> {
    Url(&'a str),
    Prefix(&'a str),
    Tag(&'a str),
}

/// A fresh stored response found for a plain GET (see `Cache::fresh_hit`).
pub struct FreshHit {
    pub entry: Arc<Entry>,
    pub age: u64,
    pub ttl: i64,
}

impl Cache {
    /// The stored response for a plain GET that needs nothing but a fresh memory hit: no
    /// request directives, conditionals, ranges or credentials (the caller checks those), a
    /// variant whose Vary values and Host match, still fresh. `None` sends the request down the
    /// general path, which decides everything else.
    pub fn fresh_hit<R: RequestView>(
        &self,
        req: &R,
        path: &str,
        scheme: &str,
        host: &str,
        raw_host: Option<&[u8]>,
        now: SystemTime,
    ) -> Option<FreshHit> {
        let key = self.key.primary_for(scheme, host, path, req);
        let variants = self.store.peek(&key)?;
        let entry = variants.iter().find(|e| {
            e.fresh_until > now
                && e.req_host.as_ref().map(HeaderValue::as_bytes) == raw_host
                && !e.varies_on_everything()
                && (e.vary_key.is_empty() || e.vary_key == vary_key(&e.headers, req))
        })?;
        Some(FreshHit {
            entry: entry.clone(),
            age: entry.age(now).as_secs(),
            ttl: secs(entry.fresh_until.duration_since(now).unwrap_or_default()),
        })
    }

    /// Removes matching entries; returns how many keys were removed.
    pub fn purge(&self, what: &Purge) -> usize {
        self.store.remove_where(|url, tags| match what {
            Purge::Url(u) => url == *u,
            Purge::Prefix(p) => url.starts_with(p),
            Purge::Tag(t) => tags.iter().any(|x| x == t),
        })
    }
}

#[cfg(test)]
mod tests;
