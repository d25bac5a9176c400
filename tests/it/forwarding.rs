//! Point 7: pooling, retries, timeouts, streaming, forwarded headers, hop-by-hop, request ids.

use crate::harness::*;
use bytes::Bytes;
use http::Request;
use http_body::Frame;
use http_body_util::Full;
use std::time::Duration;

#[tokio::test]
async fn keep_alive_pool_reuses_one_upstream_connection() {
    let origin = Origin::named("a").await;
    let p = proxy(&one_upstream(&servers(&[&origin]), "")).await;
    let mut c = H1::connect(p.addr(0)).await;
    for _ in 0..20 {
        assert_eq!(c.get("x", "/").await.body, "a");
    }
    assert_eq!(origin.requests(), 20);
    assert_eq!(
        origin.connections(),
        1,
        "sequential requests share one pooled connection"
    );
}

#[tokio::test]
async fn retries_connect_failures_on_another_backend() {
    let good = Origin::named("good").await;
    let dead = Origin::named("dead").await;
    dead.stop();
    let p = proxy(&one_upstream(
        &servers(&[&good, &dead]),
        "retries = 1\npassive = { consecutive_failures = 0 }",
    ))
    .await;
    for _ in 0..10 {
        let a = get(p.addr(0), "/").await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body, "good");
    }
}

#[tokio::test]
async fn post_with_body_is_not_retried_after_it_was_sent_but_get_is() {
    // The first origin accepts the request, then drops the connection without answering.
    let dropper = Origin::start(|req| async move {
        let _ = http_body_util::BodyExt::collect(req.into_body()).await;
        panic!("origin drops the connection");
    })
    .await;
    let good = Origin::named("good").await;
    let cfg = one_upstream(
        &servers(&[&dropper, &good]),
        "balance = \"weighted_round_robin\"\nretries = 1\npassive = { consecutive_failures = 0 }",
    );
    let p = proxy(&cfg).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let req = Request::post("/")
            .header("host", "x")
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap();
        statuses.push(send(p.addr(0), req).await.status.as_u16());
    }
    assert!(
        statuses.contains(&502),
        "a POST that reached a failing backend is not replayed: {statuses:?}"
    );
    for _ in 0..4 {
        assert_eq!(
            get(p.addr(0), "/").await.status,
            200,
            "GET without body is retried on the other backend"
        );
    }
}

#[tokio::test]
async fn slow_backend_gets_504_and_dead_one_502() {
    let slow = Origin::start(|_| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        status(200, "late")
    })
    .await;
    let p = proxy(&one_upstream(
        &servers(&[&slow]),
        "response_timeout = \"200ms\"\nretries = 0",
    ))
    .await;
    let a = get(p.addr(0), "/").await;
    assert_eq!(a.status, 504);

    let dead = Origin::named("dead").await;
    dead.stop();
    let p = proxy(&one_upstream(&servers(&[&dead]), "retries = 0")).await;
    let a = get(p.addr(0), "/").await;
    assert_eq!(a.status, 502);
    assert!(a.body.contains("502"));
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    // The origin echoes the request body back.
    let echo = Origin::start(|req| async move {
        let body = http_body_util::BodyExt::collect(req.into_body())
            .await
            .unwrap()
            .to_bytes();
        http::Response::new(TestBody::Frames([Frame::data(body)].into()))
    })
    .await;
    let p = proxy(&one_upstream(&servers(&[&echo]), "")).await;
    let payload = "x".repeat(8 * 1024 * 1024);
    let req = Request::put("/")
        .header("host", "x")
        .body(Full::new(Bytes::from(payload.clone())))
        .unwrap();
    let a = send(p.addr(0), req).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body.len(), payload.len());
}

