//! The HTTP/1.1 fast path: pipelining, hand-over to the general path mid-connection, bodiless
//! responses, every response framing, and stale pooled connections.

use crate::harness::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_millis(300);

fn config(addr: std::net::SocketAddr) -> String {
    format!("[log]\naccess = \"off\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n[upstream.app]\nservers = [\"{addr}\"]\n[[route]]\nupstream = \"app\"\n")
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let origin = Origin::start(|req| async move { status(200, req.uri().path()) }).await;
    let p = proxy(&config(origin.addr)).await;
    let two = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answer = raw(p.addr(0), two, WAIT).await;
    let first = answer.find("/first").expect("first answered");
    let second = answer.find("/second").expect("second answered");
    assert!(first < second, "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2);
}

#[tokio::test]
async fn connection_moves_to_the_general_path_for_a_chunked_request() {
    let echo = body_size_echo().await;
    let p = proxy(&config(echo.addr)).await;
    let both = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let answer = raw(p.addr(0), both, WAIT).await;
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
    assert!(
        answer.contains("got 0 bytes") && answer.contains("got 5 bytes"),
        "{answer}"
    );
}

#[tokio::test]
async fn head_and_204_have_no_body_and_keep_the_connection() {
    let origin = RawOrigin::start(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false).await;
    let p = proxy(&config(origin.addr)).await;
    let answer = raw(
        p.addr(0),
        b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
    assert!(
        answer.contains("content-length: 5") || answer.contains("Content-Length: 5"),
        "{answer}"
    );

    let no_content = RawOrigin::start(b"HTTP/1.1 204 No Content\r\n\r\n", false).await;
    let p = proxy(&config(no_content.addr)).await;
    let mut c = H1::connect(p.addr(0)).await;
    for _ in 0..3 {
        assert_eq!(c.get("x", "/").await.status, 204);
    }
    assert_eq!(
        no_content.connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "upstream connection reused"
    );
}

#[tokio::test]
async fn close_delimited_response_is_relayed_and_the_client_closed() {
    let origin = RawOrigin::start(
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
        true,
    )
    .await;
    let p = proxy(&config(origin.addr)).await;
    let answer = raw(p.addr(0), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(answer.ends_with("until the end"), "{answer}");
}

#[tokio::test]
async fn stale_pooled_connection_is_retried_transparently() {
    // The origin closes every connection after its answer without saying so; the proxy's pooled
    // socket is then dead on its next use.
    let origin = RawOrigin::start(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true).await;
    let cfg = format!(
        "[log]\naccess = \"off\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n[upstream.app]\nservers = [\"{}\"]\nretries = 0\n[[route]]\nupstream = \"app\"\n",
        origin.addr
    );
    let p = proxy(&cfg).await;
    let mut c = H1::connect(p.addr(0)).await;
    for _ in 0..5 {
        let a = c.get("x", "/").await;
        assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "ok"));
    }
    assert_eq!(origin.requests(), 5);
}

#[tokio::test]
async fn malformed_upstream_response_gives_502() {
    let origin = RawOrigin::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nok",
        false,
    )
    .await;
    let p = proxy(&config(origin.addr)).await;
    assert_eq!(get(p.addr(0), "/").await.status, 502);
}

#[tokio::test]
async fn connection_header_cannot_remove_framing_fields() {
    // Found in review: `Connection: content-length` must not strip the length while the body is
    // still relayed (the body would become a second, unchecked request upstream).
    let echo = body_size_echo().await;
    let p = proxy(&config(echo.addr)).await;
    let smuggle = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 29\r\nConnection: content-length\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = raw(p.addr(0), smuggle, WAIT).await;
    assert!(answer.contains("got 29 bytes"), "{answer}");
    assert_eq!(
        echo.requests(),
        1,
        "the body reached the origin as a body, not as a request"
    );
}

#[tokio::test]
async fn keep_alive_continues_after_a_streamed_request_body() {
    // Found in review: a body larger than what arrived with the head used to make the
    // connection task consume too much of its buffer.
    let echo = body_size_echo().await;
    let p = proxy(&config(echo.addr)).await;
    let mut c = H1::connect(p.addr(0)).await;
    for _ in 0..3 {
        let req = http::Request::post("/")
            .header("host", "x")
            .body(http_body_util::Full::new(bytes::Bytes::from(vec![b'x'; 300_000])))
            .unwrap();
        assert_eq!(c.send(req).await.body, "got 300000 bytes");
        assert_eq!(c.get("x", "/").await.body, "got 0 bytes");
    }
}

