//! Issue 4 (first part): the shared HTTP cache on real origins — storability, freshness, Vary,
//! revalidation, stale content, coalescing, purge and Cache-Status.

use crate::harness::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "s3cret";

fn config(origin: &Origin, zone: &str) -> String {
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
memory = "16MiB"
max_object = "64KiB"
{zone}
[upstream.app]
servers = ["{}"]
[[route]]
upstream = "app"
cache = "main"
"#,
        origin.addr
    )
}

/// An origin answering every request with the given headers and a body naming the request count.
async fn origin_with(headers: &'static [(&'static str, &'static str)]) -> Origin {
    let n = Arc::new(AtomicUsize::new(0));
    Origin::start(move |_req| {
        let i = n.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            let mut r = http::Response::builder();
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.body(TestBody::text(format!("response {i}"))).unwrap()
        }
    })
    .await
}

fn req(path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::get(path).header("host", "cache.test");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::default()).unwrap()
}

#[tokio::test]
async fn fresh_responses_are_served_from_cache() {
    let origin = origin_with(&[("cache-control", "max-age=60")]).await;
    let p = proxy(&config(&origin, "")).await;
    let first = get_host(p.addr(0), "cache.test", "/a").await;
    assert_eq!(first.body, "response 1");
    assert!(
        first
            .header("cache-status")
            .starts_with("frontdesk; fwd=uri-miss; fwd-status=200; stored; ttl="),
        "{}",
        first.header("cache-status")
    );
    for _ in 0..3 {
        let again = get_host(p.addr(0), "cache.test", "/a").await;
        assert_eq!(again.body, "response 1");
        assert!(
            again.header("cache-status").starts_with("frontdesk; hit; ttl="),
            "{}",
            again.header("cache-status")
        );
        assert!(!again.header("age").is_empty());
    }
    assert_eq!(origin.requests(), 1);
    // Another path is another key.
    assert_eq!(get_host(p.addr(0), "cache.test", "/b").await.body, "response 2");
}

#[tokio::test]
async fn uncacheable_responses_are_not_stored() {
    for headers in [
        &[("cache-control", "no-store")][..],
        &[("cache-control", "private, max-age=60")],
        &[("cache-control", "max-age=60"), ("set-cookie", "a=1")],
    ] {
        let hs: &'static [(&'static str, &'static str)] = Box::leak(headers.to_vec().into_boxed_slice());
        let origin = origin_with(hs).await;
        let p = proxy(&config(&origin, "")).await;
        get_host(p.addr(0), "cache.test", "/").await;
        let second = get_host(p.addr(0), "cache.test", "/").await;
        assert_eq!(second.body, "response 2", "{headers:?} must not be cached");
        assert!(
            second.header("cache-status").contains("fwd="),
            "{}",
            second.header("cache-status")
        );
    }
}

#[tokio::test]
async fn authorization_requests_are_stored_only_when_public() {
    let origin = origin_with(&[("cache-control", "max-age=60")]).await;
    let p = proxy(&config(&origin, "")).await;
    send(p.addr(0), req("/", &[("authorization", "Bearer x")])).await;
    assert_eq!(
        send(p.addr(0), req("/", &[("authorization", "Bearer x")])).await.body,
        "response 2"
    );

    let public = origin_with(&[("cache-control", "public, max-age=60")]).await;
    let p = proxy(&config(&public, "")).await;
    send(p.addr(0), req("/", &[("authorization", "Bearer x")])).await;
    assert_eq!(
        send(p.addr(0), req("/", &[("authorization", "Bearer x")])).await.body,
        "response 1"
    );
}

