//! Point 8: malformed or oversized requests get 4xx and never reach a backend; slow clients are
//! cut off.

use crate::harness::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_millis(500);

async fn guarded(limits: &str) -> (TestProxy, Origin) {
    let origin = Origin::named("origin").await;
    let cfg = format!(
        r#"
[log]
access = "off"
[[listener]]
listen = "127.0.0.1:0"
limits = {{ {limits} }}
[upstream.app]
servers = ["{}"]
[[route]]
upstream = "app"
"#,
        origin.addr
    );
    (proxy(&cfg).await, origin)
}

async fn expect_rejected(p: &TestProxy, origin: &Origin, request: &str, status: u16) {
    let answer = raw(p.addr(0), request.as_bytes(), WAIT).await;
    assert_eq!(raw_status(&answer), status, "request {request:?} answered {answer:?}");
    assert_eq!(origin.requests(), 0, "request {request:?} must not be forwarded");
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused() {
    let (p, origin) = guarded("").await;
    expect_rejected(
        &p,
        &origin,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    )
    .await;
    expect_rejected(
        &p,
        &origin,
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
    )
    .await;
    // Pipelined after a good request: the good one is served, the ambiguous one refused.
    let two = "GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let answer = raw(p.addr(0), two.as_bytes(), WAIT).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("HTTP/1.1 400"), "{answer}");
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn malformed_heads_are_refused() {
    let (p, origin) = guarded("").await;
    for bad in [
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    ] {
        expect_rejected(&p, &origin, bad, 400).await;
    }
}

#[tokio::test]
async fn bad_chunked_body_is_refused_before_forwarding() {
    let (p, origin) = guarded("").await;
    expect_rejected(
        &p,
        &origin,
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        400,
    )
    .await;
    expect_rejected(
        &p,
        &origin,
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n",
        400,
    )
    .await;
    // A well-formed chunked body is forwarded.
    let ok = raw(
        p.addr(0),
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(raw_status(&ok), 200);
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn size_limits_give_414_431_413() {
    let (p, origin) =
        guarded("max_uri_bytes = 100, max_headers = 10, max_header_bytes = \"2KiB\", max_body_bytes = 10").await;
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(200));
    expect_rejected(&p, &origin, &long_uri, 414).await;
    let many: String = (0..20).map(|i| format!("X-H{i}: v\r\n")).collect();
    expect_rejected(&p, &origin, &format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n"), 431).await;
    let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(3000));
    expect_rejected(&p, &origin, &big, 431).await;
    expect_rejected(
        &p,
        &origin,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world",
        413,
    )
    .await;
    expect_rejected(
        &p,
        &origin,
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n",
        413,
    )
    .await;
}

#[tokio::test]
async fn slowloris_is_cut_off_by_the_header_timeout() {
    let (p, origin) = guarded("header_read_timeout = \"300ms\"").await;
    let mut s = tokio::net::TcpStream::connect(p.addr(0)).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    // The proxy must close the connection (read returns) well before our 5 s guard.
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection was not closed");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let (p, _origin) = guarded("idle_timeout = \"200ms\"").await;
    let mut c = H1::connect(p.addr(0)).await;
    assert_eq!(c.get("x", "/").await.status, 200);
    let cr = &c;
    eventually(Duration::from_secs(5), "idle connection closed", || async move {
        cr.is_closed()
    })
    .await;
}
