//! A backend connection the HTTP/1 fast path speaks HTTP/1.1 on itself: plain TCP, or TLS over
//! it. TLS backends used to go through hyper's client on the general path, at 0.86–1.06× nginx's
//! requests per CPU-second; on the fast path they skip the header maps, the connection task and
//! its channels (docs/performance.md, session 14).

use super::connect::{host_of, ConnectError, UpstreamTls};
use rustls_pki_types::ServerName;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

pub enum UpStream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl UpStream {
    /// The socket itself when no TLS sits on it (for splicing the body).
    pub fn plain(&self) -> Option<&TcpStream> {
        match self {
            UpStream::Plain(s) => Some(s),
            UpStream::Tls(_) => None,
        }
    }

    /// Nothing to read and not closed: the connection is as it was left. Over TLS the check
    /// reads through the session, so a close_notify the session has already taken in counts
    /// as closed.
    pub fn is_quiet(&mut self) -> bool {
        match self {
            UpStream::Plain(s) => super::pool::is_quiet(s),
            UpStream::Tls(s) => {
                let mut probe = [0u8; 1];
                let mut buf = ReadBuf::new(&mut probe);
                let mut cx = Context::from_waker(std::task::Waker::noop());
                matches!(Pin::new(&mut **s).poll_read(&mut cx, &mut buf), Poll::Pending)
            }
        }
    }
}

/// A new connection to `addr`: TCP within `timeout`, then the TLS handshake (within `timeout`
/// again) when the upstream speaks TLS. Both HTTP/1.1 clients and hyper's connect this way.
pub async fn connect(addr: &str, timeout: Duration, tls: Option<&UpstreamTls>) -> Result<UpStream, ConnectError> {
    let timed_out = || ConnectError::Timeout {
        addr: addr.to_string(),
        after: timeout,
    };
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| timed_out())?
        .map_err(|source| ConnectError::Io {
            addr: addr.to_string(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(UpStream::Plain(tcp));
    };
    let host = tls.sni.clone().unwrap_or_else(|| host_of(addr).to_string());
    let name = ServerName::try_from(host.clone()).map_err(|_| ConnectError::ServerName(host))?;
    let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
    let stream = tokio::time::timeout(timeout, connector.connect(name, tcp))
        .await
        .map_err(|_| timed_out())?
        .map_err(|source| ConnectError::Tls {
            addr: addr.to_string(),
            source,
        })?;
    Ok(UpStream::Tls(Box::new(stream)))
}

impl AsyncRead for UpStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpStream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpStream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpStream::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpStream::Plain(s) => s.is_write_vectored(),
            UpStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_flush(cx),
            UpStream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpStream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}