#[tokio::test]
async fn vary_keeps_variants_apart() {
    let origin = origin_with(&[("cache-control", "max-age=60"), ("vary", "accept-language")]).await;
    let p = proxy(&config(&origin, "")).await;
    let en = || req("/", &[("accept-language", "en")]);
    let de = || req("/", &[("accept-language", "de")]);
    assert_eq!(send(p.addr(0), en()).await.body, "response 1");
    assert_eq!(send(p.addr(0), de()).await.body, "response 2");
    assert_eq!(send(p.addr(0), en()).await.body, "response 1");
    assert_eq!(send(p.addr(0), de()).await.body, "response 2");
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn stale_entry_is_revalidated_with_its_etag() {
    let origin = Origin::start(|req| async move {
        if req.headers().get("if-none-match").is_some_and(|v| v == "\"v1\"") {
            return http::Response::builder()
                .status(304)
                .header("etag", "\"v1\"")
                .header("cache-control", "max-age=0")
                .body(TestBody::empty())
                .unwrap();
        }
        http::Response::builder()
            .header("etag", "\"v1\"")
            .header("cache-control", "max-age=0")
            .body(TestBody::text("body v1"))
            .unwrap()
    })
    .await;
    let p = proxy(&config(&origin, "")).await;
    assert_eq!(get_host(p.addr(0), "cache.test", "/").await.body, "body v1");
    let second = get_host(p.addr(0), "cache.test", "/").await;
    assert_eq!(second.body, "body v1");
    assert!(
        second.header("cache-status").contains("fwd=stale; fwd-status=304"),
        "{}",
        second.header("cache-status")
    );
    assert_eq!(origin.requests(), 2);
    assert_eq!(origin.last_seen().headers.get("if-none-match").unwrap(), "\"v1\"");
}

#[tokio::test]
async fn client_conditional_gets_304_from_cache() {
    let origin = origin_with(&[("cache-control", "max-age=60"), ("etag", "\"abc\"")]).await;
    let p = proxy(&config(&origin, "")).await;
    get_host(p.addr(0), "cache.test", "/").await;
    let a = send(p.addr(0), req("/", &[("if-none-match", "\"abc\"")])).await;
    assert_eq!(a.status, 304);
    assert_eq!(a.body, "");
    assert_eq!(a.header("etag"), "\"abc\"");
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let origin = origin_with(&[("cache-control", "max-age=1, stale-while-revalidate=60")]).await;
    let p = proxy(&config(&origin, "")).await;
    assert_eq!(get_host(p.addr(0), "cache.test", "/").await.body, "response 1");
    // Staleness is a matter of time passing: wait until the entry is past its max-age.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let stale = get_host(p.addr(0), "cache.test", "/").await;
    assert_eq!(stale.body, "response 1", "stale content served at once");
    assert!(
        stale.header("cache-status").contains("detail=stale-while-revalidate"),
        "{}",
        stale.header("cache-status")
    );
    let o = &origin;
    eventually(Duration::from_secs(5), "background refresh", || async move {
        o.requests() == 2
    })
    .await;
    let pr = &p;
    eventually(Duration::from_secs(5), "refreshed entry served", || async move {
        get_host(pr.addr(0), "cache.test", "/").await.body == "response 2"
    })
    .await;
    assert_eq!(origin.requests(), 2, "one refresh only");
}

#[tokio::test]
async fn stale_if_error_serves_stale_while_the_origin_is_down() {
    let origin = origin_with(&[("cache-control", "max-age=1, stale-if-error=600")]).await;
    let cfg = config(&origin, "stale_if_down = false").replace("servers = [", "retries = 0\nservers = [");
    let p = proxy(&cfg).await;
    assert_eq!(get_host(p.addr(0), "cache.test", "/").await.body, "response 1");
    origin.stop();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let a = get_host(p.addr(0), "cache.test", "/").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, "response 1");
    assert!(
        a.header("cache-status").contains("detail=stale-if-error"),
        "{}",
        a.header("cache-status")
    );
}

#[tokio::test]
async fn stale_if_down_switch_covers_responses_without_stale_if_error() {
    let origin = origin_with(&[("cache-control", "max-age=1")]).await;
    let cfg = config(&origin, "stale_if_down = true").replace("servers = [", "retries = 0\nservers = [");
    let p = proxy(&cfg).await;
    get_host(p.addr(0), "cache.test", "/").await;
    origin.stop();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(get_host(p.addr(0), "cache.test", "/").await.body, "response 1");

    let origin = origin_with(&[("cache-control", "max-age=1")]).await;
    let cfg = config(&origin, "stale_if_down = false").replace("servers = [", "retries = 0\nservers = [");
    let p = proxy(&cfg).await;
    get_host(p.addr(0), "cache.test", "/").await;
    origin.stop();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(get_host(p.addr(0), "cache.test", "/").await.status, 502);
}

