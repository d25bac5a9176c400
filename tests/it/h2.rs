//! Point 8 (HTTP/2): the stream limit is advertised, and a rapid-reset flood closes the
//! connection with ENHANCE_YOUR_CALM instead of tying up the proxy.

use crate::harness::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Frames (type, flags, stream, payload) read until the server closes or goes quiet.
async fn read_frames(s: &mut tokio::net::TcpStream) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), s.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    read_frames_from(&buf)
}

fn read_frames_from(buf: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut i = 0;
    while i + 9 <= buf.len() {
        let len = (usize::from(buf[i]) << 16) | (usize::from(buf[i + 1]) << 8) | usize::from(buf[i + 2]);
        if i + 9 + len > buf.len() {
            break;
        }
        let stream = u32::from_be_bytes([buf[i + 5], buf[i + 6], buf[i + 7], buf[i + 8]]) & 0x7fff_ffff;
        frames.push((buf[i + 3], buf[i + 4], stream, buf[i + 9..i + 9 + len].to_vec()));
        i += 9 + len;
    }
    frames
}

#[tokio::test]
async fn stream_limit_is_advertised_and_rapid_reset_is_stopped() {
    let origin = Origin::named("o").await;
    let cfg = format!(
        "[log]\naccess = \"off\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\nlimits = {{ h2_max_concurrent_streams = 77, h2_max_pending_resets = 20 }}\n[upstream.app]\nservers = [\"{}\"]\n[[route]]\nupstream = \"app\"\n",
        origin.addr
    );
    let p = proxy(&cfg).await;
    let mut s = tokio::net::TcpStream::connect(p.addr(0)).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[]));
    // HPACK: :method GET, :scheme http, :path /, :authority "x" (literal, indexed name).
    let headers = [0x82, 0x86, 0x84, 0x01, 0x01, b'x'];
    for i in 0..2000u32 {
        let id = 2 * i + 1;
        out.extend(frame(1, 0x5, id, &headers));
        out.extend(frame(3, 0, id, &8u32.to_be_bytes())); // RST_STREAM CANCEL
    }
    // The server may close mid-write; that is the expected outcome, not an error.
    let _ = s.write_all(&out).await;
    let frames = read_frames(&mut s).await;

    let settings = frames
        .iter()
        .find(|f| f.0 == 4 && f.1 & 1 == 0)
        .expect("server SETTINGS");
    let advertised: Vec<(u16, u32)> = settings
        .3
        .chunks(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect();
    assert!(
        advertised.contains(&(3, 77)),
        "MAX_CONCURRENT_STREAMS advertised: {advertised:?}"
    );

    let goaway = frames.iter().find(|f| f.0 == 7).expect("GOAWAY after the reset flood");
    let code = u32::from_be_bytes([goaway.3[4], goaway.3[5], goaway.3[6], goaway.3[7]]);
    assert_eq!(code, 0xb, "ENHANCE_YOUR_CALM");
    assert!(origin.requests() < 2000, "the flood did not all reach the backend");
}

