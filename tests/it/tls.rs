//! Point 3 (TLS): certificates by SNI with a default, ALPN h2/http1.1, TLS 1.2 and 1.3, mTLS.

use crate::harness::tls::{connect, peer_names, Pki};
use crate::harness::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};

fn tls_config(pki: &Pki, origin: &Origin, extra: &str) -> String {
    let (a_cert, a_key) = pki.issue("a", &["a.test"]);
    let (b_cert, b_key) = pki.issue("b", &["b.test", "*.b.test"]);
    format!(
        r#"
[log]
access = "off"
[[listener]]
listen = "127.0.0.1:0"
tls = [ {{ cert = "{}", key = "{}" }}, {{ cert = "{}", key = "{}" }} ]
{extra}
[upstream.app]
servers = ["{}"]
[[route]]
upstream = "app"
"#,
        a_cert.display(),
        a_key.display(),
        b_cert.display(),
        b_key.display(),
        origin.addr
    )
}

#[tokio::test]
async fn sni_picks_the_certificate_and_falls_back_to_the_first() {
    let pki = Pki::new();
    let origin = Origin::named("o").await;
    let p = proxy(&tls_config(&pki, &origin, "")).await;
    let cfg = pki.client_config(&[b"http/1.1"], None);
    let s = connect(p.addr(0), "a.test", cfg.clone()).await.unwrap();
    assert_eq!(peer_names(&s), vec!["a.test"]);
    let s = connect(p.addr(0), "b.test", cfg.clone()).await.unwrap();
    assert!(peer_names(&s).contains(&"b.test".to_string()));
    let s = connect(p.addr(0), "x.b.test", cfg.clone()).await.unwrap();
    assert!(peer_names(&s).contains(&"*.b.test".to_string()), "wildcard certificate");
    // Unknown name: the default (first) certificate is presented, so verification fails.
    assert!(connect(p.addr(0), "unknown.test", cfg).await.is_err());
}

#[tokio::test]
async fn alpn_negotiates_h2_and_http11_and_both_proxy() {
    let pki = Pki::new();
    let origin = Origin::named("o").await;
    let p = proxy(&tls_config(&pki, &origin, "")).await;

    let s = connect(p.addr(0), "a.test", pki.client_config(&[b"h2", b"http/1.1"], None))
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(Request::get("https://a.test/").body(Full::<Bytes>::default()).unwrap())
        .await
        .unwrap();
    let a = read_answer(resp).await;
    assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "o"));
    assert_eq!(origin.last_seen().headers.get("x-forwarded-proto").unwrap(), "https");

    let s = connect(p.addr(0), "a.test", pki.client_config(&[b"http/1.1"], None))
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(get_over_tls(s).await.body, "o");
}

#[tokio::test]
async fn tls12_and_tls13_are_accepted() {
    let pki = Pki::new();
    let origin = Origin::named("o").await;
    let p = proxy(&tls_config(&pki, &origin, "")).await;
    let suites = rustls::crypto::aws_lc_rs::default_provider().cipher_suites;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let cfg = client_config_for(&pki, &suites, &[version]);
        let s = connect(p.addr(0), "a.test", std::sync::Arc::new(cfg)).await.unwrap();
        assert_eq!(s.get_ref().1.protocol_version(), Some(version.version));
    }
}

/// A client offering exactly `suites`, in that order.
fn client_with_suites(pki: &Pki, suites: &[rustls::SupportedCipherSuite]) -> std::sync::Arc<rustls::ClientConfig> {
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    std::sync::Arc::new(client_config_for(pki, suites, &versions))
}

fn client_config_for(
    pki: &Pki,
    suites: &[rustls::SupportedCipherSuite],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ClientConfig {
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: suites.to_vec(),
        ..rustls::crypto::aws_lc_rs::default_provider()
    };
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(pki.roots())
        .with_no_client_auth()
}

