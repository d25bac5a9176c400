//! Stale entries: conditional requests to the origin, 304 merging (RFC 9111 §4.3),
//! stale-while-revalidate in the background and stale-if-error (RFC 5861).

use super::*;
use http_cache_semantics::CachePolicy;

pub(super) async fn revalidate(
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
    let client_forbids_stale = client_forbids_stale(&client.headers);
    if entry.may_serve_stale && !client_forbids_stale && stale_for <= entry.stale_while_revalidate {
        // Serve stale now; one background request refreshes the entry.
        if let Flight::Leader(guard) = cache.store.join(key) {
            // Nobody waits for the refresh's interim responses.
            let origin = Origin {
                interim: None,
                ..origin.clone()
            };
            let (cache, key, entry) = (cache.clone(), key.to_string(), entry.clone());
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
            match accept_304(cache, &entry, client, &f.parts) {
                Some(policy) => {
                    let refreshed = refreshed_entry(&entry, policy, &f.parts.headers);
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
                // The 304 names another representation than the one we hold: the client did
                // not ask for a 304, so fetch the response again without conditions.
                None => {
                    let mut release = f.release;
                    release.finish(true, 0);
                    miss(
                        cache,
                        origin,
                        key.to_string(),
                        request_copy(client),
                        RequestBody::Empty,
                        None,
                        "stale",
                        false,
                    )
                    .await
                }
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
                Some(e) => Fill::new(
                    cache.store.clone(),
                    key.to_string(),
                    e,
                    cache.max_object,
                    content_length(&f.parts.headers),
                    None,
                )
                .wrap(f.body),
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
pub(super) fn origin_conditional(entry: &Entry, mut conditional: Parts) -> Parts {
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
pub(super) async fn refresh(
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
        if let Some(policy) = accept_304(&cache, &entry, &client, &f.parts) {
            cache
                .store
                .replace(&key, &entry, refreshed_entry(&entry, policy, &f.parts.headers));
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

/// The policy updated by a 304 to our conditional request, if it answers for the stored entry.
/// A 304 that carries no validator answers the conditional we sent, which named this entry's
/// (RFC 9111 §4.3.4 leaves the choice to the cache when only one response could match).
fn accept_304(cache: &Cache, entry: &Entry, client: &Parts, resp: &http::response::Parts) -> Option<CachePolicy> {
    let mut view = policy_response(resp, cache.store_set_cookie);
    if !view.headers.contains_key(header::ETAG) && !view.headers.contains_key(header::LAST_MODIFIED) {
        for name in [header::ETAG, header::LAST_MODIFIED] {
            if let Some(v) = entry.headers.get(&name) {
                view.headers.insert(name, v.clone());
            }
        }
    }
    match entry.policy.after_response(client, &view, SystemTime::now()) {
        AfterResponse::NotModified(policy, _) => Some(policy),
        AfterResponse::Modified(..) => None,
    }
}

/// The stored entry updated by a 304 (RFC 9111 §3.2): each field the 304 sends replaces the
/// stored one, except those that describe the stored body.
pub(super) fn refreshed_entry(old: &Entry, policy: CachePolicy, fresh: &HeaderMap) -> Entry {
    let now = SystemTime::now();
    let mut headers = old.headers.clone();
    let fresh = stored_headers(fresh);
    for name in fresh.keys() {
        if matches!(
            name.as_str(),
            "content-length" | "content-encoding" | "content-range" | "transfer-encoding" | "warning"
        ) {
            continue;
        }
        headers.remove(name);
        for v in fresh.get_all(name) {
            headers.append(name.clone(), v.clone());
        }
    }
    if old.encoded {
        // The 304 speaks of the origin's representation; ours stays encoded.
        crate::compress::weaken_etag(&mut headers);
        crate::compress::add_vary(&mut headers);
    }
    // What the origin now says about stale content replaces what it said before.
    let cc = directives(&policy_headers(&headers, false));
    Entry {
        fresh_until: now + policy.time_to_live(now),
        policy,
        status: old.status,
        headers,
        body: old.body.clone(),
        sealed: old.sealed.clone(),
        url: old.url.clone(),
        vary_key: old.vary_key.clone(),
        req_host: old.req_host.clone(),
        tags: old.tags.clone(),
        // Both windows apply only while `may_serve_stale` holds.
        stale_while_revalidate: cc.stale_while_revalidate,
        stale_if_error: cc.stale_if_error,
        may_serve_stale: !cc.forbids_stale,
        encoded: old.encoded,
        memo: Default::default(),
    }
}

pub(super) fn answer_ttl(status: &CacheStatus) -> Option<i64> {
    match status {
        CacheStatus::Hit { ttl, .. } => Some(*ttl),
        CacheStatus::Forward { ttl, .. } => *ttl,
    }
}
