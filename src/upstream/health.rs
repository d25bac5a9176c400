//! Active health checks: one task per upstream probes every backend each interval. A backend goes
//! down after `fall` failed probes in a row and comes back after `rise` good ones. The up/down flag
//! lives in the backend, so it survives reloads; the task itself is restarted with new settings.

use super::connect::{self, Connected};
use super::{Backend, HealthPolicy, Upstream};
use crate::pipeline::body::RequestBody;
use http::{header, Request};
use std::sync::Arc;
use tokio::task::JoinHandle;

pub fn spawn(upstream: Arc<Upstream>) -> Option<JoinHandle<()>> {
    let policy = upstream.health.clone()?;
    Some(tokio::spawn(run(upstream, policy)))
}

async fn run(upstream: Arc<Upstream>, policy: HealthPolicy) {
    let n = upstream.backends.len();
    let mut streak: Vec<(u32, u32)> = vec![(0, 0); n];
    let mut tick = tokio::time::interval(policy.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let probes: Vec<_> = upstream
            .backends
            .iter()
            .map(|b| {
                let (b, up, policy) = (b.clone(), upstream.clone(), policy.clone());
                tokio::spawn(async move { probe(&b, &up, &policy).await })
            })
            .collect();
        for (i, p) in probes.into_iter().enumerate() {
            let result = p.await.unwrap_or_else(|e| Err(format!("probe task failed: {e}")));
            let backend = &upstream.backends[i];
            let (ok, bad) = &mut streak[i];
            match result {
                Ok(()) => {
                    *ok += 1;
                    *bad = 0;
                    if *ok >= policy.rise && !backend.is_healthy() && backend.set_healthy(true) {
                        tracing::info!(upstream = %upstream.name, backend = %backend.addr, "backend is up (active health check)");
                    }
                }
                Err(reason) => {
                    *bad += 1;
                    *ok = 0;
                    if *bad >= policy.fall && backend.is_healthy() && backend.set_healthy(false) {
                        tracing::warn!(upstream = %upstream.name, backend = %backend.addr, %reason, "backend is down (active health check)");
                    }
                }
            }
        }
    }
}

async fn probe(backend: &Backend, up: &Upstream, policy: &HealthPolicy) -> Result<(), String> {
    let fut = async {
        let Some(path) = &policy.path else {
            return tokio::net::TcpStream::connect(&*backend.addr)
                .await
                .map(drop)
                .map_err(|e| e.to_string());
        };
        let conn = connect::connect(&backend.addr, policy.timeout, up.tls.as_ref(), up.http2)
            .await
            .map_err(|e| e.to_string())?;
        let host = up
            .tls
            .as_ref()
            .and_then(|t| t.sni.clone())
            .unwrap_or_else(|| backend.addr.to_string());
        let mut req = Request::get(path.as_str()).header(header::USER_AGENT, "frontdesk-health-check");
        let resp = match conn {
            Connected::H1(mut s) => {
                req = req.header(header::HOST, &host).header(header::CONNECTION, "close");
                let req = req.body(RequestBody::Empty).map_err(|e| e.to_string())?;
                s.send_request(req).await
            }
            Connected::H2(mut s) => {
                let scheme = if up.tls.is_some() { "https" } else { "http" };
                let req = Request::get(format!("{scheme}://{host}{path}"))
                    .header(header::USER_AGENT, "frontdesk-health-check")
                    .body(RequestBody::Empty)
                    .map_err(|e| e.to_string())?;
                s.send_request(req).await
            }
        }
        .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        if policy.expect.contains(status) {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    };
    match tokio::time::timeout(policy.timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", policy.timeout)),
    }
}