#[tokio::test]
async fn upstream_status_line_without_reason_and_bad_chunks() {
    let no_reason = RawOrigin::start(b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", false).await;
    let p = proxy(&config(no_reason.addr)).await;
    let a = get(p.addr(0), "/").await;
    assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "ok"));

    let bad_chunks = RawOrigin::start(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhelloXX",
        false,
    )
    .await;
    let p = proxy(&config(bad_chunks.addr)).await;
    let answer = raw(p.addr(0), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(3)).await;
    assert!(
        !answer.to_ascii_lowercase().contains("content-length"),
        "no length next to chunked: {answer}"
    );
    // Only the body counts: the head's last line (the random request id) may end in "0".
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(
        answer.starts_with("HTTP/1.1 200") && !body.contains("0\r\n\r\n"),
        "the broken body is cut, never completed: {answer}"
    );
}

/// Bodiless requests that need the general pipeline are answered on the fast-path connection;
/// a keep-alive client sees correct framing for every kind of answer in a row.
#[tokio::test]
async fn one_connection_mixes_misses_hits_and_other_actions() {
    let origin = Origin::start(|req| async move {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let path = req.uri().path().to_string();
        tokio::spawn(async move {
            for part in ["chunked ", "body ", &path] {
                let _ = tx
                    .send(http_body::Frame::data(bytes::Bytes::from(part.to_string())))
                    .await;
            }
        });
        http::Response::builder()
            .header("cache-control", "max-age=60")
            .header("etag", "\"e1\"")
            .header("content-type", "text/plain")
            .body(TestBody::Channel(rx))
            .unwrap()
    })
    .await;
    let cfg = format!(
        r#"
[log]
access = "off"
[[listener]]
listen = "127.0.0.1:0"
[cache.c]
memory = "1MiB"
[upstream.app]
servers = ["{}"]
[[route]]
match = {{ path = "/moved" }}
redirect = {{ to = "/new", status = 301 }}
[[route]]
match = {{ path = "/fixed" }}
respond = {{ status = 200, body = "fixed body" }}
[[route]]
match = {{ path_prefix = "/zip/" }}
upstream = "app"
compress = true
[[route]]
upstream = "app"
cache = "c"
"#,
        origin.addr
    );
    let p = proxy(&cfg).await;
    let mut conn = H1::connect(p.addr(0)).await;
    let req = |method: &str, path: &str, headers: &[(&str, &str)]| {
        let mut b = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "mix.test");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(http_body_util::Full::default()).unwrap()
    };
    let miss = conn.send(req("GET", "/a", &[])).await;
    assert_eq!(miss.body, "chunked body /a");
    assert!(miss.header("cache-status").contains("fwd=uri-miss"));
    let hit = conn.send(req("GET", "/a", &[])).await;
    assert!(hit.header("cache-status").starts_with("frontdesk; hit"));
    assert_eq!(hit.body, "chunked body /a");
    let head = conn.send(req("HEAD", "/a", &[])).await;
    assert_eq!((head.status.as_u16(), head.body.as_str()), (200, ""));
    let not_modified = conn.send(req("GET", "/a", &[("if-none-match", "\"e1\"")])).await;
    assert_eq!((not_modified.status.as_u16(), not_modified.body.as_str()), (304, ""));
    let moved = conn.send(req("GET", "/moved", &[])).await;
    assert_eq!((moved.status.as_u16(), moved.header("location")), (301, "/new"));
    let fixed = conn.send(req("GET", "/fixed", &[])).await;
    assert_eq!(fixed.body, "fixed body");
    assert_eq!(fixed.header("content-length"), "10");
    let fixed_head = conn.send(req("HEAD", "/fixed", &[])).await;
    assert_eq!(
        (fixed_head.header("content-length"), fixed_head.body.as_str()),
        ("10", "")
    );
    let zipped = conn.send(req("GET", "/zip/x", &[("accept-encoding", "gzip")])).await;
    assert_eq!(zipped.header("content-encoding"), "gzip");
    assert_eq!(zipped.header("transfer-encoding"), "chunked");
    let missing = conn.send(req("GET", "/b", &[("range", "bytes=0-6")])).await;
    assert_eq!(missing.body, "chunked body /b", "a miss answers whole");
    let ranged = conn.send(req("GET", "/b", &[("range", "bytes=0-6")])).await;
    assert_eq!((ranged.status.as_u16(), ranged.body.as_str()), (206, "chunked"));
    assert!(!conn.is_closed());
    assert_eq!(origin.connections(), 1, "one upstream connection, reused");
    assert_eq!(origin.requests(), 4);
}

/// A response with a body of `len` bytes ('a'..'z' repeating) after its head; `sent` of them
/// are actually written (fewer makes a backend that stops mid-body).
fn long_response(len: usize, sent: usize) -> &'static [u8] {
    let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n").into_bytes();
    r.extend((0..sent).map(|i| b'a' + (i % 26) as u8));
    Box::leak(r.into_boxed_slice())
}

