//! JSON access log: one object per request, written by a dedicated thread so that a slow disk or
//! terminal never blocks a request.
//!
//! Each worker thread serializes its lines into a batch of its own and hands the writer whole
//! batches: when one reaches `BATCH_BYTES`, when its oldest line is `BATCH_AGE` old, and when the
//! worker runs out of work (`flush_thread_batch`, from the runtime's park hook). A queue shared by
//! every worker and a wake-up of the writer per request cost 43% of the requests a core served
//! at `/` (bench/ab.py, session 13), as nginx's `access_log` without `buffer=` does; per-worker
//! batches are nginx's `buffer=` without its fixed flush delay. Threads that never park (outside
//! a frontdesk runtime) hand over every line at once. When the writer's queue is full, batches
//! are dropped and their lines counted.

use super::log_line::{self, Line};
use crate::pipeline::body::OnBodyEnd;
use crate::pipeline::ctx::RequestCtx;
use crate::snapshot::AccessLogTarget;
use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Batches the writer may hold before new ones are dropped (at most 4 MiB of full batches).
const QUEUE: usize = 128;
const BATCH_BYTES: usize = 32 * 1024;
/// The longest a line waits in a busy worker's batch.
const BATCH_AGE: Duration = Duration::from_millis(200);

/// What the writer thread is handed.
enum ToWriter {
    Lines(Vec<u8>),
    /// Open the file again by its name (after a log rotation moved it away).
    Reopen,
    /// Write what came before, then stop.
    Close,
}

/// The process's access log. It lives as long as the process (set once at start, kept across
/// reloads), so requests hold a plain reference instead of counting references to it; only its
/// writer thread ends, with the runtime that started it (`close`).
pub struct AccessLog {
    tx: SyncSender<ToWriter>,
    counts: Arc<Counts>,
}

/// Shared by the requests' threads and the writer.
#[derive(Default)]
struct Counts {
    /// Lines lost because the writer's queue was full (or it had stopped).
    dropped: AtomicU64,
    /// Batches handed to the writer and not yet written.
    queued: AtomicU64,
}

