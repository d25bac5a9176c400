//! Issue 4, compression: negotiation, streaming encoders decoded by real clients (curl and the
//! reference decoders), what must not be compressed, and encoded variants kept by the cache.

use crate::harness::*;
use bytes::Bytes;
use http::Request;
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

fn page() -> String {
    (0..2000).map(|i| format!("<p>paragraph {i}</p>\n")).collect()
}

/// One compressing route to `origin` with `route_extra` keys; `tables` (e.g. a cache zone) go last.
fn config(origin: &Origin, route_extra: &str, tables: &str) -> String {
    format!(
        "{}compress = true\n{route_extra}\n{tables}\n",
        one_upstream(&servers(&[origin]), "")
    )
}

/// An origin that answers with `headers` and `body`.
async fn origin_with(headers: &'static [(&'static str, &'static str)], body: String) -> Origin {
    Origin::start(move |_req| {
        let body = body.clone();
        async move {
            let mut r = http::Response::builder();
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.body(TestBody::text(body)).unwrap()
        }
    })
    .await
}

/// One GET; the body exactly as received (not decoded).
async fn fetch(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (http::response::Parts, Bytes) {
    fetch_raw(addr, "GET", path, headers).await
}

fn decode(coding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => {
            flate2::read::GzDecoder::new(data).read_to_end(&mut out).unwrap();
        }
        "br" => {
            brotli::Decompressor::new(data, 4096).read_to_end(&mut out).unwrap();
        }
        "zstd" => out = zstd::stream::decode_all(data).unwrap(),
        other => panic!("unexpected coding {other}"),
    }
    out
}

fn header<'a>(parts: &'a http::response::Parts, name: &str) -> &'a str {
    parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn curl(args: &[String]) -> (String, Vec<u8>) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-D", "-"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end")
        + 4;
    (
        String::from_utf8_lossy(&out.stdout[..split]).to_ascii_lowercase(),
        out.stdout[split..].to_vec(),
    )
}

#[tokio::test]
async fn curl_decodes_every_encoding() {
    let origin = origin_with(&[("content-type", "text/html; charset=utf-8")], page()).await;
    let p = proxy(&config(&origin, "", "")).await;
    for coding in ["zstd", "br", "gzip"] {
        let url = format!("http://{}/page", p.addr(0));
        let args = vec![
            "--compressed".to_string(),
            "-H".into(),
            format!("Accept-Encoding: {coding}"),
            url,
        ];
        let (head, body) = tokio::task::spawn_blocking(move || curl(&args)).await.unwrap();
        assert!(head.contains(&format!("content-encoding: {coding}\r\n")), "{head}");
        assert!(head.contains("vary: accept-encoding\r\n"), "{head}");
        assert_eq!(String::from_utf8(body).unwrap(), page(), "{coding} decoded by curl");
        assert_eq!(origin.last_seen().headers["accept-encoding"], coding);
    }
    // curl's own Accept-Encoding lists several: the route's preference (zstd first) wins.
    let args = vec!["--compressed".to_string(), format!("http://{}/page", p.addr(0))];
    let (head, body) = tokio::task::spawn_blocking(move || curl(&args)).await.unwrap();
    assert!(head.contains("content-encoding: zstd\r\n"), "{head}");
    assert_eq!(String::from_utf8(body).unwrap(), page());
}

#[tokio::test]
async fn encoded_responses_get_a_consistent_head() {
    let origin = origin_with(
        &[
            ("content-type", "application/json"),
            ("etag", "\"v1\""),
            ("accept-ranges", "bytes"),
        ],
        page(),
    )
    .await;
    let p = proxy(&config(&origin, "", "")).await;
    let (parts, body) = fetch(
        p.addr(0),
        "/",
        &[("accept-encoding", "gzip;q=0.8, br;q=0.9, zstd;q=0.1")],
    )
    .await;
    assert_eq!(header(&parts, "content-encoding"), "br");
    assert_eq!(header(&parts, "etag"), "W/\"v1\"");
    assert_eq!(header(&parts, "vary"), "Accept-Encoding");
    assert!(parts.headers.get("content-length").is_none());
    assert!(parts.headers.get("accept-ranges").is_none());
    assert!(body.len() < page().len() / 5, "compressed to {} bytes", body.len());
    assert_eq!(decode("br", &body), page().as_bytes());

    // HTTP/2 clients get the same.
    let req = Request::get("/")
        .header("host", "zip.test")
        .header("accept-encoding", "gzip")
        .body(Full::default())
        .unwrap();
    let a = h2c(p.addr(0), req).await;
    assert_eq!(a.header("content-encoding"), "gzip");
}

