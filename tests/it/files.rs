//! Issue 4, static files: index files, types, validators and conditionals, ranges,
//! precompressed siblings, and every way out of the root refused.

use crate::harness::tls::temp_dir;
use crate::harness::*;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

const SECRET: &str = "top secret outside the root";

fn script() -> String {
    (0..3000).map(|i| format!("console.log({i});\n")).collect()
}

/// A site: root/{index.html, style.css, app.js(+.br, .gz), data.bin, sub/index.html,
/// escape -> ../secret.txt}, with secret.txt beside the root.
fn site() -> (PathBuf, PathBuf) {
    let base = temp_dir("files");
    let root = base.join("www");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("index.html"), "<h1>home</h1>").unwrap();
    std::fs::write(root.join("style.css"), "body { color: red; }\n".repeat(100)).unwrap();
    std::fs::write(root.join("app.js"), script()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(script().as_bytes()).unwrap();
    std::fs::write(root.join("app.js.gz"), gz.finish().unwrap()).unwrap();
    let mut br = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 20);
    br.write_all(script().as_bytes()).unwrap();
    std::fs::write(root.join("app.js.br"), br.into_inner()).unwrap();
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("data.bin"), data).unwrap();
    std::fs::write(root.join("sub/index.html"), "<h1>sub</h1>").unwrap();
    std::fs::write(base.join("secret.txt"), SECRET).unwrap();
    std::os::unix::fs::symlink(base.join("secret.txt"), root.join("escape")).unwrap();
    (root, base)
}

fn config(root: &std::path::Path, extra: &str) -> String {
    format!(
        r#"
[log]
access = "off"
[[listener]]
listen = "127.0.0.1:0"
[[route]]
match = {{ path_prefix = "/static/" }}
strip_prefix = "/static"
files = {{ root = "{}" }}
{extra}
[[route]]
files = {{ root = "{}" }}
"#,
        root.display(),
        root.display()
    )
}