#[tokio::test]
async fn concurrent_misses_are_coalesced_into_one_origin_request() {
    let slow = Origin::start(|_| async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        http::Response::builder()
            .header("cache-control", "max-age=60")
            .body(TestBody::text("slow body"))
            .unwrap()
    })
    .await;
    let p = proxy(&config(&slow, "")).await;
    let addr = p.addr(0);
    let tasks: Vec<_> = (0..20)
        .map(|_| tokio::spawn(async move { get_host(addr, "cache.test", "/hot").await }))
        .collect();
    let mut collapsed = 0;
    for t in tasks {
        let a = t.await.unwrap();
        assert_eq!(a.body, "slow body");
        if a.header("cache-status").contains("hit") {
            collapsed += 1;
        }
    }
    assert_eq!(slow.requests(), 1, "one origin request for 20 concurrent misses");
    assert_eq!(collapsed, 19);
}

#[tokio::test]
async fn purge_by_url_prefix_and_tag_needs_the_token() {
    let origin = origin_with(&[("cache-control", "max-age=60"), ("surrogate-key", "blue product-7")]).await;
    let p = proxy(&config(&origin, "")).await;
    let warm = |path: &'static str| get_host(p.addr(0), "cache.test", path);
    let purge = |query: String, token: Option<&str>| {
        let mut r = Request::post(format!("/cache/purge?{query}")).header("host", "admin");
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        send(p.admin(), r.body(Full::default()).unwrap())
    };
    warm("/p/1").await;
    warm("/p/2").await;
    warm("/q").await;
    assert_eq!(purge("url=http://cache.test/p/1".into(), None).await.status, 401);
    assert_eq!(
        purge("url=http://cache.test/p/1".into(), Some("wrong")).await.status,
        401
    );
    let a = purge("url=http://cache.test/p/1".into(), Some(TOKEN)).await;
    assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "{\"purged\":1}"));
    assert_eq!(warm("/p/1").await.body, "response 4", "purged URL is fetched again");
    assert_eq!(warm("/p/2").await.body, "response 2", "others stay");
    assert_eq!(
        purge("prefix=http://cache.test/p/".into(), Some(TOKEN)).await.body,
        "{\"purged\":2}"
    );
    assert_eq!(warm("/q").await.body, "response 3");
    assert_eq!(purge("tag=product-7".into(), Some(TOKEN)).await.body, "{\"purged\":1}");
    assert_eq!(warm("/q").await.body, "response 5");
}