#[tokio::test]
async fn what_must_not_be_compressed_is_left_alone() {
    let origin = Origin::start(|req| async move {
        let path = req.uri().path().to_string();
        let mut r = http::Response::builder();
        let body = match path.as_str() {
            "/png" => {
                r = r.header("content-type", "image/png");
                page()
            }
            "/small" => {
                // min_size is judged by Content-Length (unknown for a chunked body).
                r = r.header("content-type", "text/html").header("content-length", "4");
                "tiny".to_string()
            }
            "/pre-encoded" => {
                r = r.header("content-type", "text/html").header("content-encoding", "gzip");
                "not really gzip, but the origin says so".to_string()
            }
            "/no-transform" => {
                r = r
                    .header("content-type", "text/html")
                    .header("cache-control", "no-transform");
                page()
            }
            _ => {
                r = r.header("content-type", "text/html");
                page()
            }
        };
        r.body(TestBody::text(body)).unwrap()
    })
    .await;
    let p = proxy(&config(&origin, "", "")).await;
    let gzip = [("accept-encoding", "gzip")];
    for path in ["/png", "/small", "/no-transform"] {
        let (parts, body) = fetch(p.addr(0), path, &gzip).await;
        assert_eq!(header(&parts, "content-encoding"), "", "{path}");
        assert_eq!(body.len(), if path == "/small" { 4 } else { page().len() }, "{path}");
    }
    let (parts, body) = fetch(p.addr(0), "/pre-encoded", &gzip).await;
    assert_eq!(header(&parts, "content-encoding"), "gzip");
    assert_eq!(
        &body[..],
        b"not really gzip, but the origin says so",
        "no double compression"
    );

    // A range request is answered in identity, and asks the origin for identity.
    let (parts, body) = fetch(
        p.addr(0),
        "/html",
        &[("accept-encoding", "gzip"), ("range", "bytes=0-9")],
    )
    .await;
    assert_eq!(header(&parts, "content-encoding"), "");
    assert_eq!(body.len(), page().len(), "the test origin ignores Range");
    assert_eq!(origin.last_seen().headers["accept-encoding"], "identity");

    // No Accept-Encoding: identity.
    let (parts, body) = fetch(p.addr(0), "/html", &[]).await;
    assert_eq!(header(&parts, "content-encoding"), "");
    assert_eq!(header(&parts, "vary"), "Accept-Encoding");
    assert_eq!(body.len(), page().len());
}

