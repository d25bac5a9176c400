//! Large cached bodies: kept in a sealed memory file and sent from it with `sendfile` on plain
//! HTTP/1.1 hits; the same bytes through every other way out (HTTP/2, ranges, TLS-less general
//! path).

use crate::harness::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;

/// Odd-sized so its memory file is told apart from any other test's in this process; as large as
/// is sealed, so a hit takes more than one `sendfile` when the client is slower than the proxy.
const LEN: usize = 1024 * 1024 - 12_345;

/// Larger than is sealed: stays on the heap and goes out with a vectored write.
const HEAP_LEN: usize = 2 * 1024 * 1024 + 7;

fn body() -> String {
    body_of(LEN)
}

/// Printable (the test client reads bodies as text) and never repeating within a few KiB.
fn body_of(len: usize) -> String {
    (0..len)
        .map(|i| char::from(33 + ((i % 251) * 7 + i / 4093) as u8 % 94))
        .collect()
}

fn sealed_files_of_len(len: usize) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains("memfd:frontdesk-cache"))
                && std::fs::metadata(e.path()).is_ok_and(|m| m.len() == len as u64)
        })
        .count()
}

#[tokio::test]
async fn large_hits_go_out_whole_from_their_sealed_file() {
    let origin = Origin::start(|req| async move {
        let len = if req.uri().path() == "/huge" { HEAP_LEN } else { LEN };
        http::Response::builder()
            .header("cache-control", "max-age=60")
            .body(TestBody::text(body_of(len)))
            .unwrap()
    })
    .await;
    let p = proxy(&format!(
        r#"
[log]
access = "off"
[[listener]]
listen = "127.0.0.1:0"
[cache.big]
memory = "64MiB"
max_object = "8MiB"
[upstream.app]
servers = ["{}"]
[[route]]
upstream = "app"
cache = "big"
"#,
        origin.addr
    ))
    .await;
    let req = |range: Option<&str>| {
        let mut b = Request::get("/big").header("host", "large.test");
        if let Some(r) = range {
            b = b.header("range", r);
        }
        b.body(Full::<Bytes>::default()).unwrap()
    };
    let miss = send(p.addr(0), req(None)).await;
    assert!(miss.header("cache-status").contains("stored"), "{miss:?}");
    assert_eq!(miss.body.len(), LEN);
    assert_eq!(
        sealed_files_of_len(LEN),
        1,
        "the stored body is in a sealed memory file"
    );

    // Two hits on one keep-alive connection: the second parses only if the first was whole.
    let mut conn = H1::connect(p.addr(0)).await;
    for _ in 0..2 {
        let hit = conn.send(req(None)).await;
        assert!(hit.header("cache-status").contains("hit"), "{hit:?}");
        assert_eq!(hit.header("content-length"), LEN.to_string());
        assert!(hit.body == body(), "hit body differs from the origin's");
    }
    // The general path reads the same bytes through the file's mapping.
    let part = send(p.addr(0), req(Some("bytes=1000000-1000009"))).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, body()[1_000_000..1_000_010]);
    let h2 = h2c(
        p.addr(0),
        Request::get("http://large.test/big").body(Full::default()).unwrap(),
    )
    .await;
    assert!(h2.header("cache-status").contains("hit"), "{h2:?}");
    assert!(h2.body == body(), "HTTP/2 hit body differs");
    assert_eq!(origin.requests(), 1);

    let huge = || {
        Request::get("/huge")
            .header("host", "large.test")
            .body(Full::default())
            .unwrap()
    };
    assert!(send(p.addr(0), huge()).await.header("cache-status").contains("stored"));
    assert_eq!(sealed_files_of_len(HEAP_LEN), 0, "too large to seal");
    let hit = send(p.addr(0), huge()).await;
    assert!(hit.header("cache-status").contains("hit"), "{hit:?}");
    assert!(hit.body == body_of(HEAP_LEN), "heap hit body differs");
    assert_eq!(origin.requests(), 2);
}
