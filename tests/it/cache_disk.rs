//! Issue 4, disk tier: objects survive a restart, are read back when memory has evicted them,
//! corrupt files are never served, purge reaches the disk, and an unwritable disk leaves the
//! memory tier serving.

use crate::harness::tls::temp_dir;
use crate::harness::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "s3cret";

fn config(origin: &Origin, dir: &Path, memory: &str) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"
token = "{TOKEN}"
[log]
access = "off"
[[listener]]
listen = "127.0.0.1:0"
[cache.main]
memory = "{memory}"
disk = {{ path = "{}", size = "10MiB" }}
[upstream.app]
servers = ["{}"]
[[route]]
upstream = "app"
cache = "main"
"#,
        dir.display(),
        origin.addr
    )
}

/// Cacheable answers of 40 KiB naming the path and the origin's request count.
async fn origin() -> Origin {
    let n = Arc::new(AtomicUsize::new(0));
    Origin::start(move |req| {
        let i = n.fetch_add(1, Ordering::SeqCst) + 1;
        let path = req.uri().path().to_string();
        async move {
            http::Response::builder()
                .header("cache-control", "max-age=600")
                .header("surrogate-key", "all")
                .body(TestBody::text(format!("{path} #{i}\n{}", "x".repeat(40 * 1024))))
                .unwrap()
        }
    })
    .await
}

async fn disk_objects(p: &TestProxy) -> u64 {
    let a = get(p.admin(), "/cache").await;
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    v["main"]["disk"]["objects"].as_u64().unwrap()
}

async fn wait_for_disk(p: &TestProxy, n: u64) {
    eventually(Duration::from_secs(10), "objects written to disk", || async {
        disk_objects(p).await >= n
    })
    .await;
}

fn first_line(body: &str) -> &str {
    body.lines().next().unwrap_or("")
}

#[tokio::test]
async fn objects_survive_a_restart_and_outlive_memory() {
    let origin = origin().await;
    let dir = temp_dir("disk-restart").join("cache");
    // Memory for about one object: the others must come back from disk.
    let cfg = config(&origin, &dir, "48KiB");
    {
        let p = proxy(&cfg).await;
        for path in ["/a", "/b", "/c"] {
            let a = get(p.addr(0), path).await;
            assert!(
                a.header("cache-status").contains("stored"),
                "{}",
                a.header("cache-status")
            );
        }
        wait_for_disk(&p, 3).await;
        for path in ["/a", "/b", "/c"] {
            let a = get(p.addr(0), path).await;
            assert!(a.header("cache-status").starts_with("frontdesk; hit"), "{path}");
            assert_eq!(a.body.len(), first_line(&a.body).len() + 1 + 40 * 1024);
        }
        assert_eq!(origin.requests(), 3);
    }
    // A new process-worth of state: nothing in memory, the index rebuilt from the directory.
    let p = proxy(&cfg).await;
    assert_eq!(disk_objects(&p).await, 3);
    for (path, n) in [("/a", 1), ("/b", 2), ("/c", 3)] {
        let a = get(p.addr(0), path).await;
        assert!(
            a.header("cache-status").starts_with("frontdesk; hit"),
            "{path} after restart"
        );
        assert_eq!(first_line(&a.body), format!("{path} #{n}"));
    }
    assert_eq!(origin.requests(), 3, "no request reached the origin after the restart");
}

#[tokio::test]
async fn corrupt_files_are_dropped_and_fetched_again() {
    let origin = origin().await;
    let dir = temp_dir("disk-corrupt").join("cache");
    let cfg = config(&origin, &dir, "16MiB");
    {
        let p = proxy(&cfg).await;
        get(p.addr(0), "/a").await;
        get(p.addr(0), "/b").await;
        wait_for_disk(&p, 2).await;
    }
    // Flip one body byte of every file and cut the tail off one of them.
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in &files {
        let mut data = std::fs::read(f).unwrap();
        let at = data.len() - 100;
        data[at] ^= 0xff;
        std::fs::write(f, data).unwrap();
    }
    let data = std::fs::read(&files[0]).unwrap();
    std::fs::write(&files[0], &data[..data.len() / 2]).unwrap();

    let p = proxy(&cfg).await;
    assert_eq!(disk_objects(&p).await, 1, "the truncated file is not indexed");
    for path in ["/a", "/b"] {
        let a = get(p.addr(0), path).await;
        assert!(
            a.header("cache-status").contains("fwd=uri-miss"),
            "{path}: {}",
            a.header("cache-status")
        );
        assert!(
            a.body.ends_with(&"x".repeat(1000)),
            "{path}: a clean body from the origin"
        );
    }
    assert_eq!(origin.requests(), 4);
}

#[tokio::test]
async fn purge_reaches_the_disk() {
    let origin = origin().await;
    let dir = temp_dir("disk-purge").join("cache");
    let cfg = config(&origin, &dir, "16MiB");
    {
        let p = proxy(&cfg).await;
        get(p.addr(0), "/a").await;
        get(p.addr(0), "/b").await;
        wait_for_disk(&p, 2).await;
        let req = Request::post("/cache/purge?tag=all")
            .header("host", "admin")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Full::<Bytes>::default())
            .unwrap();
        let a = send(p.admin(), req).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(a.body.contains("\"purged\":2"), "{}", a.body);
        assert_eq!(disk_objects(&p).await, 0);
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "files are deleted");
    let p = proxy(&cfg).await;
    let a = get(p.addr(0), "/a").await;
    assert!(a.header("cache-status").contains("fwd=uri-miss"));
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn an_unwritable_disk_is_logged_once_and_memory_keeps_serving() {
    let origin = origin().await;
    let base = temp_dir("disk-unwritable");
    let dir = base.join("cache");
    let cfg_path = base.join("frontdesk.toml");
    std::fs::write(&cfg_path, config(&origin, &dir, "16MiB")).unwrap();
    let (mut proc, addr) = process::Process::start(&cfg_path);
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let admin = proc.admin_addr();
    // The directory disappears and a file takes its place: every write now fails.
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    for path in ["/a", "/b", "/c"] {
        assert_eq!(get(addr, path).await.status, 200);
    }
    eventually(Duration::from_secs(10), "three failed writes", || async move {
        let v: serde_json::Value = serde_json::from_str(&get(admin, "/cache").await.body).unwrap();
        v["main"]["disk"]["write_errors"].as_u64() == Some(3)
    })
    .await;
    for path in ["/a", "/b", "/c"] {
        let a = get(addr, path).await;
        assert!(
            a.header("cache-status").starts_with("frontdesk; hit"),
            "memory still serves {path}"
        );
    }
    assert_eq!(origin.requests(), 3);
    // Everything logged so far comes before the reload line.
    proc.signal("-HUP");
    let before = proc.lines_until("frontdesk reloaded");
    let warnings = before
        .iter()
        .filter(|l| l.contains("disk cache tier cannot write"))
        .count();
    assert_eq!(warnings, 1, "{before:#?}");
}
