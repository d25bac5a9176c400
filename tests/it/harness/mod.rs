//! Test harness: real proxies (in process, from inline TOML on port 0), real origins (hyper
//! servers on loopback), and small clients (HTTP/1.1, h2c, raw TCP, TLS).

pub mod client;
pub mod origin;
pub mod process;
pub mod random;
pub mod tls;

use frontdesk::config::Source;
use frontdesk::Proxy;
use std::net::SocketAddr;
use std::time::Duration;

pub use client::*;
pub use origin::*;

/// Starts a proxy from TOML text. Listeners should use port 0; `addr(i)` gives the bound ones.
pub async fn proxy(toml: &str) -> TestProxy {
    let proxy = Proxy::start(&Source::inline("test.toml", toml))
        .await
        .unwrap_or_else(|e| panic!("proxy failed to start: {e}"));
    TestProxy { proxy }
}

pub struct TestProxy {
    pub proxy: Proxy,
}

impl TestProxy {
    /// Bound address of the i-th listener in config order.
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.proxy.listener_addrs()[i]
    }

    pub fn admin(&self) -> SocketAddr {
        self.proxy.admin_addr().expect("admin listener configured")
    }

    pub fn reload(&self, toml: &str) -> Result<(), String> {
        self.proxy
            .reload(&Source::inline("test.toml", toml))
            .map(|_| ())
            .map_err(|d| d.to_string())
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.proxy.runtime().stop();
    }
}

/// Polls `cond` every 10 ms until it holds or `within` passes (for state that has no event to
/// wait on, such as a health check flipping). Panics with `what` on timeout.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An upstream section's `servers` list for the given origins.
pub fn servers(origins: &[&Origin]) -> String {
    let list: Vec<String> = origins.iter().map(|o| format!("\"{}\"", o.addr)).collect();
    format!("[{}]", list.join(", "))
}

/// One plain listener on port 0, access log off, one upstream `app` with `servers` and `extra`
/// keys, and a catch-all route to it.
pub fn one_upstream(servers: &str, extra: &str) -> String {
    format!(
        r#"
[log]
access = "off"
[[listener]]
listen = "127.0.0.1:0"
[upstream.app]
servers = {servers}
{extra}
[[route]]
upstream = "app"
"#
    )
}
