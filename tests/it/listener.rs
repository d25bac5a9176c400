//! The listener's `defer_accept` (TCP_DEFER_ACCEPT).

use crate::harness::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(defer_accept: bool) -> String {
    format!(
        r#"
[log]
access = "off"
[[listener]]
listen = "127.0.0.1:0"
defer_accept = {defer_accept}
[[listener]]
listen = "127.0.0.2:0"
[[route]]
respond = {{ status = 200, body = "ok" }}
"#
    )
}

/// The kernel's state of the proxy's side of the connection from `client` (from /proc/net/tcp:
/// 01 established, 03 SYN_RECV — a connection the kernel has not handed over yet).
fn server_side_state(proxy: SocketAddr, client: SocketAddr) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!(":{:04X}", proxy.port());
    let remote = format!(":{:04X}", client.port());
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        (cols.len() > 3 && cols[1].ends_with(&local) && cols[2].ends_with(&remote)).then(|| cols[3].to_string())
    })
}

/// Connects to the first listener (whose `defer_accept` is under test) and then to the second
/// (never deferred), sends nothing, and waits until the second is accepted: the kernel has then
/// handled the first one's handshake too. Returns the first connection and its state.
async fn silent_connection(p: &TestProxy) -> (TcpStream, String) {
    let (under_test, reference) = (p.addr(0), p.addr(1));
    let conn = TcpStream::connect(under_test).await.unwrap();
    let client = conn.local_addr().unwrap();
    let later = TcpStream::connect(reference).await.unwrap();
    let later_client = later.local_addr().unwrap();
    eventually(Duration::from_secs(5), "the reference connection accepted", || async {
        server_side_state(reference, later_client).as_deref() == Some("01")
    })
    .await;
    let state = server_side_state(under_test, client).expect("the connection is in /proc/net/tcp");
    (conn, state)
}

async fn ask(mut conn: TcpStream) -> String {
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_string(&mut answer))
        .await
        .expect("answered in time")
        .unwrap();
    answer
}

#[tokio::test]
async fn defer_accept_holds_silent_connections_in_the_kernel_and_follows_reloads() {
    let p = proxy(&config(true)).await;
    let (conn, state) = silent_connection(&p).await;
    assert_eq!(state, "03", "a connection that sent nothing must not be accepted yet");
    // Once it speaks it is accepted and served as usual.
    let answer = ask(conn).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");

    // Turned off by a reload, on the same socket: connections are accepted at once again.
    p.reload(&config(false)).unwrap();
    eventually(Duration::from_secs(5), "defer_accept off after the reload", || async {
        silent_connection(&p).await.1 == "01"
    })
    .await;
}

#[tokio::test]
async fn without_defer_accept_connections_are_accepted_at_once() {
    let p = proxy(&config(false)).await;
    let (conn, state) = silent_connection(&p).await;
    assert_eq!(state, "01");
    let answer = ask(conn).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