#[tokio::test]
async fn unsafe_methods_invalidate_and_large_or_truncated_bodies_are_not_stored() {
    let origin = origin_with(&[("cache-control", "max-age=60")]).await;
    let p = proxy(&config(&origin, "")).await;
    get_host(p.addr(0), "cache.test", "/doc").await;
    let post = Request::post("/doc")
        .header("host", "cache.test")
        .body(Full::new(Bytes::from_static(b"x")))
        .unwrap();
    send(p.addr(0), post).await;
    assert_eq!(
        get_host(p.addr(0), "cache.test", "/doc").await.body,
        "response 3",
        "POST invalidated the entry"
    );

    let big = Origin::start(|_| async {
        http::Response::builder()
            .header("cache-control", "max-age=60")
            .body(TestBody::text("b".repeat(100 * 1024)))
            .unwrap()
    })
    .await;
    let p = proxy(&config(&big, "")).await;
    assert_eq!(get_host(p.addr(0), "cache.test", "/").await.body.len(), 100 * 1024);
    get_host(p.addr(0), "cache.test", "/").await;
    assert_eq!(big.requests(), 2, "bodies over max_object pass through uncached");

    let short = RawOrigin::start(
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 10\r\n\r\nhello",
        true,
    )
    .await;
    let cfg = config(&origin, "").replace(&origin.addr.to_string(), &short.addr.to_string());
    let p = proxy(&cfg).await;
    let _ = raw(
        p.addr(0),
        b"GET / HTTP/1.1\r\nHost: cache.test\r\nConnection: close\r\n\r\n",
        Duration::from_millis(500),
    )
    .await;
    let _ = raw(
        p.addr(0),
        b"GET / HTTP/1.1\r\nHost: cache.test\r\nConnection: close\r\n\r\n",
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(
        short.requests(),
        2,
        "a body shorter than its Content-Length is not stored"
    );
}

#[tokio::test]
async fn ranges_are_served_from_the_cached_object() {
    let origin = Origin::start(|req| async move {
        assert!(req.headers().get("range").is_none(), "the cache fetches whole objects");
        http::Response::builder()
            .header("cache-control", "max-age=60")
            .header("content-type", "text/plain")
            .header("etag", "\"r1\"")
            .body(TestBody::text("0123456789"))
            .unwrap()
    })
    .await;
    let p = proxy(&config(&origin, "")).await;
    // A miss with Range is fetched whole and answered whole; later ranges come from the cache.
    let first = send(p.addr(0), req("/r", &[("range", "bytes=0-3")])).await;
    assert_eq!((first.status.as_u16(), first.body.as_str()), (200, "0123456789"));
    let part = send(p.addr(0), req("/r", &[("range", "bytes=2-5")])).await;
    assert_eq!((part.status.as_u16(), part.body.as_str()), (206, "2345"));
    assert_eq!(part.header("content-range"), "bytes 2-5/10");
    let multi = send(p.addr(0), req("/r", &[("range", "bytes=0-0,-1")])).await;
    assert_eq!(multi.status, 206);
    assert!(multi.header("content-type").starts_with("multipart/byteranges"));
    assert!(
        multi.body.contains("bytes 0-0/10\r\n\r\n0") && multi.body.contains("bytes 9-9/10\r\n\r\n9"),
        "{}",
        multi.body
    );
    let none = send(p.addr(0), req("/r", &[("range", "bytes=50-")])).await;
    assert_eq!(none.status, 416);
    assert_eq!(none.header("content-range"), "bytes */10");
    let stale_if_range = send(p.addr(0), req("/r", &[("range", "bytes=0-1"), ("if-range", "\"old\"")])).await;
    assert_eq!(
        (stale_if_range.status.as_u16(), stale_if_range.body.as_str()),
        (200, "0123456789")
    );
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn responses_with_content_length_are_stored_too() {
    // hyper stops polling a body of known length after its last byte; the fill must not wait
    // for an end-of-stream poll that never comes.
    let origin = RawOrigin::start(
        b"HTTP/1.1 200 OK\r\nCache-Control: public, max-age=60\r\nContent-Length: 5\r\n\r\nhello",
        false,
    )
    .await;
    let cfg = config(&Origin::named("unused").await, "")
        .replace("servers = [", &format!("servers = [\"{}\"] #", origin.addr));
    let p = proxy(&cfg).await;
    let mut c = H1::connect(p.addr(0)).await;
    assert_eq!(c.get("cache.test", "/").await.body, "hello");
    let second = c.get("cache.test", "/").await;
    assert_eq!(second.body, "hello");
    assert!(
        second.header("cache-status").contains("hit"),
        "{}",
        second.header("cache-status")
    );
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn normalised_query_keys_share_one_entry() {
    let origin = origin_with(&[("cache-control", "max-age=60")]).await;
    let p = proxy(&config(&origin, "key = { query = \"sorted\" }")).await;
    assert_eq!(get_host(p.addr(0), "cache.test", "/s?b=2&a=1").await.body, "response 1");
    let same = get_host(p.addr(0), "cache.test", "/s?a=1&b=2").await;
    assert_eq!(same.body, "response 1", "{}", same.header("cache-status"));
    assert_eq!(get_host(p.addr(0), "cache.test", "/s?a=1&b=3").await.body, "response 2");

    let origin = origin_with(&[("cache-control", "max-age=60")]).await;
    let p = proxy(&config(&origin, "key = { query = [\"id\"] }")).await;
    assert_eq!(
        get_host(p.addr(0), "cache.test", "/k?id=7&utm=a").await.body,
        "response 1"
    );
    assert_eq!(
        get_host(p.addr(0), "cache.test", "/k?utm=b&id=7").await.body,
        "response 1"
    );
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn fast_path_hits_answer_like_the_general_path() {
    // The origin echoes the request id it was sent, as many do; hits must carry their own.
    let origin = Origin::start(|req| async move {
        let id = req.headers().get("x-request-id").cloned().unwrap();
        let lang = req.headers().get("accept-language").cloned();
        http::Response::builder()
            .header("cache-control", "max-age=60")
            .header("vary", "Accept-Language")
            .header("x-request-id", id)
            .header("x-origin", "yes")
            .header("server", "origin/1")
            .body(TestBody::text(format!("lang={lang:?}")))
            .unwrap()
    })
    .await;
    let extra = "response_headers = { set = { \"server\" = \"frontdesk\" }, add = { \"x-edge\" = \"1\" } }";
    let p = proxy(&format!("{}{extra}\n", config(&origin, ""))).await;
    let en = [("accept-language", "en")];
    let first = send(p.addr(0), req("/page", &en)).await;
    assert!(first.header("cache-status").contains("stored"));
    // HTTP/1.1 (fast path) and HTTP/2 (general path) hits for the same stored response.
    let h1 = send(
        p.addr(0),
        req("/page", &[("accept-language", "en"), ("x-request-id", "client-1")]),
    )
    .await;
    let h2 = h2c(
        p.addr(0),
        Request::get("http://cache.test/page")
            .header("accept-language", "en")
            .header("x-request-id", "client-2")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    for (name, a) in [("h1", &h1), ("h2", &h2)] {
        assert!(
            a.header("cache-status").starts_with("frontdesk; hit; ttl="),
            "{name}: {a:?}"
        );
        assert_eq!(a.body, "lang=Some(\"en\")", "{name}");
    }
    assert_eq!(h1.header("x-request-id"), "client-1");
    assert_eq!(h2.header("x-request-id"), "client-2");
    let names = |a: &Answer| {
        let mut n: Vec<String> = a.headers.keys().map(|k| k.to_string()).collect();
        n.sort();
        n.dedup();
        n
    };
    assert_eq!(names(&h1), names(&h2), "same fields on both paths");
    for field in [
        "server",
        "x-edge",
        "vary",
        "accept-ranges",
        "content-length",
        "x-origin",
        "date",
    ] {
        let all = |a: &Answer| a.headers.get_all(field).iter().cloned().collect::<Vec<_>>();
        assert_eq!(all(&h1), all(&h2), "{field}");
    }
    assert_eq!(h1.header("server"), "frontdesk");
    // Another variant is a miss, then a hit of its own; the first is untouched.
    let de = send(p.addr(0), req("/page", &[("accept-language", "de")])).await;
    assert!(de.header("cache-status").contains("fwd=vary-miss"), "{de:?}");
    let de = send(p.addr(0), req("/page", &[("accept-language", "de")])).await;
    assert_eq!(de.body, "lang=Some(\"de\")");
    assert_eq!(send(p.addr(0), req("/page", &en)).await.body, "lang=Some(\"en\")");
    // A request directive goes to the general path, which honours it.
    let forced = send(
        p.addr(0),
        req("/page", &[("accept-language", "en"), ("cache-control", "no-cache")]),
    )
    .await;
    assert!(forced.header("cache-status").contains("fwd="), "{forced:?}");
    assert_eq!(origin.requests(), 3);
}

/// Findings of the cache-tests conformance run (scripts/cache-conformance.sh), as regressions.
#[tokio::test]
async fn a_304_without_validators_refreshes_and_never_reaches_a_plain_get() {
    let origin = Origin::start(|req| async move {
        if req.headers().contains_key("if-none-match") {
            // A 304 that repeats no validator and brings a new header.
            return http::Response::builder()
                .status(304)
                .header("cache-control", "max-age=60")
                .header("x-refreshed", "yes")
                .body(TestBody::empty())
                .unwrap();
        }
        http::Response::builder()
            .header("etag", "\"v1\"")
            .header("cache-control", "max-age=0")
            .body(TestBody::text("stored body"))
            .unwrap()
    })
    .await;
    let p = proxy(&config(&origin, "")).await;
    get_host(p.addr(0), "cache.test", "/r").await;
    let second = get_host(p.addr(0), "cache.test", "/r").await;
    assert_eq!((second.status.as_u16(), second.body.as_str()), (200, "stored body"));
    assert!(
        second
            .header("cache-status")
            .contains("fwd=stale; fwd-status=304; stored"),
        "{second:?}"
    );
    assert_eq!(second.header("x-refreshed"), "yes");
    assert_eq!(second.header("etag"), "\"v1\"", "the stored validator stays");
    let third = get_host(p.addr(0), "cache.test", "/r").await;
    assert!(
        third.header("cache-status").starts_with("frontdesk; hit"),
        "max-age=60 from the 304 applies"
    );
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn request_directives_and_empty_responses_are_honoured() {
    let origin = Origin::start(|req| async move {
        if req.uri().path() == "/empty" {
            return http::Response::builder()
                .status(204)
                .header("cache-control", "max-age=60")
                .body(TestBody::empty())
                .unwrap();
        }
        http::Response::builder()
            .header("cache-control", "max-age=60, stale-while-revalidate=60")
            .body(TestBody::text("content"))
            .unwrap()
    })
    .await;
    let p = proxy(&config(&origin, "")).await;
    // only-if-cached: 504 without asking the origin.
    let oic = send(p.addr(0), req("/a", &[("cache-control", "only-if-cached")])).await;
    assert_eq!(oic.status, 504);
    assert_eq!(origin.requests(), 0);
    // A 204 with freshness is stored (nothing streams to fill it).
    assert_eq!(send(p.addr(0), req("/empty", &[])).await.status, 204);
    let again = send(p.addr(0), req("/empty", &[])).await;
    assert!(again.header("cache-status").starts_with("frontdesk; hit"), "{again:?}");
    assert_eq!(again.header("content-length"), "", "no Content-Length on a 204");
    // A fresh entry, but the client wants it no older than 0 s: revalidated now, not served stale.
    send(p.addr(0), req("/a", &[])).await;
    let n = origin.requests();
    let forced = send(p.addr(0), req("/a", &[("cache-control", "max-age=0")])).await;
    assert!(forced.header("cache-status").contains("fwd="), "{forced:?}");
    assert_eq!(origin.requests(), n + 1);
    let oic = send(p.addr(0), req("/a", &[("cache-control", "only-if-cached")])).await;
    assert_eq!(oic.status, 200, "stored now");
}

/// A fast hit reuses the stored head as first written; a listener with another request id field
/// still gets its own id and the stored fields the first one replaced.
#[tokio::test]
async fn hits_on_listeners_with_different_request_id_fields() {
    let origin = origin_with(&[
        ("cache-control", "max-age=60"),
        ("x-request-id", "from-origin"),
        ("x-trace", "from-origin"),
    ])
    .await;
    let cfg = config(&origin, "").replace(
        "[[listener]]\nlisten = \"127.0.0.1:0\"\n",
        "[[listener]]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nlisten = \"127.0.0.2:0\"\nrequest_id_header = \"x-trace\"\n",
    );
    let p = proxy(&cfg).await;
    let stored = send(p.addr(0), req("/ids", &[("x-request-id", "client-a")])).await;
    assert_eq!(stored.body, "response 1");
    for _ in 0..2 {
        let a = send(p.addr(0), req("/ids", &[("x-request-id", "client-a")])).await;
        assert!(
            a.header("cache-status").starts_with("frontdesk; hit"),
            "{:?}",
            a.headers
        );
        assert_eq!(a.headers.get_all("x-request-id").iter().count(), 1);
        assert_eq!(a.header("x-request-id"), "client-a");
        assert_eq!(a.header("x-trace"), "from-origin");
        let b = send(p.addr(1), req("/ids", &[("x-trace", "client-b")])).await;
        assert!(
            b.header("cache-status").starts_with("frontdesk; hit"),
            "{:?}",
            b.headers
        );
        assert_eq!(b.headers.get_all("x-trace").iter().count(), 1);
        assert_eq!(b.header("x-trace"), "client-b");
        assert_eq!(b.header("x-request-id"), "from-origin");
    }
    assert_eq!(origin.requests(), 1);
}

/// Hits served on the fast path are logged like other requests, with the id they were sent.
#[tokio::test]
async fn hits_are_access_logged_with_their_request_id() {
    let dir = crate::harness::tls::temp_dir("hitlog");
    let log = dir.join("access.log");
    let origin = origin_with(&[("cache-control", "max-age=60")]).await;
    let cfg = config(&origin, "").replace("access = \"off\"", &format!("access = \"{}\"", log.display()));
    let p = proxy(&cfg).await;
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(send(p.addr(0), req("/logged", &[])).await);
    }
    assert!(answers[2].header("cache-status").starts_with("frontdesk; hit"));
    let logp = &log;
    eventually(Duration::from_secs(5), "three log lines", || async move {
        std::fs::read_to_string(logp)
            .map(|s| s.lines().count() == 3)
            .unwrap_or(false)
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    for (line, answer) in text.lines().zip(&answers) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["path"], "/logged");
        assert_eq!(v["request_id"], answer.header("x-request-id"), "{line}");
        assert_eq!(answer.header("x-request-id").len(), 32);
    }
}