fn h<'a>(p: &'a http::response::Parts, name: &str) -> &'a str {
    p.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn files_have_types_validators_and_index_pages() {
    let (root, _base) = site();
    let p = proxy(&config(&root, "")).await;
    let addr = p.addr(0);
    let (parts, body) = fetch_raw(addr, "GET", "/style.css", &[]).await;
    assert_eq!(parts.status, 200);
    assert_eq!(h(&parts, "content-type"), "text/css; charset=utf-8");
    assert_eq!(h(&parts, "content-length"), "2100");
    assert_eq!(body.len(), 2100);
    assert_eq!(h(&parts, "accept-ranges"), "bytes");
    let etag = h(&parts, "etag").to_string();
    let last_modified = h(&parts, "last-modified").to_string();
    assert!(etag.starts_with('"') && etag.len() > 4, "{etag}");
    assert!(httpdate::parse_http_date(&last_modified).is_ok(), "{last_modified}");

    let (parts, body) = fetch_raw(addr, "GET", "/", &[]).await;
    assert_eq!((parts.status.as_u16(), &body[..]), (200, &b"<h1>home</h1>"[..]));
    assert_eq!(h(&parts, "content-type"), "text/html; charset=utf-8");
    let (parts, _) = fetch_raw(addr, "GET", "/sub?x=1", &[]).await;
    assert_eq!(parts.status, 301);
    assert_eq!(h(&parts, "location"), "/sub/?x=1");
    let (_, body) = fetch_raw(addr, "GET", "/sub/", &[]).await;
    assert_eq!(&body[..], b"<h1>sub</h1>");
    // The route's strip_prefix applies before the path is looked up.
    let (_, body) = fetch_raw(addr, "GET", "/static/sub/index.html", &[]).await;
    assert_eq!(&body[..], b"<h1>sub</h1>");
    let (parts, _) = fetch_raw(addr, "GET", "/nope.txt", &[]).await;
    assert_eq!(parts.status, 404);
    let (parts, _) = fetch_raw(addr, "GET", "/data.bin", &[("range", "bytes=0-0")]).await;
    assert_eq!(h(&parts, "content-type"), "application/octet-stream");

    // Conditionals.
    let (parts, body) = fetch_raw(addr, "GET", "/style.css", &[("if-none-match", &etag)]).await;
    assert_eq!((parts.status.as_u16(), body.len()), (304, 0));
    assert_eq!(h(&parts, "etag"), etag);
    let (parts, _) = fetch_raw(addr, "GET", "/style.css", &[("if-modified-since", &last_modified)]).await;
    assert_eq!(parts.status, 304);
    let (parts, _) = fetch_raw(addr, "GET", "/style.css", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(parts.status, 200);
    let (parts, _) = fetch_raw(addr, "GET", "/style.css", &[("if-match", "\"other\"")]).await;
    assert_eq!(parts.status, 412);

    // HEAD: the same head, no body. Other methods: 405 with Allow.
    let (parts, body) = fetch_raw(addr, "HEAD", "/style.css", &[]).await;
    assert_eq!(
        (parts.status.as_u16(), h(&parts, "content-length"), body.len()),
        (200, "2100", 0)
    );
    let (parts, _) = fetch_raw(addr, "POST", "/style.css", &[]).await;
    assert_eq!(parts.status, 405);
    assert_eq!(h(&parts, "allow"), "GET, HEAD");
}

#[tokio::test]
async fn big_files_stream_and_ranges_are_served() {
    let (root, _base) = site();
    let p = proxy(&config(&root, "")).await;
    let addr = p.addr(0);
    let (parts, body) = fetch_raw(addr, "GET", "/data.bin", &[]).await;
    assert_eq!(h(&parts, "content-length"), "5000000");
    assert_eq!(body, std::fs::read(root.join("data.bin")).unwrap());

    let (parts, body) = fetch_raw(addr, "GET", "/data.bin", &[("range", "bytes=1000-1009")]).await;
    assert_eq!(parts.status, 206);
    assert_eq!(h(&parts, "content-range"), "bytes 1000-1009/5000000");
    assert_eq!(
        body.to_vec(),
        (1000..1010u32).map(|i| (i % 251) as u8).collect::<Vec<_>>()
    );
    let (parts, body) = fetch_raw(addr, "GET", "/data.bin", &[("range", "bytes=-3")]).await;
    assert_eq!(h(&parts, "content-range"), "bytes 4999997-4999999/5000000");
    assert_eq!(body.len(), 3);

    let (parts, body) = fetch_raw(addr, "GET", "/style.css", &[("range", "bytes=0-3, 10-13")]).await;
    assert_eq!(parts.status, 206);
    assert!(h(&parts, "content-type").starts_with("multipart/byteranges; boundary="));
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("Content-Type: text/css; charset=utf-8\r\nContent-Range: bytes 0-3/2100\r\n\r\nbody"),
        "{text}"
    );
    assert!(text.contains("Content-Range: bytes 10-13/2100\r\n\r\nor: "), "{text}");

    let (parts, _) = fetch_raw(addr, "GET", "/style.css", &[("range", "bytes=5000-")]).await;
    assert_eq!(parts.status, 416);
    assert_eq!(h(&parts, "content-range"), "bytes */2100");
    // A stale If-Range gets the whole file.
    let (parts, body) = fetch_raw(
        addr,
        "GET",
        "/style.css",
        &[("range", "bytes=0-3"), ("if-range", "\"old\"")],
    )
    .await;
    assert_eq!((parts.status.as_u16(), body.len()), (200, 2100));
}

#[tokio::test]
async fn precompressed_siblings_are_chosen_by_accept_encoding() {
    let (root, _base) = site();
    let p = proxy(&config(&root, "")).await;
    let addr = p.addr(0);
    let (parts, body) = fetch_raw(addr, "GET", "/app.js", &[("accept-encoding", "gzip, br")]).await;
    assert_eq!(h(&parts, "content-encoding"), "br");
    assert_eq!(h(&parts, "content-type"), "text/javascript; charset=utf-8");
    assert_eq!(h(&parts, "vary"), "Accept-Encoding");
    let mut decoded = String::new();
    brotli::Decompressor::new(&body[..], 4096)
        .read_to_string(&mut decoded)
        .unwrap();
    assert_eq!(decoded, script());
    let br_etag = h(&parts, "etag").to_string();

    let (parts, body) = fetch_raw(addr, "GET", "/app.js", &[("accept-encoding", "gzip;q=1, br;q=0.5")]).await;
    assert_eq!(h(&parts, "content-encoding"), "gzip");
    assert_ne!(h(&parts, "etag"), br_etag, "each file has its own validator");
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut decoded)
        .unwrap();
    assert_eq!(decoded, script());

    // zstd is accepted but there is no .zst file: the next accepted coding that exists.
    let (parts, _) = fetch_raw(addr, "GET", "/app.js", &[("accept-encoding", "zstd, gzip")]).await;
    assert_eq!(h(&parts, "content-encoding"), "gzip");
    let (parts, body) = fetch_raw(addr, "GET", "/app.js", &[]).await;
    assert_eq!(h(&parts, "content-encoding"), "");
    assert_eq!(body, script().as_bytes());
    let (parts, body) = fetch_raw(
        addr,
        "GET",
        "/app.js",
        &[("accept-encoding", "br"), ("range", "bytes=0-6")],
    )
    .await;
    assert_eq!((parts.status.as_u16(), h(&parts, "content-encoding")), (206, ""));
    assert_eq!(&body[..], b"console");

    // A real client decodes it.
    let url = format!("http://{addr}/app.js");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "--compressed", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), script());
}

