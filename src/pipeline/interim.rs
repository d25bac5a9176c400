//! Interim (1xx) responses a backend sends before its final answer — 103 Early Hints, 102
//! Processing — passed on to clients that can take them (RFC 9110 §15.2: a proxy forwards them
//! unless the client speaks HTTP/1.0). They are never stored by the cache.

use http::{HeaderMap, Request, StatusCode};
use tokio::sync::mpsc;

/// Carried in a request's extensions by connections that can write interim responses; the
/// upstream stage hands every 1xx the backend sends (except 100 and 101, which belong to the
/// hop) to it.
#[derive(Clone)]
pub struct Interim(mpsc::UnboundedSender<InterimHead>);

pub struct InterimHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
}

impl Interim {
    pub fn channel() -> (Interim, mpsc::UnboundedReceiver<InterimHead>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Interim(tx), rx)
    }

    /// Passes on an interim response read by frontdesk's own client.
    pub fn send(&self, head: InterimHead) {
        let _ = self.0.send(head);
    }

    /// Asks hyper's client to report the interim responses to `req` here.
    pub fn register<B>(&self, req: &mut Request<B>) {
        let tx = self.0.clone();
        hyper::ext::on_informational(req, move |r| {
            if forwardable(r.status()) {
                let _ = tx.send(InterimHead {
                    status: r.status(),
                    headers: r.headers().clone(),
                });
            }
        });
    }
}

/// 100 Continue answers the proxy's own request body; 101 ends the HTTP exchange.
pub fn forwardable(status: StatusCode) -> bool {
    status.is_informational() && status != StatusCode::CONTINUE && status != StatusCode::SWITCHING_PROTOCOLS
}