#[tokio::test]
async fn the_server_picks_aes128_for_aes_clients_and_chacha20_for_chacha20_clients() {
    use rustls::crypto::aws_lc_rs::cipher_suite::*;
    let pki = Pki::new();
    let origin = Origin::named("o").await;
    let p = proxy(&tls_config(&pki, &origin, "")).await;
    // A server without AES hardware gives ChaCha20 to every client that offers it.
    let aes_hw = frontdesk::server::tls::aes_hardware();
    let cases = [
        // OpenSSL's order: AES-256 first. The server takes AES-128 (and SHA-256).
        (
            vec![
                TLS13_AES_256_GCM_SHA384,
                TLS13_CHACHA20_POLY1305_SHA256,
                TLS13_AES_128_GCM_SHA256,
            ],
            if aes_hw {
                rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
            } else {
                rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
            },
        ),
        // A client without AES hardware puts ChaCha20 first and gets it.
        (
            vec![
                TLS13_CHACHA20_POLY1305_SHA256,
                TLS13_AES_256_GCM_SHA384,
                TLS13_AES_128_GCM_SHA256,
            ],
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        ),
        // Only what the client offers is chosen.
        (
            vec![TLS13_AES_256_GCM_SHA384],
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
        ),
        (
            vec![
                TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            ],
            rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            vec![
                TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            ],
            rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
    ];
    for (offered, expected) in cases {
        let names: Vec<_> = offered.iter().map(|s| s.suite()).collect();
        let s = connect(p.addr(0), "a.test", client_with_suites(&pki, &offered))
            .await
            .unwrap();
        let chosen = s.get_ref().1.negotiated_cipher_suite().unwrap().suite();
        assert_eq!(chosen, expected, "client offered {names:?}");
        assert_eq!(get_over_tls(s).await.body, "o");
    }
}

#[tokio::test]
async fn mtls_requires_a_client_certificate_from_the_ca() {
    let pki = Pki::new();
    let origin = Origin::named("o").await;
    let extra = format!("client_ca = \"{}\"", pki.ca_path().display());
    let p = proxy(&tls_config(&pki, &origin, &extra)).await;
    let (cc, ck) = pki.issue("client", &["client.test"]);

    let with = connect(p.addr(0), "a.test", pki.client_config(&[b"http/1.1"], Some((&cc, &ck))))
        .await
        .unwrap();
    assert_eq!(get_over_tls(with).await.status, 200);

    // Without a certificate the handshake (or the first read after it, in TLS 1.3) fails.
    let without = connect(p.addr(0), "a.test", pki.client_config(&[b"http/1.1"], None)).await;
    let failed = match without {
        Err(_) => true,
        Ok(s) => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await.unwrap();
            tokio::spawn(conn);
            sender
                .send_request(
                    Request::get("/")
                        .header("host", "a.test")
                        .body(Full::<Bytes>::default())
                        .unwrap(),
                )
                .await
                .is_err()
        }
    };
    assert!(failed, "a client without a certificate is refused");
    assert_eq!(origin.requests(), 1);
}

