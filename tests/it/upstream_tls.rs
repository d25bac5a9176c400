//! TLS backends on the HTTP/1 fast path: pooled keep-alive connections, long bodies both ways,
//! and a backend that closes its idle connections (close_notify) between requests.

use crate::harness::tls::Pki;
use crate::harness::*;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// Body bytes of `/N`: printable ASCII in a pattern the test can check at every offset.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'!' + (i % 89) as u8).collect()
}

struct TlsOrigin {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    /// Raised by one: every connection open now closes (TLS close_notify) once idle.
    close_generation: watch::Sender<u64>,
}

impl TlsOrigin {
    /// Closes every connection open now and waits until they are closed.
    async fn close_open_connections(&self) {
        let open = self.connections.load(Ordering::SeqCst);
        self.close_generation.send_modify(|g| *g += 1);
        let closed = self.closed.clone();
        eventually(
            std::time::Duration::from_secs(5),
            "the origin closed its connections",
            || {
                let closed = closed.clone();
                async move { closed.load(Ordering::SeqCst) >= open }
            },
        )
        .await;
    }
}

/// A keep-alive HTTP/1.1 origin over TLS (hyper): `GET /N` answers N pattern bytes, `POST`
/// answers the length of the body it read.
async fn tls_origin(pki: &Pki) -> TlsOrigin {
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config(&["origin.test"]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let (close_generation, closing) = watch::channel(0u64);
    let (count, ended) = (connections.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let mut closing = closing.clone();
            let ended = ended.clone();
            tokio::spawn(async move {
                let born = *closing.borrow_and_update();
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let body = if req.method() == http::Method::POST {
                        let got = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
                        Bytes::from(got.to_string())
                    } else {
                        Bytes::from(pattern(req.uri().path()[1..].parse().unwrap_or(0)))
                    };
                    Ok::<_, hyper::Error>(Response::new(Full::new(body)))
                });
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service);
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = async { drop(closing.wait_for(|g| *g > born).await) } => {
                        // Closes once the exchange in progress (if any) is done: close_notify,
                        // then FIN.
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
                ended.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    TlsOrigin {
        addr,
        connections,
        closed,
        close_generation,
    }
}

fn front(pki: &Pki, origin: &TlsOrigin) -> String {
    format!(
        "[log]\naccess = \"off\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n[upstream.app]\nservers = [\"{}\"]\ntls = {{ sni = \"origin.test\", ca = \"{}\" }}\n[[route]]\nupstream = \"app\"\n",
        origin.addr,
        pki.ca_path().display()
    )
}

async fn raw_get(c: &mut H1, path: &str) -> (u16, Bytes) {
    let req = Request::get(path)
        .header("host", "app.test")
        .body(Full::default())
        .unwrap();
    let a = c.send(req).await;
    (a.status.as_u16(), Bytes::from(a.body.into_bytes()))
}

#[tokio::test]
async fn tls_backends_keep_their_connections_and_carry_long_bodies() {
    let pki = Pki::new();
    let origin = tls_origin(&pki).await;
    let p = proxy(&front(&pki, &origin)).await;
    let mut c = H1::connect(p.addr(0)).await;
    for _ in 0..20 {
        let (status, body) = raw_get(&mut c, "/100").await;
        assert_eq!((status, &body[..]), (200, &pattern(100)[..]));
    }
    assert_eq!(
        origin.connections.load(Ordering::SeqCst),
        1,
        "one pooled TLS connection"
    );

    // A body much longer than one read and one TLS record, relayed as it comes.
    let (status, body) = raw_get(&mut c, "/300000").await;
    assert_eq!(status, 200);
    assert!(body == pattern(300_000), "long body intact ({} bytes)", body.len());

    // A request body longer than the first read goes up through TLS too.
    let sent = vec![b'p'; 200 * 1024];
    let req = Request::post("/upload")
        .header("host", "app.test")
        .body(Full::new(Bytes::from(sent)))
        .unwrap();
    let a = c.send(req).await;
    assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "204800"));
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1, "still the one connection");
}

#[tokio::test]
async fn a_tls_backend_closing_idle_connections_costs_no_request() {
    let pki = Pki::new();
    let origin = tls_origin(&pki).await;
    let p = proxy(&front(&pki, &origin)).await;
    let mut c = H1::connect(p.addr(0)).await;
    assert_eq!(raw_get(&mut c, "/10").await.0, 200);
    for i in 0..5 {
        // The pooled connection got close_notify and FIN: a POST, which may not be replayed,
        // must not be sent on it (the probe reads through TLS and sees the close).
        origin.close_open_connections().await;
        let req = Request::post("/upload")
            .header("host", "app.test")
            .body(Full::new(Bytes::from(vec![b'x'; 1000 + i])))
            .unwrap();
        let a = c.send(req).await;
        assert_eq!(
            (a.status.as_u16(), a.body.clone()),
            (200, (1000 + i).to_string()),
            "POST {i}"
        );
        // A GET on a closed pooled connection is sent without a probe and retried on a new one.
        origin.close_open_connections().await;
        assert_eq!(raw_get(&mut c, "/10").await, (200, Bytes::from(pattern(10))), "GET {i}");
    }
    assert_eq!(
        origin.connections.load(Ordering::SeqCst),
        11,
        "a new connection after each close"
    );
}

#[tokio::test]
async fn http2_clients_reach_tls_backends_through_pooled_connections() {
    let pki = Pki::new();
    let origin = tls_origin(&pki).await;
    let p = proxy(&front(&pki, &origin)).await;
    for _ in 0..10 {
        let req = Request::get(format!("http://{}/100", p.addr(0)))
            .body(Full::default())
            .unwrap();
        let a = h2c(p.addr(0), req).await;
        assert_eq!((a.status.as_u16(), a.body.as_bytes()), (200, &pattern(100)[..]));
    }
    let req = Request::get(format!("http://{}/300000", p.addr(0)))
        .body(Full::default())
        .unwrap();
    let a = h2c(p.addr(0), req).await;
    assert_eq!(a.status, 200);
    assert!(
        a.body.as_bytes() == pattern(300_000),
        "long body intact ({} bytes)",
        a.body.len()
    );
    // One request at a time, each on a new client connection: the backend connection is reused.
    assert_eq!(
        origin.connections.load(Ordering::SeqCst),
        1,
        "one pooled TLS connection"
    );
}
