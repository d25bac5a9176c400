//! The operations listener: `/healthz` (liveness), `/upstreams` (backend state as JSON),
//! `/cache` (zone sizes) and `POST /cache/purge` (needs the admin token). Later: metrics,
//! config API and the dashboard. Bind it to loopback.

#[cfg(feature = "acceleration")]
mod cache;

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
        #[cfg(feature = "acceleration")]
        "/cache" => (StatusCode::OK, "application/json", cache::status(&rt).to_string()),
        #[cfg(feature = "acceleration")]
        "/cache/purge" => cache::purge(&req, &rt),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".to_string()),
    };
    let mut r = Response::new(ClientBody::full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(ctype));
    Ok(r)
}