/// `GET /` for host a.test over an established TLS stream, HTTP/1.1.
async fn get_over_tls(stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Answer {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/")
        .header("host", "a.test")
        .body(Full::<Bytes>::default())
        .unwrap();
    read_answer(sender.send_request(req).await.unwrap()).await
}

/// Resumption works whichever suite order serves the client: TLS 1.3 tickets, TLS 1.2 tickets
/// and TLS 1.2 session ids, for a client that prefers AES-256 (as OpenSSL) and one that
/// prefers ChaCha20.
#[tokio::test]
async fn sessions_resume_with_tickets() {
    use rustls::client::{Resumption, Tls12Resumption};
    use rustls::crypto::aws_lc_rs::cipher_suite::*;
    let pki = Pki::new();
    let origin = Origin::named("o").await;
    let p = proxy(&tls_config(&pki, &origin, "")).await;
    let aes = [
        TLS13_AES_256_GCM_SHA384,
        TLS13_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ];
    let chacha = [
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS13_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ];
    let cases = [
        ("TLS 1.3", &rustls::version::TLS13, Tls12Resumption::SessionIdOrTickets),
        (
            "TLS 1.2 ticket",
            &rustls::version::TLS12,
            Tls12Resumption::SessionIdOrTickets,
        ),
        (
            "TLS 1.2 session id",
            &rustls::version::TLS12,
            Tls12Resumption::SessionIdOnly,
        ),
    ];
    for (name, version, tls12) in cases {
        for suites in [&aes[..], &chacha[..]] {
            // One client config = one client session cache, as a browser keeps it.
            let mut cfg = client_config_for(&pki, suites, &[version]);
            cfg.resumption = Resumption::in_memory_sessions(16).tls12_resumption(tls12);
            let cfg = std::sync::Arc::new(cfg);
            for round in 0..3 {
                let mut s = connect(p.addr(0), "a.test", cfg.clone()).await.unwrap();
                // TLS 1.3 tickets arrive after the handshake: read an answer so the client
                // stores one.
                tokio::io::AsyncWriteExt::write_all(
                    &mut s,
                    b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
                )
                .await
                .unwrap();
                let mut answer = Vec::new();
                tokio::io::AsyncReadExt::read_to_end(&mut s, &mut answer).await.unwrap();
                assert!(answer.starts_with(b"HTTP/1.1 200"));
                let kind = s.get_ref().1.handshake_kind();
                let suite = s.get_ref().1.negotiated_cipher_suite().unwrap().suite();
                let expected = if round == 0 {
                    rustls::HandshakeKind::Full
                } else {
                    rustls::HandshakeKind::Resumed
                };
                assert_eq!(kind, Some(expected), "{name}, {suite:?}, round {round}");
            }
        }
    }
}

/// A TLS backend that honours the client's suite order (rustls's default, and nginx's) and
/// answers every request with the name of the suite it negotiated.
async fn suite_echo_backend(pki: &Pki) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config(&["origin.test"]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let suite = format!("{:?}", tls.get_ref().1.negotiated_cipher_suite().unwrap().suite());
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{suite}",
                    suite.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn upstream_connections_ask_for_aes128_first() {
    let pki = Pki::new();
    let backend = suite_echo_backend(&pki).await;
    let front = format!(
        "[log]\naccess = \"off\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n[upstream.app]\nservers = [\"{backend}\"]\ntls = {{ sni = \"origin.test\", ca = \"{}\" }}\n[[route]]\nupstream = \"app\"\n",
        pki.ca_path().display()
    );
    let p = proxy(&front).await;
    let a = get(p.addr(0), "/").await;
    assert_eq!(a.status, 200);
    // A backend that follows the client's order does the cheaper handshake and records.
    let aes_hw = frontdesk::server::tls::aes_hardware();
    let expected = if aes_hw {
        "TLS13_AES_128_GCM_SHA256"
    } else {
        "TLS13_CHACHA20_POLY1305_SHA256"
    };
    assert_eq!(a.body, expected);
}

/// What the server sends before it closes a connection (read to the end, bounded by 5 s).
async fn read_until_closed(s: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was not closed");
    buf
}

#[tokio::test]
async fn plain_http_and_stalled_handshakes_are_closed_and_tls_still_works() {
    use tokio::io::AsyncWriteExt;
    let pki = Pki::new();
    let origin = Origin::named("o").await;
    let limits = "limits = { header_read_timeout = \"300ms\" }";
    let p = proxy(&tls_config(&pki, &origin, limits)).await;

    // Plain HTTP on a TLS port: a TLS alert record (content type 21), then the close.
    let mut s = tokio::net::TcpStream::connect(p.addr(0)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await.unwrap();
    let answer = read_until_closed(&mut s).await;
    assert_eq!(answer.first(), Some(&21), "alert record, got {answer:?}");

    // A client that stops in the middle of its ClientHello, and one that sends nothing: both
    // are closed by the header timeout (the bound is the helper's 5 s guard).
    let mut partial = tokio::net::TcpStream::connect(p.addr(0)).await.unwrap();
    partial.write_all(&[22, 3, 1, 0, 200, 1, 0]).await.unwrap();
    let mut silent = tokio::net::TcpStream::connect(p.addr(0)).await.unwrap();
    assert!(read_until_closed(&mut partial).await.is_empty());
    assert!(read_until_closed(&mut silent).await.is_empty());

    // None of it reached the origin, and TLS clients are served as before.
    assert_eq!(origin.requests(), 0);
    let s = connect(p.addr(0), "a.test", pki.client_config(&[b"http/1.1"], None))
        .await
        .unwrap();
    assert_eq!(get_over_tls(s).await.body, "o");
}
