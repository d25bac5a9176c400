//! RFC 9111 details the cache applies around `http-cache-semantics`: the normalised views the
//! policy is computed from (directive case, CDN-Cache-Control, Age and Expires parsing,
//! statuses with explicit freshness), stored headers, Vary keys, client conditionals and
//! stale-content directives.

use super::*;

/// Response headers worth storing: without hop-by-hop fields, the proxy's own, and the fields
/// a qualified `no-cache="..."` or `private="..."` keeps out of a shared cache.
pub(super) fn stored_headers(h: &HeaderMap) -> HeaderMap {
    let mut out = h.clone();
    crate::upstream::headers::strip_hop_by_hop(&mut out, false);
    out.remove(header::AGE);
    out.remove(status::NAME);
    for field in qualified_fields(h) {
        out.remove(field.as_str());
    }
    out
}

/// Cache-Control directives of `h` as (lower-case name, argument without quotes); commas inside
/// a quoted argument do not split.
pub(super) fn cache_control_items(h: &HeaderMap) -> Vec<(String, Option<String>)> {
    let mut items = Vec::new();
    for value in h.get_all(header::CACHE_CONTROL).iter().filter_map(|v| v.to_str().ok()) {
        let mut rest = value;
        while !rest.trim().is_empty() {
            let end = rest.find([',', '=']).unwrap_or(rest.len());
            let name = rest[..end].trim().to_ascii_lowercase();
            rest = &rest[end..];
            let mut arg = None;
            if let Some(after) = rest.strip_prefix('=') {
                let after = after.trim_start();
                if let Some(quoted) = after.strip_prefix('"') {
                    let close = quoted.find('"').unwrap_or(quoted.len());
                    arg = Some(quoted[..close].to_string());
                    rest = quoted.get(close + 1..).unwrap_or("");
                    rest = rest.find(',').map_or("", |i| &rest[i..]);
                } else {
                    let end = after.find(',').unwrap_or(after.len());
                    arg = Some(after[..end].trim().to_string());
                    rest = &after[end..];
                }
            }
            rest = rest.strip_prefix(',').unwrap_or(rest);
            if !name.is_empty() {
                items.push((name, arg));
            }
        }
    }
    items
}