#[tokio::test]
async fn long_bodies_are_spliced_whole_and_both_connections_kept() {
    const LEN: usize = 300_001;
    let origin = RawOrigin::start(long_response(LEN, LEN), false).await;
    let p = proxy(&config(origin.addr)).await;
    let mut c = H1::connect(p.addr(0)).await;
    for _ in 0..3 {
        let a = c.get("x", "/long").await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body.len(), LEN);
        assert!(
            a.body.bytes().enumerate().all(|(i, b)| b == b'a' + (i % 26) as u8),
            "body differs"
        );
    }
    assert!(!c.is_closed());
    assert_eq!(origin.requests(), 3);
    // The upstream socket went back to the pool after each body: exactly its length was read.
    assert_eq!(origin.connections.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_long_body_cut_short_by_the_backend_closes_the_client() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = RawOrigin::start(long_response(200_000, 100_000), true).await;
    let p = proxy(&config(origin.addr)).await;
    let mut s = tokio::net::TcpStream::connect(p.addr(0)).await.unwrap();
    s.write_all(b"GET /cut HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    // The proxy must close the connection: the client cannot be told otherwise that the body
    // ended short.
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the proxy closes the client connection")
        .unwrap();
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert_eq!(got.len() - head_end, 100_000, "what the backend sent, and no more");
}

#[tokio::test]
async fn bytes_after_a_spliced_body_retire_the_backend_connection() {
    const LEN: usize = 100_000;
    // The backend writes a whole extra response after the body, in the same write.
    let mut wire = long_response(LEN, LEN).to_vec();
    wire.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!");
    let origin = RawOrigin::start(Box::leak(wire.into_boxed_slice()), false).await;
    let p = proxy(&config(origin.addr)).await;
    for _ in 0..2 {
        let a = H1::connect(p.addr(0)).await.get("x", "/long").await;
        assert_eq!(
            a.body.len(),
            LEN,
            "each request gets its own response, never the stray one"
        );
    }
    assert_eq!(
        origin.connections.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the socket with bytes after the body was not pooled"
    );
}

#[tokio::test]
async fn an_answer_the_backend_gives_before_the_whole_body_is_relayed() {
    // The origin answers as soon as it has the head, then closes without reading the body (a
    // backend refusing an upload early, RFC 9112 §9.6); the client is still sending it. The
    // answer reaches the client, the rest of the body is read and dropped, and the connection
    // carries the next request.
    let origin = RawOrigin::start(
        b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\n\r\ntoo long",
        true,
    )
    .await;
    let p = proxy(&config(origin.addr)).await;
    let s = tokio::net::TcpStream::connect(p.addr(0)).await.unwrap();
    s.set_nodelay(true).unwrap();
    let (mut rd, mut wr) = s.into_split();
    let body = 200 * 1000;
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let head = format!("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {body}\r\n\r\n");
        wr.write_all(head.as_bytes()).await.unwrap();
        // Slowly, as over a real network, so that the proxy is still streaming it upstream.
        for _ in 0..200 {
            wr.write_all(&[b'a'; 1000]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        wr.write_all(b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        wr
    });
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), async {
        use tokio::io::AsyncReadExt;
        let _ = rd.read_to_end(&mut got).await;
    })
    .await;
    assert!(read.is_ok(), "the proxy did not close the connection");
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    assert_eq!(got.matches("HTTP/1.1 413").count(), 2, "both requests answered: {got}");
    assert_eq!(got.matches("too long").count(), 2, "{got}");
    assert_eq!(origin.requests(), 2);
    drop(writer.await.unwrap());
}

/// Reads from `s` until `needle` has arrived (bounded by 5 s): everything read so far.
async fn read_until_seen(s: &mut tokio::net::TcpStream, got: &mut Vec<u8>, needle: &[u8]) -> String {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !got.windows(needle.len()).any(|w| w == needle) {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(got).into_owned()
}

#[tokio::test]
async fn expect_100_continue_is_answered_by_the_proxy() {
    use tokio::io::AsyncWriteExt;
    let echo = body_size_echo().await;
    let p = proxy(&config(echo.addr)).await;
    let mut s = tokio::net::TcpStream::connect(p.addr(0)).await.unwrap();
    s.write_all(b"POST /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .await
        .unwrap();
    // This client sends the body only after the go-ahead.
    let mut got = Vec::new();
    let interim = read_until_seen(&mut s, &mut got, b"\r\n\r\n").await;
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    got.clear();
    s.write_all(b"hello").await.unwrap();
    let answer = read_until_seen(&mut s, &mut got, b"got 5 bytes").await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("got 5 bytes"),
        "{answer}"
    );
    assert!(
        echo.last_seen().headers.get("expect").is_none(),
        "the proxy answered the expectation"
    );

    // A client that sends the body along with the head gets no 100.
    got.clear();
    s.write_all(b"POST /b HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc")
        .await
        .unwrap();
    let answer = read_until_seen(&mut s, &mut got, b"got 3 bytes").await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("got 3 bytes"),
        "{answer}"
    );
}
