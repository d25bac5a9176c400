//! One backend server and the state about it that outlives reloads: health, outlier ejection,
//! in-flight count, latency EWMA and its connection pool.

use super::pool::Pool;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Passive outlier-detection settings, taken from the current snapshot on each report.
#[derive(Debug, Clone, Copy)]
pub struct PassivePolicy {
    pub consecutive_failures: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
}

impl Default for PassivePolicy {
    fn default() -> Self {
        PassivePolicy {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
        }
    }
}

pub struct Backend {
    /// "host:port" as written in the config.
    pub addr: Arc<str>,
    /// Clock origin for the millisecond timestamps below.
    epoch: Instant,
    /// Result of active health checks (true until a check says otherwise).
    healthy: AtomicBool,
    /// Passive outlier detection.
    consecutive_failures: AtomicU32,
    ejections: AtomicU32,
    ejected_until_ms: AtomicU64,
    /// Requests in flight (least_conn, p2c_ewma).
    pub inflight: AtomicUsize,
    /// Exponentially weighted moving average of response-head latency, in nanoseconds.
    ewma_ns: AtomicU64,
    pub pool: Pool,
}

impl Backend {
    pub fn new(addr: &str) -> Backend {
        Backend {
            addr: Arc::from(addr),
            epoch: Instant::now(),
            healthy: AtomicBool::new(true),
            consecutive_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            inflight: AtomicUsize::new(0),
            ewma_ns: AtomicU64::new(0),
            pool: Pool::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// May this backend get new requests now?
    pub fn is_available(&self) -> bool {
        // The clock is read only while an ejection is recorded.
        self.healthy.load(Ordering::Relaxed) && !self.is_ejected()
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn set_healthy(&self, up: bool) -> bool {
        self.healthy.swap(up, Ordering::Relaxed) != up
    }

    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return false;
        }
        if until > self.now_ms() {
            return true;
        }
        // Expired: clear it so later checks skip the clock.
        let _ = self
            .ejected_until_ms
            .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
        false
    }

    /// A request got a usable answer: forget past failures. `latency` feeds the EWMA (only
    /// balancers that read it pass one, so the others write no shared state per request).
    pub fn report_success(&self, latency: Option<Duration>) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if self.ejections.load(Ordering::Relaxed) != 0 && !self.is_ejected() {
            self.ejections.store(0, Ordering::Relaxed);
        }
        if let Some(latency) = latency {
            self.observe_latency(latency);
        }
    }

    /// A connect error or a 5xx answer. Returns the ejection length when this report ejected it.
    pub fn report_failure(&self, policy: &PassivePolicy) -> Option<Duration> {
        if policy.consecutive_failures == 0 {
            return None;
        }
        let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n < policy.consecutive_failures || self.is_ejected() {
            return None;
        }
        self.consecutive_failures.store(0, Ordering::Relaxed);
        let k = self.ejections.fetch_add(1, Ordering::Relaxed).min(16);
        let length = policy.base_ejection.saturating_mul(1u32 << k).min(policy.max_ejection);
        self.ejected_until_ms
            .store(self.now_ms() + length.as_millis() as u64, Ordering::Relaxed);
        Some(length)
    }

    fn observe_latency(&self, latency: Duration) {
        // Decay of 0.3 per sample: reacts within a few requests, smooths single outliers.
        let sample = latency.as_nanos().min(u64::MAX as u128) as u64;
        let old = self.ewma_ns.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old as f64 * 0.7 + sample as f64 * 0.3) as u64
        };
        self.ewma_ns.store(new.max(1), Ordering::Relaxed);
    }

    pub fn ewma_ns(&self) -> u64 {
        self.ewma_ns.load(Ordering::Relaxed)
    }
}

/// Counts a request as in flight until dropped.
pub struct InflightGuard(Arc<Backend>);

impl InflightGuard {
    pub fn new(backend: Arc<Backend>) -> Self {
        backend.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(backend)
    }

    /// A guard only when `track` (the balancer reads in-flight counts).
    pub fn when(track: bool, backend: &Arc<Backend>) -> Option<Self> {
        track.then(|| Self::new(backend.clone()))
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejects_after_consecutive_failures_with_growing_backoff() {
        let b = Backend::new("127.0.0.1:1");
        let p = PassivePolicy {
            consecutive_failures: 3,
            base_ejection: Duration::from_millis(10),
            max_ejection: Duration::from_millis(25),
        };
        assert_eq!(b.report_failure(&p), None);
        assert_eq!(b.report_failure(&p), None);
        assert_eq!(b.report_failure(&p), Some(Duration::from_millis(10)));
        assert!(!b.is_available());
        std::thread::sleep(Duration::from_millis(15));
        assert!(b.is_available());
        for _ in 0..2 {
            b.report_failure(&p);
        }
        assert_eq!(b.report_failure(&p), Some(Duration::from_millis(20)));
        std::thread::sleep(Duration::from_millis(25));
        for _ in 0..2 {
            b.report_failure(&p);
        }
        assert_eq!(
            b.report_failure(&p),
            Some(Duration::from_millis(25)),
            "capped at max_ejection"
        );
    }

    #[test]
    fn success_resets_the_failure_count() {
        let b = Backend::new("127.0.0.1:1");
        let p = PassivePolicy {
            consecutive_failures: 2,
            ..Default::default()
        };
        b.report_failure(&p);
        b.report_success(Some(Duration::from_millis(1)));
        assert_eq!(b.report_failure(&p), None);
        assert!(b.is_available());
    }
}
