//! Clients for tests: one-shot HTTP/1.1 and h2c requests, keep-alive connections, raw TCP.

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    pub trailers: Option<HeaderMap>,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

pub async fn read_answer(resp: http::Response<hyper::body::Incoming>) -> Answer {
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.expect("response body");
    let trailers = collected.trailers().cloned();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        trailers,
    }
}

/// A keep-alive HTTP/1.1 client connection.
pub struct H1 {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl H1 {
    pub async fn connect(addr: SocketAddr) -> H1 {
        let stream = TcpStream::connect(addr).await.expect("connect to proxy");
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.expect("h1 handshake");
        tokio::spawn(conn);
        H1 { sender }
    }

    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Answer {
        self.sender.ready().await.expect("connection ready");
        let resp = self.sender.send_request(req).await.expect("response");
        read_answer(resp).await
    }

    pub async fn get(&mut self, host: &str, path: &str) -> Answer {
        self.send(Request::get(path).header("host", host).body(Full::default()).unwrap())
            .await
    }

    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// One request on a fresh HTTP/1.1 connection.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Answer {
    H1::connect(addr).await.send(req).await
}

pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    get_host(addr, "test.local", path).await
}

pub async fn get_host(addr: SocketAddr, host: &str, path: &str) -> Answer {
    send(
        addr,
        Request::get(path).header("host", host).body(Full::default()).unwrap(),
    )
    .await
}

/// One request on a fresh HTTP/1.1 connection; the body exactly as received (not decoded, not
/// made into text), for checking encodings and binary files.
#[cfg_attr(not(feature = "acceleration"), allow(dead_code))] // used by the acceleration tests
pub async fn fetch_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (http::response::Parts, Bytes) {
    let mut b = Request::builder().method(method).uri(path).header("host", "test.local");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let stream = TcpStream::connect(addr).await.expect("connect to proxy");
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await.expect("h1 handshake");
    tokio::spawn(conn);
    let resp = sender
        .send_request(b.body(Full::<Bytes>::default()).unwrap())
        .await
        .expect("response");
    let (parts, body) = resp.into_parts();
    (parts, body.collect().await.expect("response body").to_bytes())
}

/// One request over HTTP/2 prior knowledge.
pub async fn h2c(addr: SocketAddr, req: Request<Full<Bytes>>) -> Answer {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.expect("h2 response");
    read_answer(resp).await
}

/// Sends raw bytes and reads until the server closes, or `wait` passes without more data once
/// the answer has started (the first byte may take up to 10 s on a loaded machine).
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // The server may answer and close before reading everything (e.g. 431): not an error.
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let limit = if out.is_empty() { Duration::from_secs(10) } else { wait };
        match tokio::time::timeout(limit, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Status code of the first response in a raw HTTP/1.1 answer.
pub fn raw_status(answer: &str) -> u16 {
    answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}
