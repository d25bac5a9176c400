use super::*;

fn parts(headers: &[(&str, &str)]) -> Parts {
    let mut b = Request::get("/x");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn map(headers: &[(&str, &str)]) -> HeaderMap {
    parts(headers).headers
}

#[test]
fn client_conditionals() {
    let stored = map(&[("etag", "\"v1\""), ("last-modified", "Wed, 21 Oct 2026 07:28:00 GMT")]);
    assert!(not_modified(&parts(&[("if-none-match", "\"v0\", W/\"v1\"")]), &stored));
    assert!(!not_modified(&parts(&[("if-none-match", "\"v2\"")]), &stored));
    assert!(not_modified(&parts(&[("if-none-match", "*")]), &stored));
    assert!(not_modified(
        &parts(&[("if-modified-since", "Thu, 22 Oct 2026 07:28:00 GMT")]),
        &stored
    ));
    assert!(!not_modified(
        &parts(&[("if-modified-since", "Tue, 20 Oct 2026 07:28:00 GMT")]),
        &stored
    ));
    // If-None-Match wins over If-Modified-Since.
    assert!(!not_modified(
        &parts(&[
            ("if-none-match", "\"v2\""),
            ("if-modified-since", "Thu, 22 Oct 2026 07:28:00 GMT")
        ]),
        &stored
    ));
}

#[test]
fn stale_directives() {
    let d = directives(&map(&[(
        "cache-control",
        "max-age=60, stale-while-revalidate=30, stale-if-error=\"600\"",
    )]));
    assert_eq!(d.stale_while_revalidate, Duration::from_secs(30));
    assert_eq!(d.stale_if_error, Duration::from_secs(600));
    assert!(!d.forbids_stale);
    assert!(directives(&map(&[("cache-control", "max-age=60, must-revalidate")])).forbids_stale);
    assert!(directives(&map(&[("pragma", "no-cache")])).forbids_stale);
}

#[test]
fn vary_key_uses_named_request_headers() {
    let req = |h: &[(&str, &str)]| {
        let mut r = http::Request::new(()).into_parts().0;
        r.headers = map(h);
        r
    };
    let resp = map(&[("vary", "Accept-Encoding, accept-language")]);
    let a = vary_key(
        &resp,
        &req(&[("accept-language", "en"), ("accept-encoding", "gzip"), ("x-other", "1")]),
    );
    let b = vary_key(&resp, &req(&[("accept-language", "de"), ("accept-encoding", "gzip")]));
    let c = vary_key(&resp, &req(&[("accept-encoding", "gzip"), ("accept-language", "en")]));
    assert_ne!(a, b);
    assert_eq!(a, c);
    assert_eq!(vary_key(&map(&[]), &req(&[("accept-language", "en")])), "");
}