#[tokio::test]
async fn response_streams_before_the_backend_finishes() {
    let (tx, rx) = tokio::sync::mpsc::channel::<Frame<Bytes>>(4);
    let rx = std::sync::Mutex::new(Some(rx));
    let origin = Origin::start(move |_| {
        let rx = rx.lock().unwrap().take().expect("one request");
        async move { http::Response::new(TestBody::Channel(rx)) }
    })
    .await;
    let p = proxy(&one_upstream(&servers(&[&origin]), "")).await;
    let stream = tokio::net::TcpStream::connect(p.addr(0)).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            Request::get("/")
                .header("host", "x")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = resp.into_body();
    tx.send(Frame::data(Bytes::from_static(b"first"))).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), http_body_util::BodyExt::frame(&mut body))
        .await
        .expect("first chunk arrives while the backend is still sending")
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "first");
    drop(tx);
}

#[tokio::test]
async fn forwarded_headers_and_request_id() {
    let origin = Origin::named("a").await;
    let p = proxy(&one_upstream(&servers(&[&origin]), "")).await;
    let req = Request::get("/path?q=1")
        .header("host", "shop.test")
        .header("x-forwarded-for", "6.6.6.6")
        .header("connection", "x-hop")
        .header("x-hop", "secret")
        .header("keep-alive", "timeout=5")
        .body(Full::default())
        .unwrap();
    let a = send(p.addr(0), req).await;
    let seen = origin.last_seen();
    let h = |n: &str| seen.headers.get(n).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(seen.uri, "/path?q=1");
    assert_eq!(h("host").as_deref(), Some("shop.test"));
    assert_eq!(
        h("x-forwarded-for").as_deref(),
        Some("127.0.0.1"),
        "untrusted peer's XFF is replaced"
    );
    assert_eq!(h("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(h("x-forwarded-host").as_deref(), Some("shop.test"));
    assert_eq!(
        h("forwarded").as_deref(),
        Some("for=127.0.0.1;proto=http;host=shop.test")
    );
    assert_eq!(h("x-hop"), None, "headers named in Connection are hop-by-hop");
    assert_eq!(h("keep-alive"), None);
    let id = h("x-request-id").expect("request id generated");
    assert_eq!(id.len(), 32);
    assert_eq!(a.header("x-request-id"), id, "the same id goes back to the client");

    // A client-supplied id is kept.
    let req = Request::get("/")
        .header("host", "x")
        .header("x-request-id", "abc-123")
        .body(Full::default())
        .unwrap();
    let a = send(p.addr(0), req).await;
    assert_eq!(a.header("x-request-id"), "abc-123");
    assert_eq!(origin.last_seen().headers.get("x-request-id").unwrap(), "abc-123");
}

/// The fast path reuses a connection's forwarding fields while the host stays the same; a new
/// host on the same connection must get its own.
#[tokio::test]
async fn forwarding_fields_follow_the_host_on_one_connection() {
    let origin = Origin::named("a").await;
    let p = proxy(&one_upstream(&servers(&[&origin]), "")).await;
    let mut c = H1::connect(p.addr(0)).await;
    for (host, forwarded) in [
        ("a.test", "for=127.0.0.1;proto=http;host=a.test"),
        ("b.test:8080", "for=127.0.0.1;proto=http;host=\"b.test:8080\""),
        ("b.test:8080", "for=127.0.0.1;proto=http;host=\"b.test:8080\""),
        ("a.test", "for=127.0.0.1;proto=http;host=a.test"),
    ] {
        assert_eq!(c.get(host, "/").await.status, 200);
        let seen = origin.last_seen();
        assert_eq!(seen.headers.get("x-forwarded-host").unwrap(), host);
        assert_eq!(seen.headers.get("forwarded").unwrap(), forwarded);
        assert_eq!(seen.headers.get("x-forwarded-for").unwrap(), "127.0.0.1");
    }
}

#[tokio::test]
async fn trusted_proxy_chain_is_extended() {
    let origin = Origin::named("a").await;
    let cfg = format!(
        r#"
[log]
access = "off"
[[listener]]
listen = "127.0.0.1:0"
trusted_proxies = ["127.0.0.0/8"]
[upstream.app]
servers = {}
[[route]]
upstream = "app"
"#,
        servers(&[&origin])
    );
    let p = proxy(&cfg).await;
    let req = Request::get("/")
        .header("host", "x")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .body(Full::default())
        .unwrap();
    send(p.addr(0), req).await;
    let seen = origin.last_seen();
    assert_eq!(seen.headers.get("x-forwarded-for").unwrap(), "203.0.113.9, 127.0.0.1");
    assert_eq!(seen.headers.get("x-forwarded-proto").unwrap(), "https");
}

#[tokio::test]
async fn h2c_client_to_h1_backend() {
    let origin = Origin::named("a").await;
    let p = proxy(&one_upstream(&servers(&[&origin]), "")).await;
    let a = h2c(
        p.addr(0),
        Request::get("http://h2.test/x").body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, "a");
    let seen = origin.last_seen();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.headers.get("host").unwrap(), "h2.test");
}

#[tokio::test]
async fn grpc_style_h2_upstream_with_trailers() {
    // An h2c origin answering like a gRPC server: data then trailers.
    let origin = Origin::start(|req| async move {
        assert_eq!(req.version(), http::Version::HTTP_2);
        let te = req.headers().get("te").map(|v| v.to_str().unwrap().to_string());
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        trailers.insert("x-te-seen", te.unwrap_or_default().parse().unwrap());
        let mut r = http::Response::new(TestBody::Frames(
            [
                Frame::data(Bytes::from_static(b"\0\0\0\0\x02hi")),
                Frame::trailers(trailers),
            ]
            .into(),
        ));
        r.headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        r
    })
    .await;
    let p = proxy(&one_upstream(&servers(&[&origin]), "protocol = \"http2\"")).await;
    let req = Request::post("http://grpc.test/pkg.Service/Method")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\x00")))
        .unwrap();
    let a = h2c(p.addr(0), req).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), "application/grpc");
    let trailers = a.trailers.expect("trailers pass through");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(trailers.get("x-te-seen").unwrap(), "trailers");
}