/// Field names listed by qualified `no-cache` and `private` directives (RFC 9111 §5.2.2.4,
/// §5.2.2.7): a shared cache may store and reuse the response, but without these fields.
fn qualified_fields(h: &HeaderMap) -> Vec<HeaderName> {
    cache_control_items(h)
        .into_iter()
        .filter(|(name, _)| name == "no-cache" || name == "private")
        .filter_map(|(_, arg)| arg)
        .flat_map(|arg| {
            arg.split(',')
                .filter_map(|f| HeaderName::from_bytes(f.trim().as_bytes()).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Cache-Control without its qualified `no-cache`/`private` directives: what they limit is
/// removed from the stored copy instead (see `stored_headers`).
fn drop_qualified_directives(h: &mut HeaderMap) {
    let items = cache_control_items(h);
    let qualified = |(name, arg): &(String, Option<String>)| {
        (name == "no-cache" || name == "private") && arg.as_deref().is_some_and(|a| !a.trim().is_empty())
    };
    if !items.iter().any(qualified) {
        return;
    }
    let kept: Vec<String> = items
        .iter()
        .filter(|i| !qualified(i))
        .map(|(name, arg)| match arg {
            Some(a) if a.contains([',', ' ']) => format!("{name}=\"{a}\""),
            Some(a) => format!("{name}={a}"),
            None => name.clone(),
        })
        .collect();
    h.remove(header::CACHE_CONTROL);
    if let Ok(v) = HeaderValue::from_str(&kept.join(", ")) {
        if !kept.is_empty() {
            h.insert(header::CACHE_CONTROL, v);
        }
    }
}

/// Client conditionals answered from the stored response (RFC 9110 §13.2.2 order).
pub(super) fn not_modified(req: &Parts, stored: &HeaderMap) -> bool {
    if let Some(inm) = req.headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        let Some(etag) = stored.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let strip = |t: &str| t.trim().trim_start_matches("W/").to_string();
        return inm.split(',').any(|t| t.trim() == "*" || strip(t) == strip(etag));
    }
    // Without Last-Modified, the stored Date stands in for it (RFC 9110 §13.1.3).
    if let (Some(ims), Some(lm)) = (
        req.headers.get(header::IF_MODIFIED_SINCE),
        stored.get(header::LAST_MODIFIED).or(stored.get(header::DATE)),
    ) {
        let parse = |v: &HeaderValue| v.to_str().ok().and_then(|s| httpdate::parse_http_date(s).ok());
        if let (Some(ims), Some(lm)) = (parse(ims), parse(lm)) {
            return lm <= ims;
        }
    }
    false
}

/// Request headers named by the response's Vary, as one comparable string.
pub(super) fn vary_key<R: RequestView>(resp: &HeaderMap, req: &R) -> String {
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

pub(super) struct Directives {
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    /// no-cache, must-revalidate or proxy-revalidate (response), or no-cache / max-age=0 style
    /// demands (request): stale content must not be served.
    pub forbids_stale: bool,
}

pub(super) fn directives(headers: &HeaderMap) -> Directives {
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
            // s-maxage implies proxy-revalidate for a shared cache (RFC 9111 §5.2.2.10).
            "no-cache" | "must-revalidate" | "proxy-revalidate" | "no-store" | "s-maxage" => d.forbids_stale = true,
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

/// A request that asks for something fresher than a stale entry (no-cache, max-age,
/// min-fresh, or Pragma: no-cache) must not be answered with one.
pub(super) fn client_forbids_stale(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.split('=').next().unwrap_or("").trim().to_ascii_lowercase())
        .any(|d| matches!(d.as_str(), "no-cache" | "max-age" | "min-fresh" | "no-store"))
        || headers
            .get(header::PRAGMA)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache"))
}

pub(super) fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// The request as the policy needs it (method, URI, headers), kept across the forward, with
/// Cache-Control directive names in lower case (they are case-insensitive; the policy is not).
pub(super) fn request_copy(p: &Parts) -> Parts {
    let mut r = Request::new(());
    *r.method_mut() = p.method.clone();
    *r.uri_mut() = p.uri.clone();
    *r.headers_mut() = p.headers.clone();
    lower_directives(r.headers_mut());
    r.into_parts().0
}

/// Statuses `http-cache-semantics` refuses to store even with explicit freshness; RFC 9111
/// §3 allows any final status then (a partial 206 and a 304 are never stored here).
const UNDERSTOOD_BY_POLICY: &[u16] = &[200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501];

/// The response as the policy should judge it. `store_set_cookie` hides Set-Cookie from it (the
/// policy would otherwise give such responses no freshness at all).
pub(super) fn policy_response(resp: &http::response::Parts, store_set_cookie: bool) -> http::response::Parts {
    let mut r = Response::new(());
    *r.status_mut() = resp.status;
    *r.headers_mut() = policy_headers(&resp.headers, store_set_cookie);
    let status = resp.status.as_u16();
    if !UNDERSTOOD_BY_POLICY.contains(&status)
        && status >= 200
        && status != 206
        && status != 304
        && has_explicit_freshness(r.headers())
    {
        *r.status_mut() = StatusCode::OK;
    }
    r.into_parts().0
}

/// Response headers as the policy should read them (see `policy_response`).
pub(super) fn policy_headers(headers: &HeaderMap, store_set_cookie: bool) -> HeaderMap {
    let mut out = headers.clone();
    let h = &mut out;
    // RFC 9213: CDN-Cache-Control, when valid, replaces Cache-Control (and Expires) for us.
    if let Some(cdn) = cdn_cache_control(h) {
        h.remove(header::EXPIRES);
        h.remove(header::PRAGMA);
        match HeaderValue::from_str(&cdn) {
            Ok(v) => {
                h.insert(header::CACHE_CONTROL, v);
            }
            Err(_) => {
                h.remove(header::CACHE_CONTROL);
            }
        }
    }
    lower_directives(h);
    drop_qualified_directives(h);
    if let Some(age) = h.get(header::AGE) {
        // A list (several caches on the way): the first counts. Anything but a whole number
        // is invalid and ignored (RFC 9111 §5.1).
        let first = age
            .to_str()
            .unwrap_or("")
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        match HeaderValue::from_str(&first) {
            Ok(v) if !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit()) => h.insert(header::AGE, v),
            _ => h.remove(header::AGE),
        };
    }
    if let Some(expires) = h.get(header::EXPIRES).map(|v| v.to_str().unwrap_or("").to_string()) {
        // Any of the three HTTP date formats, rewritten as IMF-fixdate; anything else (also an
        // IMF-fixdate with extra spaces) means "already expired".
        let parsed = (!(expires.contains(',') && expires.contains("  ")))
            .then(|| httpdate::parse_http_date(expires.trim()).ok())
            .flatten();
        let value = parsed.map_or_else(|| "0".to_string(), httpdate::fmt_http_date);
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(header::EXPIRES, v);
        }
    }
    if store_set_cookie {
        h.remove(header::SET_COOKIE);
    }
    out
}

fn has_explicit_freshness(h: &HeaderMap) -> bool {
    h.contains_key(header::EXPIRES)
        || h.get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|d| {
                let name = d.split('=').next().unwrap_or("").trim();
                name == "max-age" || name == "s-maxage"
            })
}

/// Rewrites every Cache-Control value with lower-case directive names (arguments kept).
fn lower_directives(h: &mut HeaderMap) {
    let values: Vec<HeaderValue> = h.get_all(header::CACHE_CONTROL).iter().cloned().collect();
    if values.iter().all(|v| !v.as_bytes().iter().any(u8::is_ascii_uppercase)) {
        return;
    }
    h.remove(header::CACHE_CONTROL);
    for v in values {
        let text = String::from_utf8_lossy(v.as_bytes());
        let lowered: Vec<String> = text
            .split(',')
            .map(|d| match d.split_once('=') {
                Some((n, arg)) => format!("{}={}", n.trim().to_ascii_lowercase(), arg.trim()),
                None => d.trim().to_ascii_lowercase(),
            })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&lowered.join(", ")) {
            h.append(header::CACHE_CONTROL, v);
        }
    }
}

