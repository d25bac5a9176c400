//! JSON access log: one object per request, written by a dedicated thread so that a slow disk or
//! terminal never blocks a request. When the queue is full, lines are dropped and counted.

use crate::pipeline::body::OnBodyEnd;
use crate::pipeline::ctx::RequestCtx;
use crate::snapshot::AccessLogTarget;
use serde::Serialize;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

const QUEUE: usize = 16 * 1024;

#[derive(Clone)]
pub struct AccessLog {
    tx: SyncSender<String>,
    dropped: Arc<AtomicU64>,
}

impl AccessLog {
    /// Starts the writer thread; None when the target is `off`.
    pub fn start(target: &AccessLogTarget) -> std::io::Result<Option<AccessLog>> {
        let out: Box<dyn Write + Send> = match target {
            AccessLogTarget::Off => return Ok(None),
            AccessLogTarget::Stdout => Box::new(std::io::stdout()),
            AccessLogTarget::Stderr => Box::new(std::io::stderr()),
            AccessLogTarget::File(path) => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
        };
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("frontdesk-access-log".into())
            .spawn(move || write_lines(rx, out))?;
        Ok(Some(AccessLog {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }))
    }

    fn send(&self, line: String) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(line) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn write_lines(rx: Receiver<String>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(line) = rx.recv() {
        let _ = out.write_all(line.as_bytes());
        // Flush when the queue is drained so lines appear promptly at low rates.
        while let Ok(line) = rx.try_recv() {
            let _ = out.write_all(line.as_bytes());
        }
        let _ = out.flush();
    }
}

#[derive(Serialize)]
struct Entry<'a> {
    time: String,
    client: String,
    method: &'a str,
    host: &'a str,
    path: &'a str,
    proto: &'a str,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: f64,
    route: Option<&'a str>,
    upstream: Option<&'a str>,
    upstream_ms: Option<f64>,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    aborted: bool,
}

/// Writes the request's log line when its response body ends.
pub struct LogOnEnd {
    ctx: RequestCtx,
    log: AccessLog,
}

impl LogOnEnd {
    pub fn new(ctx: RequestCtx, log: AccessLog) -> Self {
        LogOnEnd { ctx, log }
    }
}

impl OnBodyEnd for LogOnEnd {
    fn finish(&mut self, complete: bool, bytes: u64) {
        let c = &self.ctx;
        let entry = Entry {
            time: humantime::format_rfc3339_millis(c.received).to_string(),
            client: c.client.ip().to_string(),
            method: c.method.as_str(),
            host: &c.host,
            path: &c.path,
            proto: c.proto,
            status: c.status,
            bytes_in: c.bytes_in,
            bytes_out: bytes,
            duration_ms: c.started.elapsed().as_secs_f64() * 1000.0,
            route: c.route.as_deref(),
            upstream: c.upstream.as_deref(),
            upstream_ms: c.upstream_time.map(|d| d.as_secs_f64() * 1000.0),
            request_id: c.request_id.to_str().unwrap_or(""),
            error: c.error.as_deref(),
            aborted: !complete,
        };
        if let Ok(mut line) = serde_json::to_string(&entry) {
            line.push('\n');
            self.log.send(line);
        }
    }
}
