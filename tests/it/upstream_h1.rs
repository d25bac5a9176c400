//! The general path's own HTTP/1.1 upstream client (HTTP/2 clients, cache misses): response
//! framings, HEAD, pooled reuse, a malformed body, and a large body streamed through.

use crate::harness::*;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("http://t.test{path}"))
        .body(Full::default())
        .unwrap()
}

/// One h2c connection for several requests.
async fn h2_sender(addr: SocketAddr) -> http2::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

#[tokio::test]
async fn chunked_and_close_delimited_bodies_are_decoded() {
    let chunked = RawOrigin::start(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
        false,
    )
    .await;
    let p = proxy(&one_upstream(&format!("[\"{}\"]", chunked.addr), "")).await;
    let mut h2 = h2_sender(p.addr(0)).await;
    for _ in 0..3 {
        let a = read_answer(h2.send_request(get("/")).await.unwrap()).await;
        assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "hello world"));
        assert_eq!(
            a.header("content-length"),
            "",
            "the chunked framing wins over Content-Length"
        );
    }
    assert_eq!(
        chunked.connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one pooled connection"
    );

    let until_close = RawOrigin::start(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", true).await;
    let p = proxy(&one_upstream(&format!("[\"{}\"]", until_close.addr), "")).await;
    let mut h2 = h2_sender(p.addr(0)).await;
    for _ in 0..2 {
        let a = read_answer(h2.send_request(get("/")).await.unwrap()).await;
        assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "until the end"));
    }
    assert_eq!(
        until_close.connections.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "never reused"
    );
}

#[tokio::test]
async fn head_keeps_the_connection_and_a_malformed_body_fails_the_stream() {
    let origin = RawOrigin::start(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false).await;
    let p = proxy(&one_upstream(&format!("[\"{}\"]", origin.addr), "")).await;
    let mut h2 = h2_sender(p.addr(0)).await;
    for _ in 0..3 {
        let head = Request::head("http://t.test/").body(Full::default()).unwrap();
        let a = read_answer(h2.send_request(head).await.unwrap()).await;
        assert_eq!((a.status.as_u16(), a.body.as_str()), (200, ""));
    }
    assert_eq!(origin.connections.load(std::sync::atomic::Ordering::SeqCst), 1);

    let bad = RawOrigin::start(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
        false,
    )
    .await;
    let p = proxy(&one_upstream(&format!("[\"{}\"]", bad.addr), "")).await;
    let mut h2 = h2_sender(p.addr(0)).await;
    // The stream is reset: before the head reaches the client, or while it reads the body.
    let complete = match h2.send_request(get("/")).await {
        Ok(resp) => resp.into_body().collect().await.is_ok(),
        Err(e) => {
            assert!(format!("{e:?}").contains("INTERNAL_ERROR"), "{e:?}");
            false
        }
    };
    assert!(!complete, "a broken body must not look complete");
}

#[tokio::test]
async fn large_bodies_stream_through_the_pool() {
    let body = "0123456789abcdef".repeat(64 * 1024); // 1 MiB
    let expect = body.clone();
    let origin = Origin::start(move |_req| {
        let body = body.clone();
        async move { http::Response::new(TestBody::text(body)) }
    })
    .await;
    let p = proxy(&one_upstream(&servers(&[&origin]), "")).await;
    let mut h2 = h2_sender(p.addr(0)).await;
    for _ in 0..3 {
        let a = read_answer(h2.send_request(get("/big")).await.unwrap()).await;
        assert_eq!(a.body.len(), expect.len());
        assert!(a.body == expect);
    }
    assert_eq!(origin.connections(), 1);
}

/// An origin that answers each request on a connection with `ok`, after `body_delay` between
/// head and body, and `after_answer` (if any) writes a 408 and closes the connection once the
/// given time has passed after the first answer.
async fn scripted_origin(
    body_delay: std::time::Duration,
    after_answer: Option<std::time::Duration>,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n").await;
                        tokio::time::sleep(body_delay).await;
                        let _ = s.write_all(b"ok").await;
                        if let Some(after) = after_answer {
                            tokio::time::sleep(after).await;
                            let _ = s
                                .write_all(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n")
                                .await;
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, conns)
}

#[tokio::test]
async fn an_idle_pooled_socket_the_backend_wrote_to_is_not_reused() {
    // The backend sends a 408 on the idle connection and closes it; the next request (after an
    // idle time long enough for the probe, 1 s) must not take that 408 for its answer.
    let (addr, conns) = scripted_origin(std::time::Duration::ZERO, Some(std::time::Duration::from_millis(100))).await;
    let p = proxy(&one_upstream(&format!("[\"{addr}\"]"), "retries = 0")).await;
    for path in ["/a", "/b"] {
        // HTTP/1.1 client (fast path), then HTTP/2 (own client on the general path).
        let a = crate::harness::get(p.addr(0), path).await;
        assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "ok"), "h1 {path}");
        tokio::time::sleep(std::time::Duration::from_millis(1300)).await; // the idle time under test
        let a = read_answer(h2_sender(p.addr(0)).await.send_request(get(path)).await.unwrap()).await;
        assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "ok"), "h2 {path}");
        tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    }
    assert_eq!(
        conns.load(std::sync::atomic::Ordering::SeqCst),
        4,
        "a fresh connection each time"
    );
}

#[tokio::test]
async fn a_small_body_slower_than_the_response_timeout_still_streams() {
    // The head comes at once, the body 300 ms later: the response timeout (100 ms) is about the
    // head, so the client gets the whole answer.
    let (addr, _) = scripted_origin(std::time::Duration::from_millis(300), None).await;
    let p = proxy(&one_upstream(
        &format!("[\"{addr}\"]"),
        "response_timeout = \"100ms\"\nretries = 0",
    ))
    .await;
    let a = read_answer(h2_sender(p.addr(0)).await.send_request(get("/")).await.unwrap()).await;
    assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "ok"));
}
