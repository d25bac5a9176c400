//! Writing heads on the fast path.

use crate::pipeline::respond::ProxyError;
use std::io;
use tokio::io::{AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

pub fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `HTTP/1.1 <code> <reason>\r\n` with the standard reason phrase.
pub fn status_line(out: &mut Vec<u8>, status: http::StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub fn decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// 32 lowercase hex digits of a random 128-bit id.
pub fn request_id(out: &mut [u8; 32]) {
    let v = fastrand::u128(..);
    out[..16].copy_from_slice(&hex16(v as u64));
    out[16..].copy_from_slice(&hex16((v >> 64) as u64));
}

/// The 16 nibbles of `v` as lowercase hex digits, all at once: each nibble is spread into a
/// byte of a u128, then '0' is added, and 'a' - '0' - 10 more where the nibble is over 9. The
/// digit order is the bytes' order, not the number's (it only has to be random).
fn hex16(v: u64) -> [u8; 16] {
    const ONES: u128 = 0x0101_0101_0101_0101_0101_0101_0101_0101;
    let mut x = v as u128;
    x = (x | (x << 32)) & 0x0000_0000_FFFF_FFFF_0000_0000_FFFF_FFFF;
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF_0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF_00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & (ONES * 0x0F);
    let over_nine = ((x + ONES * 6) >> 4) & ONES;
    (x + ONES * b'0' as u128 + over_nine * (b'a' - b'0' - 10) as u128).to_le_bytes()
}

/// A complete error answer (the same text as the general path's).
pub fn error_response(out: &mut Vec<u8>, e: &ProxyError, request_id: Option<(&[u8], &[u8])>, close: bool) {
    let status = e.status();
    let body = match e {
        ProxyError::BadRequest(why) => format!("400 Bad Request: {why}\n"),
        ProxyError::NoHealthyBackend(_) => "503 Service Unavailable: no healthy upstream\n".to_string(),
        _ => format!("{} {}\n", status.as_u16(), status.canonical_reason().unwrap_or("")),
    };
    out.clear();
    status_line(out, status);
    out.extend_from_slice(b"content-type: text/plain; charset=utf-8\r\ncontent-length: ");
    decimal(out, body.len() as u64);
    out.extend_from_slice(b"\r\n");
    if let Some((name, value)) = request_id {
        line(out, name, value);
    }
    if close || e.closes_connection() {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
}

/// Head and body in as few writes as the socket allows (one `writev` when it takes both).
pub async fn head_and_body<T: AsyncWrite + Unpin>(io: &mut T, head: &[u8], body: &[u8]) -> std::io::Result<()> {
    let (mut head, mut body) = (head, body);
    while !head.is_empty() {
        let n = io
            .write_vectored(&[std::io::IoSlice::new(head), std::io::IoSlice::new(body)])
            .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        if n < head.len() {
            head = &head[n..];
        } else {
            body = &body[n - head.len()..];
            head = &[];
        }
    }
    io.write_all(body).await
}

/// `head`, held back by the kernel (MSG_MORE) to go out in the same segments as the start of
/// the body, then `len` bytes of the file `file` from `offset` with `sendfile`: the kernel
/// passes the page cache to the socket and user space never copies the body. A file that
/// ends early fails the write (sendfile moves nothing).
#[cfg(feature = "acceleration")]
pub async fn head_and_file(
    socket: &TcpStream,
    mut head: &[u8],
    file: std::os::fd::RawFd,
    offset: u64,
    len: u64,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let sock = socket2::SockRef::from(socket);
    while !head.is_empty() {
        let n = when_writable(socket, || {
            sock.send_with_flags(head, libc::MSG_MORE | libc::MSG_NOSIGNAL)
        })
        .await?;
        head = &head[n..];
    }
    let end = offset + len;
    let mut at = offset as libc::off_t;
    while (at as u64) < end {
        when_writable(socket, || {
            // SAFETY: both descriptors are open for the call; the kernel advances `at`.
            let n = unsafe { libc::sendfile(socket.as_raw_fd(), file, &mut at, (end - at as u64) as usize) };
            usize::try_from(n).map_err(|_| io::Error::last_os_error())
        })
        .await?;
    }
    Ok(())
}

/// Runs `op`, a nonblocking call that writes into `socket` (send, sendfile, splice), until it
/// moves some bytes, waiting for room as needed; moving none means the peer is gone.
pub async fn when_writable(socket: &TcpStream, mut op: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    loop {
        socket.writable().await?;
        match socket.try_io(Interest::WRITABLE, &mut op) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimal_and_id() {
        let mut v = Vec::new();
        super::decimal(&mut v, 0);
        v.push(b' ');
        super::decimal(&mut v, 18446744073709551615);
        assert_eq!(v, b"0 18446744073709551615");
        let mut id = [0u8; 32];
        super::request_id(&mut id);
        assert!(id.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)));
    }

    #[test]
    fn hex_digits_cover_every_nibble() {
        let digits = super::hex16(0xfedc_ba98_7654_3210);
        let mut sorted = digits;
        sorted.sort_unstable();
        assert_eq!(&sorted, b"0123456789abcdef");
        assert_eq!(&super::hex16(0), b"0000000000000000");
        assert_eq!(&super::hex16(u64::MAX), b"ffffffffffffffff");
        // Each nibble lands in its own byte: one nibble set gives one non-zero digit.
        for shift in (0..64).step_by(4) {
            let d = super::hex16(0xa << shift);
            assert_eq!(d.iter().filter(|&&b| b == b'a').count(), 1, "{shift}");
            assert_eq!(d.iter().filter(|&&b| b == b'0').count(), 15, "{shift}");
        }
    }
}
