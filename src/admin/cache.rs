//! `/cache` (zone sizes) and `POST /cache/purge` (needs the admin token).

use crate::runtime::Runtime;
use http::{header, Request, StatusCode};
use hyper::body::Incoming;

pub(super) fn status(rt: &Runtime) -> serde_json::Value {
    let snap = rt.snapshot();
    let zones: serde_json::Map<String, serde_json::Value> = snap
        .caches
        .iter()
        .map(|c| {
            let mut v = serde_json::json!({
                "entries": c.store.entry_count(),
                "bytes": c.store.weighted_size(),
                "capacity": c.store.capacity,
            });
            if let Some(disk) = &c.store.disk {
                let (objects, bytes) = disk.usage();
                v["disk"] = serde_json::json!({
                    "objects": objects,
                    "bytes": bytes,
                    "capacity": disk.capacity(),
                    "write_errors": disk.write_errors(),
                });
            }
            (c.name.to_string(), v)
        })
        .collect();
    serde_json::Value::Object(zones)
}

/// `POST /cache/purge?url=URL | prefix=PREFIX | tag=TAG [&zone=NAME]` with
/// `Authorization: Bearer TOKEN`. URLs are `scheme://host/path?query` as requested.
pub(super) fn purge(req: &Request<Incoming>, rt: &Runtime) -> (StatusCode, &'static str, String) {
    let snap = rt.snapshot();
    if req.method() != http::Method::POST && req.method().as_str() != "PURGE" {
        return (StatusCode::METHOD_NOT_ALLOWED, "text/plain", "use POST\n".into());
    }
    let Some(token) = &snap.admin_token else {
        return (
            StatusCode::FORBIDDEN,
            "text/plain",
            "purge is disabled: set [admin] token\n".into(),
        );
    };
    let sent = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !sent.is_some_and(|s| constant_time_eq(s.as_bytes(), token.as_bytes())) {
        return (
            StatusCode::UNAUTHORIZED,
            "text/plain",
            "missing or wrong admin token\n".into(),
        );
    }
    let query = req.uri().query().unwrap_or("");
    let param = |name: &str| crate::route::query_value(query, name);
    let (url, prefix, tag) = (param("url"), param("prefix"), param("tag"));
    let what = match (&url, &prefix, &tag) {
        (Some(u), None, None) => crate::cache::Purge::Url(u),
        (None, Some(p), None) => crate::cache::Purge::Prefix(p),
        (None, None, Some(t)) => crate::cache::Purge::Tag(t),
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "text/plain",
                "give exactly one of url, prefix, tag\n".into(),
            )
        }
    };
    let zone = param("zone");
    let mut purged = 0;
    for cache in snap
        .caches
        .iter()
        .filter(|c| zone.as_deref().is_none_or(|z| *c.name == *z))
    {
        purged += cache.purge(&what);
    }
    tracing::info!(url = ?url, prefix = ?prefix, tag = ?tag, purged, "cache purge");
    (
        StatusCode::OK,
        "application/json",
        serde_json::json!({ "purged": purged }).to_string(),
    )
}

/// Token comparison whose time does not depend on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