/// Streams whose client stopped reading them (their flow-control windows ran out) keep body
/// bytes in the connection's send budget. The connection's other streams must still be
/// answered, and the stalled ones must resume whole once the client reads them.
#[tokio::test]
async fn streams_a_client_stops_reading_do_not_hold_back_the_others() {
    use http_body_util::BodyExt;
    const STALLED: usize = 512 * 1024;
    const OTHER: usize = 200 * 1024;
    let origin = Origin::start(|req| async move {
        let (size, fill) = if req.uri().path() == "/stalled" {
            (STALLED, b's')
        } else {
            (OTHER, b'o')
        };
        http::Response::new(TestBody::text(vec![fill; size]))
    })
    .await;
    let p = proxy(&one_upstream(&servers(&[&origin]), "")).await;
    let stream = tokio::net::TcpStream::connect(p.addr(0)).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .initial_stream_window_size(1024)
        .initial_connection_window_size(16 << 20)
        .handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    let get = |path: &str| {
        http::Request::get(format!("http://proxy.test{path}"))
            .body(http_body_util::Full::<bytes::Bytes>::default())
            .unwrap()
    };
    // Eight streams, each with a window of 1 KiB that is never opened further: each holds a
    // body chunk the proxy cannot send, together several times the connection's budget.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let resp = sender.send_request(get("/stalled")).await.expect("response head");
        assert_eq!(resp.status(), 200);
        stalled.push(resp);
    }
    let read_all = |resp: http::Response<hyper::body::Incoming>, what: &'static str| async move {
        tokio::time::timeout(Duration::from_secs(20), resp.into_body().collect())
            .await
            .expect(what)
            .expect("body")
            .to_bytes()
    };
    let other = sender.send_request(get("/other")).await.expect("response head");
    let body = read_all(other, "a stream the client reads is not held back by stalled ones").await;
    assert_eq!(body.len(), OTHER);
    assert!(body.iter().all(|b| *b == b'o'));
    for resp in stalled {
        let body = read_all(resp, "a stalled stream resumes when read").await;
        assert_eq!(body.len(), STALLED);
        assert!(body.iter().all(|b| *b == b's'));
    }
}

/// HPACK for a GET of `path` on authority "x": `:method GET`, `:scheme http` (indexed), then
/// `:path` and `:authority` as literals with indexed names.
fn get_block(path: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x86, 0x04, path.len() as u8];
    b.extend_from_slice(path.as_bytes());
    b.extend_from_slice(&[0x01, 0x01, b'x']);
    b
}

/// A literal field with a new name, not indexed.
fn literal(name: &str, value: &str) -> Vec<u8> {
    let mut b = vec![0x00, name.len() as u8];
    b.extend_from_slice(name.as_bytes());
    b.push(value.len() as u8);
    b.extend_from_slice(value.as_bytes());
    b
}

fn rst_code(frames: &[(u8, u8, u32, Vec<u8>)], stream: u32) -> Option<u32> {
    frames
        .iter()
        .find(|f| f.0 == 3 && f.2 == stream)
        .map(|f| u32::from_be_bytes([f.3[0], f.3[1], f.3[2], f.3[3]]))
}

#[tokio::test]
async fn malformed_requests_are_reset_and_never_forwarded() {
    let origin = Origin::named("o").await;
    let p = proxy(&one_upstream(&servers(&[&origin]), "")).await;
    let mut s = tokio::net::TcpStream::connect(p.addr(0)).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[]));
    // Upper case in a field name, and a connection-specific field (RFC 9113 §8.2).
    let mut upper = get_block("/one");
    upper.extend(literal("X-Up", "v"));
    out.extend(frame(1, 0x5, 1, &upper));
    let mut connection = get_block("/three");
    connection.extend(literal("connection", "close"));
    out.extend(frame(1, 0x5, 3, &connection));
    // More DATA than content-length declares.
    let mut post = vec![0x83, 0x86, 0x04, 5];
    post.extend_from_slice(b"/five");
    post.extend_from_slice(&[0x01, 0x01, b'x']);
    post.extend(literal("content-length", "2"));
    out.extend(frame(1, 0x4, 5, &post));
    out.extend(frame(0, 0x1, 5, b"abc"));
    // A good request after them on the same connection is answered.
    out.extend(frame(1, 0x5, 7, &get_block("/seven")));
    s.write_all(&out).await.unwrap();
    let frames = read_frames(&mut s).await;

    assert_eq!(rst_code(&frames, 1), Some(1), "PROTOCOL_ERROR for stream 1: {frames:?}");
    assert_eq!(rst_code(&frames, 3), Some(1), "PROTOCOL_ERROR for stream 3");
    assert_eq!(rst_code(&frames, 5), Some(1), "PROTOCOL_ERROR for stream 5");
    let answer = frames
        .iter()
        .find(|f| f.0 == 1 && f.2 == 7)
        .expect("HEADERS for stream 7");
    assert_eq!(answer.3[0], 0x88, ":status 200");
    let body: Vec<u8> = frames
        .iter()
        .filter(|f| f.0 == 0 && f.2 == 7)
        .flat_map(|f| f.3.clone())
        .collect();
    assert_eq!(body, b"o");
    let seen: Vec<String> = origin.seen.lock().unwrap().iter().map(|s| s.uri.clone()).collect();
    assert!(seen.contains(&"/seven".to_string()), "{seen:?}");
    assert!(
        !seen.iter().any(|u| u == "/one" || u == "/three"),
        "malformed requests forwarded: {seen:?}"
    );
}