impl AccessLog {
    /// Starts the writer thread; None when the target is `off`.
    pub fn start(target: &AccessLogTarget) -> std::io::Result<Option<&'static AccessLog>> {
        let (out, path): (Box<dyn Write + Send>, _) = match target {
            AccessLogTarget::Off => return Ok(None),
            AccessLogTarget::Stdout => (Box::new(std::io::stdout()), None),
            AccessLogTarget::Stderr => (Box::new(std::io::stderr()), None),
            AccessLogTarget::File(path) => (Box::new(open(path)?), Some(path.clone())),
        };
        Self::start_writer(out, path).map(Some)
    }

    fn start_writer(out: Box<dyn Write + Send>, path: Option<String>) -> std::io::Result<&'static AccessLog> {
        let (tx, rx) = sync_channel(QUEUE);
        let counts = Arc::new(Counts::default());
        let writer = Writer {
            out,
            path,
            counts: counts.clone(),
            reported: 0,
        };
        std::thread::Builder::new()
            .name("frontdesk-access-log".into())
            .spawn(move || writer.run(rx))?;
        Ok(Box::leak(Box::new(AccessLog { tx, counts })))
    }

    /// Lines lost because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.counts.dropped.load(Ordering::Relaxed)
    }

    /// On shutdown: hands over the calling thread's batch and waits, up to `limit`, until the
    /// writer has written every batch it was given.
    pub fn sync(&self, limit: Duration) {
        flush_thread_batch();
        let deadline = Instant::now() + limit;
        while self.counts.queued.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops the writer thread once it has written what it was given (the runtime that owns
    /// the log is gone; lines that still come are counted as dropped).
    pub fn close(&self) {
        let _ = self.tx.try_send(ToWriter::Close);
    }

    /// Has the writer open its file again by name, as nginx does on SIGUSR1: after a log
    /// rotation renamed the file, lines go to a new one. Lines already queued go to the old one.
    pub fn reopen(&self) {
        match self.tx.try_send(ToWriter::Reopen) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::warn!("access log: the writer is behind; not reopened, send the signal again")
            }
            Err(TrySendError::Disconnected(_)) => tracing::warn!("access log: the writer has stopped"),
        }
    }

    /// Adds `line` to the calling thread's batch. `now` is when the request ended (the caller
    /// has read the clock for the line's duration already).
    pub fn log(&'static self, line: &Line, now: Instant) {
        let added = BATCH.try_with(|batch| {
            let mut b = batch.borrow_mut();
            if b.log.is_some_and(|log| !std::ptr::eq(log, self)) {
                b.hand_over();
            }
            b.log = Some(self);
            log_line::write(&mut b.buf, line);
            b.lines += 1;
            let oldest = *b.oldest.get_or_insert(now);
            if !b.worker || b.buf.len() >= BATCH_BYTES || now.saturating_duration_since(oldest) >= BATCH_AGE {
                b.hand_over();
            }
        });
        if added.is_err() {
            // The thread is exiting and its batch is gone: count the line as lost.
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A worker thread's lines not yet handed to the writer.
#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    lines: u64,
    oldest: Option<Instant>,
    log: Option<&'static AccessLog>,
    /// Set by the park hook: this thread tells when it runs out of work, so lines may wait.
    worker: bool,
}

impl Batch {
    fn hand_over(&mut self) {
        let Some(log) = self.log else { return };
        if self.buf.is_empty() {
            return;
        }
        let capacity = if self.worker { BATCH_BYTES + BATCH_BYTES / 4 } else { 0 };
        let bytes = std::mem::replace(&mut self.buf, Vec::with_capacity(capacity));
        let counts = &log.counts;
        counts.queued.fetch_add(1, Ordering::AcqRel);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = log.tx.try_send(ToWriter::Lines(bytes)) {
            counts.queued.fetch_sub(1, Ordering::AcqRel);
            counts.dropped.fetch_add(self.lines, Ordering::Relaxed);
        }
        self.lines = 0;
        self.oldest = None;
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.hand_over();
    }
}

thread_local! {
    static BATCH: RefCell<Batch> = RefCell::default();
}

/// Hands the calling thread's lines to the writer, and from then on lets that thread's lines
/// wait for the next call (or `BATCH_BYTES`, `BATCH_AGE`). The runtime calls it each time a
/// worker runs out of work.
pub fn flush_thread_batch() {
    let _ = BATCH.try_with(|batch| {
        if let Ok(mut b) = batch.try_borrow_mut() {
            b.worker = true;
            b.hand_over();
        }
    });
}

/// The writer thread's side.
struct Writer {
    out: Box<dyn Write + Send>,
    /// The file's name, to open it again on `Reopen`; None for stdout and stderr.
    path: Option<String>,
    counts: Arc<Counts>,
    /// Dropped lines already reported.
    reported: u64,
}

impl Writer {
    fn run(mut self, rx: Receiver<ToWriter>) {
        while let Ok(mut msg) = rx.recv() {
            let mut written = 0;
            // Flush when the queue is drained so lines appear promptly at low rates.
            let open = loop {
                match msg {
                    ToWriter::Lines(batch) => {
                        let _ = self.out.write_all(&batch);
                        written += 1;
                    }
                    ToWriter::Reopen => self.reopen(),
                    ToWriter::Close => break false,
                }
                match rx.try_recv() {
                    Ok(next) => msg = next,
                    Err(_) => break true,
                }
            };
            let _ = self.out.flush();
            self.counts.queued.fetch_sub(written, Ordering::AcqRel);
            self.report_dropped();
            if !open {
                return;
            }
        }
    }

    fn reopen(&mut self) {
        let _ = self.out.flush();
        match self.path.as_deref().map(open) {
            Some(Ok(file)) => {
                self.out = Box::new(file);
                tracing::info!(path = self.path.as_deref().unwrap_or(""), "access log reopened");
            }
            Some(Err(e)) => tracing::warn!(error = %e, "access log: cannot reopen, still writing to the old file"),
            None => tracing::info!("access log reopened (standard stream: nothing to do)"),
        }
    }

    /// Lines lost since the last report, as a warning on stderr: the destination is too slow.
    fn report_dropped(&mut self) {
        let dropped = self.counts.dropped.load(Ordering::Relaxed);
        if dropped > self.reported {
            tracing::warn!(
                lines = dropped - self.reported,
                total = dropped,
                "access log lines dropped: the destination is slower than the requests"
            );
            self.reported = dropped;
        }
    }
}

fn open(path: &str) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

/// Writes the request's log line when its response body ends.
pub struct LogOnEnd {
    ctx: RequestCtx,
    log: &'static AccessLog,
}

impl LogOnEnd {
    pub fn new(ctx: RequestCtx, log: &'static AccessLog) -> Self {
        LogOnEnd { ctx, log }
    }
}

impl OnBodyEnd for LogOnEnd {
    fn finish(&mut self, complete: bool, bytes: u64) {
        let now = Instant::now();
        let line = Line::of(
            &self.ctx,
            now.saturating_duration_since(self.ctx.started),
            complete,
            bytes,
        );
        self.log.log(&line, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(log: &'static AccessLog, path: &str) {
        let ctx = RequestCtx {
            received: std::time::SystemTime::now(),
            started: Instant::now(),
            client: "127.0.0.1:1".parse().unwrap(),
            method: http::Method::GET,
            host: "log.test".into(),
            path: path.into(),
            proto: "HTTP/1.1",
            request_id: http::HeaderValue::from_static("id"),
            bytes_in: 0,
            status: 200,
            route: None,
            upstream: None,
            upstream_time: None,
            error: None,
        };
        LogOnEnd::new(ctx, log).finish(true, 1);
    }

    /// A destination that takes nothing until `open` is set.
    struct Gate {
        open: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
        got: Arc<std::sync::Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (open, cv) = &*self.open;
            let _open = cv.wait_while(open.lock().unwrap(), |open| !*open).unwrap();
            self.got.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_beyond_a_full_queue_are_dropped_and_counted() {
        let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = Gate {
            open: gate.clone(),
            got: got.clone(),
        };
        let log = AccessLog::start_writer(Box::new(writer), None).unwrap();
        // This thread never parks, so each line is a batch of its own: the writer blocks on the
        // first, the queue takes QUEUE more, the rest are dropped.
        let total = QUEUE as u64 + 50;
        for i in 0..total {
            line(log, &format!("/{i}"));
        }
        let dropped = log.dropped();
        assert!(
            (total - QUEUE as u64 - 1..=total - QUEUE as u64).contains(&dropped),
            "{dropped}"
        );
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        log.sync(Duration::from_secs(5));
        let written = got
            .lock()
            .unwrap()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count() as u64;
        assert_eq!(written + dropped, total);
        log.close();
    }

    #[test]
    fn a_thread_that_never_parks_hands_over_each_line_and_close_ends_the_writer() {
        let path = std::env::temp_dir().join(format!("frontdesk-access-unit-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let log = AccessLog::start(&AccessLogTarget::File(path.display().to_string()))
            .unwrap()
            .unwrap();
        line(log, "/a");
        line(log, "/b");
        log.sync(Duration::from_secs(5));
        let text = std::fs::read_to_string(&path).unwrap();
        let paths: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["path"].to_string())
            .collect();
        assert_eq!(paths, ["\"/a\"", "\"/b\""]);
        assert_eq!(log.dropped(), 0);

        // Once the writer has stopped, its end of the queue is gone and lines count as dropped.
        log.close();
        let deadline = Instant::now() + Duration::from_secs(5);
        while log.dropped() == 0 {
            assert!(Instant::now() < deadline, "the writer thread did not stop");
            line(log, "/late");
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = std::fs::remove_file(&path);
    }
}
