//! Cache stage: a shared HTTP cache (RFC 9111) in front of an upstream. Freshness, storability,
//! Vary and revalidation come from `http-cache-semantics`; stale-while-revalidate and
//! stale-if-error (RFC 5861), request coalescing, client conditionals, `Cache-Status` (RFC 9211)
//! and purge are here. Reads the request after the route's request stages; must not change the
//! response it stores (response stages run after it, on every answer).

pub mod disk;
pub mod fill;
pub mod key;
pub mod status;
pub mod store;

use crate::compress::{Compression, Negotiated};
use crate::pipeline::body::{OnBodyEnd, RequestBody, ResponseBody};
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
    async fn fetch(&self, req: Request<RequestBody>) -> Result<Fetched, ProxyError> {
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
        }
        return Ok(answer);
    }
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
            let fill = Fill::new(cache.store.clone(), key, entry, cache.max_object, expected, flight);
            ResponseBody::Filling {
                inner: Box::new(f.body),
                fill: Some(Box::new(fill)),
            }
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
    let policy = CachePolicy::new_options(req, resp, now, CacheOptions::default());
    if !policy.is_storable() {
        return None;
    }
    if !cache.store_set_cookie && resp.headers.contains_key(header::SET_COOKIE) {
        return None;
    }
    if content_length(&resp.headers).is_some_and(|n| n > cache.max_object) {
        return None;
    }
    let cc = directives(&resp.headers);
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
    })
}