/// The directives of a valid `CDN-Cache-Control` (an RFC 8941 dictionary) in Cache-Control
/// syntax; `None` when absent or invalid (then it is ignored as a whole).
fn cdn_cache_control(h: &HeaderMap) -> Option<String> {
    let mut values = h.get_all("cdn-cache-control").iter().peekable();
    values.peek()?;
    let mut out: Vec<String> = Vec::new();
    for v in values {
        let text = v.to_str().ok()?;
        for member in text.split(',') {
            let member = member.trim_matches([' ', '\t']);
            // Parameters are allowed and carry nothing we use.
            let item = member.split(';').next()?;
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (item, None),
            };
            let key_ok = key.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'*')
                && key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b));
            if !key_ok {
                return None;
            }
            let integer = |v: &str| v.parse::<u64>().ok().filter(|_| v.len() <= 15);
            let seconds_directive = matches!(
                key,
                "max-age" | "s-maxage" | "stale-while-revalidate" | "stale-if-error"
            );
            match value {
                None | Some("?1") if !seconds_directive => out.push(key.to_string()),
                None | Some("?1") | Some("?0") => {}
                Some(v) if seconds_directive => {
                    // A directive of the wrong type is ignored, not the whole field.
                    if let Some(n) = integer(v) {
                        out.push(format!("{key}={n}"));
                    } else if !valid_bare_item(v) {
                        return None;
                    }
                }
                Some(v) if valid_bare_item(v) => {
                    out.push(format!("{key}={v}"));
                }
                Some(_) => return None,
            }
        }
    }
    Some(out.join(", "))
}

/// An RFC 8941 bare item: integer, decimal, string, token, byte sequence or boolean.
fn valid_bare_item(v: &str) -> bool {
    let b = v.as_bytes();
    match b.first() {
        None => false,
        Some(b'"') => b.len() >= 2 && b[b.len() - 1] == b'"',
        Some(b':') => b.len() >= 2 && b[b.len() - 1] == b':',
        Some(b'?') => v == "?0" || v == "?1",
        Some(c) if c.is_ascii_digit() || *c == b'-' => v.parse::<f64>().is_ok(),
        Some(c) if c.is_ascii_alphabetic() || *c == b'*' => b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(c)),
        _ => false,
    }
}
