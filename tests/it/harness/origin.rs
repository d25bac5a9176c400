//! Origin servers for tests: hyper on 127.0.0.1:0, with a handler per test, counting requests
//! and connections.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Body of an origin's answer: fixed frames (data and trailers) or a channel fed by the test.
pub enum TestBody {
    Frames(VecDeque<Frame<Bytes>>),
    Channel(mpsc::Receiver<Frame<Bytes>>),
}

impl TestBody {
    pub fn text(s: impl Into<Bytes>) -> TestBody {
        TestBody::Frames(VecDeque::from([Frame::data(s.into())]))
    }
    pub fn empty() -> TestBody {
        TestBody::Frames(VecDeque::new())
    }
}

impl http_body::Body for TestBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            TestBody::Frames(f) => Poll::Ready(f.pop_front().map(Ok)),
            TestBody::Channel(rx) => rx.poll_recv(cx).map(|f| f.map(Ok)),
        }
    }
    fn is_end_stream(&self) -> bool {
        matches!(self, TestBody::Frames(f) if f.is_empty())
    }
}

pub type Handler =
    Arc<dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<TestBody>> + Send>> + Send + Sync>;

/// What an origin saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: http::Version,
    pub headers: http::HeaderMap,
}

pub struct Origin {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    pub connections: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Origin {
    /// An origin that answers 200 with its name as the body and in `x-origin`.
    pub async fn named(name: &str) -> Origin {
        let name = name.to_string();
        Origin::start(move |_req| {
            let name = name.clone();
            async move {
                Response::builder()
                    .header("x-origin", name.as_str())
                    .body(TestBody::text(name))
                    .unwrap()
            }
        })
        .await
    }

    /// An origin with a custom handler.
    pub async fn start<F, Fut>(handler: F) -> Origin
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |r| Box::pin(handler(r)));
        Origin::start_on("127.0.0.1:0".parse().unwrap(), handler).await
    }

    pub async fn start_on(addr: SocketAddr, handler: Handler) -> Origin {
        let listener = TcpListener::bind(addr).await.expect("bind origin");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (r, c, s) = (requests.clone(), connections.clone(), seen.clone());
        let conns = Arc::new(Mutex::new(Vec::new()));
        let conn_handles = conns.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (handler, r, s) = (handler.clone(), r.clone(), s.clone());
                let conn = tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        r.fetch_add(1, Ordering::SeqCst);
                        s.lock().unwrap().push(Seen {
                            method: req.method().to_string(),
                            uri: req.uri().to_string(),
                            version: req.version(),
                            headers: req.headers().clone(),
                        });
                        let fut = handler(req);
                        async move { Ok::<_, Infallible>(fut.await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
                conn_handles.lock().unwrap().push(conn.abort_handle());
            }
        });
        Origin {
            addr,
            requests,
            connections,
            seen,
            task,
            conns,
        }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn last_seen(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().expect("origin saw a request")
    }

    /// Stops accepting and closes open connections: the port then refuses connections.
    pub fn stop(&self) {
        self.task.abort();
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn status(code: u16, body: &str) -> Response<TestBody> {
    let mut r = Response::new(TestBody::text(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap();
    r
}

/// An origin speaking raw bytes: for each request head it reads, it writes `response`, then
/// closes the connection when `close_after` is set (without announcing it).
pub struct RawOrigin {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RawOrigin {
    pub async fn start(response: &'static [u8], close_after: bool) -> RawOrigin {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (r, c) = (requests.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            r.fetch_add(1, Ordering::SeqCst);
                            if s.write_all(response).await.is_err() || close_after {
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
        RawOrigin {
            addr,
            requests,
            connections,
            task,
        }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An origin answering "got N bytes" with the size of the request body it received.
pub async fn body_size_echo() -> Origin {
    Origin::start(|req| async move {
        let body = http_body_util::BodyExt::collect(req.into_body())
            .await
            .unwrap()
            .to_bytes();
        status(200, &format!("got {} bytes", body.len()))
    })
    .await
}
