//! The operations listener: `/healthz` (liveness), `/upstreams` (backend state as JSON),
//! `/cache` (zone sizes) and `POST /cache/purge` (needs the admin token). Later: metrics,
//! config API and the dashboard. Bind it to loopback.

use crate::pipeline::body::ClientBody;
use crate::runtime::Runtime;
use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub async fn start(addr: SocketAddr, rt: Arc<Runtime>) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let rt = rt.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| answer(req, rt.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((local, task))
}

async fn answer(req: Request<Incoming>, rt: Arc<Runtime>) -> Result<Response<ClientBody>, Infallible> {
    let (status, ctype, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/upstreams" => (StatusCode::OK, "application/json", rt.upstream_status().to_string()),
        "/cache" => (StatusCode::OK, "application/json", cache_status(&rt).to_string()),
        "/cache/purge" => purge(&req, &rt),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".to_string()),
    };
    let mut r = Response::new(ClientBody::full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(ctype));
    Ok(r)
}

fn cache_status(rt: &Runtime) -> serde_json::Value {
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
fn purge(req: &Request<Incoming>, rt: &Runtime) -> (StatusCode, &'static str, String) {
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