#[tokio::test]
async fn no_healthy_backend_gives_503_with_short_body() {
    let dead = Origin::named("dead").await;
    dead.stop();
    let p = proxy(&one_upstream(
        &servers(&[&dead]),
        "retries = 0\npassive = { consecutive_failures = 1, base_ejection = \"1m\" }",
    ))
    .await;
    assert_eq!(
        get(p.addr(0), "/").await.status,
        502,
        "first failure ejects the only backend"
    );
    let a = get(p.addr(0), "/").await;
    assert_eq!(a.status, 503);
    assert_eq!(a.body, "503 Service Unavailable: no healthy upstream\n");
}

#[tokio::test]
async fn pool_keeps_at_most_max_idle_connections() {
    let slow = Origin::start(|_| async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        status(200, "ok")
    })
    .await;
    let cfg = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = \"off\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n[upstream.app]\nservers = [\"{}\"]\npool = {{ max_idle = 2 }}\n[[route]]\nupstream = \"app\"\n",
        slow.addr
    );
    let p = proxy(&cfg).await;
    let addr = p.addr(0);
    let tasks: Vec<_> = (0..5)
        .map(|_| tokio::spawn(async move { get(addr, "/").await.status }))
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(slow.connections(), 5, "concurrent requests each needed a connection");
    let state: serde_json::Value = serde_json::from_str(&get(p.admin(), "/upstreams").await.body).unwrap();
    assert_eq!(state["upstreams"]["app"][0]["idle_connections"], 2);
}