#[tokio::test]
async fn header_blocks_continue_and_pings_are_answered() {
    let origin = Origin::named("o").await;
    let p = proxy(&one_upstream(&servers(&[&origin]), "")).await;
    let mut s = tokio::net::TcpStream::connect(p.addr(0)).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[]));
    let block = get_block("/split");
    out.extend(frame(1, 0x1, 1, &block[..3])); // END_STREAM, no END_HEADERS
    out.extend(frame(9, 0x4, 1, &block[3..])); // CONTINUATION, END_HEADERS
    out.extend(frame(6, 0, 0, b"pingpong"));
    s.write_all(&out).await.unwrap();
    // A header block interrupted by another frame is a connection error (§6.10).
    let mut rest = frame(1, 0x1, 3, &get_block("/cut")[..3]);
    rest.extend(frame(6, 0, 0, b"12345678"));
    // Sent once the first answer and the PING ACK are in, so the order of events is fixed.
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let frames = read_frames_from(&seen);
        if frames.iter().any(|f| f.0 == 6) && frames.iter().any(|f| f.0 == 0 && f.2 == 1 && f.1 & 1 == 1) {
            break;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("answer in time")
            .unwrap();
        assert!(n > 0, "closed early");
        seen.extend_from_slice(&chunk[..n]);
    }
    s.write_all(&rest).await.unwrap();
    let mut frames = read_frames_from(&seen);
    frames.extend(read_frames(&mut s).await);

    let answer = frames
        .iter()
        .find(|f| f.0 == 1 && f.2 == 1)
        .expect("answer to the continued block");
    assert_eq!(answer.3[0], 0x88);
    let pong = frames.iter().find(|f| f.0 == 6).expect("PING ACK");
    assert_eq!((pong.1, pong.3.as_slice()), (1, &b"pingpong"[..]));
    let goaway = frames.iter().find(|f| f.0 == 7).expect("GOAWAY");
    let code = u32::from_be_bytes([goaway.3[4], goaway.3[5], goaway.3[6], goaway.3[7]]);
    assert_eq!(code, 1, "PROTOCOL_ERROR");
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn request_bodies_larger_than_the_windows_arrive_whole() {
    use http_body_util::BodyExt;
    let origin = Origin::start(|req| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
        http::Response::new(TestBody::text(format!("{} {sum}", body.len())))
    })
    .await;
    let p = proxy(&one_upstream(&servers(&[&origin]), "")).await;
    // Larger than the stream window (256 KiB) and the connection window (1 MiB).
    let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let sum: u64 = data.iter().map(|&b| u64::from(b)).sum();
    let a = h2c(
        p.addr(0),
        http::Request::post("http://h2.test/up")
            .body(http_body_util::Full::new(bytes::Bytes::from(data)))
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, format!("{} {sum}", 3 * 1024 * 1024));
}