fn hit(entry: &Entry, req: &Parts, now: SystemTime, detail: Option<&'static str>) -> Answer {
    let mut headers = entry.headers.clone();
    if let Ok(age) = HeaderValue::from_str(&entry.policy.age(now).as_secs().to_string()) {
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

async fn revalidate(
    cache: &Arc<Cache>,
    origin: &Origin,
    key: &str,
    entry: Arc<Entry>,
    conditional: Parts,
    client: &Parts,
    now: SystemTime,
) -> Result<Answer, ProxyError> {
    let conditional = origin_conditional(&entry, conditional);
    let stale_for = entry.stale_for(now);
    let client_forbids_stale = directives(&client.headers).forbids_stale;
    if entry.may_serve_stale && !client_forbids_stale && stale_for <= entry.stale_while_revalidate {
        // Serve stale now; one background request refreshes the entry.
        if let Flight::Leader(guard) = cache.store.join(key) {
            let (cache, origin, key, entry) = (cache.clone(), origin.clone(), key.to_string(), entry.clone());
            let client = request_copy(client);
            tokio::spawn(async move { refresh(cache, origin, key, entry, conditional, client, guard).await });
        }
        return Ok(hit(&entry, client, now, Some("stale-while-revalidate")));
    }
    let may_fall_back = |down: bool| {
        entry.may_serve_stale
            && !client_forbids_stale
            && (stale_for <= entry.stale_if_error || (down && cache.stale_if_down))
    };
    let request = Request::from_parts(conditional, RequestBody::Empty);
    match origin.fetch(request).await {
        Ok(f) if f.parts.status == StatusCode::NOT_MODIFIED => {
            let backend = (f.backend.clone(), f.upstream_time);
            match entry.policy.after_response(client, &f.parts, SystemTime::now()) {
                AfterResponse::NotModified(policy, parts) => {
                    let refreshed = refreshed_entry(&entry, policy, &parts.headers, f.parts.headers.get(header::DATE));
                    let mut answer = hit(&refreshed, client, SystemTime::now(), None);
                    cache.store.replace(key, &entry, refreshed);
                    answer.status = CacheStatus::Forward {
                        fwd: "stale",
                        fwd_status: Some(304),
                        stored: true,
                        ttl: answer_ttl(&answer.status),
                        collapsed: false,
                    };
                    answer.upstream = Some(backend);
                    answer.release = Some(f.release);
                    Ok(answer)
                }
                // The 304 does not match what we hold: pass it on as the origin sent it.
                AfterResponse::Modified(..) => Ok(Answer {
                    response: Response::from_parts(f.parts, f.body),
                    upstream: Some(backend),
                    release: Some(f.release),
                    status: CacheStatus::Forward {
                        fwd: "stale",
                        fwd_status: Some(304),
                        stored: false,
                        ttl: None,
                        collapsed: false,
                    },
                }),
            }
        }
        Ok(f) if f.parts.status.is_server_error() && may_fall_back(false) => {
            let mut answer = hit(&entry, client, now, Some("stale-if-error"));
            answer.upstream = Some((f.backend, f.upstream_time));
            Ok(answer)
        }
        Ok(f) => {
            // A new full response replaces the stored one (when storable).
            let entry = storable_entry(cache, key, client, &f.parts, SystemTime::now(), f.encoded);
            let stored = entry.is_some();
            let body = match entry {
                Some(e) => {
                    let fill = Fill::new(
                        cache.store.clone(),
                        key.to_string(),
                        e,
                        cache.max_object,
                        content_length(&f.parts.headers),
                        None,
                    );
                    ResponseBody::Filling {
                        inner: Box::new(f.body),
                        fill: Some(Box::new(fill)),
                    }
                }
                None => f.body,
            };
            let status = CacheStatus::Forward {
                fwd: "stale",
                fwd_status: Some(f.parts.status.as_u16()),
                stored,
                ttl: None,
                collapsed: false,
            };
            Ok(Answer {
                response: Response::from_parts(f.parts, body),
                upstream: Some((f.backend, f.upstream_time)),
                release: Some(f.release),
                status,
            })
        }
        Err(e) => {
            let down = matches!(
                e,
                ProxyError::NoHealthyBackend(_)
                    | ProxyError::Connect(_)
                    | ProxyError::UpstreamFailed { .. }
                    | ProxyError::UpstreamTimeout { .. }
            );
            if may_fall_back(down) {
                tracing::warn!(cache = %cache.name, reason = %e, "origin failing; serving stale content");
                Ok(hit(&entry, client, now, Some("stale-if-error")))
            } else {
                Err(e)
            }
        }
    }
}

/// The conditional request as the origin must see it: an entity tag we weakened when encoding is
/// sent back as the origin's own strong one.
fn origin_conditional(entry: &Entry, mut conditional: Parts) -> Parts {
    if entry.encoded {
        if let Some(v) = conditional
            .headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
        {
            let strong: Vec<&str> = v.split(',').map(|t| t.trim().trim_start_matches("W/")).collect();
            if let Ok(v) = HeaderValue::from_str(&strong.join(", ")) {
                conditional.headers.insert(header::IF_NONE_MATCH, v);
            }
        }
    }
    conditional
}

/// Background refresh for stale-while-revalidate: one conditional request, result stored.
async fn refresh(
    cache: Arc<Cache>,
    origin: Origin,
    key: String,
    entry: Arc<Entry>,
    conditional: Parts,
    client: Parts,
    _guard: FlightGuard,
) {
    let result = origin.fetch(Request::from_parts(conditional, RequestBody::Empty)).await;
    let Ok(f) = result else { return };
    let now = SystemTime::now();
    if f.parts.status == StatusCode::NOT_MODIFIED {
        if let AfterResponse::NotModified(policy, parts) = entry.policy.after_response(&client, &f.parts, now) {
            cache.store.replace(
                &key,
                &entry,
                refreshed_entry(&entry, policy, &parts.headers, f.parts.headers.get(header::DATE)),
            );
        }
        return;
    }
    let mut release = f.release;
    if let Some(new_entry) = storable_entry(&cache, &key, &client, &f.parts, now, f.encoded) {
        let expected = content_length(&f.parts.headers);
        let mut fill = Fill::new(cache.store.clone(), key, new_entry, cache.max_object, expected, None);
        let mut body = f.body;
        while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
            match frame {
                Ok(f) => {
                    if let Some(d) = f.data_ref() {
                        if !fill.data(d) {
                            return;
                        }
                    }
                }
                Err(_) => return,
            }
        }
        fill.finish();
    }
    release.finish(true, 0);
}

/// The stored entry updated by a 304: new policy, headers merged by the policy (RFC 9111 §4.3.4).
/// `date` is the 304's own Date, if it sent one.
fn refreshed_entry(old: &Entry, policy: CachePolicy, merged: &HeaderMap, date: Option<&HeaderValue>) -> Entry {
    let now = SystemTime::now();
    let mut headers = stored_headers(merged);
    // The policy renders Age and Date for "now"; the stored head keeps what the origin said.
    headers.remove(header::WARNING);
    headers.remove(header::DATE);
    if let Some(d) = date.or(old.headers.get(header::DATE)) {
        headers.insert(header::DATE, d.clone());
    }
    if old.encoded {
        // The 304 speaks of the origin's representation; ours stays encoded.
        crate::compress::weaken_etag(&mut headers);
        crate::compress::add_vary(&mut headers);
    }
    // What the origin now says about stale content replaces what it said before.
    let cc = directives(&headers);
    Entry {
        fresh_until: now + policy.time_to_live(now),
        policy,
        status: old.status,
        headers,
        body: old.body.clone(),
        url: old.url.clone(),
        vary_key: old.vary_key.clone(),
        req_host: old.req_host.clone(),
        tags: old.tags.clone(),
        // Both windows apply only while `may_serve_stale` holds.
        stale_while_revalidate: cc.stale_while_revalidate,
        stale_if_error: cc.stale_if_error,
        may_serve_stale: !cc.forbids_stale,
        encoded: old.encoded,
    }
}

/// Response headers worth storing: without hop-by-hop fields and the proxy's own.
fn stored_headers(h: &HeaderMap) -> HeaderMap {
    let mut out = h.clone();
    crate::upstream::headers::strip_hop_by_hop(&mut out, false);
    out.remove(header::AGE);
    out.remove(status::NAME);
    out
}

fn answer_ttl(status: &CacheStatus) -> Option<i64> {
    match status {
        CacheStatus::Hit { ttl, .. } => Some(*ttl),
        CacheStatus::Forward { ttl, .. } => *ttl,
    }
}

/// Client conditionals answered from the stored response (RFC 9110 §13.2.2 order).
fn not_modified(req: &Parts, stored: &HeaderMap) -> bool {
    if let Some(inm) = req.headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        let Some(etag) = stored.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let strip = |t: &str| t.trim().trim_start_matches("W/").to_string();
        return inm.split(',').any(|t| t.trim() == "*" || strip(t) == strip(etag));
    }
    if let (Some(ims), Some(lm)) = (
        req.headers.get(header::IF_MODIFIED_SINCE),
        stored.get(header::LAST_MODIFIED),
    ) {
        let parse = |v: &HeaderValue| v.to_str().ok().and_then(|s| httpdate::parse_http_date(s).ok());
        if let (Some(ims), Some(lm)) = (parse(ims), parse(lm)) {
            return lm <= ims;
        }
    }
    false
}