#[tokio::test]
async fn upstream_failure_reason_is_in_the_access_log() {
    let dir = crate::harness::tls::temp_dir("log502");
    let log = dir.join("access.log");
    let dead = Origin::named("dead").await;
    dead.stop();
    let cfg = format!(
        "[log]\naccess = \"{}\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n[upstream.app]\nservers = [\"{}\"]\nretries = 0\n[[route]]\nupstream = \"app\"\n",
        log.display(),
        dead.addr
    );
    let p = proxy(&cfg).await;
    assert_eq!(get(p.addr(0), "/").await.status, 502);
    let logp = &log;
    eventually(Duration::from_secs(5), "log line", || async move {
        std::fs::read_to_string(logp).is_ok_and(|s| !s.is_empty())
    })
    .await;
    let v: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
    assert_eq!(v["status"], 502);
    let reason = v["error"].as_str().unwrap();
    assert!(
        reason.contains(&dead.addr.to_string()) && reason.contains("refused"),
        "{reason}"
    );
}

#[tokio::test]
async fn idle_pooled_connections_expire_after_the_pool_idle_timeout() {
    let origin = Origin::named("o").await;
    let p = proxy(&one_upstream(
        &servers(&[&origin]),
        "pool = { idle_timeout = \"100ms\" }",
    ))
    .await;
    assert_eq!(get(p.addr(0), "/").await.status, 200);
    assert_eq!(get(p.addr(0), "/").await.status, 200);
    assert_eq!(origin.connections(), 1, "reused while fresh");
    // The pool's idle limit is a matter of time passing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(p.addr(0), "/").await.status, 200);
    assert_eq!(origin.connections(), 2, "an expired idle connection is not reused");
}

#[tokio::test]
async fn connect_timeout_gives_502_naming_the_timeout() {
    // A loopback listener that never accepts, with its accept queue filled: further SYNs are
    // dropped, so a new connection attempt hangs until the proxy's connect timeout.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => fillers.push(s),
            _ => break, // the queue is full: connects now hang
        }
    }
    let dir = crate::harness::tls::temp_dir("connect-timeout");
    let log = dir.join("access.log");
    let cfg = format!(
        "[log]\naccess = \"{}\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n[upstream.app]\nservers = [\"{addr}\"]\nconnect_timeout = \"300ms\"\nretries = 0\n[[route]]\nupstream = \"app\"\n",
        log.display()
    );
    let p = proxy(&cfg).await;
    let started = std::time::Instant::now();
    assert_eq!(get(p.addr(0), "/").await.status, 502);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "gave up after the connect timeout"
    );
    let logp = &log;
    eventually(Duration::from_secs(5), "log line", || async move {
        std::fs::read_to_string(logp).is_ok_and(|s| !s.is_empty())
    })
    .await;
    let v: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
    assert!(v["error"].as_str().unwrap().contains("timed out"), "{v}");
    drop(fillers);
}

/// An origin that answers the first request on each connection (keep-alive, as far as the proxy
/// can tell) and closes the connection when the second request arrives, without answering it.
async fn one_answer_per_connection() -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut answered = false;
                let mut chunk = [0u8; 4096];
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        seen.fetch_add(1, Ordering::SeqCst);
                        if answered {
                            return; // closes with the request unanswered
                        }
                        answered = true;
                        if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, heads)
}

#[tokio::test]
async fn general_path_sends_a_get_again_when_a_pooled_connection_dies_under_it() {
    // HTTP/2 clients go through the general path (hyper's client); `retries = 0` must not turn a
    // pooled connection the backend dropped into a 502.
    let (addr, heads) = one_answer_per_connection().await;
    let p = proxy(&one_upstream(&format!("[\"{addr}\"]"), "retries = 0")).await;
    for i in 0..3 {
        let a = h2c(
            p.addr(0),
            Request::get("http://test.local/").body(Full::default()).unwrap(),
        )
        .await;
        assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "ok"), "request {i}");
    }
    // Requests 2 and 3 each reached a dead pooled connection first, then a fresh one.
    assert_eq!(heads.load(std::sync::atomic::Ordering::SeqCst), 5);
}
