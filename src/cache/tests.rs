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

fn judged(status: u16, headers: &[(&str, &str)], store_set_cookie: bool) -> http::response::Parts {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    policy_response(&b.body(()).unwrap().into_parts().0, store_set_cookie)
}

fn ttl(status: u16, headers: &[(&str, &str)]) -> u64 {
    let req = parts(&[]);
    let now = SystemTime::now();
    let p = CachePolicy::new_options(&req, &judged(status, headers, false), now, CacheOptions::default());
    if p.is_storable() {
        p.time_to_live(now).as_secs()
    } else {
        0
    }
}

#[test]
fn directive_names_are_case_insensitive() {
    assert_eq!(ttl(200, &[("cache-control", "Max-Age=60")]), 60);
    assert_eq!(ttl(200, &[("cache-control", "max-age=60, No-CaChE")]), 0);
    let mut view = parts(&[("cache-control", "No-Cache")]);
    view = request_copy(&view);
    assert_eq!(view.headers["cache-control"], "no-cache");
}

#[test]
fn cdn_cache_control_replaces_cache_control_when_valid() {
    assert_eq!(
        ttl(
            200,
            &[("cache-control", "max-age=10"), ("cdn-cache-control", "max-age=300")]
        ),
        300
    );
    assert_eq!(
        ttl(
            200,
            &[("cache-control", "max-age=10"), ("cdn-cache-control", "no-store")]
        ),
        0
    );
    assert_eq!(
        ttl(
            200,
            &[("cache-control", "no-store"), ("cdn-cache-control", "max-age=120")]
        ),
        120
    );
    assert_eq!(
        ttl(
            200,
            &[("cache-control", "max-age=10"), ("cdn-cache-control", "private")]
        ),
        0
    );
    // Invalid as a structured field: ignored as a whole.
    assert_eq!(
        ttl(
            200,
            &[("cache-control", "max-age=10"), ("cdn-cache-control", "Max-Age=300")]
        ),
        10
    );
    assert_eq!(
        ttl(
            200,
            &[("cache-control", "max-age=10"), ("cdn-cache-control", "max-age=(1 2)")]
        ),
        10
    );
    // A directive of the wrong type is ignored on its own.
    assert_eq!(
        ttl(
            200,
            &[
                ("cache-control", "max-age=10"),
                ("cdn-cache-control", "max-age=\"300\"")
            ]
        ),
        0
    );
    // Expires does not count once CDN-Cache-Control applies.
    assert_eq!(
        ttl(
            200,
            &[
                ("expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
                ("cdn-cache-control", "no-cache")
            ]
        ),
        0
    );
}

#[test]
fn age_and_expires_are_parsed_strictly() {
    let h = |v: &str| judged(200, &[("age", v)], false).headers.get("age").cloned();
    assert_eq!(h("7200, 0").unwrap(), "7200");
    assert!(h("1.5").is_none());
    assert!(h("7200;foo=1").is_none());
    assert!(h("-5").is_none());
    let e = |v: &str| judged(200, &[("expires", v)], false).headers["expires"].clone();
    assert_eq!(e("Thu, 01 Jan 2099 00:00:00 GMT"), "Thu, 01 Jan 2099 00:00:00 GMT");
    assert_eq!(e("Thu, 01  Jan 2099 00:00:00 GMT"), "0", "extra spaces make it invalid");
    assert_eq!(e("Friday, 01-Jan-99 00:00:00 GMT"), "Fri, 01 Jan 1999 00:00:00 GMT");
    assert_eq!(e("Thu Jan  1 00:00:00 2099"), "Thu, 01 Jan 2099 00:00:00 GMT");
    assert_eq!(e("tomorrow"), "0");
}

#[test]
fn any_status_with_explicit_freshness_is_stored() {
    assert_eq!(ttl(500, &[("cache-control", "max-age=30")]), 30);
    assert_eq!(ttl(299, &[("cache-control", "s-maxage=30")]), 30);
    assert_eq!(ttl(500, &[]), 0, "no freshness, not a heuristically cacheable status");
    assert_eq!(ttl(206, &[("cache-control", "max-age=30")]), 0);
    // Set-Cookie hides nothing from the policy unless the zone stores such responses.
    let req = parts(&[]);
    let now = SystemTime::now();
    let with_cookie = [("cache-control", "max-age=30"), ("set-cookie", "a=1")];
    let plain = CachePolicy::new_options(&req, &judged(200, &with_cookie, false), now, CacheOptions::default());
    let opted = CachePolicy::new_options(&req, &judged(200, &with_cookie, true), now, CacheOptions::default());
    assert_eq!(plain.time_to_live(now).as_secs(), 0);
    assert_eq!(opted.time_to_live(now).as_secs(), 30);
}

#[test]
fn stale_rules() {
    assert!(directives(&map(&[("cache-control", "s-maxage=60")])).forbids_stale);
    assert!(!directives(&map(&[("cache-control", "max-age=60")])).forbids_stale);
    assert!(client_forbids_stale(&map(&[("cache-control", "max-age=0")])));
    assert!(client_forbids_stale(&map(&[("cache-control", "min-fresh=5")])));
    assert!(!client_forbids_stale(&map(&[("cache-control", "max-stale")])));
    assert!(client_forbids_stale(&map(&[("pragma", "no-cache")])));
}

#[test]
fn location_keys_stay_on_the_same_host() {
    assert_eq!(
        same_host_key("http", "a.test", "/x?y").as_deref(),
        Some("http://a.test/x?y")
    );
    assert_eq!(
        same_host_key("http", "a.test", "http://A.test:8080/p").as_deref(),
        Some("http://a.test/p")
    );
    assert_eq!(same_host_key("http", "a.test", "http://b.test/p"), None);
    assert_eq!(same_host_key("http", "a.test", "//b.test/p"), None);
    assert_eq!(same_host_key("http", "a.test", "https://a.test/p"), None);
}

#[test]
fn qualified_no_cache_and_private_store_the_rest_of_the_response() {
    // Unqualified: not reusable without revalidation / not stored by a shared cache.
    assert_eq!(ttl(200, &[("cache-control", "max-age=60, no-cache")]), 0);
    assert_eq!(ttl(200, &[("cache-control", "max-age=60, private")]), 0);
    // Qualified: stored and reused, the listed fields left out of the stored copy.
    assert_eq!(ttl(200, &[("cache-control", "max-age=60, no-cache=\"a, B\"")]), 60);
    assert_eq!(ttl(200, &[("cache-control", "private=x, max-age=60")]), 60);
    let stored = stored_headers(&map(&[
        ("cache-control", "max-age=60, no-cache=\"a, B\", private=\"c\""),
        ("a", "1"),
        ("b", "2"),
        ("c", "3"),
        ("d", "4"),
    ]));
    assert!(!stored.contains_key("a") && !stored.contains_key("b") && !stored.contains_key("c"));
    assert_eq!(stored["d"], "4");
    // A quoted comma does not end the directive; other directives keep their arguments.
    let items = cache_control_items(&map(&[("cache-control", "no-cache=\"x,y\",max-age=5 , public")]));
    let names: Vec<(&str, Option<&str>)> = items.iter().map(|(n, a)| (n.as_str(), a.as_deref())).collect();
    assert_eq!(
        names,
        [("no-cache", Some("x,y")), ("max-age", Some("5")), ("public", None)]
    );
}

#[test]
fn memoised_age_matches_the_policy() {
    let req = parts(&[]);
    let resp = http::Response::builder()
        .header("cache-control", "max-age=600")
        .header("age", "10")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let stored_at = SystemTime::now();
    let policy = CachePolicy::new_options(&req, &resp, stored_at, CacheOptions::default());
    let entry = store::Entry {
        fresh_until: stored_at + policy.time_to_live(stored_at),
        policy,
        status: StatusCode::OK,
        headers: resp.headers.clone(),
        body: Bytes::new(),
        sealed: None,
        url: "http://a/x".into(),
        vary_key: String::new(),
        req_host: None,
        tags: Vec::new(),
        stale_while_revalidate: Duration::ZERO,
        stale_if_error: Duration::ZERO,
        may_serve_stale: true,
        encoded: false,
        memo: Default::default(),
    };
    // Before the response time the age is the Age field alone and is not anchored there.
    let before = stored_at - Duration::from_secs(5);
    assert_eq!(entry.age(before), Duration::from_secs(10));
    for later in [3, 4, 70, 3600] {
        let now = stored_at + Duration::from_secs(later);
        assert_eq!(entry.age(now), entry.policy.age(now), "{later} s after storing");
    }
    assert_eq!(entry.age(before), entry.policy.age(before));
}