#[tokio::test]
async fn a_removed_listener_drains_http2_connections_gracefully() {
    let origin = Origin::start(|req| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        status(200, "done")
    })
    .await;
    let cfg = |listen: &str| {
        format!(
            "[log]\naccess = \"off\"\n[[listener]]\nlisten = \"{listen}\"\n[upstream.app]\nservers = [\"{}\"]\n[[route]]\nupstream = \"app\"\n",
            origin.addr
        )
    };
    let p = proxy(&cfg("127.0.0.1:0")).await;
    let stream = tokio::net::TcpStream::connect(p.addr(0)).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let get = |path: &str| {
        http::Request::get(format!("http://d.test{path}"))
            .body(http_body_util::Full::<bytes::Bytes>::default())
            .unwrap()
    };
    let slow = sender.send_request(get("/slow"));
    let origin_ref = &origin;
    let slow = tokio::spawn(slow);
    eventually(
        Duration::from_secs(5),
        "slow request reached the origin",
        || async move { origin_ref.requests() >= 1 },
    )
    .await;
    // The listener goes away: its connections are told (GOAWAY) and finish what they started.
    p.reload(&cfg("127.0.0.2:0")).unwrap_or_else(|e| panic!("{e}"));
    let resp = slow.await.unwrap().expect("the in-flight stream completes");
    assert_eq!(resp.status(), 200);
    use http_body_util::BodyExt;
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "done");
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("the connection closes once its streams are done")
        .unwrap()
        .expect("closed cleanly");
}

fn h2_config(origin: &Origin, limits: &str) -> String {
    format!(
        "[log]\naccess = \"off\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\nlimits = {{ {limits} }}\n[upstream.app]\nservers = [\"{}\"]\n[[route]]\nmatch = {{ path = \"/fixed\" }}\nrespond = {{ status = 200, body = \"fixed body\" }}\n[[route]]\nupstream = \"app\"\n",
        origin.addr
    )
}

pub(crate) fn preface() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[]));
    out
}

