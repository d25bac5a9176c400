//! Point 8 (HTTP/2): the stream limit is advertised, and a rapid-reset flood closes the
//! connection with ENHANCE_YOUR_CALM instead of tying up the proxy.

use crate::harness::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
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