#[tokio::test]
async fn nothing_outside_the_root_is_served() {
    let (root, _base) = site();
    let p = proxy(&config(&root, "")).await;
    let addr = p.addr(0);
    for (target, want) in [
        ("/../secret.txt", 400),
        ("/static/../../secret.txt", 400),
        ("/%2e%2e/secret.txt", 400),
        ("/%2E%2E%2Fsecret.txt", 400),
        ("/sub/..%2f..%2fsecret.txt", 400),
        ("/static/%2e%2e/%2e%2e/secret.txt", 400),
        ("/escape", 403),
        ("/..%5csecret.txt", 400),
        ("/style.css%00.png", 400),
    ] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: files.test\r\nConnection: close\r\n\r\n");
        let answer = raw(addr, request.as_bytes(), Duration::from_secs(2)).await;
        assert_eq!(raw_status(&answer), want, "{target}: {answer}");
        assert!(!answer.contains(SECRET), "{target} leaked the file");
    }
    // curl without its own path normalisation.
    let url = format!("http://{addr}/static/../../secret.txt");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "--path-as-is",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &url,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "400");
}

#[tokio::test]
async fn compress_applies_to_files_without_siblings() {
    let (root, _base) = site();
    let p = proxy(&config(&root, "compress = true")).await;
    let (parts, body) = fetch_raw(p.addr(0), "GET", "/static/style.css", &[("accept-encoding", "gzip")]).await;
    assert_eq!(h(&parts, "content-encoding"), "gzip");
    assert!(h(&parts, "etag").starts_with("W/"));
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut decoded)
        .unwrap();
    assert_eq!(decoded, "body { color: red; }\n".repeat(100));
    // A sibling is preferred to compressing again.
    let (parts, _) = fetch_raw(p.addr(0), "GET", "/static/app.js", &[("accept-encoding", "gzip")]).await;
    assert_eq!(h(&parts, "content-encoding"), "gzip");
    assert!(!h(&parts, "etag").starts_with("W/"), "the .gz file is served as it is");
}

#[test]
fn a_missing_root_is_a_config_error() {
    let dir = temp_dir("files-cfg");
    let path = dir.join("f.toml");
    std::fs::write(
        &path,
        "[[listener]]\nlisten = \"127.0.0.1:0\"\n[[route]]\nfiles = { root = \"no-such-dir\", precompressed = [\"lz4\"] }\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_frontdesk"))
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("f.toml:4:") && err.contains("no-such-dir"), "{err}");
}

/// Large files leave through sendfile on plain HTTP/1.1 (also from an offset, for a range) and
/// are read in pieces for HTTP/2: every way gives the file's bytes.
#[tokio::test]
async fn large_files_are_whole_through_sendfile_and_over_http2() {
    let (root, _base) = site();
    let text: String = (0..40_000).map(|i| format!("line {i:05}\n")).collect();
    std::fs::write(root.join("big.txt"), &text).unwrap();
    let p = proxy(&config(&root, "")).await;
    let addr = p.addr(0);

    let (parts, body) = fetch_raw(addr, "GET", "/big.txt", &[]).await;
    assert_eq!((parts.status.as_u16(), h(&parts, "content-length")), (200, "440000"));
    assert!(body == text.as_bytes(), "whole file over HTTP/1.1");

    let (parts, body) = fetch_raw(addr, "GET", "/big.txt", &[("range", "bytes=100000-299999")]).await;
    assert_eq!(parts.status, 206);
    assert_eq!(h(&parts, "content-range"), "bytes 100000-299999/440000");
    assert!(body == text.as_bytes()[100_000..300_000], "a range from the middle");

    // Keep-alive goes on after a file sent with sendfile.
    let mut c = H1::connect(addr).await;
    for _ in 0..2 {
        let a = c.get("localhost", "/big.txt").await;
        assert_eq!((a.status.as_u16(), a.body.len()), (200, text.len()));
        assert!(a.body == text);
    }

    let req = http::Request::get(format!("http://{addr}/big.txt"))
        .body(Default::default())
        .unwrap();
    let a = h2c(addr, req).await;
    assert_eq!((a.status.as_u16(), a.header("content-length")), (200, "440000"));
    assert!(a.body == text, "whole file over HTTP/2");
}