#[tokio::test]
async fn head_answers_carry_no_body_and_host_must_match_authority() {
    let origin = Origin::named("o").await;
    let p = proxy(&h2_config(&origin, "")).await;
    let mut s = tokio::net::TcpStream::connect(p.addr(0)).await.unwrap();
    let mut out = preface();
    // HEAD /fixed: a fixed response with a body; HEAD must not send it (RFC 9110 §9.3.2).
    let mut head = vec![0x04, 6];
    head.extend_from_slice(b"/fixed");
    head.extend_from_slice(&[0x86, 0x01, 0x01, b'x']);
    head.extend(literal(":method", "HEAD"));
    // (a pseudo-header after others is fine as long as all precede regular fields)
    out.extend(frame(1, 0x5, 1, &head));
    // Host naming another site than :authority: refused, never routed by one and sent as the other.
    let mut two_hosts = get_block("/two");
    two_hosts.extend(literal("host", "elsewhere.test"));
    out.extend(frame(1, 0x5, 3, &two_hosts));
    s.write_all(&out).await.unwrap();
    let frames = read_frames(&mut s).await;
    let answer = frames
        .iter()
        .find(|f| f.0 == 1 && f.2 == 1)
        .expect("HEADERS for the HEAD");
    assert_eq!(answer.1 & 1, 1, "END_STREAM on the head itself: {frames:?}");
    assert!(
        !frames.iter().any(|f| f.0 == 0 && f.2 == 1 && !f.3.is_empty()),
        "no DATA for HEAD"
    );
    assert_eq!(rst_code(&frames, 3), Some(1), "PROTOCOL_ERROR for host ≠ :authority");
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_after_the_idle_timeout() {
    let origin = Origin::start(|_req| async move { http::Response::new(TestBody::text(vec![b'z'; 8 << 20])) }).await;
    let p = proxy(&h2_config(&origin, "idle_timeout = \"1s\"")).await;
    let mut s = tokio::net::TcpStream::connect(p.addr(0)).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // Windows wide open (INITIAL_WINDOW_SIZE 2^31-1 and a connection WINDOW_UPDATE), then
    // never another read: the proxy's writes back up.
    out.extend(frame(4, 0, 0, &[0, 4, 0x7f, 0xff, 0xff, 0xff]));
    out.extend(frame(8, 0, 0, &0x7fff_0000u32.to_be_bytes()));
    out.extend(frame(1, 0x5, 1, &get_block("/big")));
    s.write_all(&out).await.unwrap();
    eventually(Duration::from_secs(10), "the origin was asked", || async {
        origin.requests() >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Now read: what was sent before the proxy gave up, then the end of the connection.
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => total += n,
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(closed, "connection closed");
    assert!(total < 8 << 20, "the body was not all sent ({total} bytes)");
}

#[tokio::test]
async fn errors_provoked_on_many_streams_end_the_connection() {
    let origin = Origin::named("o").await;
    let p = proxy(&h2_config(&origin, "h2_max_pending_resets = 10")).await;
    let mut s = tokio::net::TcpStream::connect(p.addr(0)).await.unwrap();
    let mut out = preface();
    // Each stream is opened with a body still to come, then given a WINDOW_UPDATE of 0, which
    // the proxy answers with RST_STREAM ("MadeYouReset").
    for i in 0..500u32 {
        let id = 2 * i + 1;
        let mut post = vec![0x83, 0x86, 0x04, 4];
        post.extend_from_slice(b"/mur");
        post.extend_from_slice(&[0x01, 0x01, b'x']);
        out.extend(frame(1, 0x4, id, &post));
        out.extend(frame(8, 0, id, &[0, 0, 0, 0]));
    }
    let _ = s.write_all(&out).await;
    let frames = read_frames(&mut s).await;
    let goaway = frames
        .iter()
        .find(|f| f.0 == 7)
        .expect("GOAWAY after the provoked resets");
    let code = u32::from_be_bytes([goaway.3[4], goaway.3[5], goaway.3[6], goaway.3[7]]);
    assert_eq!(code, 0xb, "ENHANCE_YOUR_CALM");
    assert!(frames.iter().filter(|f| f.0 == 3).count() < 100, "stopped early");
}

#[tokio::test]
async fn padded_uploads_keep_the_stream_window_open() {
    let origin = Origin::start(|req| async move {
        use http_body_util::BodyExt;
        let body = req.into_body().collect().await.unwrap().to_bytes();
        http::Response::new(TestBody::text(format!("{}", body.len())))
    })
    .await;
    let p = proxy(&h2_config(&origin, "")).await;
    let mut s = tokio::net::TcpStream::connect(p.addr(0)).await.unwrap();
    let mut out = preface();
    let mut post = vec![0x83, 0x86, 0x04, 3];
    post.extend_from_slice(b"/up");
    post.extend_from_slice(&[0x01, 0x01, b'x']);
    out.extend(frame(1, 0x4, 1, &post));
    s.write_all(&out).await.unwrap();
    // 4,000 DATA frames of one byte and 254 bytes of padding: about 1 MiB of flow control for
    // 4,000 bytes of body, four times the stream's window. Sent as the windows allow.
    let (mut conn_window, mut stream_window) = (65_535i64, 65_535i64);
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut frames_read = 0;
    for i in 0..4000 {
        while conn_window < 256 || stream_window < 256 {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
                .await
                .expect("a WINDOW_UPDATE in time (the window must not stay shut)")
                .unwrap();
            assert!(n > 0);
            seen.extend_from_slice(&chunk[..n]);
            let frames = read_frames_from(&seen);
            for f in &frames[frames_read..] {
                if f.0 == 4 && f.1 == 0 {
                    // The server's SETTINGS: its initial stream window.
                    for c in f.3.chunks(6) {
                        if u16::from_be_bytes([c[0], c[1]]) == 4 {
                            stream_window += i64::from(u32::from_be_bytes([c[2], c[3], c[4], c[5]])) - 65_535;
                        }
                    }
                }
                if f.0 == 8 {
                    let inc = i64::from(u32::from_be_bytes([f.3[0], f.3[1], f.3[2], f.3[3]]));
                    if f.2 == 0 {
                        conn_window += inc;
                    } else {
                        stream_window += inc;
                    }
                }
            }
            frames_read = frames.len();
        }
        let mut payload = vec![254u8, b'b'];
        payload.extend_from_slice(&[0u8; 254]);
        let flags = if i == 3999 { 0x9 } else { 0x8 };
        s.write_all(&frame(0, flags, 1, &payload)).await.unwrap();
        conn_window -= 256;
        stream_window -= 256;
    }
    let frames = read_frames(&mut s).await;
    let body: Vec<u8> = frames
        .iter()
        .filter(|f| f.0 == 0 && f.2 == 1)
        .flat_map(|f| f.3.clone())
        .collect();
    assert_eq!(String::from_utf8_lossy(&body), "4000");
}

/// The HTTP/2 fast path (`server/http2/direct.rs`) forwards and answers like the HTTP/1.1 fast
/// path: same fields upstream (forwarding fields, header stages, joined cookies), same fields
/// back (hop-by-hop removed, stages, sticky cookie, request id).
#[tokio::test]
async fn http2_fast_path_forwards_and_answers_like_http1() {
    let origin = Origin::start(|_req| async move {
        http::Response::builder()
            .header("x-origin", "yes")
            .header("server", "origin/1")
            .header("connection", "x-hop")
            .header("x-hop", "dropped")
            .header("keep-alive", "timeout=5")
            .body(TestBody::text("hello"))
            .unwrap()
    })
    .await;
    let cfg = format!(
        "[log]\naccess = \"off\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n[upstream.app]\nservers = [\"{}\"]\nsticky = {{ cookie = \"srv\" }}\n[[route]]\nupstream = \"app\"\nrequest_headers = {{ set = {{ \"x-env\" = \"prod\" }}, add = {{ \"x-via\" = \"fd\" }}, remove = [\"x-debug\"] }}\nresponse_headers = {{ set = {{ \"server\" = \"frontdesk\" }}, add = {{ \"x-edge\" = \"1\" }} }}\n",
        origin.addr
    );
    let p = proxy(&cfg).await;
    let h1 = send(
        p.addr(0),
        http::Request::get("/page?q=1")
            .header("host", "site.test")
            .header("cookie", "a=1; b=2")
            .header("x-debug", "1")
            .header("x-forwarded-for", "6.6.6.6")
            .body(http_body_util::Full::default())
            .unwrap(),
    )
    .await;
    let h1_seen = origin.last_seen();
    let h2 = h2c(
        p.addr(0),
        http::Request::get("http://site.test/page?q=1")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("x-debug", "1")
            .header("x-forwarded-for", "6.6.6.6")
            .body(http_body_util::Full::default())
            .unwrap(),
    )
    .await;
    let h2_seen = origin.last_seen();
    assert_eq!((h1.status.as_u16(), h2.status.as_u16()), (200, 200));
    assert_eq!((h1.body.as_str(), h2.body.as_str()), ("hello", "hello"));
    assert_eq!(h2_seen.uri, "/page?q=1");
    let upstream = |s: &Seen| {
        let mut v: Vec<(String, String)> = s
            .headers
            .iter()
            .filter(|(n, _)| n.as_str() != "x-request-id")
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(upstream(&h1_seen), upstream(&h2_seen), "same fields upstream");
    let u = upstream(&h2_seen);
    for (name, value) in [
        ("host", "site.test"),
        ("cookie", "a=1; b=2"),
        ("x-env", "prod"),
        ("x-via", "fd"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-proto", "http"),
    ] {
        assert!(u.contains(&(name.to_string(), value.to_string())), "{name}: {u:?}");
    }
    assert!(!u.iter().any(|(n, _)| n == "x-debug"));
    assert!(h2_seen.headers.get("x-request-id").is_some());
    let names = |a: &Answer| {
        let mut n: Vec<String> = a.headers.keys().map(|k| k.to_string()).collect();
        // Framing fields belong to HTTP/1.1 only.
        n.retain(|k| k != "date" && k != "connection" && k != "transfer-encoding");
        n.sort();
        n
    };
    assert_eq!(names(&h1), names(&h2), "same fields back");
    assert_eq!(h2.header("server"), "frontdesk");
    assert_eq!(h2.header("x-edge"), "1");
    assert!(
        h2.header("set-cookie").starts_with("srv="),
        "sticky cookie: {:?}",
        h2.headers
    );
    assert!(h2.headers.get("x-hop").is_none() && h2.headers.get("keep-alive").is_none());
    assert_eq!(h2.header("x-request-id").len(), 32);
}

#[tokio::test]
async fn listener_limits_apply_to_http2_requests() {
    let origin = Origin::named("o").await;
    let p = proxy(&h2_config(&origin, "max_uri_bytes = \"64B\", max_headers = 5")).await;
    let mut s = tokio::net::TcpStream::connect(p.addr(0)).await.unwrap();
    let mut out = preface();
    out.extend(frame(1, 0x5, 1, &get_block(&format!("/{}", "p".repeat(100)))));
    let mut many = get_block("/many");
    for i in 0..6 {
        many.extend(literal(&format!("x-{i}"), "1"));
    }
    out.extend(frame(1, 0x5, 3, &many));
    out.extend(frame(1, 0x5, 5, &get_block("/fine")));
    s.write_all(&out).await.unwrap();
    let frames = read_frames(&mut s).await;
    let status = |id: u32| frames.iter().find(|f| f.0 == 1 && f.2 == id).map(|f| f.3.clone());
    assert_eq!(
        status(1).expect("answer to the long target")[..5],
        [0x08, 3, b'4', b'1', b'4']
    );
    assert_eq!(
        status(3).expect("answer to the many fields")[..5],
        [0x08, 3, b'4', b'3', b'1']
    );
    assert_eq!(status(5).expect("answer to the good one")[0], 0x88);
    assert_eq!(origin.requests(), 1, "only the good request was forwarded");
}

#[tokio::test]
async fn requests_that_would_read_differently_over_http1_are_refused() {
    let origin = Origin::named("o").await;
    let p = proxy(&h2_config(&origin, "")).await;
    let mut s = tokio::net::TcpStream::connect(p.addr(0)).await.unwrap();
    let mut out = preface();
    // A space in :path would split the HTTP/1.1 request line differently than the router read it.
    out.extend(frame(1, 0x5, 1, &get_block("/admin x")));
    // Trailing whitespace in :authority: routed as "a.test ", served as "a.test".
    let mut authority = vec![0x82, 0x86, 0x04, 1, b'/', 0x01, 7];
    authority.extend_from_slice(b"a.test ");
    out.extend(frame(1, 0x5, 3, &authority));
    // A control byte in a field value, which HTTP/1.1 would refuse.
    let mut control = get_block("/c");
    control.extend(literal("x-c", "a\u{0b}b"));
    out.extend(frame(1, 0x5, 5, &control));
    // Neither :authority nor host.
    out.extend(frame(1, 0x5, 7, &[0x82, 0x86, 0x84]));
    out.extend(frame(1, 0x5, 9, &get_block("/fine")));
    s.write_all(&out).await.unwrap();
    let frames = read_frames(&mut s).await;
    for id in [1, 3, 5, 7] {
        assert_eq!(rst_code(&frames, id), Some(1), "stream {id}: {frames:?}");
    }
    assert_eq!(frames.iter().find(|f| f.0 == 1 && f.2 == 9).expect("answer").3[0], 0x88);
    let seen: Vec<String> = origin.seen.lock().unwrap().iter().map(|s| s.uri.clone()).collect();
    assert_eq!(seen, ["/fine"]);
}
