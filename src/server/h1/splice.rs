//! The rest of a long, length-delimited response body moved from the backend's socket to a
//! plain-TCP client through a pipe (`splice`): the kernel passes the pages along and user space
//! never copies them (HAProxy's `option splice-response`). The pipe is kept by the client
//! connection while it is busy and closed with its other buffers when it goes idle.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Bodies with at least this much left after their first piece are spliced.
pub(super) const SPLICE_MIN: u64 = 32 * 1024;

/// What one splice moves at most (a pipe's default capacity).
const PIPE_CHUNK: usize = 64 * 1024;

pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    /// A nonblocking pipe of at least one chunk's capacity; `None` when none can be had (out of
    /// descriptors, or the user's pipe memory limit shrank it): the body is then copied.
    pub(crate) fn new() -> Option<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array it is given.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return None;
        }
        // SAFETY: both descriptors were just created and nothing else owns them.
        let pipe = unsafe {
            Pipe {
                read: OwnedFd::from_raw_fd(fds[0]),
                write: OwnedFd::from_raw_fd(fds[1]),
            }
        };
        // SAFETY: fcntl on a descriptor owned here, no argument.
        let size = unsafe { libc::fcntl(pipe.write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        (size >= PIPE_CHUNK as i32).then_some(pipe)
    }
}

fn splice(from: &impl AsRawFd, to: &impl AsRawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the call; no offsets are passed.
    let n = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Moves exactly `len` bytes from `upstream` to `client` through `pipe`, waiting at most
/// `read_timeout` for each piece from the upstream. Fails (the upstream closed early or timed
/// out, or the client went away) with the body bytes the client got; the pipe may then hold
/// bytes of this body and must not be used again.
pub(super) async fn relay(
    upstream: &TcpStream,
    client: &TcpStream,
    pipe: &Pipe,
    len: u64,
    read_timeout: Duration,
) -> Result<(), u64> {
    let mut delivered = 0u64;
    while delivered < len {
        let want = (len - delivered).min(PIPE_CHUNK as u64) as usize;
        let held = loop {
            match tokio::time::timeout(read_timeout, upstream.readable()).await {
                Ok(Ok(())) => {}
                _ => return Err(delivered),
            }
            match upstream.try_io(Interest::READABLE, || splice(upstream, &pipe.write, want)) {
                Ok(0) => return Err(delivered),
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => return Err(delivered),
            }
        };
        let mut left = held;
        while left > 0 {
            let n = super::write::when_writable(client, || splice(&pipe.read, client, left))
                .await
                .map_err(|_| delivered)?;
            left -= n;
            delivered += n as u64;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Two connected loopback sockets: (ours, the peer's).
    async fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (theirs, _) = listener.accept().await.unwrap();
        (ours, theirs)
    }

    #[tokio::test]
    async fn relays_exactly_the_length_and_leaves_what_follows() {
        let (upstream, mut backend) = socket_pair().await;
        let (client, mut reader) = socket_pair().await;
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let sent = body.clone();
        let writer = tokio::spawn(async move {
            backend.write_all(&sent).await.unwrap();
            backend.write_all(b"NEXT").await.unwrap();
            backend
        });
        let receiver = tokio::spawn(async move {
            let mut got = vec![0u8; 300_000];
            reader.read_exact(&mut got).await.unwrap();
            got
        });
        let pipe = Pipe::new().expect("a pipe");
        relay(&upstream, &client, &pipe, body.len() as u64, Duration::from_secs(10))
            .await
            .unwrap_or_else(|n| panic!("relay stopped after {n} bytes"));
        assert!(receiver.await.unwrap() == body, "the client got other bytes");
        let _backend = writer.await.unwrap();
        // What follows the body is still in the upstream socket, unread.
        let mut next = [0u8; 4];
        upstream.readable().await.unwrap();
        assert_eq!(upstream.try_read(&mut next).unwrap(), 4);
        assert_eq!(&next, b"NEXT");
    }

    #[tokio::test]
    async fn an_upstream_that_closes_early_fails_with_what_was_delivered() {
        let (upstream, mut backend) = socket_pair().await;
        let (client, mut reader) = socket_pair().await;
        backend.write_all(&[7u8; 50_000]).await.unwrap();
        drop(backend);
        let receiver = tokio::spawn(async move {
            let mut got = Vec::new();
            let _ = reader.read_to_end(&mut got).await;
            got.len()
        });
        let pipe = Pipe::new().expect("a pipe");
        let short = relay(&upstream, &client, &pipe, 80_000, Duration::from_secs(10)).await;
        assert_eq!(short, Err(50_000));
        drop(client);
        assert_eq!(receiver.await.unwrap(), 50_000);
    }
}