/// Request headers named by the response's Vary, as one comparable string.
fn vary_key<R: RequestView>(resp: &HeaderMap, req: &R) -> String {
    let mut names: Vec<String> = resp
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names.dedup();
    let mut out = String::new();
    for n in names {
        out.push_str(&n);
        out.push('=');
        for v in req.header_values(n.as_str()) {
            out.push_str(&String::from_utf8_lossy(v));
            out.push(',');
        }
        out.push('\n');
    }
    out
}

struct Directives {
    stale_while_revalidate: Duration,
    stale_if_error: Duration,
    /// no-cache, must-revalidate or proxy-revalidate (response), or no-cache / max-age=0 style
    /// demands (request): stale content must not be served.
    forbids_stale: bool,
}

fn directives(headers: &HeaderMap) -> Directives {
    let mut d = Directives {
        stale_while_revalidate: Duration::ZERO,
        stale_if_error: Duration::ZERO,
        forbids_stale: false,
    };
    for part in headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let (name, value) = part.split_once('=').map_or((part.trim(), None), |(n, v)| {
            (n.trim(), Some(v.trim().trim_matches('"')))
        });
        let secs = || value.and_then(|v| v.parse::<u64>().ok()).map(Duration::from_secs);
        match name.to_ascii_lowercase().as_str() {
            "stale-while-revalidate" => d.stale_while_revalidate = secs().unwrap_or_default(),
            "stale-if-error" => d.stale_if_error = secs().unwrap_or_default(),
            "no-cache" | "must-revalidate" | "proxy-revalidate" | "no-store" => d.forbids_stale = true,
            _ => {}
        }
    }
    if headers
        .get(header::PRAGMA)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache"))
        && !headers.contains_key(header::CACHE_CONTROL)
    {
        d.forbids_stale = true;
    }
    d
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// The request as the policy needs it (method, URI, headers), kept across the forward.
fn request_copy(p: &Parts) -> Parts {
    let mut r = Request::new(());
    *r.method_mut() = p.method.clone();
    *r.uri_mut() = p.uri.clone();
    *r.headers_mut() = p.headers.clone();
    r.into_parts().0
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
            age: entry.policy.age(now).as_secs(),
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