#[tokio::test]
async fn encoding_streams_while_the_origin_pauses() {
    let (tx, rx) = mpsc::channel::<Frame<Bytes>>(4);
    let rx = std::sync::Mutex::new(Some(rx));
    let origin = Origin::start(move |_req| {
        let rx = rx.lock().unwrap().take();
        async move {
            http::Response::builder()
                .header("content-type", "text/plain")
                .body(rx.map_or_else(TestBody::empty, TestBody::Channel))
                .unwrap()
        }
    })
    .await;
    let p = proxy(&config(&origin, "", "")).await;
    let stream = TcpStream::connect(p.addr(0)).await.unwrap();
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::get("/")
        .header("host", "zip.test")
        .header("accept-encoding", "gzip")
        .body(Full::<Bytes>::default())
        .unwrap();
    tx.send(Frame::data(Bytes::from("first part of the answer\n")))
        .await
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let mut body = resp.into_body();
    // The origin has paused: what it sent so far must arrive and decode before it goes on.
    let mut received = Vec::new();
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    while !String::from_utf8_lossy(decoder.get_ref()).contains("first part") {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("the first part arrives while the origin waits")
            .unwrap()
            .unwrap();
        let data = frame.into_data().unwrap();
        received.extend_from_slice(&data);
        std::io::Write::write_all(&mut decoder, &data).unwrap();
        std::io::Write::flush(&mut decoder).unwrap();
    }
    tx.send(Frame::data(Bytes::from("second part\n"))).await.unwrap();
    drop(tx);
    while let Some(frame) = body.frame().await {
        received.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    assert_eq!(decode("gzip", &received), b"first part of the answer\nsecond part\n");
}

#[tokio::test]
async fn the_cache_keeps_one_encoded_variant_per_coding() {
    let origin = origin_with(
        &[
            ("content-type", "text/plain"),
            ("cache-control", "max-age=60"),
            ("etag", "\"abc\""),
        ],
        page(),
    )
    .await;
    let zone = "[cache.main]\nmemory = \"16MiB\"";
    let p = proxy(&config(&origin, "cache = \"main\"", zone)).await;
    let addr = p.addr(0);

    let (parts, gz) = fetch(addr, "/doc", &[("accept-encoding", "gzip")]).await;
    assert_eq!(header(&parts, "content-encoding"), "gzip");
    assert!(header(&parts, "cache-status").contains("fwd=uri-miss"), "{parts:?}");
    assert_eq!(decode("gzip", &gz), page().as_bytes());

    // A different Accept-Encoding that negotiates the same coding is the same variant: a hit,
    // with the stored bytes (not compressed again).
    let (parts, again) = fetch(addr, "/doc", &[("accept-encoding", "deflate, gzip;q=0.5")]).await;
    assert!(
        header(&parts, "cache-status").starts_with("frontdesk; hit"),
        "{parts:?}"
    );
    assert_eq!(header(&parts, "content-encoding"), "gzip");
    assert_eq!(header(&parts, "etag"), "W/\"abc\"");
    assert_eq!(again, gz);
    assert_eq!(origin.requests(), 1);

    let (parts, br) = fetch(addr, "/doc", &[("accept-encoding", "br")]).await;
    assert_eq!(header(&parts, "content-encoding"), "br");
    assert!(header(&parts, "cache-status").contains("fwd=vary-miss"), "{parts:?}");
    assert_eq!(decode("br", &br), page().as_bytes());
    let (parts, _) = fetch(addr, "/doc", &[]).await;
    assert_eq!(header(&parts, "content-encoding"), "");
    assert_eq!(origin.requests(), 3);

    for (ae, coding) in [("br", "br"), ("gzip", "gzip"), ("", "")] {
        let (parts, body) = fetch(addr, "/doc", &[("accept-encoding", ae)]).await;
        assert!(
            header(&parts, "cache-status").starts_with("frontdesk; hit"),
            "{ae}: {parts:?}"
        );
        assert_eq!(header(&parts, "content-encoding"), coding);
        if coding.is_empty() {
            assert_eq!(body, page().as_bytes());
        } else {
            assert_eq!(decode(coding, &body), page().as_bytes());
        }
    }
    // Ranges come from the identity variant, never from an encoding.
    let (parts, body) = fetch(addr, "/doc", &[("accept-encoding", "gzip"), ("range", "bytes=0-8")]).await;
    assert_eq!(parts.status, 206);
    assert_eq!(&body[..], b"<p>paragr");
    assert_eq!(header(&parts, "content-encoding"), "");
    // A client revalidating the encoded variant with its weak tag gets a 304 from the cache.
    let (parts, _) = fetch(
        addr,
        "/doc",
        &[("accept-encoding", "gzip"), ("if-none-match", "W/\"abc\"")],
    )
    .await;
    assert_eq!(parts.status, 304);
    assert_eq!(origin.requests(), 3);
}
