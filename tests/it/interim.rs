//! Interim (1xx) responses from the backend: 103 Early Hints reach HTTP/1.1 clients before the
//! final response, without the backend's hop-by-hop fields, and are never served from the cache.

use crate::harness::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_millis(500);

const HINTED: &[u8] = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\
Keep-Alive: timeout=5\r\n\r\n\
HTTP/1.1 200 OK\r\nCache-Control: max-age=100000\r\nContent-Length: 5\r\n\r\nfinal";

const GET_CLOSE: &[u8] = b"GET /page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// The 1xx head of a raw answer, and the rest (the final response).
fn split_interim(answer: &str) -> (&str, &str) {
    match answer.find("\r\n\r\n") {
        Some(end) if answer.starts_with("HTTP/1.1 1") => answer.split_at(end + 4),
        _ => ("", answer),
    }
}

fn assert_hinted(answer: &str) {
    let (interim, last) = split_interim(answer);
    assert!(interim.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{answer}");
    assert!(
        interim
            .to_ascii_lowercase()
            .contains("link: </style.css>; rel=preload; as=style"),
        "{answer}"
    );
    assert!(
        !interim.to_ascii_lowercase().contains("keep-alive"),
        "hop-by-hop field forwarded: {answer}"
    );
    assert_eq!(raw_status(last), 200, "{answer}");
    assert!(last.ends_with("final"), "{answer}");
}

#[tokio::test]
async fn early_hints_are_relayed_before_the_final_response() {
    let origin = RawOrigin::start(HINTED, false).await;
    let p = proxy(&one_upstream(&format!("[\"{}\"]", origin.addr), "")).await;
    assert_hinted(&raw(p.addr(0), GET_CLOSE, WAIT).await);

    // An HTTP/1.0 client cannot take a 1xx (RFC 9110 §15.2).
    let old = raw(p.addr(0), b"GET /page HTTP/1.0\r\nHost: x\r\n\r\n", WAIT).await;
    assert_eq!(raw_status(&old), 200, "{old}");
    assert!(!old.contains(" 103 "), "{old}");
}

#[cfg(feature = "acceleration")]
#[tokio::test]
async fn early_hints_pass_through_a_cache_miss_and_are_not_stored() {
    let origin = RawOrigin::start(HINTED, false).await;
    let config = format!(
        r#"
[log]
access = "off"
[[listener]]
listen = "127.0.0.1:0"
[cache.main]
memory = "1MiB"
[upstream.app]
servers = ["{}"]
[[route]]
upstream = "app"
cache = "main"
"#,
        origin.addr
    );
    let p = proxy(&config).await;
    let miss = raw(p.addr(0), GET_CLOSE, WAIT).await;
    assert_hinted(&miss);
    assert!(miss.contains("fwd=uri-miss"), "{miss}");

    let hit = raw(p.addr(0), GET_CLOSE, WAIT).await;
    assert_eq!(raw_status(&hit), 200, "a hit starts with the final response: {hit}");
    assert!(hit.contains("cache-status: frontdesk; hit"), "{hit}");
    assert!(hit.ends_with("final"), "{hit}");
    assert_eq!(origin.requests(), 1);
}
