//! Opening a new connection to a backend for hyper's client: TCP and optional TLS
//! (`stream::connect`), then the HTTP/1.1 or HTTP/2 handshake. The connection's I/O runs in its
//! own task.

use crate::pipeline::body::RequestBody;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {addr} timed out after {after:?}")]
    Timeout { addr: String, after: Duration },
    #[error("connect to {addr} failed: {source}")]
    Io { addr: String, source: std::io::Error },
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls { addr: String, source: std::io::Error },
    #[error("invalid TLS server name `{0}`")]
    ServerName(String),
    #[error("HTTP handshake with {addr} failed: {source}")]
    Handshake { addr: String, source: hyper::Error },
}

/// TLS settings for connections to an upstream's backends.
#[derive(Clone)]
pub struct UpstreamTls {
    pub config: Arc<rustls::ClientConfig>,
    /// Fixed SNI name; None = the host part of each backend address.
    pub sni: Option<String>,
}

/// Largest read buffer of an upstream HTTP/1.1 connection on the general path.
const READ_BUF: usize = 32 * 1024;

pub enum Connected {
    H1(http1::SendRequest<RequestBody>),
    H2(http2::SendRequest<RequestBody>),
}

pub async fn connect(
    addr: &str,
    timeout: Duration,
    tls: Option<&UpstreamTls>,
    h2: bool,
) -> Result<Connected, ConnectError> {
    handshake(addr, super::stream::connect(addr, timeout, tls).await?, h2).await
}

async fn handshake<I>(addr: &str, io: I, h2: bool) -> Result<Connected, ConnectError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let err = |source| ConnectError::Handshake {
        addr: addr.to_string(),
        source,
    };
    if h2 {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .handshake(io)
            .await
            .map_err(err)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream h2 connection ended");
            }
        });
        Ok(Connected::H2(sender))
    } else {
        // A bounded read buffer: the body streams through it, and thousands of pooled
        // connections must not each grow hyper's adaptive buffer (up to ~400 KiB) for large bodies.
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(READ_BUF)
            .handshake(io)
            .await
            .map_err(err)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(Connected::H1(sender))
    }
}

/// "host:port" → "host" (brackets of IPv6 literals removed).
pub fn host_of(addr: &str) -> &str {
    let host = match addr.rfind(':') {
        Some(i) if !addr[i + 1..].contains(']') => &addr[..i],
        _ => addr,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_of_strips_port_and_brackets() {
        assert_eq!(super::host_of("example.com:443"), "example.com");
        assert_eq!(super::host_of("[::1]:8080"), "::1");
        assert_eq!(super::host_of("localhost"), "localhost");
    }
}
