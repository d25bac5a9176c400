//! The connection's one timer: idle, head-read and response deadlines, and drain checks.
//!
//! Polling a `Sleep` registers the task's waker with it every time, and the fast path waits
//! twice per exchange (for the upstream's answer, then for the client's next request), each
//! time racing a read against the timer: about 200 instructions per request (callgrind,
//! session 11). A registered waker stays with the timer until it fires, wherever its deadline
//! is moved, so the timer is polled only until it has registered and again once it has fired.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub(crate) struct ConnTimer {
    sleep: Pin<Box<Sleep>>,
    /// The task's waker is registered with `sleep`, which has not fired since.
    registered: bool,
}

impl ConnTimer {
    pub(crate) fn new(after: Duration) -> ConnTimer {
        ConnTimer {
            sleep: Box::pin(tokio::time::sleep(after)),
            registered: false,
        }
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.sleep.deadline()
    }

    pub(crate) fn reset(&mut self, deadline: Instant) {
        self.sleep.as_mut().reset(deadline);
    }

    /// Resolves when the deadline has passed.
    pub(crate) fn expired(&mut self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| self.poll_expired(cx))
    }

    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.registered && !self.sleep.is_elapsed() {
            return Poll::Pending;
        }
        // Unconstrained: a poll refused for the task's budget would register nothing, and the
        // timer would then never be polled again.
        let polled = std::pin::pin!(tokio::task::unconstrained(self.sleep.as_mut())).poll(cx);
        self.registered = polled.is_pending();
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The timer fires after being moved while registered (earlier and later), and again after
    /// a reset that follows a firing: the cases where `poll_expired` skips the poll.
    #[tokio::test(start_paused = true)]
    async fn fires_after_resets_without_being_polled_in_between() {
        let mut t = ConnTimer::new(Duration::from_secs(10));
        let start = Instant::now();
        let waited = async {
            let mut first = true;
            std::future::poll_fn(|cx| {
                let p = t.poll_expired(cx);
                if first {
                    first = false;
                    assert!(p.is_pending() && t.registered);
                    // Moved while registered; not polled again until woken.
                    t.reset(start + Duration::from_secs(3));
                }
                p
            })
            .await;
        };
        // A timer that never wakes the task shows as this timeout, not as a hang.
        let limit = Duration::from_secs(100);
        tokio::time::timeout(limit, waited)
            .await
            .expect("woken at the moved deadline");
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
        assert!(!t.registered);
        t.reset(Instant::now() + Duration::from_secs(5));
        tokio::time::timeout(limit, t.expired())
            .await
            .expect("woken after firing once");
        assert_eq!(Instant::now() - start, Duration::from_secs(8));
        // Moved later while registered.
        let later = Instant::now();
        t.reset(later + Duration::from_secs(1));
        let mut first = true;
        let waited = std::future::poll_fn(|cx| {
            let p = t.poll_expired(cx);
            if first {
                first = false;
                t.reset(later + Duration::from_secs(20));
            }
            p
        });
        tokio::time::timeout(limit, waited)
            .await
            .expect("woken at the later deadline");
        assert_eq!(Instant::now() - later, Duration::from_secs(20));
    }
}
